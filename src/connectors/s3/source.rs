//! `type = "s3"` source: new objects in a bucket, polled with ListObjectsV2 (see
//! [`crate::connectors::objects`] for what is new and how the position is kept).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::client::{GetObjectError, S3Connection, get_object, sdk_error};
use crate::Result;
use crate::connectors::aws::failure_kind;
use crate::connectors::objects::{
    self, GetError, Lister, ObjectMeta, ObjectOptions, ObjectSource, Page,
};
use crate::connectors::{Source, SourceFailure, SourceSpec};
use crate::core::{ConfigError, Duration};

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
    pub poll_interval: Duration,
    /// How late (by LastModified) an object whose key sorts before the last one read is still
    /// picked up. Default 1 h; `"0s"` lists only after the last key (`StartAfter`).
    #[serde(default = "objects::default_late_window")]
    pub late_window: Duration,
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
    /// How long listing or reading may fail (the bucket missing, access denied, the endpoint
    /// down) without progress before the job stops with exit code 1; meanwhile `/readyz`
    /// answers 503. Default 5 min.
    #[serde(default = "crate::connectors::default_fail_after")]
    pub fail_after: Duration,
}

impl S3SourceConfig {
    /// Where the bucket is.
    pub fn connection(&self) -> S3Connection {
        S3Connection {
            endpoint_url: self.endpoint_url.clone(),
            region: self.region.clone(),
        }
    }
}

impl SourceSpec for S3SourceConfig {
    fn type_name(&self) -> &'static str {
        "s3"
    }

    fn validate(&self) -> Vec<ConfigError> {
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

    fn max_record_bytes(&self) -> usize {
        self.max_object_bytes.try_into().unwrap_or(usize::MAX)
    }

    fn fail_after(&self) -> std::time::Duration {
        self.fail_after.as_std()
    }

    /// The client is created on first use.
    fn build(&self) -> Result<Box<dyn Source>> {
        let opts = ObjectOptions::new(
            &self.suffix,
            self.poll_interval,
            self.late_window,
            self.max_object_bytes,
            self.stop_when_idle,
            self.max_tracked_keys,
        );
        let lister = S3Lister {
            cfg: self.clone(),
            client: None,
        };
        Ok(Box::new(ObjectSource::new(lister, opts, "s3")))
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
        let c = Arc::new(self.cfg.connection().client().await);
        self.client = Some(Arc::clone(&c));
        c
    }

    fn failure(&self, what: &str, code: Option<&str>, detail: String) -> SourceFailure {
        SourceFailure {
            kind: failure_kind(code),
            message: format!("{what} in bucket {}: {detail}", self.cfg.bucket),
        }
    }
}

/// Error codes that mean this one object cannot be read (dead-lettered), as opposed to a
/// failure of the whole source.
fn object_unreadable(code: &str) -> bool {
    matches!(
        code,
        "AccessDenied" | "InvalidObjectState" | "NoSuchKey" | "NoSuchVersion" | "InvalidRange"
    ) || code.starts_with("KMS")
}

#[async_trait]
impl Lister for S3Lister {
    async fn list_page(
        &mut self,
        start_after: Option<&str>,
        token: Option<&str>,
    ) -> std::result::Result<Page, SourceFailure> {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        let client = self.client().await;
        let mut req = client
            .list_objects_v2()
            .bucket(&self.cfg.bucket)
            .prefix(&self.cfg.prefix)
            .max_keys(objects::PAGE_SIZE as i32);
        if let Some(s) = start_after {
            req = req.start_after(s);
        }
        if let Some(t) = token {
            req = req.continuation_token(t);
        }
        let page = req
            .send()
            .await
            .map_err(|e| self.failure("listing objects", e.code(), sdk_error(&e)))?;
        // ListObjectsV2 returns keys in UTF-8 binary order, which is Rust's `str` order.
        let objects = page
            .contents()
            .iter()
            .filter_map(|o| {
                let key = o.key()?;
                Some(ObjectMeta::new(
                    key.to_string(),
                    o.size().unwrap_or(0).max(0) as u64,
                    o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                    o.last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                ))
            })
            .collect();
        let next = match page.next_continuation_token() {
            Some(t) if page.is_truncated().unwrap_or(false) => Some(t.to_string()),
            _ => None,
        };
        Ok(Page { objects, next })
    }

    async fn get(&mut self, key: &str) -> std::result::Result<Vec<u8>, GetError> {
        let client = self.client().await;
        let max = self.cfg.max_object_bytes;
        get_object(&client, &self.cfg.bucket, key, Some(max))
            .await
            .map_err(|e| match e {
                GetObjectError::NoSuchKey { chain } => GetError::Unreadable(
                    "unreadable",
                    format!("{chain} (deleted after it was listed)"),
                ),
                GetObjectError::Request {
                    code: Some(code),
                    chain,
                    ..
                } if object_unreadable(&code) => GetError::Unreadable("unreadable", chain),
                GetObjectError::Request { code, chain, .. } => GetError::Failing(self.failure(
                    &format!("getting {key}"),
                    code.as_deref(),
                    chain,
                )),
                // The object grew after it was listed.
                e @ GetObjectError::TooLarge { .. } => GetError::Unreadable(
                    "too_large",
                    format!("s3://{}/{key}: {e}", self.cfg.bucket),
                ),
                GetObjectError::Body(chain) => {
                    GetError::Failing(self.failure(&format!("reading {key}"), None, chain))
                }
            })
    }

    fn location(&self) -> &str {
        &self.cfg.bucket
    }
}
