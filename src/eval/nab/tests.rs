//! NAB's scoring rules on small hand-computed files. The reproduction of NAB's published
//! scores over the real corpus is in `tests/nab.rs` (it needs `$OSPREY_SHARED`).

use super::*;

const STANDARD: CostMatrix = CostMatrix {
    tp_weight: 1.0,
    fp_weight: 0.11,
    fn_weight: 1.0,
    tn_weight: 1.0,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12
}

/// A corpus of one file of `len` records with the given windows.
fn one_file(len: usize, windows: &[(usize, usize)]) -> NabCorpus {
    NabCorpus {
        dir: "unused".into(),
        files: vec![NabFile {
            name: "cat/file.csv".into(),
            timestamps: (0..len as i64).collect(),
            values: vec![0.0; len],
            windows: windows.to_vec(),
        }],
        profiles: vec![Profile {
            name: "standard".into(),
            cost: STANDARD,
        }],
    }
}

/// Scores with detections (1.0) at `at` and 0.0 elsewhere.
fn spikes(len: usize, at: &[usize]) -> Vec<f64> {
    (0..len)
        .map(|i| if at.contains(&i) { 1.0 } else { 0.0 })
        .collect()
}

fn score_of(len: usize, windows: &[(usize, usize)], at: &[usize]) -> (f64, Counts) {
    let corpus = one_file(len, windows);
    let r = score_corpus(&corpus, &[spikes(len, at)], &corpus.profiles[0], 1.0);
    (r.raw, r.counts)
}

#[test]
fn scaled_sigmoid_matches_the_whitepaper_values() {
    assert!((scaled_sigmoid(-1.0) - 0.986_614_298_151_430_3).abs() < 1e-15);
    assert!((scaled_sigmoid(-0.5) - 0.848_283_639_957_512_7).abs() < 1e-15);
    assert_eq!(scaled_sigmoid(0.0), 0.0);
    assert!((scaled_sigmoid(1.0) + 0.986_614_298_151_430_3).abs() < 1e-15);
    assert_eq!(scaled_sigmoid(3.01), -1.0);
}

#[test]
fn probation_is_15_percent_capped_at_750() {
    assert_eq!(probationary_length(4032), 604.0);
    assert_eq!(probationary_length(1000), 150.0);
    assert_eq!(probationary_length(22_695), 750.0);
    assert_eq!(probationary_length(5), 0.0);
}

#[test]
fn only_the_earliest_detection_in_a_window_counts() {
    // 100 records, probation 15, one window [40, 49] (width 10).
    let w = [(40, 49)];
    let (first, c) = score_of(100, &w, &[40]);
    assert!(close(first, 1.0), "{first}");
    assert_eq!((c.tp, c.fp, c.fn_, c.tn), (1, 0, 9, 75));
    // More detections later in the window add nothing.
    let (more, c) = score_of(100, &w, &[40, 44, 49]);
    assert!(close(more, 1.0), "{more}");
    assert_eq!((c.tp, c.fn_), (3, 7));
    // The middle of the window earns σ(−0.5)/σ(−1): position −(49 − 45 + 1)/10.
    let (mid, _) = score_of(100, &w, &[45, 48]);
    assert!(
        close(mid, scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0)),
        "{mid}"
    );
    // No detection: a false negative.
    let (none, _) = score_of(100, &w, &[]);
    assert!(close(none, -1.0), "{none}");
}

#[test]
fn false_positives_are_weighted_by_distance_to_the_preceding_window() {
    let w = [(40, 49)];
    // Before any window: the full −fpWeight, plus the missed window.
    let (before, c) = score_of(100, &w, &[20]);
    assert!(close(before, -0.11 - 1.0), "{before}");
    assert_eq!((c.fp, c.tp), (1, 0));
    // Three records after the window's end, whose width is 10: σ(3/9)·fpWeight.
    let (after, _) = score_of(100, &w, &[52]);
    assert!(
        close(after, 0.11 * scaled_sigmoid(3.0 / 9.0) - 1.0),
        "{after}"
    );
    // Far after it: −fpWeight again.
    let (far, _) = score_of(100, &w, &[99]);
    assert!(close(far, -0.11 - 1.0), "{far}");
    // In the probationary period nothing counts, and no record there is counted.
    let (prob, c) = score_of(100, &w, &[3]);
    assert!(close(prob, -1.0), "{prob}");
    assert_eq!(c.tp + c.tn + c.fp + c.fn_, 85);
}

#[test]
fn the_sweep_records_every_distinct_score_and_ties_go_together() {
    // Probation 1 (of 10 records); window [5, 6].
    let scores = [0.0, 0.2, 0.9, 0.2, 0.5, 0.7, 0.7, 0.1, 0.9, 0.3];
    let points = sweep_points(&scores, &[(5, 6)], &STANDARD, 0);
    assert_eq!(points[0].slot, Slot::Probation);
    assert_eq!(points[5].slot, Slot::Window(0));
    let records = sweep(&points, &STANDARD);
    let thresholds: Vec<f64> = records.iter().map(|r| r.threshold).collect();
    assert_eq!(thresholds, [1.1, 0.9, 0.7, 0.5, 0.3, 0.2, 0.1]);
    // Nothing detected at 1.1; at 0.9 the two records 2 and 8 (both false positives).
    assert!(close(records[0].score, -1.0));
    assert_eq!(records[1].counts.fp, 2);
    // At 0.7 both window records are detected, and the window's first counts.
    assert_eq!(records[2].counts.tp, 2);
    let fp2 = 0.11 * (-1.0 + scaled_sigmoid(2.0 / 1.0));
    assert!(close(records[2].score, fp2 + 1.0), "{}", records[2].score);
    // A threshold between scores means the scores above it.
    assert_eq!(at_threshold(&records, 0.8), Some(&records[1]));
    assert_eq!(at_threshold(&records, 0.7), Some(&records[2]));
    assert_eq!(at_threshold(&records, 0.05), records.last());
    assert_eq!(at_threshold(&records, 2.0), Some(&records[0]));
}

#[test]
fn the_sweep_optimiser_takes_the_highest_of_tied_thresholds() {
    // Detections in the window at 0.8 and 0.6 (the later one adds nothing); false positives
    // only below 0.5.
    let corpus = one_file(20, &[(10, 12)]);
    let mut scores = vec![0.1; 20];
    scores[10] = 0.8;
    scores[11] = 0.6;
    scores[18] = 0.4;
    let best = sweep_best(&corpus, &[scores.clone()], &corpus.profiles[0]);
    assert_eq!(best.threshold, 0.8);
    assert!(close(best.score, 1.0));
    let r = score_corpus(&corpus, &[scores], &corpus.profiles[0], best.threshold);
    assert!(close(r.normalised, 100.0), "{}", r.normalised);
    assert_eq!(r.null, -1.0);
    assert_eq!(r.perfect, 1.0);
}

#[test]
fn twiddle_climbs_to_a_local_maximum() {
    let (t, s) = twiddle(|x| -(x - 0.731).powi(2));
    assert!((t - 0.731).abs() < 1e-6, "{t}");
    assert!(s > -1e-12);
    // Outside [0, 1] a threshold scores −∞: the climb stays inside.
    let (t, _) = twiddle(|x| x);
    assert!(t <= 1.0 && t > 0.99, "{t}");
}
