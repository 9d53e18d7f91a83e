//! `osprey eval nab`: the Numenta Anomaly Benchmark's score, computed from its published
//! definition (NAB's `nab/sweeper.py`, `nab/scorer.py`, `nab/optimizer.py`, `nab/runner.py`
//! and the NAB whitepaper), so that any detector's per-record anomaly scores in [0, 1] can be
//! placed on NAB's scoreboard. Plain synchronous code: no runtime, no state.
//!
//! # The score of one file at one threshold
//!
//! A record is a *detection* when its anomaly score is `>= threshold`. The first
//! `min(floor(0.15 · n), 750)` records of a file of `n` records are the probationary period:
//! they are never scored. Each labelled window `[begin, end]` (timestamps that exist in the
//! file) counts once:
//!
//! - A window with no detection costs `−fnWeight`.
//! - A window with detections earns `tpWeight · σ(p) / σ(−1)` for its *earliest* detection
//!   at relative position `p = −(end − i + 1) / width` (−1 at the first record, just below 0
//!   at the last), where `σ(x) = 2 / (1 + e^{5x}) − 1` (the scaled sigmoid, −1 for `x > 3`).
//!   Later detections in the same window add nothing.
//! - A detection outside every window costs `fpWeight · σ(d / (width − 1))`, where `d` is its
//!   distance in records from the end of the preceding window and `width` that window's length:
//!   negative, and close to `−fpWeight` far from the window; just after a window it costs
//!   almost nothing. With no preceding window it costs `−fpWeight`.
//!
//! TP, TN, FP and FN count scored records (detection or not, inside a window or not).
//!
//! # The threshold, per profile
//!
//! One threshold for the whole corpus and each profile (`config/profiles.json`: `standard`,
//! `reward_low_FP_rate`, `reward_low_FN_rate`), chosen to maximise the corpus total:
//!
//! - [`Optimizer::Sweep`] (NAB ≥ 1.0, `sweeper.py`, the default): every distinct anomaly score
//!   of the corpus is a candidate; the records are sorted by score (descending, stable), the
//!   running total is recorded at each new score, and the best total wins (the highest such
//!   threshold on ties). Exhaustive, so never worse than the next one.
//! - [`Optimizer::Twiddle`] (NAB before 2019, `optimizer.py`'s hill climbing from 0.5 with step
//!   0.1, doubling on success and halving otherwise until the step is below 1e-7): how the
//!   thresholds in NAB's `config/thresholds.json`, and so the published scores of the
//!   detectors of that time, were found. A local search: it can stop below the sweep's best.
//! - [`Optimizer::Published`]: the threshold in `config/thresholds.json` for the detector.
//! - [`Optimizer::Fixed`]: one given threshold.
//!
//! # Normalisation
//!
//! `100 · (raw − null) / (perfect − null)`, where `perfect = tpWeight · (windows in
//! combined_windows.json)` and `null` is the null detector's raw score: no detection at all,
//! `−fnWeight` per window (NAB normalises by the raw total of its `null` detector, whose
//! constant score never reaches its threshold). 0 is the null detector, 100 a detector that
//! flags the first record of every window and nothing else.
//!
//! # Files
//!
//! `corpus.rs` loads the data, windows, profiles and result files; `score.rs` scores files
//! and sweeps thresholds; `optimize.rs` chooses the threshold and totals the corpus;
//! `report.rs` prints `osprey eval nab`; `detect.rs` turns the corpus into a job's input
//! and the job's output into anomaly scores (`osprey eval nab --detector`, run by `app.rs`).

mod corpus;
mod detect;
mod optimize;
mod report;
mod score;

#[cfg(test)]
mod tests;

pub use corpus::{NabCorpus, NabFile, Profile, Published, read_published, read_results};
pub use detect::{DetectorJob, DetectorScores, job_text, read_output, write_input};
pub use optimize::{
    CorpusScore, FileResult, Optimizer, choose_threshold, score_corpus, sweep_best, twiddle,
};
pub use report::{NabArgs, detectors_report, run_nab_eval, score_results};
pub use score::{
    CostMatrix, Counts, Slot, SweepPoint, ThresholdScore, at_threshold, probationary_length,
    scaled_sigmoid, sweep, sweep_points,
};

/// NAB's probationary share of each file (`runner.py`'s `probationaryPercent`).
pub const PROBATIONARY_PERCENT: f64 = 0.15;

/// The profiles in NAB's order, for printing (others follow alphabetically).
pub const PROFILE_ORDER: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];
