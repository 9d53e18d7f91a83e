//! What a job file says about Kinesis: the `type = "kinesis"` source (stream, start, polling
//! or enhanced fan-out) and sink (stream, partition key, aggregation, retries).

use serde::Deserialize;

use super::sink::KinesisSink;
use super::source::KinesisSource;
use crate::Result;
use crate::connectors::{Sink, SinkSpec, Source, SourceSpec};
use crate::core::{ConfigError, Duration};

/// Where a fresh run starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// The oldest retained record.
    #[default]
    TrimHorizon,
    /// Records put after the job starts.
    Latest,
    /// Records put at or after `start_timestamp`.
    AtTimestamp,
}

/// `type = "kinesis"` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSourceConfig {
    /// Stream name or ARN.
    pub stream: String,
    /// Endpoint override (a local server); else `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Where a fresh run starts: `trim_horizon` (default), `latest` or `at_timestamp`.
    /// After a restore the checkpoint decides.
    #[serde(default)]
    pub start: StartPosition,
    /// RFC 3339 time for `start = "at_timestamp"`.
    pub start_timestamp: Option<String>,
    /// How often to list shards to find new ones. Default 10s.
    #[serde(default = "default_discovery")]
    pub discovery_interval: Duration,
    /// GetRecords calls per shard and second, at most (Kinesis allows 5, shared by all
    /// consumers of the shard). Default 5.
    #[serde(default = "default_reads")]
    pub max_reads_per_second: f64,
    /// Records per GetRecords call (1..=10000). Default 1000.
    #[serde(default = "default_limit")]
    pub records_per_read: i32,
    /// Longest wait between reads of an idle shard. Default 1s.
    #[serde(default = "default_idle")]
    pub idle_backoff_max: Duration,
    /// Largest accepted record; longer ones are dead-lettered. Default 1 MiB.
    #[serde(default = "crate::connectors::default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// How shards are read: `{ type = "polling" }` (default: GetRecords, throughput shared by
    /// every consumer of the stream) or `{ type = "efo", name = "…" }` (enhanced fan-out:
    /// SubscribeToShard, a dedicated 2 MB/s per shard for this consumer, records pushed as
    /// they arrive). With `efo`, `max_reads_per_second`, `records_per_read` and
    /// `idle_backoff_max` do not apply.
    #[serde(default)]
    pub consumer: ConsumerConfig,
    /// How long the stream may be unreadable (not found, access denied, the endpoint down)
    /// without progress before the job stops with exit code 1 and the service's error;
    /// meanwhile `/readyz` answers 503. Default 5 min.
    #[serde(default = "crate::connectors::default_fail_after")]
    pub fail_after: Duration,
}

/// `source.consumer`: how shards are read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum ConsumerConfig {
    /// GetRecords on every shard (the default).
    #[default]
    Polling,
    /// Enhanced fan-out (SubscribeToShard).
    Efo(EfoConfig),
}
crate::core::config::tagged!(ConsumerConfig, "type");

/// `source.consumer = { type = "efo", … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfoConfig {
    /// Consumer name (1-128 characters of `a-z A-Z 0-9 _ . -`). Registered on the stream when
    /// missing, reused when present; osprey never deregisters it (AWS bills per consumer-shard
    /// hour: remove an unused one with DeregisterStreamConsumer). Give each job its own.
    pub name: String,
    /// Watchdog: a subscription that delivers no event for this long is cancelled and replaced
    /// (the service sends an event at least every ~5 s, even when the shard is idle).
    /// Default 30s.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: Duration,
}

fn default_stall_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_discovery() -> Duration {
    Duration::from_millis(10_000)
}
fn default_reads() -> f64 {
    5.0
}
fn default_limit() -> i32 {
    1000
}
fn default_idle() -> Duration {
    Duration::from_millis(1000)
}

impl SourceSpec for KinesisSourceConfig {
    fn type_name(&self) -> &'static str {
        "kinesis"
    }

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.stream.is_empty() {
            errors.push(ConfigError::new("source.stream", "must name a stream"));
        }
        match (self.start, &self.start_timestamp) {
            (StartPosition::AtTimestamp, None) => errors.push(ConfigError::new(
                "source.start_timestamp",
                "is required with start = \"at_timestamp\"",
            )),
            (StartPosition::AtTimestamp, Some(t))
                if crate::core::time::parse_time(t, crate::core::time::TimeUnit::Millis)
                    .is_err() =>
            {
                errors.push(ConfigError::new(
                    "source.start_timestamp",
                    format!("`{t}` is not RFC 3339 time"),
                ))
            }
            (StartPosition::TrimHorizon | StartPosition::Latest, Some(_)) => {
                errors.push(ConfigError::new(
                    "source.start_timestamp",
                    "only applies to start = \"at_timestamp\"",
                ))
            }
            _ => {}
        }
        if !(self.max_reads_per_second.is_finite() && self.max_reads_per_second > 0.0) {
            errors.push(ConfigError::new(
                "source.max_reads_per_second",
                "must be a positive number",
            ));
        }
        if !(1..=10_000).contains(&self.records_per_read) {
            errors.push(ConfigError::new(
                "source.records_per_read",
                "must be between 1 and 10000",
            ));
        }
        if self.discovery_interval.as_std().is_zero() {
            errors.push(ConfigError::new(
                "source.discovery_interval",
                "must be longer than zero",
            ));
        }
        if let ConsumerConfig::Efo(efo) = &self.consumer {
            let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
            if efo.name.is_empty() || efo.name.len() > 128 || !efo.name.chars().all(ok) {
                errors.push(ConfigError::new(
                    "source.consumer.name",
                    "must be 1-128 characters of a-z A-Z 0-9 _ . -",
                ));
            }
            if efo.stall_timeout.as_std().is_zero() {
                errors.push(ConfigError::new(
                    "source.consumer.stall_timeout",
                    "must be longer than zero",
                ));
            }
        }
        errors
    }

    fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    fn fail_after(&self) -> std::time::Duration {
        self.fail_after.as_std()
    }

    fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(KinesisSource::new(self.clone())))
    }
}

/// `type = "kinesis"` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSinkConfig {
    /// Stream name or ARN.
    pub stream: String,
    /// Endpoint override (a local server); else `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Field whose value is the partition key. Default: the record key.
    pub partition_key_field: Option<String>,
    /// Pack records into KPL aggregated records. Default false.
    #[serde(default)]
    pub aggregate: bool,
    /// Records buffered per partition before a send. Default 500.
    #[serde(default = "default_buffer")]
    pub max_buffer_records: usize,
    /// PutRecords attempts for a failing entry before the job fails. Default 10.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_buffer() -> usize {
    super::sink::MAX_BATCH_RECORDS
}
fn default_attempts() -> u32 {
    10
}

impl SinkSpec for KinesisSinkConfig {
    fn type_name(&self) -> &'static str {
        "kinesis"
    }

    fn validate(&self, at: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.stream.is_empty() {
            errors.push(ConfigError::new(
                format!("{at}.stream"),
                "must name a stream",
            ));
        }
        if self.max_buffer_records == 0 {
            errors.push(ConfigError::new(
                format!("{at}.max_buffer_records"),
                "must be at least 1",
            ));
        }
        if self.max_attempts == 0 {
            errors.push(ConfigError::new(
                format!("{at}.max_attempts"),
                "must be at least 1",
            ));
        }
        errors
    }

    fn build(&self, component: &str, _first_epoch: u64) -> Result<Box<dyn Sink>> {
        Ok(Box::new(KinesisSink::new(self.clone(), component)))
    }
}
