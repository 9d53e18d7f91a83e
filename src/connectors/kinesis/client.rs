//! The slice of the Kinesis API osprey uses, behind a trait so unit tests can inject the faults
//! a local server cannot produce (throttling, expired iterators, expiring, stalling or failing
//! enhanced fan-out subscriptions). [`SdkKinesis`] is the real implementation over
//! `aws-sdk-kinesis`.

use async_trait::async_trait;

/// A shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Shard id.
    pub id: String,
    /// Parent and adjacent parent (after a split: one; after a merge: two).
    pub parents: Vec<String>,
}

/// Where a shard iterator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorStart {
    /// The oldest record still retained.
    TrimHorizon,
    /// Only records put after the iterator is created.
    Latest,
    /// The first record at or after this time (epoch milliseconds).
    AtTimestamp(i64),
    /// The record with this sequence number (to resume inside an aggregated record).
    AtSequence(String),
    /// The record after this sequence number.
    AfterSequence(String),
}

/// One record as GetRecords returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecord {
    /// Sequence number (decimal string).
    pub sequence: String,
    /// Partition key.
    pub partition_key: String,
    /// Payload (possibly a KPL aggregate).
    pub data: Vec<u8>,
}

/// A GetRecords response.
#[derive(Debug, Clone, Default)]
pub struct RecordsPage {
    /// Records, in sequence order.
    pub records: Vec<KinesisRecord>,
    /// The next iterator; `None` when a closed shard has been read to its end.
    pub next_iterator: Option<String>,
    /// How far behind the tip of the shard this response is.
    pub millis_behind_latest: Option<i64>,
}

/// One PutRecords entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutEntry {
    /// Partition key.
    pub partition_key: String,
    /// Payload.
    pub data: Vec<u8>,
}

/// A failed Kinesis call, classified by what the caller should do. The text says which call
/// on which resource failed and the service's error code and message
/// ([`crate::connectors::aws::describe`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// ProvisionedThroughputExceeded / LimitExceeded: back off and retry.
    #[error("{0}")]
    Throttled(String),
    /// The shard iterator expired: get a new one.
    #[error("{0}")]
    ExpiredIterator(String),
    /// The stream or shard does not exist.
    #[error("{0}")]
    NotFound(String),
    /// ResourceInUse: e.g. a previous subscription to the shard is still alive.
    #[error("{0}")]
    ResourceInUse(String),
    /// AccessDenied, KMS access errors, refused credentials: the caller may not do this.
    #[error("{0}")]
    AccessDenied(String),
    /// ValidationException / InvalidArgumentException: the request itself is wrong (a
    /// partition key too long, a record too large); sending it again cannot help.
    #[error("{0}")]
    Invalid(String),
    /// Anything else (network, service errors): retried with backoff by callers.
    #[error("{0}")]
    Other(String),
}

impl ApiError {
    /// This error as a source failure (see [`crate::connectors::Source::failure`]).
    pub fn failure(&self) -> crate::connectors::SourceFailure {
        use crate::connectors::{FAILURE_ACCESS_DENIED, FAILURE_NOT_FOUND, FAILURE_UNAVAILABLE};
        let kind = match self {
            ApiError::NotFound(_) => FAILURE_NOT_FOUND,
            ApiError::AccessDenied(_) => FAILURE_ACCESS_DENIED,
            _ => FAILURE_UNAVAILABLE,
        };
        crate::connectors::SourceFailure {
            kind,
            message: self.to_string(),
        }
    }
}

/// An enhanced fan-out consumer as RegisterStreamConsumer / DescribeStreamConsumer describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Consumer ARN (what SubscribeToShard takes).
    pub arn: String,
    /// Status `ACTIVE`: subscriptions may start.
    pub active: bool,
}

/// One SubscribeToShardEvent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardEvent {
    /// Records, in sequence order (possibly none: the service sends an event about every 5 s
    /// even when the shard is idle).
    pub records: Vec<KinesisRecord>,
    /// Where the next subscription continues (AFTER this sequence number); `None` when a
    /// closed shard has been read to its end.
    pub continuation: Option<String>,
    /// How far behind the tip of the shard this event is.
    pub millis_behind_latest: i64,
    /// After a reshard, at the end of the shard: its children.
    pub child_shards: Vec<ShardInfo>,
}

/// An open SubscribeToShard event stream. Dropping it cancels the subscription.
#[async_trait]
pub trait ShardSubscription: Send {
    /// The next event. `Ok(None)`: the service ended the subscription (it does after 5 minutes).
    /// Cancel-safe is not required: callers drop the subscription when they stop waiting.
    async fn next_event(&mut self) -> Result<Option<ShardEvent>, ApiError>;
}

