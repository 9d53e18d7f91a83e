//! The job file: a TOML description of one source, a chain of operators and one sink.
//!
//! Before parsing, `${VAR}` references are substituted from the environment
//! (`interpolate`), keeping a map back to the original positions; after it, `--set`
//! overrides replace fields of the parsed tree (`overrides`). See [`LoadOptions`].
//!
//! Loading reports every problem at once, each with its field path (`operators[1].trees`),
//! line and column: unset variables, placed by the field they are in; syntax errors from
//! the TOML parser; structural errors (unknown fields, wrong types, unknown `type`s) by
//! deserialising from the parser's spanned tree, getting past each error and trying again
//! (`collect`, `spanned`); semantic errors from each component's `validate`, placed by the
//! same tree. Old spellings of renamed fields still load, with a
//! warning ([`Loaded::warnings`]).
//!
//! # Naming what an operator reads and writes
//!
//! One vocabulary across operators (the old spellings are deprecated aliases):
//!
//! - `input`: the one value an operator reads, a name from `record.values` (`discord`,
//!   `stats`; default the first value). Was `value` (`discord`) and `field`, an index
//!   (`stats`).
//! - `inputs`: the values an operator reads together, names from `record.values` in order
//!   (`rcf`; default all of them). Was `fields`.
//! - `prefix`: put before every field an operator appends (`stats`, `discord`, `rcf`), to
//!   chain two operators that append the same names.
//! - `output`: the one field an operator writes whole (`enrich`, default `enrichment`), and
//!   `error_output` the field holding why it could not (default `enrich_error`). Were `field`
//!   and `error_field`.
//! - `key` is what a record is partitioned (`record.key`) or looked up (`enrich.key`) by;
//!   `filter.any_true` names operator outputs, not record values; `classify_image`'s
//!   `model.input` names the ONNX graph's input, not a record field.

mod collect;
mod deprecated;
mod interpolate;
mod overrides;
mod poison;
mod round;
mod spanned;
#[cfg(test)]
mod tests;

pub use crate::core::{ConfigError, Duration, MissingPolicy, RecordConfig, parse_duration};
pub use crate::state::BackendKind;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::connectors::{DeadLetterConfig, SinkConfig, SourceConfig};
use crate::operators::OperatorConfig;

/// A validated job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Job name; names the default data directory `.osprey/<name>`.
    #[serde(default = "default_name")]
    pub name: String,
    /// Where records come from.
    pub source: SourceConfig,
    /// How records are read: key, value and time fields.
    #[serde(default)]
    pub record: RecordConfig,
    /// Partitions, key groups, batching.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The operator chain, applied in order within each partition.
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
    /// Where results go. Default: stdout.
    #[serde(default)]
    pub sink: SinkConfig,
    /// Where records that cannot be processed go, with the reason.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    /// Keyed state storage.
    #[serde(default)]
    pub state: StateConfig,
    /// Checkpoint timing and retention.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

fn default_name() -> String {
    "job".to_string()
}

/// Runtime layout.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Number of key partitions (tasks running the operator chain). Default: the number of cores.
    pub partitions: Option<usize>,
    /// Number of key groups the hash space is cut into; fixed for the life of the job's state.
    pub key_groups: u16,
    /// Records per batch handed from the source to a partition.
    pub batch_size: usize,
    /// Capacity of each partition's input channel, in records (backpressure bound).
    pub channel_capacity: usize,
    /// How much work may queue ahead of each partition, as time at the partition's measured
    /// rate (operators and sink included), e.g. `"1s"`: a checkpoint barrier waits behind
    /// about this much, however slow the operators or the sink are. `"0s"`: records only
    /// (`channel_capacity`). Default 1 s.
    pub in_flight_target: Duration,
    /// Bytes of record payload (objects, raw lines) queued ahead of each partition at most;
    /// one batch always passes. Default 64 MiB.
    pub max_in_flight_bytes: u64,
    /// How long a graceful stop (SIGTERM or SIGINT) may take to write its final checkpoint,
    /// e.g. `"60s"`. Past it the process exits 1 without it; the newest complete checkpoint
    /// stays valid and the next start resumes from it. A second signal exits at once.
    pub shutdown_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            partitions: None,
            key_groups: 256,
            batch_size: 1024,
            channel_capacity: 16_384,
            in_flight_target: Duration::from_secs(1),
            max_in_flight_bytes: 64 << 20,
            shutdown_timeout: Duration::from_secs(60),
        }
    }
}

