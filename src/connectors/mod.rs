//! Connectors: where records come from and where results go, one folder per external system.
//!
//! - [`file`]: local files (the `file` source and sink, and the line reader stdin shares);
//! - [`stdio`]: standard input and output; [`null`]: the sink that discards;
//! - [`generator`]: the deterministic built-in workloads;
//! - [`objects`]: one record per new object (the listing shared by `dir` and `s3`, and `dir`);
//! - [`kinesis`]: Kinesis Data Streams (client, KPL, shard bookkeeping, polling, enhanced
//!   fan-out, the source, the sink and `osprey produce`);
//! - [`s3`]: S3 (client, the object source, the partitioned sink).
//!
//! A source yields raw items (a line, a Kinesis record) and a *position*: a JSON value that,
//! handed back to [`Source::restore`], makes the source continue right after the last item it
//! returned. Parsing, routing and barriers are the source driver's job (`topology::source`).
//!
//! Each partition owns its own sink instance (named after the partition, `p000`…), so writes
//! scale with partitions and need no lock. Transactional sinks make output visible only when
//! the checkpoint covering it completes: on a barrier, [`Sink::precommit`] makes the epoch's
//! output durable but invisible and returns [`Commit`]s; once the checkpoint's manifest is on
//! disk the coordinator hands them to [`SinkConfig::publish`], which gives each commit to the
//! sink that owns it ([`SinkConfig::commit`]), and does so again after a crash.

#[cfg(any(feature = "kinesis", feature = "s3"))]
pub mod aws;
pub mod file;
pub mod generator;
#[cfg(feature = "kinesis")]
pub mod kinesis;
pub mod null;
pub mod objects;
pub mod output;
#[cfg(feature = "s3")]
pub mod s3;
pub mod stdio;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use std::path::{Path, PathBuf};

use crate::core::{ConfigError, DeadLetter, MissingPolicy, Origin, Record, RecordConfig};
use crate::parse::{Format, ParserConfig};
use crate::state::checkpoint::Commit;
use crate::{Error, Result};

/// One raw input.
#[derive(Debug, Clone, PartialEq)]
pub struct RawItem {
    /// The bytes (for an oversized line: its first bytes only).
    pub data: Vec<u8>,
    /// Key used when the job names no key field: the file stem, `stdin`, the generator name.
    pub stream: Arc<str>,
    /// Where the item was read.
    pub origin: Origin,
    /// A CSV header line, not a record.
    pub header: bool,
    /// Set when the input was longer than the limit: its full length. The item is dead-lettered.
    pub too_large: Option<usize>,
    /// A record the source built itself (an object source: key, origin, blob and metadata
    /// fields already set). The driver does not parse `data` for such items: it computes the
    /// key group from the record's key and routes the record as it is.
    pub record: Option<Box<Record>>,
}

impl RawItem {
    /// A plain data item.
    pub fn new(data: Vec<u8>, stream: Arc<str>) -> Self {
        RawItem {
            data,
            stream,
            origin: Origin::default(),
            header: false,
            too_large: None,
            record: None,
        }
    }
}

/// What a poll of a source produced.
#[derive(Debug)]
pub enum Poll {
    /// Items, in order.
    Items(Vec<RawItem>),
    /// Nothing right now; poll again after this long (or earlier on a control message).
    Idle(std::time::Duration),
    /// A bounded source has delivered everything.
    End,
}

/// A source of raw items. One instance per job, driven by one task.
///
/// # Polls and barriers
///
/// The driver (`topology::source`) never drops a `poll` future: it runs every poll to
/// completion, routes what it returned, and only then injects the barriers the coordinator
/// asked for meanwhile, with [`Source::position`]. So the position always describes exactly
/// what has been routed, and a poll slower than the checkpoint interval still makes progress
/// (a checkpoint then waits for the poll in flight). The price is on the source: **a poll
/// must return within a bounded time** (about a second, or one request to the external
/// system), handing out what is ready (a partial round: the shards whose reads finished, the
/// objects fetched so far, one page of a listing) rather than waiting for a whole round, and
/// keeping the rest (reads still in flight, the listing's cursor) for the next call. A poll
/// that has nothing to return answers [`Poll::Idle`] instead of waiting for input; the driver
/// waits, taking barriers meanwhile.
///
/// Dropping a poll (only at shutdown) must not corrupt the source, but it may lose work.
#[async_trait]
pub trait Source: Send {
    /// Resumes after the position a previous run checkpointed. Called before the first `poll`.
    async fn restore(&mut self, position: &serde_json::Value) -> Result<()>;