/// The Kinesis calls osprey makes.
#[async_trait]
pub trait KinesisApi: Send + Sync + 'static {
    /// Every shard of the stream still within retention (open and closed), following pagination.
    async fn list_shards(&self, stream: &str) -> Result<Vec<ShardInfo>, ApiError>;
    /// A shard iterator.
    async fn get_shard_iterator(
        &self,
        stream: &str,
        shard: &str,
        start: &IteratorStart,
    ) -> Result<String, ApiError>;
    /// Up to `limit` records from `iterator`.
    async fn get_records(&self, iterator: &str, limit: i32) -> Result<RecordsPage, ApiError>;
    /// Puts `entries`; returns one result per entry: `None` when stored, else the entry's
    /// error code, followed by `: ` and the service's message when it gave one.
    async fn put_records(
        &self,
        stream: &str,
        entries: &[PutEntry],
    ) -> Result<Vec<Option<String>>, ApiError>;
    /// The enhanced fan-out consumer `name` of the stream, registered when there is none (an
    /// existing consumer of that name is reused). Callers ask again until it is active.
    async fn consumer(&self, stream: &str, name: &str) -> Result<Consumer, ApiError> {
        let _ = (stream, name);
        Err(ApiError::Other(
            "enhanced fan-out is not supported by this client".into(),
        ))
    }
    /// SubscribeToShard: an event stream of the shard's records from `start`.
    async fn subscribe(
        &self,
        consumer_arn: &str,
        shard: &str,
        start: &IteratorStart,
    ) -> Result<Box<dyn ShardSubscription>, ApiError> {
        let _ = (consumer_arn, shard, start);
        Err(ApiError::Other(
            "enhanced fan-out is not supported by this client".into(),
        ))
    }
}

/// A stream named by name or by ARN.
fn is_arn(stream: &str) -> bool {
    stream.starts_with("arn:")
}

/// Builds an SDK client: region and credentials from the standard chain; `endpoint_url`
/// overrides the endpoint (else `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL` apply).
pub async fn sdk_client(endpoint_url: Option<&str>) -> aws_sdk_kinesis::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let shared = loader.load().await;
    // Retries are ours (classified backoff per shard), so the SDK makes one attempt.
    let conf = aws_sdk_kinesis::config::Builder::from(&shared)
        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::standard().with_max_attempts(2))
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// [`KinesisApi`] over the AWS SDK.
#[derive(Clone)]
pub struct SdkKinesis {
    client: aws_sdk_kinesis::Client,
    endpoint_url: Option<String>,
}

impl SdkKinesis {
    /// See [`sdk_client`].
    pub async fn new(endpoint_url: Option<&str>) -> Self {
        SdkKinesis {
            client: sdk_client(endpoint_url).await,
            endpoint_url: endpoint_url.map(str::to_string),
        }
    }

    /// The underlying SDK client.
    pub fn client(&self) -> &aws_sdk_kinesis::Client {
        &self.client
    }

    /// Classifies a failed `operation` on `resource` (`stream out`, `shard shardId-…`).
    fn fail<E, R>(
        &self,
        operation: &'static str,
        resource: impl std::fmt::Display,
    ) -> impl FnOnce(aws_sdk_kinesis::error::SdkError<E, R>) -> ApiError
    where
        E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + 'static,
    {
        let endpoint = self.endpoint_url.clone();
        move |e| classify(&e, operation, &resource.to_string(), endpoint.as_deref())
    }
}

fn classify<E, R>(
    e: &aws_sdk_kinesis::error::SdkError<E, R>,
    operation: &str,
    resource: &str,
    endpoint: Option<&str>,
) -> ApiError
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_kinesis::error::ProvideErrorMetadata;
    let message = crate::connectors::aws::describe(e, operation, resource, endpoint);
    match e.code().unwrap_or("") {
        "ProvisionedThroughputExceededException"
        | "LimitExceededException"
        | "KMSThrottlingException" => ApiError::Throttled(message),
        "ExpiredIteratorException" => ApiError::ExpiredIterator(message),
        "ResourceNotFoundException" => ApiError::NotFound(message),
        "ResourceInUseException" => ApiError::ResourceInUse(message),
        "ValidationException" | "InvalidArgumentException" => ApiError::Invalid(message),
        c if crate::connectors::aws::failure_kind(Some(c))
            == crate::connectors::FAILURE_ACCESS_DENIED =>
        {
            ApiError::AccessDenied(message)
        }
        _ => ApiError::Other(message),
    }
}

/// `stream <name or ARN>`.
fn stream_resource(stream: &str) -> String {
    format!("stream {stream}")
}

fn record(r: &aws_sdk_kinesis::types::Record) -> KinesisRecord {
    KinesisRecord {
        sequence: r.sequence_number().to_string(),
        partition_key: r.partition_key().unwrap_or_default().to_string(),
        data: r.data().as_ref().to_vec(),
    }
}

