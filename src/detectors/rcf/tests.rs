//! Tests of the Random Cut Forest: property tests of the structure, scores, attribution,
//! determinism and exact restore; reference checks against `krcflib` (the Rust port of the
//! AWS library, a dev-dependency) on the AWS sample's sine wave; and the thresholder on it.

use proptest::prelude::*;
use rcflib::rcf::{RCFBuilder, RCFOptionsBuilder};

use super::forest::{Attribution, Forest, ForestConfig, PointError};
use super::threshold::{ThresholdConfig, Thresholder};
use crate::core::hash::fnv1a64;

// ---------------------------------------------------------------------------------------------
// Property tests.

/// One value of a generated stream: a coarse grid (plenty of exact duplicates, which exercise
/// leaf masses and the "seen" score), a continuum, rare outliers, zeros and subnormals, and
/// the extremes of `f32` (gaps between them overflow `f32`, not the `f64` we compute in).
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (-3i32..=3).prop_map(f64::from),
        4 => -10.0f64..10.0,
        1 => prop_oneof![Just(1e6), Just(-1e6), Just(0.0), Just(-0.0), Just(1e-40)],
        1 => prop_oneof![Just(3.0e38), Just(-3.0e38)],
    ]
}

/// A forest configuration, an input stream, and where to checkpoint it.
#[derive(Debug, Clone)]
struct ForestProblem {
    cfg: ForestConfig,
    points: Vec<Vec<f64>>,
    /// Index of the point before which the forest is encoded and decoded.
    restore_at: usize,
}

impl Arbitrary for ForestProblem {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;

    fn arbitrary_with(_: ()) -> Self::Strategy {
        let shape = (1usize..=3, 1usize..=4, 1usize..=6, 1usize..=24);
        let knobs = (
            any::<u64>(),
            prop_oneof![Just(0.0), 0.0f64..0.3],
            0usize..=12,
        );
        let stream = prop::collection::vec(prop::array::uniform3(value()), 1..160);
        (shape, knobs, stream, 0.0f64..=1.0)
            .prop_map(
                |((dims, shingle, trees, sample), (seed, decay, after), rows, at)| {
                    let mut cfg = ForestConfig::new(dims, shingle, trees, sample);
                    cfg.seed = seed;
                    cfg.time_decay = decay;
                    cfg.output_after = after;
                    let points: Vec<Vec<f64>> = rows.iter().map(|r| r[..dims].to_vec()).collect();
                    let restore_at = (at * points.len() as f64) as usize;
                    ForestProblem {
                        cfg,
                        points,
                        restore_at,
                    }
                },
            )
            .boxed()
    }
}

/// A score and its attribution as bits, for exact comparison.
fn bits(s: Option<(f64, Vec<Attribution>)>) -> Option<(u64, Vec<(u64, u64)>)> {
    s.map(|(score, a)| {
        (
            score.to_bits(),
            a.iter()
                .map(|x| (x.high.to_bits(), x.low.to_bits()))
                .collect(),
        )
    })
}

fn run(f: &mut Forest, p: &[f64]) -> Option<(f64, Vec<Attribution>)> {
    f.process(p)
        .expect("finite point")
        .map(|s| (s.score, s.attribution.to_vec()))
}

