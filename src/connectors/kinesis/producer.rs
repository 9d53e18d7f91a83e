//! The batching PutRecords writer the `kinesis` sink and `osprey produce` share: batches,
//! KPL aggregation, client-side checks of Kinesis's record limits, per-entry retries and
//! rejections (see the [`super::sink`] module docs for the rules).

use std::sync::Arc;
use std::time::Duration;

use super::client::{ApiError, KinesisApi, PutEntry, SdkKinesis};
use super::kpl::{self, SubRecord};
use crate::core::{Backoff, Origin};
use crate::{Error, Result, Retry};

/// Entries PutRecords rejected and osprey sent again.
pub const PUT_RETRIES: &str = "osprey_kinesis_put_retries_total";

/// Largest PutRecords batch, in records.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Largest PutRecords batch, in bytes (data + partition keys).
pub const MAX_BATCH_BYTES: usize = 5 << 20;
/// Largest record (data + partition key).
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Largest KPL aggregate built by the sink.
pub const MAX_AGGREGATE_BYTES: usize = 50 << 10;
/// Between PutRecords attempts for failed entries: 100 ms, 200 ms … up to 5 s.
const PUT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).without_jitter();

/// Longest partition key Kinesis accepts, in Unicode characters (and the shortest is 1).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// What [`Producer::push`] did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Buffered (and possibly sent).
    Queued,
    /// Over 1 MiB with its partition key: not sent. Holds the size.
    TooLarge(usize),
    /// A partition key Kinesis refuses (empty, or over 256 characters): not sent. Says why.
    BadKey(String),
}

/// Why a partition key cannot be sent, if it cannot.
pub fn check_partition_key(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("the partition key is empty; Kinesis needs 1 to 256 characters".into());
    }
    let chars = key.chars().count();
    (chars > MAX_PARTITION_KEY_CHARS).then(|| {
        format!("the partition key has {chars} characters; Kinesis accepts at most {MAX_PARTITION_KEY_CHARS}")
    })
}

/// A record PutRecords refused for good (the rest of its batch was delivered).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The record's payload.
    pub data: Vec<u8>,
    /// Where the record came from.
    pub origin: Origin,
    /// The service's error code and message.
    pub message: String,
}

/// What to do with an entry PutRecords reports as failed, by its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Throttling or a transient service fault: send it again.
    Retry,
    /// Something wrong with the stream, not the record (KMS key disabled, access denied):
    /// retried like a transient fault, so the job fails after `max_attempts` if it persists.
    Stream,
    /// Something wrong with this record: dead-letter it alone.
    Reject,
}

fn fate(code: &str) -> Fate {
    match code {
        "ProvisionedThroughputExceededException"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "KMSThrottlingException" => Fate::Retry,
        c if c.starts_with("KMS") || c.contains("AccessDenied") => Fate::Stream,
        _ => Fate::Reject,
    }
}

/// Buffered entries with the origins of the records each holds (several for an aggregate).
#[derive(Default)]
struct Batch {
    entries: Vec<PutEntry>,
    origins: Vec<Vec<Origin>>,
}

impl Batch {
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps the entries at `keep` (ascending indices).
    fn select(&mut self, keep: &[usize]) {
        let mut k = keep.iter().peekable();
        let mut i = 0;
        self.origins.retain(|_| {
            let hit = k.next_if(|&&j| j == i).is_some();
            i += 1;
            hit
        });
        let mut k = keep.iter().peekable();
        let mut i = 0;
        self.entries.retain(|_| {
            let hit = k.next_if(|&&j| j == i).is_some();
            i += 1;
            hit
        });
    }

    fn split_off(&mut self, at: usize) -> Batch {
        Batch {
            entries: self.entries.split_off(at),
            origins: self.origins.split_off(at),
        }
    }
}

/// Batching PutRecords writer shared by the sink and `osprey produce`.
pub struct Producer {
    api: Option<Arc<dyn KinesisApi>>,
    endpoint_url: Option<String>,
    stream: String,
    component: String,
    aggregate: bool,
    max_attempts: u32,
    max_buffer: usize,
    batch: Batch,
    bytes: usize,
    agg: Vec<SubRecord>,
    agg_origins: Vec<Origin>,
    agg_bytes: usize,
    rejected: Vec<Rejected>,
    retries: prometheus::IntCounter,
}