impl SdkKinesis {
    /// The ARN of `stream` (RegisterStreamConsumer takes only ARNs).
    async fn stream_arn(&self, stream: &str) -> Result<String, ApiError> {
        if is_arn(stream) {
            return Ok(stream.to_string());
        }
        let resp = self
            .client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(self.fail("DescribeStreamSummary", stream_resource(stream)))?;
        resp.stream_description_summary()
            .map(|s| s.stream_arn().to_string())
            .ok_or_else(|| ApiError::Other("DescribeStreamSummary returned no summary".into()))
    }

    async fn describe_consumer(&self, stream_arn: &str, name: &str) -> Result<Consumer, ApiError> {
        let resp = self
            .client
            .describe_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(name)
            .send()
            .await
            .map_err(self.fail("DescribeStreamConsumer", format!("consumer {name}")))?;
        let d = resp.consumer_description().ok_or_else(|| {
            ApiError::Other("DescribeStreamConsumer returned no description".into())
        })?;
        Ok(Consumer {
            arn: d.consumer_arn().to_string(),
            active: *d.consumer_status() == aws_sdk_kinesis::types::ConsumerStatus::Active,
        })
    }
}

/// [`ShardSubscription`] over the SDK's event receiver.
struct SdkSubscription {
    events: aws_sdk_kinesis::primitives::event_stream::EventReceiver<
        aws_sdk_kinesis::types::SubscribeToShardEventStream,
        aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError,
    >,
    /// `shard <id>`, for errors.
    shard: String,
    endpoint_url: Option<String>,
}

#[async_trait]
impl ShardSubscription for SdkSubscription {
    async fn next_event(&mut self) -> Result<Option<ShardEvent>, ApiError> {
        use aws_sdk_kinesis::types::SubscribeToShardEventStream as S;
        loop {
            let next = self.events.recv().await.map_err(|e| {
                classify(
                    &e,
                    "SubscribeToShard",
                    &self.shard,
                    self.endpoint_url.as_deref(),
                )
            })?;
            match next {
                None => return Ok(None),
                Some(S::SubscribeToShardEvent(e)) => {
                    let continuation = e.continuation_sequence_number();
                    return Ok(Some(ShardEvent {
                        records: e.records().iter().map(record).collect(),
                        // The SDK turns a null continuation (end of shard) into "".
                        continuation: (!continuation.is_empty()).then(|| continuation.to_string()),
                        millis_behind_latest: e.millis_behind_latest(),
                        child_shards: e
                            .child_shards()
                            .iter()
                            .map(|c| ShardInfo {
                                id: c.shard_id().to_string(),
                                parents: c.parent_shards().to_vec(),
                            })
                            .collect(),
                    }));
                }
                // A newer service event type this SDK does not know: skip it.
                Some(_) => continue,
            }
        }
    }
}

