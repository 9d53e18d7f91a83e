//! `type = "enrich"`: the job-file options. The `///` comments are the user documentation.

use std::path::PathBuf;

use serde::Deserialize;

use crate::core::{ConfigError, Duration, RecordConfig};

/// `type = "enrich"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// Instance name (metrics label, state-table prefix). Default `enrich`.
    pub name: Option<String>,
    /// The lookup key: absent uses the record's key (`record.key`); a field name
    /// (`"device"`) uses that field of the record; a template with `{field}` placeholders
    /// (`"{region}:{device}"`) joins several (`{key}` is the record's key).
    pub key: Option<String>,
    /// The field the reference data is written to, as one JSON object. Default
    /// `enrichment`. (Old spelling: `field`.)
    #[serde(default = "default_output", alias = "field")]
    pub output: String,
    /// `lookup` (per-record lookups through the cache tiers) or `preload` (the whole
    /// reference table of a `file` or `s3` origin in memory). Default `lookup`.
    #[serde(default)]
    pub mode: Mode,
    /// `ordered` (emit records in input order) or `unordered` (in completion order).
    #[serde(default)]
    pub order: Order,
    /// Maximum lookups in flight per partition (the origin is called at most this many
    /// times concurrently). Default 100.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// One budget covering an origin lookup and all its retries, counted from when the lookup
    /// gets one of the `capacity` slots (waiting for a slot is backpressure, not failure).
    /// Default `1s`.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Retries after a failed origin call (errors, 5xx). Default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First retry delay; doubles per retry, with jitter, up to `max_backoff`. Default `10ms`.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    /// Longest retry delay. Default `1s`.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// What happens to a record whose lookup failed (error or timeout): `emit` it
    /// un-enriched with `error_output` set, `dead_letter` it, or `fail` the job. A key the
    /// origin does not know is not a failure: the record is emitted without `output`.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The field the failure reason is written to under `on_failure = "emit"`. Default
    /// `enrich_error`. (Old spelling: `error_field`.)
    #[serde(default = "default_error_output", alias = "error_field")]
    pub error_output: String,
    /// Tier 1: the in-process cache.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Tier 2: Redis. Absent: no Redis tier.
    pub redis: Option<RedisConfig>,
    /// Tier 3: where values come from on a cache miss. Default `none`.
    #[serde(default)]
    pub origin: OriginConfig,
    /// `mode = "preload"`: keep only the keys this partition owns (in keyed state). The
    /// lookup key must then be the record's key.
    #[serde(default)]
    pub partitioned: bool,
    /// `mode = "preload"`: reload the table (file or S3 object) in the background this often;
    /// a failed reload keeps the previous table. Default never.
    pub refresh: Option<Duration>,
}

/// See [`EnrichConfig::mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Per-record lookups through the tiers.
    #[default]
    Lookup,
    /// The whole reference table (`file` or `s3` origin) loaded at start.
    Preload,
}

/// See [`EnrichConfig::order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Input order.
    #[default]
    Ordered,
    /// Completion order.
    Unordered,
}

/// See [`EnrichConfig::on_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Emit the record un-enriched with an error field.
    #[default]
    Emit,
    /// Send the record to the dead-letter sink.
    DeadLetter,
    /// Stop the job.
    Fail,
}

/// Tier 1 options.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Maximum entries per partition; 0 disables the cache. Default 100,000.
    pub max_entries: usize,
    /// Lifetime of a found value. Default `60s`.
    pub ttl: Duration,
    /// Lifetime of a "not found" answer. Default `10s`.
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
        }
    }
}

/// Tier 2 options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS. AUTH credentials in
    /// the URL are passed through (`rediss://:secret@host:6380`); a wrong password is a
    /// connection failure (`enrich_error = "redis_auth_failed"`).
    pub url: String,
    /// Username for AUTH (overrides the URL's; Redis 6 ACL users).
    pub username: Option<String>,
    /// Password for AUTH (overrides the URL's).
    pub password: Option<String>,
    /// `rediss://` only: PEM file of the CA certificate(s) to trust instead of the system's
    /// roots (a private CA). The server certificate must still name the URL's host. Default:
    /// the system trust store.
    pub tls_ca_file: Option<PathBuf>,
    /// `rediss://` only: PEM client certificate (chain) for mutual TLS
    /// (`tls-auth-clients yes`). Needs `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// `rediss://` only: PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// `rediss://` only: accept any server certificate, unverified (also `rediss://…/#insecure`).
    /// For tests against self-signed servers; never in production. Default false.
    #[serde(default)]
    pub tls_insecure: bool,
    /// Prefix of every Redis key. Default `osprey:enrich:`.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// TTL of values written back after an origin lookup. Default `1h`.
    #[serde(default = "default_redis_ttl")]
    pub ttl: Duration,
    /// TTL of "not found" markers written back. Default `60s`.
    #[serde(default = "default_redis_negative_ttl")]
    pub negative_ttl: Duration,
    /// Budget of one Redis round trip (MGET or write-back pipeline). Default `200ms`.
    #[serde(default = "default_redis_timeout")]
    pub timeout: Duration,
}

