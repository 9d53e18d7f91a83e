//! One file's records as NAB scores them (`Sweeper.calcSweepScore`), and the sweep over
//! thresholds (`Sweeper.calcScoreByThreshold`, `Sweeper.scoreDataSet`).
//!
//! The arithmetic is NAB's, operation for operation (the same divisions and the same order of
//! additions), so totals agree with NAB's to the last few bits rather than to a tolerance, and
//! thresholds whose totals are equal in NAB are equal here (the optimiser's tie-break).

use std::cmp::Ordering;

use super::PROBATIONARY_PERCENT;

/// One profile's weights (`config/profiles.json`, `CostMatrix`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CostMatrix {
    /// Reward of a window's detection at its very start (scaled down later in the window).
    pub tp_weight: f64,
    /// Cost of a detection far from every window.
    pub fp_weight: f64,
    /// Cost of a window with no detection.
    pub fn_weight: f64,
    /// Unused by NAB's score (true negatives are only counted); kept because profiles carry it.
    pub tn_weight: f64,
}

/// Where a record falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// In the probationary period: never scored.
    Probation,
    /// Outside every window: a detection there is a false positive.
    Outside,
    /// In the window with this corpus-wide index: a detection there is a true positive.
    Window(u32),
}

/// One record, ready for the sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepPoint {
    /// The detector's anomaly score.
    pub score: f64,
    /// What a detection here is worth (NAB's `sweepScore`): the weighted scaled sigmoid.
    pub weight: f64,
    /// Where the record falls.
    pub slot: Slot,
}

/// Scored records by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Detections in a window.
    pub tp: u64,
    /// Records outside every window that are not detections.
    pub tn: u64,
    /// Detections outside every window.
    pub fp: u64,
    /// Records in a window that are not detections.
    pub fn_: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.tp += o.tp;
        self.tn += o.tn;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
}

/// The total at one threshold: every record scoring `>= threshold` is a detection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThresholdScore {
    /// The threshold (an anomaly score of the data, or NAB's starting 1.1).
    pub threshold: f64,
    /// The raw (unnormalised) score.
    pub score: f64,
    /// Scored records by outcome.
    pub counts: Counts,
}

/// NAB's scaled sigmoid: `2 / (1 + e^{5x}) − 1`, and −1 beyond `x = 3`. 0.98661 at the start
/// of a window (`x = −1`), 0 at its end (`x = 0`), −0.98661 one window length after it.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        // NAB's `2 * sigmoid(-5 x) - 1` with `sigmoid(y) = 1 / (1 + exp(-y))`.
        2.0 * (1.0 / (1.0 + (5.0 * x).exp())) - 1.0
    }
}

/// Records at the start of a file of `len` records that are never scored: 15% of the file,
/// at most 750 (NAB computes `min(floor(0.15 · len), 0.15 · 5000)` in floating point and
/// compares the row index with it; so does this).
pub fn probationary_length(len: usize) -> f64 {
    (PROBATIONARY_PERCENT * len as f64)
        .floor()
        .min(PROBATIONARY_PERCENT * 5000.0)
}

