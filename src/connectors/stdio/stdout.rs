//! Sinks: where results and dead letters go.
//!
//! Each partition owns its own sink instance (named after the partition, `p000`…), so writes
//! scale with partitions and need no lock. Transactional sinks make output visible only when
//! the checkpoint covering it completes: on a barrier, [`Sink::precommit`] makes the epoch's
//! output durable but invisible and returns [`Commit`]s; the coordinator applies them after
//! the checkpoint's manifest is on disk, and re-applies them after a crash.

pub mod file;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "s3")]
pub mod s3;

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::event::Record;
use crate::state::checkpoint::Commit;
use crate::{Error, Result};

/// A sink instance, driven by one task.
#[async_trait]
pub trait Sink: Send {
    /// Writes (or buffers) records, in order.
    async fn write(&mut self, records: &[Record]) -> Result<()>;

    /// Barrier `epoch` arrived: make everything written so far durable and return what must
    /// be done to publish it once the checkpoint completes (nothing for non-transactional sinks).
    async fn precommit(&mut self, epoch: u64) -> Result<Vec<Commit>>;

    /// Records the sink refused in the last `write` (over a size limit, say), for the
    /// partition to write to its dead-letter sink. Called after every `write`.
    fn take_dead_letters(&mut self) -> Vec<crate::operators::DeadLetter> {
        Vec::new()
    }
}

/// The configured sink (closed set; `type` selects the variant).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// JSON lines on standard output (not transactional: at-least-once across crashes).
    Stdout(StdoutSinkConfig),
    /// JSON lines in rolling part files, published per checkpoint (exactly-once).
    File(file::FileSinkConfig),
    /// Discards everything (benchmarks).
    Null(NullSinkConfig),
    /// PutRecords to a Kinesis data stream (at-least-once; outputs carry their source shard
    /// and sequence for de-duplication).
    #[cfg(feature = "kinesis")]
    Kinesis(kinesis::KinesisSinkConfig),
    /// JSON lines in an S3 bucket under `dt=…/hour=…` partitions, uploaded per checkpoint
    /// (exactly-once).
    #[cfg(feature = "s3")]
    S3(s3::S3SinkConfig),
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig::Stdout(StdoutSinkConfig {})
    }
}

/// `type = "stdout"`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

/// `type = "null"`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {}

/// Where dead letters go: any sink; default a file sink under `<state.dir>/dead-letter`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(transparent)]
pub struct DeadLetterConfig(pub Option<SinkConfig>);

impl DeadLetterConfig {
    /// Semantic checks.
    pub fn validate(&self) -> Vec<ConfigError> {
        self.0
            .as_ref()
            .map(|s| s.validate("dead_letter"))
            .unwrap_or_default()
    }

    /// The effective sink.
    pub fn resolve(&self, data_dir: &Path) -> SinkConfig {
        self.0.clone().unwrap_or_else(|| {
            SinkConfig::File(file::FileSinkConfig {
                path: data_dir.join("dead-letter"),
                max_file_bytes: file::default_max_file_bytes(),
            })
        })
    }
}

impl SinkConfig {
    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::File(_) => "file",
            SinkConfig::Null(_) => "null",
            #[cfg(feature = "kinesis")]
            SinkConfig::Kinesis(_) => "kinesis",
            #[cfg(feature = "s3")]
            SinkConfig::S3(_) => "s3",
        }
    }

    /// Semantic checks; `at` is the config path (`sink` or `dead_letter`).
    pub fn validate(&self, at: &str) -> Vec<ConfigError> {
        match self {
            SinkConfig::File(c) => c.validate(at),
            #[cfg(feature = "kinesis")]
            SinkConfig::Kinesis(c) => c.validate(at),
            #[cfg(feature = "s3")]
            SinkConfig::S3(c) => c.validate(at),
            _ => vec![],
        }
    }

    /// Prepares the output for a run that resumes after checkpoint `epoch` (`None`: a fresh
    /// run): removes in-progress files of epochs that never completed and moves output
    /// published after `epoch` aside. Runs once, before any instance is built.
    pub fn recover(&self, epoch: Option<u64>) -> Result<()> {
        match self {
            SinkConfig::File(c) => c.recover(epoch),
            #[cfg(feature = "s3")]
            SinkConfig::S3(c) => c.recover(),
            _ => Ok(()),
        }
    }

    /// Builds the instance for `component` (a partition name such as `p003`, or `source`)
    /// whose first output belongs to checkpoint epoch `first_epoch`.
    pub fn build(&self, component: &str, first_epoch: u64) -> Result<Box<dyn Sink>> {
        Ok(match self {
            SinkConfig::Stdout(_) => Box::new(StdoutSink {
                component: component.to_string(),
                buf: String::new(),
            }),
            SinkConfig::File(c) => {
                let mut s = file::FileSink::new(c.clone(), component)?;
                s.set_epoch(first_epoch);
                Box::new(s)
            }
            SinkConfig::Null(_) => Box::new(NullSink {
                component: component.to_string(),
            }),
            #[cfg(feature = "kinesis")]
            SinkConfig::Kinesis(c) => Box::new(kinesis::KinesisSink::new(c.clone(), component)),
            #[cfg(feature = "s3")]
            SinkConfig::S3(c) => Box::new(s3::S3Sink::new(c.clone(), component, first_epoch)?),
        })
    }

    /// Applies the commits that need a network call (uploads of `s3` sinks among `sinks`);
    /// local renames are [`file::publish`]'s job. Idempotent.
    pub async fn publish_remote(sinks: &[&SinkConfig], commits: &[Commit]) -> Result<()> {
        #[cfg(feature = "s3")]
        {
            let s3: Vec<&s3::S3SinkConfig> = sinks
                .iter()
                .filter_map(|s| match s {
                    SinkConfig::S3(c) => Some(c),
                    _ => None,
                })
                .collect();
            s3::apply_uploads(&s3, commits).await?;
        }
        #[cfg(not(feature = "s3"))]
        let _ = (sinks, commits);
        Ok(())
    }

    /// The output directory, for sinks that have one.
    pub fn dir(&self) -> Option<PathBuf> {
        match self {
            SinkConfig::File(c) => Some(c.path.clone()),
            _ => None,
        }
    }
}

struct StdoutSink {
    component: String,
    buf: String,
}

#[async_trait]
impl Sink for StdoutSink {
    async fn write(&mut self, records: &[Record]) -> Result<()> {
        self.buf.clear();
        for r in records {
            r.write_json(&mut self.buf);
            self.buf.push('\n');
        }
        // One locked write per batch keeps lines from different partitions whole.
        let mut out = std::io::stdout().lock();
        match out.write_all(self.buf.as_bytes()) {
            Ok(()) => {}
            // A closed pipe (`osprey run … | head`) is the reader's choice, not our failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(Error::io("writing", "stdout", e)),
        }
        crate::metrics::get()
            .sink_records
            .with_label_values(&[&self.component])
            .inc_by(records.len() as u64);
        Ok(())
    }

    async fn precommit(&mut self, _epoch: u64) -> Result<Vec<Commit>> {
        let _ = std::io::stdout().lock().flush();
        Ok(vec![])
    }
}

struct NullSink {
    component: String,
}

#[async_trait]
impl Sink for NullSink {
    async fn write(&mut self, records: &[Record]) -> Result<()> {
        crate::metrics::get()
            .sink_records
            .with_label_values(&[&self.component])
            .inc_by(records.len() as u64);
        Ok(())
    }

    async fn precommit(&mut self, _epoch: u64) -> Result<Vec<Commit>> {
        Ok(vec![])
    }
}