/// Tier 3: the origin of reference data.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum OriginConfig {
    /// No origin: Redis (or the preloaded table) is the store; a miss is "not found".
    #[default]
    None,
    /// `GET` a URL; 200 with a JSON body is the value, 404 is "not found", anything else
    /// (5xx, connection errors) is retried.
    Http(HttpOrigin),
    /// A reference table file loaded at start: CSV with a header, or JSON lines.
    File(FileOrigin),
    /// A reference table object in S3 (or an S3-compatible server), loaded at start: the same
    /// formats as `file`. Needs the `s3` feature (built by default).
    S3(S3Origin),
}
crate::core::config::tagged!(OriginConfig, "type");

impl OriginConfig {
    /// Whether the origin is a reference table loaded at start (`file` or `s3`).
    pub fn is_table(&self) -> bool {
        matches!(self, OriginConfig::File(_) | OriginConfig::S3(_))
    }
}

/// `origin.type = "http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOrigin {
    /// `http://host:port/path/{key}` or `https://…`: `{key}` is replaced by the URL-encoded
    /// lookup key. TLS servers are verified against the system's trusted CA certificates.
    /// Redirects are followed (at most 5, never from https to http).
    pub url: String,
    /// Longest response body accepted; a longer one (or a larger `Content-Length`) is an
    /// `origin_malformed` failure, refused without reading it. Default 1 MiB.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

/// `origin.type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOrigin {
    /// The table file.
    pub path: PathBuf,
    /// `csv` or `jsonl`. Default: from the extension (`.csv`, else JSON lines).
    pub format: Option<FileFormat>,
    /// Column (CSV) or field (JSON lines) holding the key.
    pub key_column: String,
}

/// `origin.type = "s3"`.
///
/// ```toml
/// [operators.origin]
/// type = "s3"
/// uri = "s3://reference/sensors/locations.csv"
/// key_column = "sensor_id"
/// ```
///
/// Credentials come from the standard AWS SDK chain (environment, profile, instance role).
/// The object is read whole at start (and at each `refresh`); a missing object, a bucket that
/// cannot be read or a CSV without `key_column` stops the job at start naming `origin.uri`.
/// A failed `refresh` keeps the previous table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Origin {
    /// `s3://bucket/key` of the table object.
    pub uri: String,
    /// `csv` or `jsonl`. Default: from the key's extension (`.csv`, else JSON lines).
    pub format: Option<FileFormat>,
    /// Column (CSV) or field (JSON lines) holding the key.
    pub key_column: String,
    /// Endpoint override for S3-compatible servers (`http://127.0.0.1:5010` for moto);
    /// path-style addressing is used whenever it is set. Default: the standard AWS SDK chain
    /// (`AWS_ENDPOINT_URL`, profile …).
    pub endpoint_url: Option<String>,
    /// Region. Default: the standard chain (`AWS_REGION`, profile), else `us-east-1`.
    pub region: Option<String>,
    /// Larger objects are refused (the table is held in memory). Default 512 MiB.
    #[serde(default = "default_max_table_bytes")]
    pub max_bytes: u64,
}

impl S3Origin {
    /// `(bucket, key)` of `uri`, or `None` when it is not `s3://bucket/key`.
    pub fn bucket_and_key(&self) -> Option<(&str, &str)> {
        let (bucket, key) = self.uri.strip_prefix("s3://")?.split_once('/')?;
        (!bucket.is_empty() && !key.is_empty() && !key.ends_with('/')).then_some((bucket, key))
    }
}

/// Reference table file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Comma-separated with a header row; numeric cells become numbers.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