impl RuntimeConfig {
    /// The effective partition count.
    pub fn partitions(&self) -> usize {
        self.partitions
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

/// Keyed state storage.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `rocksdb` or `memory`.
    #[serde(default)]
    pub backend: BackendKind,
    /// Data directory: live state, checkpoints and the default dead-letter folder.
    /// Default: `.osprey/<job name>` in the working directory.
    pub dir: Option<PathBuf>,
}

/// Checkpoint timing and retention.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Time between checkpoints, e.g. `"10s"`, `"500ms"`.
    pub interval: Duration,
    /// Number of completed checkpoints kept.
    pub keep: usize,
    /// Where checkpoints are kept: a directory, or `s3://bucket/prefix/` to keep them in S3
    /// (incremental: each RocksDB file is uploaded once), so the job can be restored on
    /// another machine. Default: `<state.dir>/checkpoints`.
    pub dir: Option<PathBuf>,
    /// For an `s3://` `dir`: endpoint override for S3-compatible servers (path-style
    /// addressing when set). Default: the standard AWS SDK chain.
    pub endpoint_url: Option<String>,
    /// For an `s3://` `dir`: region. Default: the standard AWS SDK chain, else `us-east-1`.
    pub region: Option<String>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: Duration::from_secs(10),
            keep: 3,
            dir: None,
            endpoint_url: None,
            region: None,
        }
    }
}

/// The HTTP endpoint for `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve the endpoint at all.
    pub enabled: bool,
    /// Listen address.
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            address: "127.0.0.1:9898".to_string(),
        }
    }
}

/// What is done to a job file's text before it is read.
///
/// First `${VAR}` references are substituted (`${VAR}`, `${VAR:-default}`,
/// `${VAR:?message}`, `$$` for a `$`; see `config/interpolate.rs` for the rules), then each
/// `--set PATH=VALUE` sets a field (see `config/overrides.rs`); every unset variable and bad
/// override is reported with the other errors, each with its field and its line in the
/// original file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `PATH=VALUE` overrides (`checkpoint.interval=5s`, `operators[0].m=32`), in order: a
    /// later one of the same field wins.
    pub overrides: Vec<String>,
    /// The variables `${VAR}` reads. `None`: the process environment.
    pub vars: Option<std::collections::HashMap<String, String>>,
}

/// A job file that loaded, with the deprecation warnings found in it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated job.
    pub job: JobConfig,
    /// Old spellings of renamed fields, each naming the field as written, its line and
    /// column, and the new name. The job is valid: print or log them.
    pub warnings: Vec<ConfigError>,
}

impl JobConfig {
    /// Reads and validates a job file (see [`JobConfig::read`] for its warnings).
    pub fn load(path: &Path) -> crate::Result<JobConfig> {
        Self::read(path).map(|l| l.job)
    }

    /// Reads and validates a job file, with `${VAR}` taken from the environment, returning
    /// its deprecation warnings too.
    pub fn read(path: &Path) -> crate::Result<Loaded> {
        Self::read_with(path, &LoadOptions::default())
    }

