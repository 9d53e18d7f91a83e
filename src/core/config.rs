//! What every component's configuration shares: the error type that names a field and a
//! line, and how a record's key, values and time are found.

use std::fmt;

use serde::Deserialize;

use super::time::TimeUnit;

/// One configuration problem, naming the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field (`source.path`, `operators[1].m`), empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// 1-based line in the job file, when known.
    pub line: Option<usize>,
}

impl ConfigError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
            line: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.field, self.message)
        }
    }
}

/// How a record's key, values and event time are found.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Field holding the partitioning key (string or integer). Absent: every record of a
    /// source shares one key (the file's stem for files, `stdin`, or the generator's name).
    pub key: Option<String>,
    /// Numeric fields handed to operators, in this order.
    #[serde(default)]
    pub values: Vec<String>,
    /// Event-time field: RFC 3339 / ISO 8601 text (`2024-01-01T00:00:00Z`, an offset or none
    /// for UTC, a space instead of `T`, a date alone) or an epoch number in `time_unit`.
    /// Impossible dates (February 31) are dead-lettered as `bad_time`.
    pub time: Option<String>,
    /// Unit of a numeric `time` (a JSON number, or digits as text and in CSV): `ms` (default),
    /// `s`, `us` or `ns`. Needs `time`.
    pub time_unit: Option<TimeUnit>,
    /// A value field that is absent, null or not finite: `dead_letter` the record (default), or
    /// `pass` it on as NaN for the operators' own missing-value policy (`discord`'s
    /// `nan_policy`; `stats` and `rcf` dead-letter such records themselves).
    #[serde(default)]
    pub missing: MissingPolicy,
}

impl RecordConfig {
    /// The unit of numeric event times (default milliseconds).
    pub fn time_unit(&self) -> TimeUnit {
        self.time_unit.unwrap_or_default()
    }

    /// Checks what serde cannot: `time_unit` only means something with `time`.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.time_unit.is_some() && self.time.is_none() {
            errors.push(ConfigError::new(
                "record.time_unit",
                "is set but record.time names no event-time field",
            ));
        }
        errors
    }
}

/// See [`RecordConfig::missing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// Dead-letter the record at the source.
    #[default]
    DeadLetter,
    /// Hand it on with the value as NaN.
    Pass,
}
