//! The bottom layer: the types and small utilities every other layer shares. Nothing here
//! imports a component, the config loader, the topology or the state backend.
//!
//! - [`record`]: [`Record`], [`Batch`], [`Origin`], [`Field`] and their JSON output;
//! - [`config`]: [`ConfigError`] (field + line) and [`RecordConfig`], what every component's
//!   configuration shares; [`duration`]: durations in job files;
//! - [`error`]: the crate's [`Error`] with its [`ErrorKind`] and [`Retry`] hints;
//! - [`codec`]: the one binary codec of persisted state, with one [`DecodeError`];
//! - [`hash`], [`partition`]: FNV-1a and splitmix64; the MD5 key hash and key groups;
//! - [`time`]: civil time (dates and hours of event times);
//! - [`backoff`]: the one retry-delay policy; [`panic`]: panics caught per input.

pub mod backoff;
pub mod codec;
pub mod config;
pub mod duration;
pub mod error;
pub mod hash;
pub mod panic;
pub mod partition;
pub mod record;
pub mod time;

pub use backoff::Backoff;
pub use codec::DecodeError;
pub use config::{ConfigError, MissingPolicy, RecordConfig};
pub use duration::{Duration, parse_duration};
pub use error::{Error, ErrorKind, Retry};
pub use record::{Batch, Field, Origin, Record};

/// A checkpoint barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Barrier {
    /// Checkpoint epoch.
    pub epoch: u64,
    /// The job stops after this checkpoint.
    pub then_stop: bool,
}

/// A record an operator could not process, for the dead-letter sink.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Stable reason code (`non_finite`, `unknown_key` …).
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
    /// The record as JSON, or the raw input.
    pub data: String,
    /// Where the input came from.
    pub origin: Origin,
}

impl DeadLetter {
    /// A dead letter for `record`, which is written out as JSON.
    pub fn of_record(reason: &'static str, message: impl Into<String>, record: &Record) -> Self {
        let mut data = String::new();
        record.write_json(&mut data);
        DeadLetter {
            reason,
            message: message.into(),
            data,
            origin: record.origin.clone(),
        }
    }
}