impl Producer {
    /// A producer writing to `stream`; connects on first send.
    pub fn new(
        stream: &str,
        endpoint_url: Option<&str>,
        component: &str,
        aggregate: bool,
        max_buffer: usize,
        max_attempts: u32,
    ) -> Self {
        let retries = crate::metrics::get()
            .labeled_counter(
                PUT_RETRIES,
                "Kinesis entries rejected by PutRecords and sent again",
                &["component"],
            )
            .with_label_values(&[component]);
        Producer {
            api: None,
            endpoint_url: endpoint_url.map(str::to_string),
            stream: stream.to_string(),
            component: component.to_string(),
            aggregate,
            max_attempts: max_attempts.max(1),
            max_buffer: max_buffer.clamp(1, MAX_BATCH_RECORDS),
            batch: Batch::default(),
            bytes: 0,
            agg: Vec::new(),
            agg_origins: Vec::new(),
            agg_bytes: 0,
            rejected: Vec::new(),
            retries,
        }
    }

    /// Uses a given client (tests).
    pub fn with_api(mut self, api: Arc<dyn KinesisApi>) -> Self {
        self.api = Some(api);
        self
    }

    /// Adds one record; sends a batch when the buffer is full.
    pub async fn push(&mut self, partition_key: String, data: Vec<u8>) -> Result<Pushed> {
        self.push_from(partition_key, data, Origin::default()).await
    }

    /// [`Producer::push`] for a record read at `origin` (what a [`Rejected`] reports).
    pub async fn push_from(
        &mut self,
        partition_key: String,
        data: Vec<u8>,
        origin: Origin,
    ) -> Result<Pushed> {
        if let Some(why) = check_partition_key(&partition_key) {
            return Ok(Pushed::BadKey(why));
        }
        let size = partition_key.len() + data.len();
        if size > MAX_RECORD_BYTES {
            return Ok(Pushed::TooLarge(size));
        }
        if self.aggregate {
            let add = kpl::encoded_overhead(&partition_key, data.len());
            if !self.agg.is_empty() && self.agg_bytes + add > MAX_AGGREGATE_BYTES {
                self.seal_aggregate().await?;
            }
            if add + 64 > MAX_AGGREGATE_BYTES {
                // Too big to share an aggregate: send it on its own.
                let e = PutEntry {
                    partition_key,
                    data,
                };
                return self.enqueue(e, vec![origin]).await;
            }
            self.agg_bytes += add;
            self.agg.push(SubRecord {
                partition_key,
                data,
            });
            self.agg_origins.push(origin);
            return Ok(Pushed::Queued);
        }
        let e = PutEntry {
            partition_key,
            data,
        };
        self.enqueue(e, vec![origin]).await
    }