    /// Reads and validates a job file, interpolated and overridden as `opts` says.
    pub fn read_with(path: &Path, opts: &LoadOptions) -> crate::Result<Loaded> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::io("reading job file", path, e))?;
        Self::parse_with(&text, opts).map_err(crate::Error::Config)
    }

    /// Parses and validates a job from TOML text, returning every problem found (see
    /// [`JobConfig::parse`] for its warnings).
    pub fn from_toml(text: &str) -> Result<JobConfig, Vec<ConfigError>> {
        Self::parse(text).map(|l| l.job)
    }

    /// Parses and validates a job from TOML text: the job and its deprecation warnings, or
    /// every problem found, in file order.
    pub fn parse(text: &str) -> Result<Loaded, Vec<ConfigError>> {
        Self::parse_with(text, &LoadOptions::default())
    }

    /// [`JobConfig::parse`], interpolated and overridden as `opts` says.
    pub fn parse_with(text: &str, opts: &LoadOptions) -> Result<Loaded, Vec<ConfigError>> {
        collect::load(text, opts).map(|(job, warnings)| Loaded { job, warnings })
    }

    /// Semantic checks across the whole job.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            errors.push(ConfigError::new(
                "name",
                "use letters, digits, '-', '_' or '.'",
            ));
        }
        if self.runtime.key_groups == 0 {
            errors.push(ConfigError::new("runtime.key_groups", "must be at least 1"));
        }
        if self.runtime.partitions == Some(0) {
            errors.push(ConfigError::new("runtime.partitions", "must be at least 1"));
        }
        if let Some(p) = self.runtime.partitions
            && p > usize::from(self.runtime.key_groups)
        {
            errors.push(ConfigError::new(
                "runtime.partitions",
                format!(
                    "{p} partitions but only {} key groups",
                    self.runtime.key_groups
                ),
            ));
        }
        if self.runtime.batch_size == 0 {
            errors.push(ConfigError::new("runtime.batch_size", "must be at least 1"));
        }
        if self.runtime.channel_capacity < self.runtime.batch_size {
            errors.push(ConfigError::new(
                "runtime.channel_capacity",
                "must hold at least one batch (>= runtime.batch_size)",
            ));
        }
        if self.runtime.shutdown_timeout.as_std().is_zero() {
            errors.push(ConfigError::new(
                "runtime.shutdown_timeout",
                "must be greater than zero",
            ));
        }
        if self.checkpoint.interval.as_std().is_zero() {
            errors.push(ConfigError::new(
                "checkpoint.interval",
                "must be greater than zero",
            ));
        }
        if self.checkpoint.keep == 0 {
            errors.push(ConfigError::new(
                "checkpoint.keep",
                "must keep at least 1 checkpoint",
            ));
        }
        if let Some(dir) = &self.checkpoint.dir {
            let text = dir.to_string_lossy();
            if text.starts_with("s3://") {
                match crate::state::store::parse_s3(&text) {
                    Some((bucket, _)) if !bucket.is_empty() => {}
                    _ => errors.push(ConfigError::new(
                        "checkpoint.dir",
                        "an s3:// location needs a bucket: `s3://bucket/prefix/`",
                    )),
                }
            } else if self.checkpoint.endpoint_url.is_some() || self.checkpoint.region.is_some() {
                errors.push(ConfigError::new(
                    "checkpoint.dir",
                    "`endpoint_url` and `region` apply only to an s3:// checkpoint.dir",
                ));
            }
        }
        if self.metrics.enabled
            && self
                .metrics
                .address
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            errors.push(ConfigError::new(
                "metrics.address",
                format!(
                    "`{}` is not an address like 127.0.0.1:9898",
                    self.metrics.address
                ),
            ));
        }
        errors.extend(self.record.validate());
        errors.extend(self.source.validate(&self.record));
        let values = self.source.parser_config(&self.record, 1).values;
        let mut outputs: std::collections::HashMap<String, usize> = Default::default();
        for (i, op) in self.operators.iter().enumerate() {
            for mut e in op.validate(&self.record, &values) {
                e.field = format!("operators[{i}].{}", e.field);
                errors.push(e);
            }
            for f in op.output_fields() {
                if let Some(first) = outputs.insert(f.clone(), i) {
                    errors.push(ConfigError::new(
                        format!("operators[{i}].prefix"),
                        format!("output field `{f}` is also written by operators[{first}]; set a `prefix`"),
                    ));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, op) in self.operators.iter().enumerate() {
            if !names.insert(op.name()) {
                errors.push(ConfigError::new(
                    format!("operators[{i}].name"),
                    format!(
                        "operator name `{}` is used twice; give each a distinct `name`",
                        op.name()
                    ),
                ));
            }
        }
        errors.extend(self.sink.validate("sink"));
        errors.extend(self.dead_letter.validate(&self.sink, &self.data_dir()));
        errors
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.state
            .dir
            .clone()
            .unwrap_or_else(|| Path::new(".osprey").join(&self.name))
    }

    /// Where the checkpoints are kept, for [`crate::state::store::open`].
    pub fn checkpoint_store(&self) -> crate::state::store::StoreSpec {
        crate::state::store::StoreSpec {
            dir: self.checkpoint_dir(),
            endpoint_url: self.checkpoint.endpoint_url.clone(),
            region: self.checkpoint.region.clone(),
        }
    }

    /// Valid but probably not what the user wants: output on local disk when the
    /// checkpoints are meant to survive the machine.
    pub fn warnings(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        if self.checkpoint_store().s3_location().is_some() {
            let dead_letter = self.dead_letter.resolve(&self.data_dir());
            for (at, sink) in [("sink", &self.sink), ("dead_letter", &dead_letter)] {
                if let Some(dir) = sink.dir() {
                    out.push(ConfigError::new(
                        format!("{at}.path"),
                        format!(
                            "checkpoints are in S3 but this output is on local disk ({}): it does not survive the loss of the machine; an `s3` sink does",
                            dir.display()
                        ),
                    ));
                }
            }
        }
        out
    }

    /// The checkpoint directory.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.checkpoint
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir().join("checkpoints"))
    }

    /// A fingerprint of everything that decides the state layout: a checkpoint taken by a job
    /// with another fingerprint cannot be restored into this one.
    pub fn state_fingerprint(&self) -> String {
        let ops: Vec<String> = self
            .operators
            .iter()
            .map(|o| format!("{}:{}", o.type_name(), o.name()))
            .collect();
        format!(
            "key_groups={};source={};ops=[{}]",
            self.runtime.key_groups,
            self.source.type_name(),
            ops.join(",")
        )
    }
}
