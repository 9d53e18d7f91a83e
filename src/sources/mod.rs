//! Sources: where records come from.
//!
//! A source yields raw items (a line, a Kinesis record) and a *position*: a JSON value that,
//! handed back to [`Source::restore`], makes the source continue right after the last item it
//! returned. Parsing, routing and barriers are the source driver's job (`topology::source`).

pub mod file;
pub mod generator;
#[cfg(feature = "kinesis")]
pub mod kinesis;
mod lines;
pub mod objects;
#[cfg(feature = "s3")]
pub mod s3;
pub mod stdin;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::Result;
use crate::config::{ConfigError, RecordConfig};
use crate::event::{Origin, Record};
use crate::parse::{Format, ParserConfig};

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
#[async_trait]
pub trait Source: Send {
    /// Resumes after the position a previous run checkpointed. Called before the first `poll`.
    async fn restore(&mut self, position: &serde_json::Value) -> Result<()>;

    /// Returns up to `max` items. Must be cancel-safe: if the future is dropped before it
    /// completes, no item may be lost (buffered items are returned by the next call).
    async fn poll(&mut self, max: usize) -> Result<Poll>;

    /// The position right after the last item returned by `poll`.
    fn position(&self) -> serde_json::Value;
}

/// The configured source (closed set; `type` selects the variant).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Local files.
    File(file::FileSourceConfig),
    /// Standard input.
    Stdin(stdin::StdinSourceConfig),
    /// A deterministic built-in generator.
    Generator(generator::GeneratorConfig),
    /// A Kinesis data stream.
    #[cfg(feature = "kinesis")]
    Kinesis(kinesis::KinesisSourceConfig),
    /// New files in a local folder, one record per file with its bytes (images).
    Dir(objects::DirSourceConfig),
    /// New objects in an S3 bucket, one record per object with its bytes (images).
    #[cfg(feature = "s3")]
    S3(s3::S3SourceConfig),
}

impl SourceConfig {
    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::File(_) => "file",
            SourceConfig::Stdin(_) => "stdin",
            SourceConfig::Generator(_) => "generator",
            #[cfg(feature = "kinesis")]
            SourceConfig::Kinesis(_) => "kinesis",
            SourceConfig::Dir(_) => "dir",
            #[cfg(feature = "s3")]
            SourceConfig::S3(_) => "s3",
        }
    }

    /// Semantic checks.
    pub fn validate(&self, record: &RecordConfig) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let format = self.format();
        match self {
            SourceConfig::File(c) => errors.extend(c.validate()),
            SourceConfig::Stdin(c) => errors.extend(c.validate()),
            SourceConfig::Generator(c) => errors.extend(c.validate()),
            #[cfg(feature = "kinesis")]
            SourceConfig::Kinesis(c) => errors.extend(c.validate()),
            SourceConfig::Dir(c) => errors.extend(c.validate()),
            #[cfg(feature = "s3")]
            SourceConfig::S3(c) => errors.extend(c.validate()),
        }
        if format == Format::Lines && (record.key.is_some() || record.time.is_some()) {
            errors.push(ConfigError::new(
                "record",
                "bare-number input (format = \"lines\") has no fields: drop record.key and record.time",
            ));
        }
        if format != Format::Lines
            && record.values.is_empty()
            && !matches!(self, SourceConfig::Generator(_))
        {
            // Allowed (pass-through jobs), but operators that need values will say so.
        }
        errors
    }

    /// Input format.
    pub fn format(&self) -> Format {
        match self {
            SourceConfig::File(c) => c.format,
            SourceConfig::Stdin(c) => c.format,
            SourceConfig::Generator(_) => Format::Json,
            #[cfg(feature = "kinesis")]
            SourceConfig::Kinesis(_) => Format::Json,
            // Object sources build their records themselves; the parser never sees them.
            SourceConfig::Dir(_) => Format::Json,
            #[cfg(feature = "s3")]
            SourceConfig::S3(_) => Format::Json,
        }
    }

    /// Largest accepted record.
    pub fn max_record_bytes(&self) -> usize {
        match self {
            SourceConfig::File(c) => c.max_record_bytes,
            SourceConfig::Stdin(c) => c.max_record_bytes,
            SourceConfig::Generator(_) => 1 << 20,
            #[cfg(feature = "kinesis")]
            SourceConfig::Kinesis(c) => c.max_record_bytes,
            // The limit quoted in `too_large` dead letters.
            SourceConfig::Dir(c) => c.max_object_bytes.try_into().unwrap_or(usize::MAX),
            #[cfg(feature = "s3")]
            SourceConfig::S3(c) => c.max_object_bytes.try_into().unwrap_or(usize::MAX),
        }
    }

    /// The record fields to extract, with generator defaults filled in.
    pub fn parser_config(&self, record: &RecordConfig, key_groups: u16) -> ParserConfig {
        let mut r = record.clone();
        if let SourceConfig::Generator(g) = self {
            g.fill_record_defaults(&mut r);
        }
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
            pass_missing: record.missing == crate::config::MissingPolicy::Pass,
        }
    }

    /// Builds the runtime source.
    pub fn build(&self) -> Result<Box<dyn Source>> {
        Ok(match self {
            SourceConfig::File(c) => Box::new(file::FileSource::new(c.clone())?),
            SourceConfig::Stdin(c) => Box::new(stdin::StdinSource::new(c.clone())),
            SourceConfig::Generator(c) => Box::new(generator::Generator::new(c.clone())),
            #[cfg(feature = "kinesis")]
            SourceConfig::Kinesis(c) => Box::new(kinesis::KinesisSource::new(c.clone())),
            SourceConfig::Dir(c) => Box::new(c.build()),
            #[cfg(feature = "s3")]
            SourceConfig::S3(c) => Box::new(c.build()),
        })
    }
}

pub(crate) fn default_max_record_bytes() -> usize {
    1 << 20
}