impl ForestProblem {
    fn check(&self) -> Result<(), TestCaseError> {
        let mut forest = Forest::new(self.cfg.clone()).expect("valid config");
        let mut twin = Forest::new(self.cfg.clone()).expect("valid config");
        let mut restored: Option<Forest> = None;
        for (i, p) in self.points.iter().enumerate() {
            if i == self.restore_at {
                let mut bytes = Vec::new();
                forest.encode(&mut bytes);
                let decoded = Forest::decode(&bytes).expect("own encoding decodes");
                decoded.check_invariants().map_err(TestCaseError::fail)?;
                let mut again = Vec::new();
                decoded.encode(&mut again);
                prop_assert!(bytes == again, "encoding is not canonical");
                restored = Some(decoded);
            }
            let reference = forest.reference_score(p);
            let scored = run(&mut forest, p);
            prop_assert_eq!(reference.is_some(), scored.is_some());
            if let Some((score, attribution)) = &scored {
                let score = *score;
                prop_assert!(score.is_finite() && score >= 0.0, "score {}", score);
                let expected = reference.unwrap_or(f64::NAN);
                prop_assert!(
                    (expected - score).abs() <= 1e-9 * score.max(1.0),
                    "{expected} vs {score}"
                );
                prop_assert_eq!(attribution.len(), self.cfg.dimensions);
                prop_assert!(attribution.iter().all(|a| a.high >= 0.0 && a.low >= 0.0));
                let sum: f64 = attribution.iter().map(|a| a.high + a.low).sum();
                prop_assert!(
                    (sum - score).abs() <= 1e-9,
                    "attribution {sum} vs score {score}"
                );
            }
            let expected = bits(scored);
            prop_assert_eq!(
                &bits(run(&mut twin, p)),
                &expected,
                "same seed, different score"
            );
            if let Some(r) = restored.as_mut() {
                prop_assert_eq!(
                    &bits(run(r, p)),
                    &expected,
                    "restored forest diverged at {}",
                    i
                );
            }
            forest.check_invariants().map_err(TestCaseError::fail)?;
        }
        prop_assert!(
            forest
                .sample_sizes()
                .iter()
                .all(|&n| n <= self.cfg.sample_size)
        );
        if let Some(r) = &restored {
            r.check_invariants().map_err(TestCaseError::fail)?;
        }
        Ok(())
    }
}

