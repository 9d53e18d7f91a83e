//! `type = "s3"`: new objects in a bucket, polled with ListObjectsV2 (see [`super::objects`]
//! for what is new and how the position is kept).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::objects::{self, Lister, ObjectMeta, ObjectOptions, ObjectSource};
use crate::config::ConfigError;
use crate::{Error, Result};

/// Where and how to reach S3: shared by the S3 source and sink.
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

/// Reads one whole object, for files loaded once at start (a model, a labels file). Safe to
/// call from synchronous code running inside the async runtime: the request runs on a
/// thread of its own with a runtime of its own.
pub fn get_object_blocking(
    conn: &S3Connection,
    bucket: &str,
    key: &str,
) -> std::result::Result<Vec<u8>, String> {
    let fetch = async {
        let client = conn.client().await;
        let out = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        let body = out.body.collect().await.map_err(|e| sdk_error(&e))?;
        Ok::<_, String>(body.into_bytes().to_vec())
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

/// Formats an SDK error with its source chain (the SDK's `Display` alone says "service error").
pub fn sdk_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `type = "s3"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3SourceConfig {
    /// Bucket to read.
    pub bucket: String,
    /// Only keys starting with this. Default: all.
    #[serde(default)]
    pub prefix: String,
    /// Only keys ending with one of these (case-insensitive). Default: all.
    #[serde(default)]
    pub suffix: Vec<String>,
    /// Wait between listings that found nothing new. Default 10 s.
    #[serde(default = "objects::default_poll_interval")]
    pub poll_interval: crate::config::Duration,
    /// How late (by LastModified) an object whose key sorts before the last one read is still
    /// picked up. Default 1 h; `"0s"` lists only after the last key (`StartAfter`).
    #[serde(default = "objects::default_late_window")]
    pub late_window: crate::config::Duration,
    /// Objects larger than this are not downloaded but dead-lettered (`too_large`).
    /// Default 50 MiB.
    #[serde(default = "objects::default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// End the job after a listing finds nothing new (a bounded run). Default false.
    #[serde(default)]
    pub stop_when_idle: bool,
    /// Bound on the recently-read keys kept for late arrivals. Default 100,000.
    #[serde(default = "objects::default_max_tracked_keys")]
    pub max_tracked_keys: usize,
    /// Endpoint override for S3-compatible servers (`http://127.0.0.1:5010` for moto);
    /// path-style addressing is used whenever it is set. Default: the standard AWS SDK chain.
    pub endpoint_url: Option<String>,
    /// Region. Default: the standard chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
}

impl S3SourceConfig {
    /// Semantic checks.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.bucket.is_empty() {
            errors.push(ConfigError::new("source.bucket", "must name a bucket"));
        }
        if self.poll_interval.as_std().is_zero() {
            errors.push(ConfigError::new(
                "source.poll_interval",
                "must be greater than zero",
            ));
        }
        errors
    }

    /// Builds the source (the client is created on first use).
    pub fn build(&self) -> ObjectSource<S3Lister> {
        let opts = ObjectOptions {
            suffixes: self.suffix.iter().map(|s| s.to_lowercase()).collect(),
            poll_interval: self.poll_interval.as_std(),
            late_window: self.late_window.as_std(),
            max_object_bytes: self.max_object_bytes,
            stop_when_idle: self.stop_when_idle,
            max_tracked_keys: self.max_tracked_keys.max(1),
            fetch_batch: 16,
        };
        ObjectSource::new(
            S3Lister {
                cfg: self.clone(),
                client: None,
            },
            opts,
            "s3",
        )
    }
}

/// ListObjectsV2 + GetObject.
pub struct S3Lister {
    cfg: S3SourceConfig,
    client: Option<Arc<aws_sdk_s3::Client>>,
}

impl S3Lister {
    async fn client(&mut self) -> Arc<aws_sdk_s3::Client> {
        if let Some(c) = &self.client {
            return Arc::clone(c);
        }
        let c = Arc::new(
            S3Connection {
                endpoint_url: self.cfg.endpoint_url.clone(),
                region: self.cfg.region.clone(),
            }
            .client()
            .await,
        );
        self.client = Some(Arc::clone(&c));
        c
    }

    fn error(&self, what: &str, e: &(dyn std::error::Error + 'static)) -> Error {
        Error::Source {
            component: "s3".into(),
            message: format!("{what} in bucket {}: {}", self.cfg.bucket, sdk_error(e)),
            retry: crate::Retry::WithBackoff,
        }
    }
}

#[async_trait]
impl Lister for S3Lister {
    async fn list(&mut self, start_after: Option<&str>) -> Result<Vec<ObjectMeta>> {
        let client = self.client().await;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = client
                .list_objects_v2()
                .bucket(&self.cfg.bucket)
                .prefix(&self.cfg.prefix);
            if let Some(s) = start_after {
                req = req.start_after(s);
            }
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let page = req
                .send()
                .await
                .map_err(|e| self.error("listing objects", &e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                    last_modified_ms: o
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        // ListObjectsV2 returns keys in UTF-8 binary order, which is Rust's `str` order.
        Ok(out)
    }

    async fn get(&mut self, key: &str) -> Result<Vec<u8>> {
        let client = self.client().await;
        let obj = client
            .get_object()
            .bucket(&self.cfg.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(&format!("getting {key}"), &e))?;
        let body = obj
            .body
            .collect()
            .await
            .map_err(|e| self.error(&format!("reading {key}"), &e))?;
        Ok(body.into_bytes().to_vec())
    }

    fn location(&self) -> &str {
        &self.cfg.bucket
    }
}