    /// Returns up to `max` items, within a bounded time (see the trait docs). `Err` stops the
    /// job at once: it is for what waiting cannot fix (a corrupt position, a file that
    /// changed under its checkpoint). An external system that refuses or cannot be reached
    /// is reported by [`Source::failure`] with [`Poll::Idle`] instead.
    async fn poll(&mut self, max: usize) -> Result<Poll>;

    /// The position right after the last item returned by `poll` (and the last dead letter
    /// handed out by [`Source::take_dead_letters`]).
    fn position(&self) -> serde_json::Value;

    /// Inputs the last `poll` could not read (an object it may not read, a file name that is
    /// not UTF-8), as dead letters with a reason. Called after every `poll`; the position
    /// already counts them as delivered, so they are written once, not retried.
    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        Vec::new()
    }

    /// Why the source cannot make progress: `Some` when the last `poll` answered
    /// [`Poll::Idle`] because a call the source needs failed (access denied, stream or bucket
    /// not found, endpoint unreachable), `None` once a call succeeds again. While it is
    /// `Some` the driver counts `osprey_source_errors_total{component, kind}`, answers
    /// `/readyz` with 503, and after the source's `fail_after` ([`SourceSpec::fail_after`])
    /// without progress stops the job with the failure's message.
    fn failure(&self) -> Option<SourceFailure> {
        None
    }

    /// How far a finite input is read: `Some((done, total))` in one unit of the source's
    /// choosing (bytes for files, records for the generator), with `done <= total` and
    /// `done == total` once everything is read; `None` when the total is not known
    /// (streams, unbounded inputs). Cheap: the driver asks after every poll and logs a
    /// `Progress.` line with percent done and ETA from it.
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }
}

/// A source's failing call (see [`Source::failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFailure {
    /// The `kind` label: [`FAILURE_ACCESS_DENIED`], [`FAILURE_NOT_FOUND`] or
    /// [`FAILURE_UNAVAILABLE`].
    pub kind: &'static str,
    /// The call, the resource and the service's short error
    /// (`ListShards stream s: ResourceNotFoundException: …`).
    pub message: String,
}

/// The credentials may not do this (AccessDenied and the like).
pub const FAILURE_ACCESS_DENIED: &str = "access_denied";
/// The stream, bucket or folder does not exist.
pub const FAILURE_NOT_FOUND: &str = "not_found";
/// Anything else: the endpoint cannot be reached, the service failed.
pub const FAILURE_UNAVAILABLE: &str = "unavailable";

/// How long a source may fail without progress before the job stops (5 minutes): long
/// enough for a permission or a stream being created to arrive, short enough to page.
pub fn default_fail_after() -> crate::core::Duration {
    crate::core::Duration::from_secs(300)
}

/// What every source config answers; [`SourceConfig::spec`] picks the variant's.
pub trait SourceSpec: Send + Sync {
    /// The `type` tag.
    fn type_name(&self) -> &'static str;
    /// The variant's own semantic checks (the shared ones are [`SourceConfig::validate`]'s).
    fn validate(&self) -> Vec<ConfigError>;
    /// Input format. Object sources build their records themselves, so the parser never sees
    /// their items: they answer `json`.
    fn format(&self) -> Format {
        Format::Json
    }
    /// Largest accepted record (the limit quoted in `too_large` dead letters).
    fn max_record_bytes(&self) -> usize;
    /// How long the source may fail without progress ([`Source::failure`]) before the job
    /// stops with exit code 1: the `fail_after` field of the sources that call a service.
    fn fail_after(&self) -> std::time::Duration {
        default_fail_after().as_std()
    }
    /// Fills `[record]` with the source's own schema where the job left it empty.
    fn fill_record_defaults(&self, record: &mut RecordConfig) {
        let _ = record;
    }
    /// Builds the runtime source.
    fn build(&self) -> Result<Box<dyn Source>>;
}