/// The sweep points of one file of `scores.len()` records: `windows` are its labelled
/// windows as (first, last) record indices, in order and disjoint (touching allowed),
/// numbered from `first_window` in the corpus.
///
/// A window of one record has no width to measure distances after it: NAB divides by zero
/// there; here such a false positive costs the full `−fpWeight`.
pub fn sweep_points(
    scores: &[f64],
    windows: &[(usize, usize)],
    cost: &CostMatrix,
    first_window: u32,
) -> Vec<SweepPoint> {
    let max_tp = scaled_sigmoid(-1.0);
    let probation = probationary_length(scores.len());
    let mut next = 0;
    // The window being crossed (its number in `windows`), and the last one left: (end, width).
    let mut current: Option<usize> = None;
    let mut previous: Option<(usize, f64)> = None;
    let mut out = Vec::with_capacity(scores.len());
    for (i, &score) in scores.iter().enumerate() {
        // Entering a window is checked even inside one, as NAB does: a window starting where
        // the previous one ends takes over that record.
        if next < windows.len() && i == windows[next].0 {
            current = Some(next);
            next += 1;
        }
        let (weight, window) = match current {
            Some(k) => {
                let (first, last) = windows[k];
                let width = (last - first + 1) as f64;
                let position = -((last - i + 1) as f64) / width;
                (scaled_sigmoid(position) * cost.tp_weight / max_tp, Some(k))
            }
            None => {
                let unweighted = match previous {
                    None => -1.0,
                    Some((end, width)) => scaled_sigmoid((i - end) as f64 / (width - 1.0)),
                };
                (unweighted * cost.fp_weight, None)
            }
        };
        let slot = if (i as f64) < probation {
            Slot::Probation
        } else {
            match window {
                Some(k) => Slot::Window(first_window + k as u32),
                None => Slot::Outside,
            }
        };
        out.push(SweepPoint {
            score,
            weight,
            slot,
        });
        if let Some(k) = current
            && i == windows[k].1
        {
            let (first, last) = windows[k];
            previous = Some((i, (last - first + 1) as f64));
            current = None;
        }
    }
    out
}

/// Every threshold's total over `points` (one file, or a whole corpus concatenated), from the
/// highest anomaly score down: the first entry (threshold 1.1) has no detection; each next
/// one adds the records of the next lower distinct score. As NAB's `calcScoreByThreshold`:
/// records sorted by score, descending and stable; the total summed afresh at each threshold
/// as the false-positive sum followed by each window's part in order of first appearance.
pub fn sweep(points: &[SweepPoint], cost: &CostMatrix) -> Vec<ThresholdScore> {
    let mut scorable: Vec<&SweepPoint> = points
        .iter()
        .filter(|p| p.slot != Slot::Probation)
        .collect();
    // `sort_by` is stable, as Python's `sorted(..., reverse=True)`; scores are never NaN
    // (the result reader rejects them).
    scorable.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal));
    // Each window's part: −fnWeight until detected, then its best (earliest) detection.
    let mut part_of: std::collections::HashMap<u32, usize> = Default::default();
    let mut parts: Vec<f64> = Vec::new();
    let mut counts = Counts::default();
    for p in &scorable {
        match p.slot {
            Slot::Window(w) => {
                part_of.entry(w).or_insert_with(|| {
                    parts.push(-cost.fn_weight);
                    parts.len() - 1
                });
                counts.fn_ += 1;
            }
            _ => counts.tn += 1,
        }
    }
    let mut fp_sum = 0.0;
    let total = |fp_sum: f64, parts: &[f64]| parts.iter().fold(fp_sum, |acc, &x| acc + x);
    let mut out = Vec::new();
    let mut threshold = 1.1;
    for p in &scorable {
        if p.score != threshold {
            out.push(ThresholdScore {
                threshold,
                score: total(fp_sum, &parts),
                counts,
            });
            threshold = p.score;
        }
        match p.slot {
            Slot::Window(w) => {
                counts.tp += 1;
                counts.fn_ -= 1;
                let part = &mut parts[part_of[&w]];
                *part = part.max(p.weight);
            }
            _ => {
                counts.fp += 1;
                counts.tn -= 1;
                fp_sum += p.weight;
            }
        }
    }
    out.push(ThresholdScore {
        threshold,
        score: total(fp_sum, &parts),
        counts,
    });
    out
}

/// The entry of `sweep`'s output for detections `>= threshold`, found as NAB's
/// `scoreDataSet` finds it: the entry with exactly that threshold, else the one before the
/// first lower threshold. Where NAB finds none (a threshold above 1.1, or below every score),
/// this returns the first entry (no detection) or the last (every record a detection).
pub fn at_threshold(records: &[ThresholdScore], threshold: f64) -> Option<&ThresholdScore> {
    let mut previous = None;
    for r in records {
        if r.threshold == threshold {
            return Some(r);
        }
        if r.threshold < threshold {
            return previous.or(Some(r));
        }
        previous = Some(r);
    }
    records.last()
}
