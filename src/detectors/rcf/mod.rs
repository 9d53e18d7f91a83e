//! Random Cut Forest: streaming anomaly scores with per-dimension attribution.
//!
//! Pure, synchronous algorithm code: no async, no I/O, no knowledge of keys or batches. The
//! operator wrapper (`operators/rcf/mod.rs`) owns one [`Forest`] per key and adapts it.
//!
//! # API for the operator wrapper
//!
//! ```text
//! let cfg = ForestConfig::new(fields.len(), shingle_size, trees, sample_size); // defaults for
//! cfg.seed = seed; cfg.time_decay = ..; cfg.output_after = ..;                 // the rest
//! let mut forest = Forest::new(cfg)?;                  // ConfigError → user error at build()
//! match forest.process(&values) {                      // values: one f64 per field, in order
//!     Ok(Some(s)) => emit(s.score, s.attribution),     // attribution[i] ↔ fields[i]
//!     Ok(None) => {}                                   // shingle filling or before output_after
//!     Err(PointError) => count_and_skip(),             // NaN/∞/wrong arity: forest untouched
//! }
//! forest.encode(&mut buf);                             // keyed state value on each barrier
//! let forest = Forest::decode(&buf)?;                  // lazy load; DecodeError → internal
//! ```
//!
//! `process` borrows the forest for the lifetime of the returned [`Scored`] (its attribution
//! is a slice of a buffer inside the forest, so scoring never allocates); copy what you need
//! out before the next call. Pair it with a [`threshold::Thresholder`] per key for
//! grades. `Forest` is `Send` and plain data; it has no interior mutability.
//!
//! # Algorithm
//!
//! Each of `trees` trees keeps a time-decayed reservoir sample of at most `sample_size`
//! shingled points and a random cut tree over it. A point is *scored, then used to update*
//! the forest (as the AWS library and the AWS Flink sample do).
//!
//! - **Shingling.** With shingle size `k` over `D` input fields, the tree point is the last
//!   `k` inputs concatenated, oldest first (`D·k` dimensions). Nothing is scored or sampled
//!   until the first `k` inputs have arrived.
//! - **Sampling.** Point number `seq` (counting full shingles from 0) gets, in tree `j`, the
//!   weight `ln(-ln u) - time_decay·seq` with `u` uniform; each tree keeps the `sample_size`
//!   smallest weights (ties broken by the larger `seq` leaving first, which makes the sampled
//!   set independent of the heap's internal layout). While a sample is filling, a point is
//!   taken outright with probability 1 up to 1/8 full, then linearly less, the same rule as
//!   the AWS library's `initial_accept_fraction = 0.125`. Unlike the AWS library, `u` is not
//!   drawn from a sequential generator but computed from `(seed, tree, seq)`
//!   ([`rng::counter_uniform`]), so checkpoints need not store weights.
//! - **Cuts.** Insertion is top-down: at a node with bounding box `B`, the probability that a
//!   random cut of `B ∪ {p}` separates `p` from `B` is `gap(p,B) / (range(B) + gap(p,B))`;
//!   on separation, the dimension is chosen in proportion to its gap and the position is
//!   uniform within the gap, otherwise we follow the existing cut. This is the same
//!   distribution as the AWS library's bottom-up procedure, with fewer random draws. Equal
//!   points share a leaf whose mass counts them.
//! - **Cuts stay where they fell.** As in the AWS library, a cut value is fixed when its node
//!   is created, and later insertions and deletions only move the children's boxes on either
//!   side of it. (We tried re-placing cuts at a fixed fraction of the current gap, which would
//!   be cheaper to checkpoint: at shingle 8 it made the normal-score tail about 5% heavier than
//!   the AWS library's, because the cut is a real boundary of the space partition that future
//!   points are routed by.) The checkpoint still stores a cut in about 2 bytes: it always lies
//!   in `[left max, right min)`, so we write its offset among the `f32` values of that gap.
//! - **Score.** The standard RCF score, normalised as in the AWS library: per tree, walking
//!   from the leaf reached by `p` (at depth `d`) back to the root, `s = 1/(d+1)` at an unseen
//!   leaf, or `s = (1 - m/(2M)) / (d + log2(1+m))` at a leaf equal to `p` (mass `m`, tree mass
//!   `M`), and at each ancestor at depth `a` whose box does not contain `p`,
//!   `s ← (1-q)·s + q/(a+1)` with `q` the separation probability above. The tree score is
//!   `s·log2(1+M)` and the forest score their mean; inliers score below 1.
//! - **Attribution.** The same recursion run on the vector of per-dimension, per-direction
//!   separation probabilities (`high`: `p` above the box, `low`: below), rescaled per tree to
//!   the tree's score (for a duplicate leaf, against the box of the rest of the tree), so the
//!   parts sum to the score. Reported per input field, summed over the shingle.
//!
//! # Memory layout
//!
//! All trees live in a handful of flat arrays allocated once in [`Forest::new`] (per tree a
//! fixed region of `sample_size` slots: internal nodes, their boxes, leaf points and masses,
//! and the sampler heap), addressed with `u32` indices; freed slots are reused through
//! intrusive free lists. Together with fixed scratch buffers this means no heap allocation
//! per point. Points and boxes are `f32`, as in the AWS library; inputs are converted once,
//! on entry.
//!
//! # Files
//!
//! [`Forest`] itself (configuration, errors, the per-point driver) is in `forest.rs`; the
//! trees and their arenas in `tree.rs`, the reservoir sampler in `sampler.rs`, scoring and
//! attribution in `score.rs`, the checkpoint encoding in `codec.rs`.

mod codec;
mod forest;
#[cfg(test)]
mod invariants;
pub mod rng;
mod sampler;
mod score;
pub mod threshold;
mod tree;

#[cfg(test)]
mod tests;

pub use forest::{
    Attribution, ConfigError, Forest, ForestConfig, MAX_POINT_DIMENSIONS, MAX_SAMPLE_SIZE,
    MAX_TREES, PointError, Scored,
};
pub use threshold::{Grade, ThresholdConfig, ThresholdConfigError, Thresholder};
