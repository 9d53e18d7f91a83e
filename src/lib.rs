//! osprey: a stream worker for real-time anomaly detection and ML inference.
//!
//! # Layout
//!
//! - [`config`]: the TOML job file, validated with every error reported at once.
//! - [`core`]: the bottom layer every other module shares (records, config errors, the codec,
//!   hashing, civil time, backoff).
//! - [`connectors`] (sources) → [`topology`] → [`operators`] → [`connectors`] (sinks): the data
//!   path. Connectors are grouped by external system (`file`, `stdio`, `kinesis`, `s3`, …),
//!   each with its config, client, source and sink. The source task parses ([`parse`]) and
//!   routes records by key group ([`partition`]); each partition task runs the operator chain
//!   and writes to its own sink instance.
//! - [`state`]: keyed state (RocksDB or memory) and the checkpoint files; the coordinator in
//!   [`topology`] runs the checkpoint protocol.
//! - [`metrics`]: Prometheus names and the `/metrics` `/healthz` `/readyz` endpoint.
//! - [`app`] and [`cli`]: what the `osprey` binary does with its arguments.
//! - [`detectors`]: the pure algorithms (matrix profile, Random Cut Forest) that the scoring
//!   operators and [`eval`] run.
//! - [`eval`]: `osprey eval`, offline accuracy of the detectors on datasets.
//!
//! See `docs/ARCHITECTURE.md` for the one-page tour.

#![deny(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod core;
pub mod detectors;
pub mod eval;
pub mod metrics;
pub mod operators;
pub mod parse;
pub mod shutdown;
pub mod state;
pub mod topology;

pub use crate::core::{Error, ErrorKind, Retry};
// Old paths, kept while the components move to `core` (removed at the end of the move).
pub use crate::core::error;
pub use crate::core::partition;
pub use crate::core::record as event;

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