/// The configured source (closed set; `type` selects the variant).
#[derive(Debug, Clone, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Local files.
    File(file::FileSourceConfig),
    /// Standard input.
    Stdin(stdio::StdinSourceConfig),
    /// A deterministic built-in generator.
    Generator(generator::GeneratorConfig),
    /// A Kinesis data stream.
    #[cfg(feature = "kinesis")]
    Kinesis(kinesis::KinesisSourceConfig),
    /// New files in a local folder, one record per file with its bytes (images).
    Dir(objects::dir::DirSourceConfig),
    /// New objects in an S3 bucket, one record per object with its bytes (images).
    #[cfg(feature = "s3")]
    S3(s3::S3SourceConfig),
}
crate::core::config::tagged!(SourceConfig, "type");

impl SourceConfig {
    /// The variant's config: the one place that lists every source.
    pub fn spec(&self) -> &dyn SourceSpec {
        match self {
            SourceConfig::File(c) => c,
            SourceConfig::Stdin(c) => c,
            SourceConfig::Generator(c) => c,
            #[cfg(feature = "kinesis")]
            SourceConfig::Kinesis(c) => c,
            SourceConfig::Dir(c) => c,
            #[cfg(feature = "s3")]
            SourceConfig::S3(c) => c,
        }
    }

    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        self.spec().type_name()
    }

    /// Semantic checks.
    pub fn validate(&self, record: &RecordConfig) -> Vec<ConfigError> {
        let mut errors = self.spec().validate();
        if self.format() == Format::Lines && (record.key.is_some() || record.time.is_some()) {
            errors.push(ConfigError::new(
                "record",
                "bare-number input (format = \"lines\") has no fields: drop record.key and record.time",
            ));
        }
        // A job without values is allowed (pass-through); operators that need values say so.
        errors
    }

    /// Input format.
    pub fn format(&self) -> Format {
        self.spec().format()
    }

    /// Largest accepted record.
    pub fn max_record_bytes(&self) -> usize {
        self.spec().max_record_bytes()
    }

    /// The record fields to extract, with the source's defaults (a generator's schema)
    /// filled in.
    pub fn parser_config(&self, record: &RecordConfig, key_groups: u16) -> ParserConfig {
        let mut r = record.clone();
        self.spec().fill_record_defaults(&mut r);
        let values = if self.format() == Format::Lines {
            vec!["value".into()]
        } else {
            r.values
        };
        ParserConfig {
            format: self.format(),
            key: r.key,
            values,
            time_unit: record.time_unit(),
            time: r.time,
            key_groups,
            max_record_bytes: self.max_record_bytes(),
            pass_missing: record.missing == MissingPolicy::Pass,
        }
    }

    /// Builds the runtime source.
    pub fn build(&self) -> Result<Box<dyn Source>> {
        self.spec().build()
    }
}

/// A sink instance, driven by one task.
#[async_trait]
pub trait Sink: Send {
    /// Writes (or buffers) records, in order.
    async fn write(&mut self, records: &[Record]) -> Result<()>;

    /// Barrier `epoch` arrived: make everything written so far durable and return what must
    /// be done to publish it once the checkpoint completes (nothing for non-transactional
    /// sinks). Only this sink's config ([`SinkSpec::commit`]) reads the commits back.
    async fn precommit(&mut self, epoch: u64) -> Result<Vec<Commit>>;

    /// Records the sink refused in the last `write` (over a size limit, say), for the
    /// partition to write to its dead-letter sink. Called after every `write`.
    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        Vec::new()
    }
}

