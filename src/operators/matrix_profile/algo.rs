//! The public surface of the matrix-profile algorithms, re-exported in one place so that the
//! operator wrapper and the benches can write `matrix_profile::{LeftMatrixProfile, Damp, ..}`.
//!
//! The wrapper's `mod.rs` mounts this as `mod algo; pub use algo::*;` next to the `pub mod`
//! lines of the algorithm files (see the top of `left_mp.rs` for the API it should call).

pub use super::damp::{DAMP_STATE_VERSION, Damp, DampConfig, MassMode, damp_profile};
pub use super::left_mp::{
    CONSTANT_REL_SIGMA, DecodeError, Discord, LEFT_MP_STATE_VERSION, LeftMatrixProfile, NanPolicy,
    ParamError, left_profile, left_profile_discords,
};
pub use super::simd::{Kernel, MAX_TILE};
pub use super::threshold::{
    Judgement, THRESHOLD_STATE_VERSION, Threshold, ThresholdSpec, estimate_period,
};
