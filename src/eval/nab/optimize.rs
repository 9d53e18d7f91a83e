//! The corpus: one threshold per profile (NAB's optimisers), each file scored at it, the
//! totals normalised between the null and the perfect detector.

use super::corpus::{NabCorpus, Profile};
use super::score::{Counts, SweepPoint, ThresholdScore, at_threshold, sweep, sweep_points};

/// How the corpus threshold of a profile is chosen (see the module docs of `eval::nab`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// NAB ≥ 1.0: the best of every distinct anomaly score.
    Sweep,
    /// NAB before 2019: hill climbing from 0.5.
    Twiddle,
    /// The detector's threshold in `config/thresholds.json`.
    Published,
    /// This threshold for every profile.
    Fixed(f64),
}

/// One file at the chosen threshold (a row of NAB's `<detector>_<profile>_scores.csv`).
#[derive(Clone, Debug, PartialEq)]
pub struct FileResult {
    /// Path under `data/`.
    pub name: String,
    /// Raw score.
    pub score: f64,
    /// Scored records by outcome.
    pub counts: Counts,
    /// Records in the file (probationary ones included, as NAB's `Total_Count`).
    pub total: usize,
}

/// One profile over the corpus.
#[derive(Clone, Debug, PartialEq)]
pub struct CorpusScore {
    /// The profile's name.
    pub profile: String,
    /// The threshold used.
    pub threshold: f64,
    /// Sum of the files' raw scores, in file order (NAB's `Totals` row).
    pub raw: f64,
    /// `100 · (raw − null) / (perfect − null)`.
    pub normalised: f64,
    /// The null detector's raw score: `−fnWeight` per window.
    pub null: f64,
    /// The perfect detector's raw score: `tpWeight` per window.
    pub perfect: f64,
    /// Totals of the files' counts.
    pub counts: Counts,
    /// Every file, in corpus order.
    pub files: Vec<FileResult>,
}

/// Every record of the corpus as sweep points (files concatenated in corpus order).
fn corpus_points(corpus: &NabCorpus, scores: &[Vec<f64>], profile: &Profile) -> Vec<SweepPoint> {
    let firsts = corpus.first_windows();
    corpus
        .files
        .iter()
        .zip(scores)
        .zip(firsts)
        .flat_map(|((f, s), first)| sweep_points(s, &f.windows, &profile.cost, first))
        .collect()
}

/// NAB's sweep optimiser (`optimizer.optimizeThreshold`): the corpus sweep's best total,
/// the highest threshold among equal totals (Python's stable sort by score, descending).
pub fn sweep_best(corpus: &NabCorpus, scores: &[Vec<f64>], profile: &Profile) -> ThresholdScore {
    let records = sweep(&corpus_points(corpus, scores, profile), &profile.cost);
    let mut best = records[0];
    for r in &records[1..] {
        if r.score > best.score {
            best = *r;
        }
    }
    best
}

/// NAB's pre-2019 optimiser: from 0.5 with step 0.1, try `x + step`, else `x − step`; a better
/// total moves there and doubles the step, otherwise the step halves, until it is at most
/// 1e-7. Thresholds outside [0, 1] score −∞. Returns the best threshold tried and its total;
/// among equal totals the first tried (NAB took `max` over a Python 2 dict, whose order is
/// its hash order: the total is the same, the threshold may be another of the tied ones).
pub fn twiddle(mut objective: impl FnMut(f64) -> f64) -> (f64, f64) {
    let mut tried: Vec<(f64, f64)> = Vec::new();
    let mut seen: std::collections::HashMap<u64, f64> = Default::default();
    let mut eval = |x: f64, tried: &mut Vec<(f64, f64)>| -> f64 {
        *seen.entry(x.to_bits()).or_insert_with(|| {
            let s = if (0.0..=1.0).contains(&x) {
                objective(x)
            } else {
                f64::NEG_INFINITY
            };
            tried.push((x, s));
            s
        })
    };
    let mut x = 0.5;
    let mut delta = 0.1;
    let mut best = eval(x, &mut tried);
    // The step halves at least once per this many successes in a row (the totals are bounded
    // and improve strictly); the cap only guards against a pathological objective.
    for _ in 0..1_000_000 {
        if delta <= 1e-7 {
            break;
        }
        x += delta;
        let s = eval(x, &mut tried);
        if s > best {
            best = s;
            delta *= 2.0;
        } else {
            x -= 2.0 * delta;
            let s = eval(x, &mut tried);
            if s > best {
                best = s;
                delta *= 2.0;
            } else {
                x += delta;
                delta *= 0.5;
            }
        }
    }
    let mut out = tried[0];
    for &(t, s) in &tried[1..] {
        if s > out.1 {
            out = (t, s);
        }
    }
    out
}

/// The threshold `optimizer` chooses for `profile` (`published` is the detector's entry in
/// `config/thresholds.json`, needed for [`Optimizer::Published`]), with the corpus total the
/// optimiser saw there.
pub fn choose_threshold(
    corpus: &NabCorpus,
    scores: &[Vec<f64>],
    profile: &Profile,
    optimizer: Optimizer,
    published: Option<f64>,
) -> Option<f64> {
    match optimizer {
        Optimizer::Sweep => Some(sweep_best(corpus, scores, profile).threshold),
        Optimizer::Twiddle => {
            let records = sweep(&corpus_points(corpus, scores, profile), &profile.cost);
            // Thresholds descend through the records: the entry for `>= t` by binary search.
            let objective = |t: f64| {
                let idx = records.partition_point(|r| r.threshold > t);
                match records.get(idx) {
                    Some(r) if r.threshold == t => r.score,
                    _ => records[idx.saturating_sub(1)].score,
                }
            };
            Some(twiddle(objective).0)
        }
        Optimizer::Published => published,
        Optimizer::Fixed(t) => Some(t),
    }
}

/// Scores every file of `corpus` (with `scores[i]` the anomaly scores of file `i`) at
/// `threshold` for `profile`, as NAB's scoring step (`scorer.scoreCorpus`) does, and normalises
/// the total.
pub fn score_corpus(
    corpus: &NabCorpus,
    scores: &[Vec<f64>],
    profile: &Profile,
    threshold: f64,
) -> CorpusScore {
    let mut files = Vec::with_capacity(corpus.files.len());
    let (mut raw, mut counts) = (0.0, Counts::default());
    for (f, s) in corpus.files.iter().zip(scores) {
        let points = sweep_points(s, &f.windows, &profile.cost, 0);
        let records = sweep(&points, &profile.cost);
        let r = at_threshold(&records, threshold)
            .copied()
            .expect("a sweep has at least its starting entry");
        raw += r.score;
        counts += r.counts;
        files.push(FileResult {
            name: f.name.clone(),
            score: r.score,
            counts: r.counts,
            total: s.len(),
        });
    }
    let windows = corpus.window_count() as f64;
    let null = -profile.cost.fn_weight * windows;
    let perfect = profile.cost.tp_weight * windows;
    CorpusScore {
        profile: profile.name.clone(),
        threshold,
        raw,
        normalised: 100.0 * (raw - null) / (perfect - null),
        null,
        perfect,
        counts,
        files,
    }
}