/// What every sink config answers; [`SinkConfig::spec`] picks the variant's.
///
/// A transactional sink's instances seal output into [`Commit`]s ([`Sink::precommit`]); the
/// config says which commits are its own ([`SinkSpec::owns`]) and what publishing them means
/// ([`SinkSpec::commit`]), so the coordinator needs to know nothing about any sink.
#[async_trait]
pub trait SinkSpec: Send + Sync {
    /// The `type` tag.
    fn type_name(&self) -> &'static str;
    /// Semantic checks; `at` is the config path (`sink` or `dead_letter`).
    fn validate(&self, at: &str) -> Vec<ConfigError> {
        let _ = at;
        Vec::new()
    }
    /// See [`SinkConfig::recover`].
    fn recover(&self, epoch: Option<u64>) -> Result<()> {
        let _ = epoch;
        Ok(())
    }
    /// Builds the instance for `component` whose first output belongs to `first_epoch`.
    fn build(&self, component: &str, first_epoch: u64) -> Result<Box<dyn Sink>>;
    /// Whether `commit` was sealed by this sink (and so is this sink's to publish).
    fn owns(&self, commit: &Commit) -> bool {
        let _ = commit;
        false
    }
    /// Publishes `commits`, all owned by this sink, in the order they were sealed, once the
    /// checkpoint covering them is complete. Must be idempotent: after a crash the restored
    /// checkpoint's commits are applied again, some of them perhaps for the second time.
    async fn commit(&self, commits: &[&Commit]) -> Result<()> {
        let _ = commits;
        Ok(())
    }
    /// The output directory, for sinks that have one.
    fn dir(&self) -> Option<PathBuf> {
        None
    }
}

/// The configured sink (closed set; `type` selects the variant).
#[derive(Debug, Clone, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum SinkConfig {
    /// JSON lines on standard output (not transactional: at-least-once across crashes).
    Stdout(stdio::StdoutSinkConfig),
    /// JSON lines in rolling part files, published per checkpoint (exactly-once).
    File(file::FileSinkConfig),
    /// Discards everything (benchmarks).
    Null(null::NullSinkConfig),
    /// PutRecords to a Kinesis data stream (at-least-once; outputs carry their source shard
    /// and sequence for de-duplication).
    #[cfg(feature = "kinesis")]
    Kinesis(kinesis::KinesisSinkConfig),
    /// JSON lines in an S3 bucket under `dt=…/hour=…` partitions, uploaded per checkpoint
    /// (exactly-once).
    #[cfg(feature = "s3")]
    S3(s3::S3SinkConfig),
}
crate::core::config::tagged!(SinkConfig, "type");

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig::Stdout(stdio::StdoutSinkConfig {})
    }
}

/// Where dead letters go: any sink; default a file sink under `<state.dir>/dead-letter`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(transparent)]
pub struct DeadLetterConfig(pub Option<SinkConfig>);

impl DeadLetterConfig {
    /// Semantic checks, including that it does not write where the job's `sink` does (the
    /// default dead-letter sink lives in `data_dir`).
    pub fn validate(&self, sink: &SinkConfig, data_dir: &Path) -> Vec<ConfigError> {
        let mut errors = self
            .0
            .as_ref()
            .map(|s| s.validate("dead_letter"))
            .unwrap_or_default();
        errors.extend(output::check_outputs(
            sink,
            &self.resolve(data_dir),
            self.0.is_some(),
        ));
        errors
    }

    /// The effective sink.
    pub fn resolve(&self, data_dir: &Path) -> SinkConfig {
        self.0.clone().unwrap_or_else(|| {
            SinkConfig::File(file::FileSinkConfig::new(data_dir.join("dead-letter")))
        })
    }
}

