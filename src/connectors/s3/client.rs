//! The S3 client every S3 user shares: the `s3` source and sink, `classify` (models at
//! `s3://…`) and `enrich` (reference tables at `s3://…`).

/// Where and how to reach S3.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Connection {
    /// Endpoint override for S3-compatible servers (`http://127.0.0.1:5010` for moto);
    /// path-style addressing is used whenever it is set. Default: the standard AWS SDK chain
    /// (`AWS_ENDPOINT_URL`, profile …).
    pub endpoint_url: Option<String>,
    /// Region. Default: the standard chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
}

impl S3Connection {
    /// Builds a client. Credentials come from the standard AWS SDK chain.
    pub async fn client(&self) -> aws_sdk_s3::Client {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &self.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        let sdk = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            b = b.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(e) = &self.endpoint_url {
            b = b.endpoint_url(e).force_path_style(true);
        }
        aws_sdk_s3::Client::from_conf(b.build())
    }
}

/// What went wrong in a failed S3 call, in a few words: the service's error code and message,
/// or why the endpoint could not be reached (see [`crate::connectors::aws::what_went_wrong`]);
/// never the SDK's debug structure. Callers add the operation and the bucket or key.
pub fn sdk_error<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    crate::connectors::aws::what_went_wrong(e, None)
}

/// Why [`get_object`] failed. `Display` says which object and what went wrong, in one short
/// line (`GetObject s3://b/k: NoSuchKey: The specified key does not exist.`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum GetObjectError {
    /// The bucket has no object of that key.
    #[error("{chain}")]
    NoSuchKey {
        /// The operation, the object and the service's code and message.
        chain: String,
    },
    /// GetObject failed otherwise.
    #[error("{chain}")]
    Request {
        /// The service's error code (`AccessDenied`, `InvalidObjectState`, `NoSuchBucket`);
        /// `None` for transport errors.
        code: Option<String>,
        /// `"<code>: <message>"` when the service answered (NoSuchBucket, AccessDenied …):
        /// what says it best; `None` for transport errors, which `chain` describes.
        service: Option<String>,
        /// The operation, the object and what went wrong.
        chain: String,
    },
    /// The object is larger than the caller's limit: its body was not read.
    #[error("{len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Its Content-Length.
        len: i64,
        /// The limit.
        max: u64,
    },
    /// The response body could not be read to its end.
    #[error("{0}")]
    Body(String),
}

impl GetObjectError {
    /// The service's code and message when it answered, else the source chain.
    pub fn detail(&self) -> String {
        match self {
            GetObjectError::Request {
                service: Some(s), ..
            } => s.clone(),
            e => e.to_string(),
        }
    }
}

/// Reads one whole object; with `max_bytes`, an object whose Content-Length is larger fails
/// with [`GetObjectError::TooLarge`] before its body is read.
pub async fn get_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    max_bytes: Option<u64>,
) -> Result<Vec<u8>, GetObjectError> {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let obj = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            let chain = crate::connectors::aws::describe(
                &e,
                "GetObject",
                &format!("s3://{bucket}/{key}"),
                None,
            );
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                GetObjectError::NoSuchKey { chain }
            } else {
                let service = e
                    .code()
                    .map(|code| format!("{code}: {}", e.message().unwrap_or("")));
                let code = e.code().map(String::from);
                GetObjectError::Request {
                    code,
                    service,
                    chain,
                }
            }
        })?;
    if let (Some(max), Some(len)) = (max_bytes, obj.content_length())
        && u64::try_from(len).unwrap_or(0) > max
    {
        return Err(GetObjectError::TooLarge { len, max });
    }
    let body = obj.body.collect().await.map_err(|e| {
        GetObjectError::Body(format!(
            "reading s3://{bucket}/{key}: {}",
            crate::connectors::aws::error_chain(&e)
        ))
    })?;
    Ok(body.into_bytes().to_vec())
}

/// [`get_object`] for files loaded once at start (a model, a labels file). Safe to call from
/// synchronous code running inside the async runtime: the request runs on a thread of its own
/// with a runtime of its own.
pub fn get_object_blocking(
    conn: &S3Connection,
    bucket: &str,
    key: &str,
) -> std::result::Result<Vec<u8>, String> {
    let fetch = async {
        let client = conn.client().await;
        get_object(&client, bucket, key, None)
            .await
            .map_err(|e| e.to_string())
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(fetch)
        })
        .join()
        .unwrap_or_else(|_| Err("the download thread panicked".into()))
    })
    .map_err(|e| format!("reading s3://{bucket}/{key}: {e}"))
}
