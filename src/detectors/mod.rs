//! The pure detection algorithms: plain synchronous code with no async, no I/O and no
//! knowledge of records, keys, batches or state backends. Each detector is a struct that takes
//! one point at a time and encodes its state through [`crate::core::codec`]; the operators in
//! [`crate::operators`] adapt them to keyed state, checkpoints and metrics, and [`crate::eval`]
//! drives them over whole files.
//!
//! - [`matrix_profile`]: left discords with a streaming left matrix profile (exact or DAMP)
//!   and an online threshold;
//! - [`rcf`]: Random Cut Forest scores with per-field attribution and a thresholder.

pub mod matrix_profile;
pub mod rcf;