fn default_max_response_bytes() -> u64 {
    1 << 20
}
fn default_max_table_bytes() -> u64 {
    512 << 20
}
fn default_output() -> String {
    "enrichment".into()
}
fn default_capacity() -> usize {
    100
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> Duration {
    Duration::from_millis(10)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_error_output() -> String {
    "enrich_error".into()
}
fn default_prefix() -> String {
    "osprey:enrich:".into()
}
fn default_redis_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_redis_negative_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(200)
}

impl EnrichConfig {
    /// Semantic checks.
    pub fn validate(&self, _record: &RecordConfig) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.capacity == 0 {
            errors.push(ConfigError::new("capacity", "must be at least 1"));
        }
        if self.timeout.as_std().is_zero() {
            errors.push(ConfigError::new("timeout", "must be greater than zero"));
        }
        if self.output.is_empty() {
            errors.push(ConfigError::new("output", "must not be empty"));
        }
        if let Some(k) = &self.key
            && k.contains('{')
            && super::KeyTemplate::parse(k).is_none()
        {
            errors.push(ConfigError::new(
                "key",
                "unbalanced `{`: use a field name or a template like \"{region}:{id}\"",
            ));
        }
        if let Some(r) = &self.redis {
            if !(r.url.starts_with("redis://") || r.url.starts_with("rediss://")) {
                errors.push(ConfigError::new(
                    "redis.url",
                    "must start with redis:// or rediss://",
                ));
            }
            let tls_options = [
                ("redis.tls_ca_file", r.tls_ca_file.is_some()),
                ("redis.tls_cert_file", r.tls_cert_file.is_some()),
                ("redis.tls_key_file", r.tls_key_file.is_some()),
                ("redis.tls_insecure", r.tls_insecure),
            ];
            if !r.url.starts_with("rediss://") {
                for (name, set) in tls_options {
                    if set {
                        errors.push(ConfigError::new(name, "needs a rediss:// (TLS) url"));
                    }
                }
            }
            if r.tls_cert_file.is_some() != r.tls_key_file.is_some() {
                errors.push(ConfigError::new(
                    "redis.tls_cert_file",
                    "a client certificate needs both tls_cert_file and tls_key_file",
                ));
            }
            for (name, d) in [("redis.ttl", r.ttl), ("redis.negative_ttl", r.negative_ttl)] {
                if d.as_std().as_secs() == 0 {
                    errors.push(ConfigError::new(name, "must be at least 1s"));
                }
            }
        }
        if let OriginConfig::Http(h) = &self.origin {
            if !(h.url.starts_with("http://") || h.url.starts_with("https://"))
                || !h.url.contains("{key}")
            {
                errors.push(ConfigError::new(
                    "origin.url",
                    "must be an http:// or https:// URL containing {key}",
                ));
            }
            if h.max_response_bytes == 0 {
                errors.push(ConfigError::new(
                    "origin.max_response_bytes",
                    "must be at least 1",
                ));
            }
        }
        if let OriginConfig::S3(o) = &self.origin {
            if o.bucket_and_key().is_none() {
                errors.push(ConfigError::new(
                    "origin.uri",
                    format!("`{}` is not an s3://bucket/key URI", o.uri),
                ));
            }
            if o.max_bytes == 0 {
                errors.push(ConfigError::new("origin.max_bytes", "must be at least 1"));
            }
            if !cfg!(feature = "s3") {
                errors.push(ConfigError::new(
                    "origin.type",
                    "osprey was built without the `s3` feature",
                ));
            }
        }
        if self.mode == Mode::Preload {
            if !self.origin.is_table() {
                errors.push(ConfigError::new(
                    "origin",
                    "mode = \"preload\" needs a reference table origin (origin.type = \"file\" or \"s3\")",
                ));
            }
            if self.partitioned && self.key.is_some() {
                errors.push(ConfigError::new(
                    "partitioned",
                    "a partitioned table is keyed by the record key: remove `key`",
                ));
            }
        } else {
            if self.partitioned {
                errors.push(ConfigError::new("partitioned", "needs mode = \"preload\""));
            }
            if self.refresh.is_some() {
                errors.push(ConfigError::new("refresh", "needs mode = \"preload\""));
            }
        }
        if let Some(r) = self.refresh
            && r.as_std().is_zero()
        {
            errors.push(ConfigError::new("refresh", "must be greater than zero"));
        }
        errors
    }
}