/// Cases per property: `default`, or `OSPREY_PROPTEST_CASES` for a longer local run.
fn cases(default: u32) -> u32 {
    std::env::var("OSPREY_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    /// Structure (every sampled point in its tree exactly once, tight boxes, separating cuts,
    /// heap order), scores equal to a naive recomputation, attribution summing to the score,
    /// determinism, and bit-identical continuation after encode/decode.
    #[test]
    fn forest_invariants_scores_and_restore(problem in any::<ForestProblem>()) {
        problem.check()?;
    }

    /// Decoding corrupted bytes fails cleanly, and never panics, even when the corruption
    /// comes with a valid checksum (a crafted input); whatever decodes is usable.
    #[test]
    fn decode_rejects_corruption(seed in any::<u64>(), at in any::<prop::sample::Index>(),
                                 flip in 1u8..=255, fix_checksum in any::<bool>()) {
        let mut cfg = ForestConfig::new(2, 2, 3, 16);
        cfg.seed = seed;
        cfg.output_after = 0;
        let mut f = Forest::new(cfg).expect("valid config");
        for t in 0..60 {
            let x = f64::from(t % 9);
            f.process(&[x, -x]).expect("finite point");
        }
        let mut bytes = Vec::new();
        f.encode(&mut bytes);
        let body = bytes.len() - 8;
        bytes[at.index(body)] ^= flip;
        if fix_checksum {
            let sum = fnv1a64(&bytes[..body]).to_le_bytes();
            bytes[body..].copy_from_slice(&sum);
        } else {
            prop_assert!(Forest::decode(&bytes).is_err());
        }
        if let Ok(mut g) = Forest::decode(&bytes) {
            g.check_invariants().map_err(TestCaseError::fail)?;
            for t in 0..20 {
                let _ = g.process(&[f64::from(t), 1.0]);
            }
        }
        for len in [0, 4, body / 2, bytes.len() - 1] {
            prop_assert!(Forest::decode(&bytes[..len]).is_err());
        }
    }
}

#[test]
fn bad_points_are_refused_without_changing_the_forest() {
    let mut f = Forest::new(ForestConfig::new(2, 1, 2, 8)).expect("valid config");
    assert_eq!(
        f.process(&[1.0]).err(),
        Some(PointError::WrongLength {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        f.process(&[1.0, f64::NAN]).err(),
        Some(PointError::NotFinite(1))
    );
    assert_eq!(
        f.process(&[1e39, 0.0]).err(),
        Some(PointError::NotFinite(0))
    );
    assert_eq!(f.inputs_seen(), 0);
    assert!(f.process(&[1.0, 2.0]).is_ok());
    assert_eq!(f.inputs_seen(), 1);
}

#[test]
fn invalid_configs_are_refused() {
    for cfg in [
        ForestConfig::new(0, 1, 1, 8),
        ForestConfig::new(1, 0, 1, 8),
        ForestConfig::new(1, 1, 0, 8),
        ForestConfig::new(1, 1, 1, 0),
        ForestConfig::new(64, 65, 1, 8),
        ForestConfig {
            time_decay: -1.0,
            ..ForestConfig::new(1, 1, 1, 8)
        },
    ] {
        assert!(Forest::new(cfg).is_err());
    }
}

#[test]
fn steady_state_does_not_grow_memory() {
    // All storage is allocated up front; if a buffer grew while processing, its capacity,
    // hence memory_bytes, would change.
    let mut f = Forest::new(ForestConfig::new(3, 4, 10, 64)).expect("valid config");
    let before = f.memory_bytes();
    for t in 0..3000u32 {
        let x = f64::from(t % 37);
        let _ = f.process(&[x, x * 0.5, -x]);
    }
    assert_eq!(f.memory_bytes(), before);
}

// ---------------------------------------------------------------------------------------------
// Reference checks on the AWS sample's stream.

/// The AWS sample's generator: `rad = (t / 100) % 360`, value `10·sin(rad) + 10`, except −17
/// while `2.4 < rad < 2.6` (t = 241..=259, then every 36,000 points).
fn sine(t: u64) -> f64 {
    let rad = (t as f64 / 100.0) % 360.0;
    if rad > 2.4 && rad < 2.6 {
        -17.0
    } else {
        10.0 * rad.sin() + 10.0
    }
}

/// Points scored in the fidelity runs: past the second drop (t = 36,241).
const STREAM: u64 = 40_000;
/// Points before which we call the forest and the thresholder warmed up (one sine period is
/// 628 points; its first pass is new territory for the forest).
const WARM: u64 = 1_000;

/// Whether the shingle ending at `t` is an ordinary point of the sine: it holds no −17 and
/// does not straddle the generator's jump at the `% 360` wrap (t = 36,000), which is a real
/// discontinuity that both libraries score around 2 at shingle 8.
fn normal(t: u64, k: u64) -> bool {
    (0..k).all(|i| t < i || sine(t - i) != -17.0)
        && !(1..k).any(|i| t >= i && (t - i) % 36_000 == 35_999)
}

struct Summary {
    mean: f64,
    p999: f64,
    /// Highest score among the shingles containing part of the drop at t = 36,241.
    drop_peak: f64,
}

fn summarise(scores: &[(u64, f64)], k: u64) -> Summary {
    let mut normals: Vec<f64> = scores
        .iter()
        .filter(|&&(t, _)| t >= WARM && normal(t, k))
        .map(|&(_, s)| s)
        .collect();
    normals.sort_by(f64::total_cmp);
    let mean = normals.iter().sum::<f64>() / normals.len() as f64;
    let p999 = normals[(normals.len() as f64 * 0.999) as usize];
    let drop_peak = scores
        .iter()
        .filter(|&&(t, _)| (36_241..36_260 + k).contains(&t))
        .map(|&(_, s)| s)
        .fold(0.0, f64::max);
    Summary {
        mean,
        p999,
        drop_peak,
    }
}

fn osprey_scores(k: usize, trees: usize, sample: usize, seed: u64) -> Vec<(u64, f64)> {
    let mut cfg = ForestConfig::new(1, k, trees, sample);
    cfg.seed = seed;
    let mut f = Forest::new(cfg).expect("valid config");
    (0..STREAM)
        .filter_map(|t| f.process(&[sine(t)]).expect("finite").map(|s| (t, s.score)))
        .collect()
}

fn krcflib_scores(k: usize, trees: usize, sample: usize, seed: u64) -> Vec<(u64, f64)> {
    let cfg = ForestConfig::new(1, k, trees, sample);
    let mut f = RCFBuilder::new(1, k)
        .tree_capacity(sample)
        .number_of_trees(trees)
        .random_seed(seed)
        .time_decay(cfg.time_decay)
        .output_after(cfg.output_after)
        .build_default()
        .expect("valid krcflib config");
    let first = (cfg.output_after + k - 1) as u64;
    let mut out = Vec::new();
    for t in 0..STREAM {
        let p = [sine(t) as f32];
        let s = f.score(&p).expect("krcflib score");
        if t >= first {
            out.push((t, s));
        }
        f.update(&p, 0).expect("krcflib update");
    }
    out
}

fn within(ours: f64, theirs: f64, tolerance: f64) -> bool {
    (ours - theirs).abs() <= tolerance * theirs
}

fn fidelity(k: usize, trees: usize, sample: usize) {
    let ours = summarise(&osprey_scores(k, trees, sample, 42), k as u64);
    let theirs = summarise(&krcflib_scores(k, trees, sample, 42), k as u64);
    let line = format!(
        "shingle {k}: mean {:.4}/{:.4}, p99.9 {:.4}/{:.4}, drop peak {:.3}/{:.3} (osprey/krcflib)",
        ours.mean, theirs.mean, ours.p999, theirs.p999, ours.drop_peak, theirs.drop_peak
    );
    println!("{line}");
    assert!(within(ours.mean, theirs.mean, 0.05), "{line}");
    assert!(within(ours.p999, theirs.p999, 0.05), "{line}");
    assert!(within(ours.drop_peak, theirs.drop_peak, 0.10), "{line}");
    // And the reference facts: inliers below 1, the drop far above.
    assert!(
        ours.mean < 0.9 && ours.p999 < 1.0 && ours.drop_peak > 4.0,
        "{line}"
    );
}

/// The AWS sample's setting: 1 field, shingle 1, 50 trees, sample 628.
#[test]
fn fidelity_against_krcflib_shingle_1() {
    fidelity(1, 50, 628);
}

/// 1 field, shingle 8, 100 trees, sample 256.
#[test]
fn fidelity_against_krcflib_shingle_8() {
    fidelity(8, 100, 256);
}

/// Default thresholder on the sine: every drop is flagged (including the first, at t = 241,
/// while the thresholder is still warming up), and no normal point after warm-up is.
fn threshold_on_sine(k: usize, trees: usize, sample: usize) {
    for seed in [1, 2] {
        let mut cfg = ForestConfig::new(1, k, trees, sample);
        cfg.seed = seed;
        let mut f = Forest::new(cfg).expect("valid config");
        let mut th = Thresholder::new(ThresholdConfig::default()).expect("valid config");
        let mut flagged_drop = [false; 2];
        let mut false_alarms = Vec::new();
        let mut min_margin = f64::INFINITY;
        for t in 0..STREAM {
            let Some(s) = f.process(&[sine(t)]).expect("finite") else {
                continue;
            };
            if t == 241 {
                // The drop is far below everything seen: the attribution must say so.
                let a = s.attribution[0];
                assert!(
                    a.low > 0.9 * s.score,
                    "shingle {k}: attribution {a:?} of {}",
                    s.score
                );
            }
            let g = th.grade(s.score);
            assert!((0.0..1.0).contains(&g.grade) && g.is_anomaly == (g.grade > 0.0));
            for (i, start) in [241u64, 36_241].into_iter().enumerate() {
                if (start..start + 19).contains(&t) && g.is_anomaly {
                    flagged_drop[i] = true;
                }
            }
            if t >= WARM && normal(t, k as u64) {
                min_margin = min_margin.min(g.threshold - s.score);
                if g.is_anomaly {
                    false_alarms.push((t, s.score, g.threshold));
                }
            }
        }
        assert_eq!(
            flagged_drop,
            [true, true],
            "shingle {k} seed {seed}: a drop was missed"
        );
        assert!(
            false_alarms.is_empty(),
            "shingle {k} seed {seed}: {false_alarms:?}"
        );
        println!("shingle {k} seed {seed}: smallest threshold - normal score {min_margin:.3}");
    }
}

#[test]
fn thresholder_on_sine_shingle_1() {
    threshold_on_sine(1, 50, 628);
}

#[test]
fn thresholder_on_sine_shingle_8() {
    threshold_on_sine(8, 100, 256);
}

/// The AWS sample's setting checkpoints in at most 300 KB.
#[test]
fn checkpoint_size_for_the_sample_setting() {
    let mut f = Forest::new(ForestConfig::new(1, 1, 50, 628)).expect("valid config");
    for t in 0..20_000 {
        let _ = f.process(&[sine(t)]);
    }
    let mut bytes = Vec::new();
    f.encode(&mut bytes);
    assert!(bytes.len() <= 300_000, "{} bytes", bytes.len());
}