impl SinkConfig {
    /// The variant's config: the one place that lists every sink.
    pub fn spec(&self) -> &dyn SinkSpec {
        match self {
            SinkConfig::Stdout(c) => c,
            SinkConfig::File(c) => c,
            SinkConfig::Null(c) => c,
            #[cfg(feature = "kinesis")]
            SinkConfig::Kinesis(c) => c,
            #[cfg(feature = "s3")]
            SinkConfig::S3(c) => c,
        }
    }

    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        self.spec().type_name()
    }

    /// Semantic checks; `at` is the config path (`sink` or `dead_letter`).
    pub fn validate(&self, at: &str) -> Vec<ConfigError> {
        self.spec().validate(at)
    }

    /// Prepares the output for a run that resumes after checkpoint `epoch` (`None`: a fresh
    /// run): removes in-progress output of epochs that never completed and moves output
    /// published after `epoch` aside. Runs once, after the restored checkpoint's commits were
    /// applied again and before any instance is built.
    pub fn recover(&self, epoch: Option<u64>) -> Result<()> {
        self.spec().recover(epoch)
    }

    /// This sink as the job described by `role` runs it: its part names and object keys carry
    /// the job's output identity, and its local staging files go to a folder of its own
    /// (see [`output`]). Build, recover and publish through the result.
    pub fn for_job(&self, role: output::SinkRole<'_>) -> SinkConfig {
        let mut s = self.clone();
        match &mut s {
            SinkConfig::File(c) => c.identity = Some(role.identity.tag().to_string()),
            #[cfg(feature = "s3")]
            SinkConfig::S3(c) => *c = c.for_job(role.identity.tag(), role.role, role.data_dir),
            // Not transactional: nothing is named or staged.
            SinkConfig::Stdout(_) | SinkConfig::Null(_) => {}
            #[cfg(feature = "kinesis")]
            SinkConfig::Kinesis(_) => {}
        }
        s
    }

    /// Builds the instance for `component` (a partition name such as `p003`, or `source`)
    /// whose first output belongs to checkpoint epoch `first_epoch`.
    pub fn build(&self, component: &str, first_epoch: u64) -> Result<Box<dyn Sink>> {
        self.spec().build(component, first_epoch)
    }

    /// Publishes a complete checkpoint's `commits` through the job's `sinks` (its sink and
    /// its dead-letter sink): each commit goes to the first sink that owns it, in the order
    /// the commits were sealed. Idempotent (see [`SinkSpec::commit`]). A commit that no sink
    /// owns was sealed by a sink the job no longer has: an error, since publishing it is
    /// not something any sink of this job knows how to do.
    pub async fn publish(sinks: &[&SinkConfig], commits: &[Commit]) -> Result<()> {
        let mut rest: Vec<&Commit> = commits.iter().collect();
        for sink in sinks {
            let spec = sink.spec();
            let (mine, others): (Vec<&Commit>, Vec<&Commit>) =
                rest.into_iter().partition(|c| spec.owns(c));
            if !mine.is_empty() {
                spec.commit(&mine).await?;
            }
            rest = others;
        }
        match rest.first() {
            None => Ok(()),
            Some(c) => Err(Error::Internal(format!(
                "{} is output of a sink this job does not have",
                c.describe()
            ))),
        }
    }

    /// The output directory, for sinks that have one.
    pub fn dir(&self) -> Option<PathBuf> {
        self.spec().dir()
    }
}

/// Renders `records` as JSON lines into `buf` (cleared first): what the line sinks write.
pub fn render_json_lines(records: &[Record], buf: &mut String) {
    buf.clear();
    for r in records {
        r.write_json(buf);
        buf.push('\n');
    }
}

/// Counts `n` records written by the sink instance `component`.
pub fn count_written(component: &str, n: usize) {
    crate::metrics::get()
        .sink_records
        .with_label_values(&[component])
        .inc_by(n as u64);
}

pub(crate) fn default_max_record_bytes() -> usize {
    1 << 20
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publish_gives_each_commit_to_its_sink_and_refuses_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let sink = SinkConfig::File(file::FileSinkConfig::new(dir.path().join("out")));
        let mut part = sink.build("p000", 1).unwrap();
        part.write(&[Record::new("k", vec![1.0])]).await.unwrap();
        let commits = part.precommit(1).await.unwrap();
        assert_eq!(commits.len(), 1);
        let stdout = SinkConfig::default();
        SinkConfig::publish(&[&stdout, &sink], &commits)
            .await
            .unwrap();
        let published = dir.path().join("out/part-p000-0000000001-0000.jsonl");
        let text = std::fs::read_to_string(&published).unwrap();
        assert!(text.starts_with("{\"key\":\"k\""), "{text}");
        // Again after a crash: harmless.
        SinkConfig::publish(&[&stdout, &sink], &commits)
            .await
            .unwrap();
        let orphan = Commit::Upload {
            sink: "s3://gone/".into(),
            from: dir.path().join("x"),
            key: "x".into(),
        };
        let err = SinkConfig::publish(&[&sink], &[orphan]).await.unwrap_err();
        assert!(err.to_string().contains("s3://gone/"), "{err}");
    }
}