#[async_trait]
impl KinesisApi for SdkKinesis {
    async fn list_shards(&self, stream: &str) -> Result<Vec<ShardInfo>, ApiError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_shards();
            req = match &token {
                Some(t) => req.next_token(t),
                None if is_arn(stream) => req.stream_arn(stream),
                None => req.stream_name(stream),
            };
            let resp = req
                .send()
                .await
                .map_err(self.fail("ListShards", stream_resource(stream)))?;
            for s in resp.shards() {
                let mut parents = Vec::new();
                if let Some(p) = s.parent_shard_id() {
                    parents.push(p.to_string());
                }
                if let Some(p) = s.adjacent_parent_shard_id() {
                    parents.push(p.to_string());
                }
                out.push(ShardInfo {
                    id: s.shard_id().to_string(),
                    parents,
                });
            }
            match resp.next_token() {
                Some(t) if !t.is_empty() && !resp.shards().is_empty() => {
                    token = Some(t.to_string())
                }
                _ => return Ok(out),
            }
        }
    }

    async fn get_shard_iterator(
        &self,
        stream: &str,
        shard: &str,
        start: &IteratorStart,
    ) -> Result<String, ApiError> {
        use aws_sdk_kinesis::types::ShardIteratorType as T;
        let mut req = self.client.get_shard_iterator().shard_id(shard);
        req = if is_arn(stream) {
            req.stream_arn(stream)
        } else {
            req.stream_name(stream)
        };
        req = match start {
            IteratorStart::TrimHorizon => req.shard_iterator_type(T::TrimHorizon),
            IteratorStart::Latest => req.shard_iterator_type(T::Latest),
            IteratorStart::AtTimestamp(ms) => req
                .shard_iterator_type(T::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(*ms)),
            IteratorStart::AtSequence(s) => req
                .shard_iterator_type(T::AtSequenceNumber)
                .starting_sequence_number(s),
            IteratorStart::AfterSequence(s) => req
                .shard_iterator_type(T::AfterSequenceNumber)
                .starting_sequence_number(s),
        };
        let resp = req.send().await.map_err(self.fail(
            "GetShardIterator",
            format!("{} shard {shard}", stream_resource(stream)),
        ))?;
        resp.shard_iterator()
            .map(str::to_string)
            .ok_or_else(|| ApiError::Other("GetShardIterator returned no iterator".into()))
    }

    async fn get_records(&self, iterator: &str, limit: i32) -> Result<RecordsPage, ApiError> {
        let resp = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
            .map_err(self.fail("GetRecords", "shard iterator"))?;
        Ok(RecordsPage {
            records: resp.records().iter().map(record).collect(),
            next_iterator: resp.next_shard_iterator().map(str::to_string),
            millis_behind_latest: resp.millis_behind_latest(),
        })
    }

    async fn put_records(
        &self,
        stream: &str,
        entries: &[PutEntry],
    ) -> Result<Vec<Option<String>>, ApiError> {
        use aws_sdk_kinesis::types::PutRecordsRequestEntry;
        let mut req = self.client.put_records();
        req = if is_arn(stream) {
            req.stream_arn(stream)
        } else {
            req.stream_name(stream)
        };
        for e in entries {
            let entry = PutRecordsRequestEntry::builder()
                .partition_key(&e.partition_key)
                .data(aws_sdk_kinesis::primitives::Blob::new(e.data.clone()))
                .build()
                .map_err(|e| ApiError::Other(e.to_string()))?;
            req = req.records(entry);
        }
        let resp = req
            .send()
            .await
            .map_err(self.fail("PutRecords", stream_resource(stream)))?;
        let results: Vec<Option<String>> = resp
            .records()
            .iter()
            .map(|r| {
                r.error_code().map(|code| match r.error_message() {
                    Some(m) if !m.is_empty() => format!("{code}: {m}"),
                    _ => code.to_string(),
                })
            })
            .collect();
        if results.len() != entries.len() {
            return Err(ApiError::Other(format!(
                "PutRecords answered {} entries for {} sent",
                results.len(),
                entries.len()
            )));
        }
        Ok(results)
    }

    async fn consumer(&self, stream: &str, name: &str) -> Result<Consumer, ApiError> {
        let stream_arn = self.stream_arn(stream).await?;
        match self.describe_consumer(&stream_arn, name).await {
            Err(ApiError::NotFound(_)) => {}
            other => return other,
        }
        let registered = self
            .client
            .register_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(name)
            .send()
            .await
            .map_err(self.fail("RegisterStreamConsumer", format!("consumer {name}")));
        match registered {
            Ok(resp) => {
                let c = resp.consumer().ok_or_else(|| {
                    ApiError::Other("RegisterStreamConsumer returned no consumer".into())
                })?;
                Ok(Consumer {
                    arn: c.consumer_arn().to_string(),
                    active: *c.consumer_status() == aws_sdk_kinesis::types::ConsumerStatus::Active,
                })
            }
            // Registered meanwhile by another worker of the job.
            Err(ApiError::ResourceInUse(_)) => self.describe_consumer(&stream_arn, name).await,
            Err(e) => Err(e),
        }
    }

    async fn subscribe(
        &self,
        consumer_arn: &str,
        shard: &str,
        start: &IteratorStart,
    ) -> Result<Box<dyn ShardSubscription>, ApiError> {
        use aws_sdk_kinesis::types::{ShardIteratorType as T, StartingPosition};
        let pos = StartingPosition::builder();
        let pos = match start {
            IteratorStart::TrimHorizon => pos.r#type(T::TrimHorizon),
            IteratorStart::Latest => pos.r#type(T::Latest),
            IteratorStart::AtTimestamp(ms) => pos
                .r#type(T::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(*ms)),
            IteratorStart::AtSequence(s) => pos.r#type(T::AtSequenceNumber).sequence_number(s),
            IteratorStart::AfterSequence(s) => {
                pos.r#type(T::AfterSequenceNumber).sequence_number(s)
            }
        };
        let pos = pos.build().map_err(|e| ApiError::Other(e.to_string()))?;
        let resp = self
            .client
            .subscribe_to_shard()
            .consumer_arn(consumer_arn)
            .shard_id(shard)
            .starting_position(pos)
            .send()
            .await
            .map_err(self.fail("SubscribeToShard", format!("shard {shard}")))?;
        Ok(Box::new(SdkSubscription {
            events: resp.event_stream,
            shard: format!("shard {shard}"),
            endpoint_url: self.endpoint_url.clone(),
        }))
    }
}