    /// Records PutRecords refused for good since the last call.
    pub fn take_rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.rejected)
    }

    async fn seal_aggregate(&mut self) -> Result<()> {
        if self.agg.is_empty() {
            return Ok(());
        }
        let subs = std::mem::take(&mut self.agg);
        let origins = std::mem::take(&mut self.agg_origins);
        self.agg_bytes = 0;
        let partition_key = subs[0].partition_key.clone();
        let data = if subs.len() == 1 {
            subs.into_iter().next().map(|s| s.data).unwrap_or_default()
        } else {
            kpl::encode(&subs)
        };
        let e = PutEntry {
            partition_key,
            data,
        };
        self.enqueue(e, origins).await.map(|_| ())
    }

    async fn enqueue(&mut self, e: PutEntry, origins: Vec<Origin>) -> Result<Pushed> {
        let size = e.partition_key.len() + e.data.len();
        if !self.batch.entries.is_empty() && self.bytes + size > MAX_BATCH_BYTES {
            self.send().await?;
        }
        self.bytes += size;
        self.batch.entries.push(e);
        self.batch.origins.push(origins);
        if self.batch.len() >= self.max_buffer {
            self.send().await?;
        }
        Ok(Pushed::Queued)
    }

    /// Sends everything buffered (including an open aggregate).
    pub async fn flush(&mut self) -> Result<()> {
        self.seal_aggregate().await?;
        self.send().await
    }

    async fn api(&mut self) -> Arc<dyn KinesisApi> {
        if let Some(a) = &self.api {
            return Arc::clone(a);
        }
        let a: Arc<dyn KinesisApi> = Arc::new(SdkKinesis::new(self.endpoint_url.as_deref()).await);
        self.api = Some(Arc::clone(&a));
        a
    }

    /// Sends the buffered entries. A request Kinesis refuses as a whole as invalid is split
    /// in halves until the entry at fault is alone, and that one is rejected.
    async fn send(&mut self) -> Result<()> {
        if self.batch.entries.is_empty() {
            return Ok(());
        }
        let api = self.api().await;
        let total = self.batch.len();
        let mut stack = vec![std::mem::take(&mut self.batch)];
        self.bytes = 0;
        let mut invalid = None;
        while let Some(batch) = stack.pop() {
            self.send_batch(&*api, batch, &mut stack, &mut invalid)
                .await?;
        }
        // Every entry refused as invalid on its own: the request is wrong, not the records
        // (a malformed stream name, say). Stop rather than dead-letter the whole stream.
        match invalid {
            Some((n, message)) if n == total && total > 1 => Err(Error::Sink {
                component: self.component.clone(),
                message: format!(
                    "PutRecords to {} refused every record: {message}",
                    self.stream
                ),
                retry: Retry::No,
            }),
            _ => Ok(()),
        }
    }

    /// Sends `todo`, retrying only the entries that failed for a transient reason; entries
    /// failed for a permanent reason are rejected alone; halves of a batch refused as a whole
    /// go to `split`; `invalid` counts the entries refused as invalid alone (and keeps the
    /// first message).
    async fn send_batch(
        &mut self,
        api: &dyn KinesisApi,
        mut todo: Batch,
        split: &mut Vec<Batch>,
        invalid: &mut Option<(usize, String)>,
    ) -> Result<()> {
        let mut backoff = PUT_BACKOFF.attempts(0);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let why = match api.put_records(&self.stream, &todo.entries).await {
                Ok(results) => {
                    let before = todo.len();
                    let mut keep = Vec::new();
                    let mut first = None;
                    for (i, result) in results.into_iter().enumerate() {
                        let Some(error) = result else { continue };
                        let code = error.split(": ").next().unwrap_or_default();
                        if fate(code) == Fate::Reject {
                            self.reject(&todo, i, &error);
                        } else {
                            keep.push(i);
                            first.get_or_insert(error);
                        }
                    }
                    todo.select(&keep);
                    if todo.entries.is_empty() {
                        return Ok(());
                    }
                    self.retries.inc_by(todo.len() as u64);
                    format!(
                        "{} of {before} entries failed ({})",
                        todo.len(),
                        first.unwrap_or_default()
                    )
                }
                Err(ApiError::Invalid(message)) => {
                    if todo.len() == 1 {
                        self.reject(&todo, 0, &message);
                        invalid.get_or_insert((0, message)).0 += 1;
                    } else {
                        let back = todo.split_off(todo.len() / 2);
                        split.push(back);
                        split.push(todo);
                    }
                    return Ok(());
                }
                Err(e) => e.to_string(),
            };
            if attempt >= self.max_attempts {
                return Err(Error::Sink {
                    component: self.component.clone(),
                    message: format!(
                        "PutRecords to {} failed {attempt} times: {why}",
                        self.stream
                    ),
                    retry: Retry::WithBackoff,
                });
            }
            tracing::debug!(stream = %self.stream, attempt, error = %why, "PutRecords retry.");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Rejects entry `i` of `batch` (each record of an aggregate).
    fn reject(&mut self, batch: &Batch, i: usize, message: &str) {
        let entry = &batch.entries[i];
        let origins = &batch.origins[i];
        let datas: Vec<Vec<u8>> = match kpl::decode(&entry.data) {
            Ok(Some(subs)) if subs.len() == origins.len() => {
                subs.into_iter().map(|s| s.data).collect()
            }
            _ => vec![entry.data.clone()],
        };
        for (k, data) in datas.into_iter().enumerate() {
            self.rejected.push(Rejected {
                data,
                origin: origins.get(k).cloned().unwrap_or_default(),
                message: message.to_string(),
            });
        }
    }
}
