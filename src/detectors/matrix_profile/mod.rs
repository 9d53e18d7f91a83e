//! Left-discord detection with a streaming left matrix profile: pure, synchronous, no I/O.
//!
//! - [`left_mp`]: the exact streaming left matrix profile ([`LeftMatrixProfile`]), whose module
//!   docs describe the API the `discord` operator calls;
//! - [`damp`]: the same scores with DAMP's pruning ([`Damp`]);
//! - [`threshold`]: the online alarm threshold per key ([`Threshold`]) and [`estimate_period`];
//! - [`simd`]: the inner loops, with a SIMD path picked at run time and a scalar fallback that
//!   every path equals bit for bit;
//! - the series ring both detectors share (`series.rs`).
//!
//! States encode through [`crate::core::codec`]; a state that cannot be restored is a
//! [`crate::core::DecodeError`].

pub mod damp;
pub mod left_mp;
mod series;
pub mod simd;
pub mod threshold;

#[cfg(test)]
mod tests;

use crate::core::codec::{DecodeError, Reader, Writer};

pub use damp::{DAMP_STATE_VERSION, Damp, DampConfig, MassMode, damp_profile};
pub use left_mp::{
    Discord, LEFT_MP_STATE_VERSION, LeftMatrixProfile, NanPolicy, left_profile,
    left_profile_discords,
};
pub use series::CONSTANT_REL_SIGMA;
pub use simd::{Kernel, MAX_TILE};
pub use threshold::{
    Judgement, THRESHOLD_STATE_VERSION, Threshold, ThresholdSpec, estimate_period,
};

/// Invalid construction parameters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// `m` below 2: a z-normalised window needs two points.
    #[error("subsequence length m must be at least 2, got {0}")]
    MTooSmall(usize),
    /// The history cannot hold a subsequence and a non-overlapping predecessor.
    #[error("history must be at least 2·m = {min} points, got {history}")]
    HistoryTooShort {
        /// The history asked for.
        history: usize,
        /// The smallest accepted.
        min: usize,
    },
    /// The history is larger than this build allows.
    #[error("history of {0} points is larger than the supported 2^31")]
    HistoryTooLong(usize),
    /// The requested kernel cannot run on this CPU.
    #[error("kernel {0} is not supported by this CPU")]
    KernelUnavailable(&'static str),
    /// A parameter outside its documented range.
    #[error("invalid parameter: {0}")]
    Invalid(&'static str),
}

/// Writes an optional point index, `None` as `u64::MAX` (no series reaches that index).
fn write_opt_u64(w: &mut Writer<'_>, v: Option<u64>) {
    w.u64(v.unwrap_or(u64::MAX));
}

/// Reads what [`write_opt_u64`] wrote.
fn read_opt_u64(r: &mut Reader<'_>) -> Result<Option<u64>, DecodeError> {
    let v = r.u64()?;
    Ok((v != u64::MAX).then_some(v))
}
