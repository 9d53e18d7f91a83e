//! Tests of the matrix-profile algorithms: exact mode against a naive O(n²) reference, every
//! SIMD path against the scalar one, restore-and-continue, DAMP's golden vectors, the
//! thresholds, and the AWS sample's sine stream.
//!
//! Tests that read `$OSPREY_SHARED/datasets` print a line and pass when the variable is unset,
//! except under `CI=true`, where a missing dataset is a failure.

use super::damp::{Damp, DampConfig, MassMode, damp_profile};
use super::left_mp::{Discord, LeftMatrixProfile, NanPolicy, left_profile, left_profile_discords};
use super::simd::{self, Best, Kernel, MAX_TILE, Step, Tile};
use super::threshold::{Threshold, ThresholdSpec, estimate_period};
use super::{CONSTANT_REL_SIGMA, ParamError};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

// ---------------------------------------------------------------------------------------------
// Naive reference, written independently of the streaming code.

/// z-normalised distance by definition, with the constant-window rule; `None` if either
/// window holds a non-finite value.
fn naive_distance(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let m = x.len() as f64;
    let norm = |w: &[f64]| -> Option<Vec<f64>> {
        let mean = w.iter().sum::<f64>() / m;
        let sd = (w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m).sqrt();
        let scale = w.iter().map(|v| v.abs()).fold(0.0, f64::max);
        // The documented rule: a spread at rounding-noise level counts as constant.
        if w.iter().all(|&v| v == w[0]) || sd <= CONSTANT_REL_SIGMA * scale {
            return None;
        }
        Some(w.iter().map(|v| (v - mean) / sd).collect())
    };
    Some(match (norm(x), norm(y)) {
        (None, None) => 0.0,
        (None, Some(_)) | (Some(_), None) => m.sqrt(),
        (Some(a), Some(b)) => a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).powi(2))
            .sum::<f64>()
            .sqrt(),
    })
}

/// The left-profile score after each point `k` (newest subsequence `k + 1 − m`), under the
/// gap policy: candidates `j` with `k + 1 − history ≤ j ≤ i − m + 1`.
fn naive_profile(series: &[f64], m: usize, history: usize) -> Vec<Option<f64>> {
    (0..series.len())
        .map(|k| {
            let i = (k + 1).checked_sub(m)?;
            let hi = i.checked_sub(m - 1)?;
            let lo = (k + 1).saturating_sub(history);
            let x = &series[i..i + m];
            (lo..=hi)
                .filter_map(|j| naive_distance(x, &series[j..j + m]))
                .min_by(f64::total_cmp)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Problem generation.

/// One piece of a generated series.
#[derive(Clone, Debug)]
enum Piece {
    /// Random-walk steps.
    Walk(Vec<f64>),
    /// A constant run.
    Flat(f64, usize),
    /// A single spike on the current level.
    Spike(f64),
    /// A jump of the level.
    Shift(f64),
    /// Missing values.
    Gap(usize),
    /// One period of a sine, repeated.
    Sine(usize, usize),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => prop::collection::vec(-1.0f64..1.0, 1..40).prop_map(Piece::Walk),
        // Steps drawn from a small set make exact repeats and constant windows common.
        2 => prop::collection::vec(prop::sample::select(vec![-1.0, 0.0, 0.0, 1.0]), 1..40)
            .prop_map(Piece::Walk),
        2 => (-3.0f64..3.0, 1usize..30).prop_map(|(v, n)| Piece::Flat(v, n)),
        1 => (-20.0f64..20.0).prop_map(Piece::Spike),
        1 => (-100.0f64..100.0).prop_map(Piece::Shift),
        1 => (1usize..4).prop_map(Piece::Gap),
        1 => (4usize..20, 1usize..4).prop_map(|(p, r)| Piece::Sine(p, r)),
    ]
}

fn render(pieces: &[Piece]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut level = 0.0;
    for p in pieces {
        match p {
            Piece::Walk(steps) => {
                for s in steps {
                    level += s;
                    out.push(level);
                }
            }
            Piece::Flat(v, n) => {
                level = *v;
                out.extend(std::iter::repeat_n(level, *n));
            }
            Piece::Spike(h) => out.push(level + h),
            Piece::Shift(d) => {
                level += d;
                out.push(level);
            }
            Piece::Gap(n) => out.extend(std::iter::repeat_n(f64::NAN, *n)),
            Piece::Sine(period, reps) => {
                for k in 0..period * reps {
                    let ph = std::f64::consts::TAU * k as f64 / *period as f64;
                    out.push(level + 3.0 * ph.sin());
                }
            }
        }
    }
    out
}

/// A streaming-profile case: series, parameters, and where to checkpoint.
#[derive(Clone, Debug)]
struct ProfileProblem {
    m: usize,
    history: usize,
    series: Vec<f64>,
    /// Point after which the state is encoded, decoded and continued.
    cut: usize,
}

impl Arbitrary for ProfileProblem {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;

    fn arbitrary_with(_: ()) -> Self::Strategy {
        (
            2usize..10,
            0usize..70,
            prop::collection::vec(piece(), 1..14),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(m, extra, pieces, cut)| {
                let series = render(&pieces);
                let cut = cut.index(series.len() + 1);
                ProfileProblem {
                    m,
                    history: 2 * m + extra,
                    series,
                    cut,
                }
            })
            .boxed()
    }
}

/// Score tolerance against the reference: the reported score is a direct distance, so only a
/// near-tie resolved differently by the dot-product formula can differ, by its rounding error.
const TOL: f64 = 1e-7;

impl ProfileProblem {
    fn reference(&self) -> Vec<Option<f64>> {
        naive_profile(&self.series, self.m, self.history)
    }

    fn run(&self, kernel: Kernel) -> Vec<Option<Discord>> {
        let mut mp =
            LeftMatrixProfile::with_kernel(self.m, self.history, kernel).expect("valid parameters");
        self.series.iter().map(|&x| mp.push(x)).collect()
    }

    fn check(&self) {
        let want = self.reference();
        let got = self.run(Kernel::Scalar);
        assert_eq!(got.len(), want.len());
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            match (g, w) {
                (None, None) => {}
                (Some(d), Some(w)) => {
                    assert!(
                        (d.score - w).abs() <= TOL * (1.0 + w),
                        "point {k}: {d:?} vs {w}"
                    );
                    assert!(d.exact);
                    let i = k + 1 - self.m;
                    assert_eq!(d.index, i as u64, "point {k}");
                    let nn = d.nn_index as usize;
                    assert!(
                        nn + self.m <= i + 1 && nn + self.history > k,
                        "point {k}: nn {nn}"
                    );
                    let dn =
                        naive_distance(&self.series[i..i + self.m], &self.series[nn..nn + self.m])
                            .expect("nn is a valid window");
                    assert!(
                        (dn - d.score).abs() <= TOL * (1.0 + dn),
                        "point {k}: nn distance"
                    );
                }
                _ => panic!("point {k}: got {g:?}, want {w:?}"),
            }
        }
        // Every kernel and the tiled path agree bit for bit.
        for kernel in Kernel::available() {
            assert_eq!(self.run(kernel), got, "kernel {kernel:?}");
            let mut mp = LeftMatrixProfile::with_kernel(self.m, self.history, kernel)
                .expect("valid parameters");
            let mut tiled = Vec::new();
            for chunk in self.series.chunks(13) {
                mp.push_slice(chunk, &mut tiled);
            }
            assert_eq!(tiled, got, "push_slice with kernel {kernel:?}");
        }
        // Restore at the cut and continue: identical outputs.
        let mut mp = LeftMatrixProfile::new(self.m, self.history);
        let mut out: Vec<Option<Discord>> = self.series[..self.cut]
            .iter()
            .map(|&x| mp.push(x))
            .collect();
        let mut bytes = Vec::new();
        mp.encode(&mut bytes);
        let mut restored = LeftMatrixProfile::decode(&bytes).expect("decodes");
        let mut again = Vec::new();
        restored.encode(&mut again);
        assert_eq!(bytes, again, "encode(decode(x)) == x");
        out.extend(self.series[self.cut..].iter().map(|&x| restored.push(x)));
        assert_eq!(out, got, "restored at {}", self.cut);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn exact_mode_matches_naive_reference(p in any::<ProfileProblem>()) {
        p.check();
    }
}

#[test]
fn exact_mode_sine_with_spike() {
    let mut series: Vec<f64> = (0..400).map(|k| (k as f64 * 0.3).sin()).collect();
    series[250] += 5.0;
    ProfileProblem {
        m: 16,
        history: 200,
        series,
        cut: 260,
    }
    .check();
}

/// Shrunk from `exact_mode_matches_naive_reference`: windows of a generated sine whose two
/// values differ in the last bit (σ ≈ 1e-16·|μ|) used to win the correlation scan with
/// rounding garbage; they are constant under [`CONSTANT_REL_SIGMA`].
#[test]
fn near_flat_windows_count_as_constant() {
    let series = vec![
        -0.3574968426600367,
        -0.3574968426600367,
        -0.3574968426600367,
        0.6685635873169695,
        1.570865986399581,
        2.2405793686932793,
        2.5969264163765873,
        2.5969264163765873,
        2.2405793686932793,
        1.5708659863995817,
        0.66856358731697,
        -0.3574968426600363,
        -1.3835572726370426,
        -2.2858596717196535,
        -2.955573054013352,
        -3.3119201016966606,
        -3.311920101696661,
        -2.9555730540133536,
        -2.2858596717196553,
        -1.3835572726370424,
    ];
    ProfileProblem {
        m: 2,
        history: 13,
        series,
        cut: 0,
    }
    .check();
}

#[test]
fn exact_mode_on_a_large_offset_keeps_its_precision() {
    // A sine riding on 1e6: raw dot products would lose ~12 digits to the offset.
    let mut series: Vec<f64> = (0..600).map(|k| 1e6 + (k as f64 * 0.21).sin()).collect();
    series[450] += 0.5;
    ProfileProblem {
        m: 20,
        history: 300,
        series,
        cut: 333,
    }
    .check();
}

#[test]
fn constant_windows_follow_the_fixed_rule() {
    let m = 4;
    // Flat, then a ramp, then flat again: the second flat run matches the first (0), and the
    // ramp after the first flat run has only flat candidates (√m).
    let mut series = vec![1.0; 8];
    series.extend((0..8).map(|k| k as f64));
    series.extend(vec![2.0; 8]);
    let mut mp = LeftMatrixProfile::new(m, 64);
    let outs: Vec<Option<Discord>> = series.iter().map(|&x| mp.push(x)).collect();
    for d in outs.iter().flatten() {
        assert!(
            d.score.is_finite() && (0.0..=2.0 * 2.0).contains(&d.score),
            "{d:?}"
        );
    }
    // The first ramp window (starts at 8) sees only the flat run as candidates.
    let ramp = outs[8 + m - 1].expect("scored");
    assert_eq!(ramp.score, (m as f64).sqrt());
    // The last window is flat and the first flat run is a candidate.
    let last = outs.last().copied().flatten().expect("scored");
    assert_eq!(last.score, 0.0);
    ProfileProblem {
        m,
        history: 64,
        series,
        cut: 11,
    }
    .check();
}

#[test]
fn a_constant_stream_scores_zero_and_never_nan() {
    let mut mp = LeftMatrixProfile::new(10, 100);
    let mut th = Threshold::new(ThresholdSpec::DEFAULT, 10).expect("valid");
    for k in 0..2_000 {
        if let Some(d) = mp.push(3.25) {
            assert_eq!(d.score, 0.0);
            let j = th.judge(d.index, d.score, d.exact);
            assert!(!j.is_anomaly);
            assert!(
                j.threshold.is_none_or(|t| t.is_finite()),
                "point {k}: {j:?}"
            );
        }
    }
    assert!(th.current().is_some_and(f64::is_finite));
}

// ---------------------------------------------------------------------------------------------
// Missing-value policies.

#[test]
fn skip_policy_equals_the_series_without_missing_points() {
    let mut series: Vec<f64> = (0..300)
        .map(|k| ((k * 7 % 23) as f64).sin() * 3.0)
        .collect();
    for k in [40, 41, 120, 121, 122, 299] {
        series[k] = f64::NAN;
    }
    let kept: Vec<f64> = series.iter().copied().filter(|x| x.is_finite()).collect();
    let want: Vec<Option<Discord>> = {
        let mut mp = LeftMatrixProfile::new(6, 90);
        kept.iter().map(|&x| mp.push(x)).collect()
    };
    let mut mp = LeftMatrixProfile::new(6, 90).with_nan_policy(NanPolicy::Skip);
    let got: Vec<Option<Discord>> = series
        .iter()
        .map(|&x| mp.push(x))
        .filter(|_| true)
        .collect();
    let got_kept: Vec<Option<Discord>> = series
        .iter()
        .zip(got)
        .filter(|(x, _)| x.is_finite())
        .map(|(_, d)| d)
        .collect();
    assert_eq!(got_kept, want);
    assert_eq!(mp.missing_points(), 6);
    assert_eq!(mp.len_points(), kept.len() as u64);
}

#[test]
fn reset_policy_restarts_warm_up_and_keeps_indexes() {
    let m = 5;
    let mut series: Vec<f64> = (0..200)
        .map(|k| (k as f64 * 0.4).sin() + (k % 7) as f64)
        .collect();
    series[100] = f64::NAN;
    let mut mp = LeftMatrixProfile::new(m, 60).with_nan_policy(NanPolicy::Reset);
    let got: Vec<Option<Discord>> = series.iter().map(|&x| mp.push(x)).collect();
    // Each segment on its own, with the second one's indexes offset by 101.
    let first = naive_profile(&series[..100], m, 60);
    let second = naive_profile(&series[101..], m, 60);
    for (k, w) in first.iter().enumerate() {
        assert_eq!(got[k].map(|d| d.index), w.map(|_| (k + 1 - m) as u64));
        if let (Some(g), Some(w)) = (got[k], w) {
            assert!((g.score - w).abs() <= TOL);
        }
    }
    assert_eq!(got[100], None);
    for (k, w) in second.iter().enumerate() {
        let g = got[101 + k];
        assert_eq!(
            g.map(|d| d.index),
            w.map(|_| (101 + k + 1 - m) as u64),
            "point {k}"
        );
        if let (Some(g), Some(w)) = (g, w) {
            assert!((g.score - w).abs() <= TOL);
            assert!(g.nn_index >= 101);
        }
    }
    assert_eq!(mp.len_points(), 200);
}

// ---------------------------------------------------------------------------------------------
// SIMD kernels against the scalar one, bit for bit.

/// Random inputs for the three kernels.
#[derive(Clone, Debug)]
struct KernelProblem {
    slots: usize,
    steps: usize,
    m: usize,
    t: Vec<f64>,
    dg: Vec<f64>,
    a: Vec<f64>,
    cov: Vec<f64>,
    st: Vec<Step>,
    idx_base: usize,
}

impl Arbitrary for KernelProblem {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;

    fn arbitrary_with(_: ()) -> Self::Strategy {
        (
            0usize..70,
            1usize..=MAX_TILE,
            1usize..12,
            0usize..1000,
            any::<u64>(),
        )
            .prop_map(|(slots, steps, m, idx_base, seed)| {
                let mut s = seed | 1;
                let mut next = move || {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
                };
                let len = slots + steps + m;
                let t: Vec<f64> = (0..len).map(|_| next()).collect();
                let dg: Vec<f64> = (0..len).map(|_| next()).collect();
                // Some candidates excluded (NaN), and a few exact ties.
                let a: Vec<f64> = (0..len)
                    .map(|k| {
                        if k % 5 == 3 {
                            f64::NAN
                        } else if k % 7 == 0 {
                            1.0
                        } else {
                            next()
                        }
                    })
                    .collect();
                let cov: Vec<f64> = (0..slots)
                    .map(|k| if k % 4 == 0 { 0.5 } else { next() })
                    .collect();
                let st = (0..steps)
                    .map(|_| Step {
                        df: next(),
                        dg: next(),
                    })
                    .collect();
                KernelProblem {
                    slots,
                    steps,
                    m,
                    t,
                    dg,
                    a,
                    cov,
                    st,
                    idx_base,
                }
            })
            .boxed()
    }
}

impl KernelProblem {
    fn run(&self, kernel: Kernel) -> (Vec<f64>, Vec<Best>, Best, Vec<f64>) {
        let mut cov = self.cov.clone();
        let tile = Tile {
            t: &self.t,
            dg: &self.dg,
            a: &self.a,
            m: self.m,
        };
        let mut best = vec![Best::NONE; self.steps];
        simd::advance(kernel, &mut cov, &tile, &self.st, self.idx_base, &mut best);
        let c = self.st[0].df;
        let scanned = simd::scan(kernel, &self.cov, &self.t, &self.a, c, self.idx_base);
        let mut dots = vec![0.0; self.slots];
        simd::sliding_dot(kernel, &self.dg[..self.m], &self.t, &mut dots);
        (cov, best, scanned, dots)
    }

    fn check(&self) {
        let want = self.run(Kernel::Scalar);
        for kernel in Kernel::available() {
            let got = self.run(kernel);
            // Compare bits, so NaN == NaN and -0.0 != 0.0.
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.0), bits(&want.0), "{kernel:?}: cross products");
            assert_eq!(got.1, want.1, "{kernel:?}: per-step best");
            assert_eq!(got.2, want.2, "{kernel:?}: scan");
            assert_eq!(bits(&got.3), bits(&want.3), "{kernel:?}: sliding dot");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn simd_kernels_equal_scalar(p in any::<KernelProblem>()) {
        p.check();
    }
}

#[test]
fn this_machine_runs_every_x86_kernel() {
    // The bench machine has AVX2 and AVX-512; make sure the comparison above is not vacuous
    // there (on other CPUs this only lists what exists).
    let available = Kernel::available();
    println!("kernels available: {available:?}");
    assert_eq!(available.last(), Some(&Kernel::Scalar));
    assert_eq!(available[0], Kernel::detect());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert!(available.contains(&Kernel::Avx512) && available.contains(&Kernel::Avx2));
    }
}

#[test]
fn unavailable_kernel_is_refused() {
    let missing = [Kernel::Avx512, Kernel::Avx2, Kernel::Neon]
        .into_iter()
        .find(|k| !k.is_available());
    if let Some(k) = missing {
        assert_eq!(
            LeftMatrixProfile::with_kernel(8, 100, k).err(),
            Some(ParamError::KernelUnavailable(k.name()))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// DAMP mode.

/// A DAMP case: a profile problem plus a static threshold and a look-ahead.
#[derive(Clone, Debug)]
struct DampProblem {
    base: ProfileProblem,
    threshold: Option<f64>,
    lookahead: usize,
    mass: MassMode,
}

impl Arbitrary for DampProblem {
    type Parameters = ();
    type Strategy = BoxedStrategy<Self>;

    fn arbitrary_with(_: ()) -> Self::Strategy {
        (
            any::<ProfileProblem>(),
            prop::option::of(0.0f64..6.0),
            0usize..30,
            prop::sample::select(vec![MassMode::Never, MassMode::Always, MassMode::Auto]),
        )
            .prop_map(|(mut base, threshold, lookahead, mass)| {
                // Room for the look-ahead: history ≥ lookahead + 2m.
                base.history = base.history.max(lookahead + 2 * base.m);
                DampProblem {
                    base,
                    threshold,
                    lookahead,
                    mass,
                }
            })
            .boxed()
    }
}

impl DampProblem {
    fn config(&self) -> DampConfig {
        DampConfig {
            lookahead: self.lookahead,
            mass: self.mass,
            ..DampConfig::new(self.base.m, self.base.history)
        }
    }

    fn run(&self, d: &mut Damp, xs: &[f64], out: &mut Vec<Discord>) {
        for &x in xs {
            out.extend(d.push(x, self.threshold));
        }
    }

    fn check(&self) {
        let m = self.base.m;
        let exact = naive_profile(&self.base.series, m, self.base.history);
        let mut d = Damp::new(self.config()).expect("valid config");
        let mut got = Vec::new();
        self.run(&mut d, &self.base.series[..self.base.cut], &mut got);
        let mut bytes = Vec::new();
        d.encode(&mut bytes);
        let mut d = Damp::decode(&bytes).expect("decodes");
        self.run(&mut d, &self.base.series[self.base.cut..], &mut got);
        d.flush(self.threshold, &mut got);
        let mut seen = std::collections::BTreeSet::new();
        for r in &got {
            let i = r.index as usize;
            assert!(seen.insert(i), "subsequence {i} scored twice");
            let w = exact[i + m - 1].expect("DAMP scores only what the exact mode scores");
            if r.exact {
                assert!((r.score - w).abs() <= TOL * (1.0 + w), "{r:?} vs exact {w}");
            } else {
                assert!(r.score >= w - TOL, "upper bound {r:?} below exact {w}");
                // Pruned only when provably below the bound in force.
                if let Some(t) = self.threshold {
                    assert!(r.score < t + TOL, "{r:?} pruned above threshold {t}");
                }
            }
            let x = &self.base.series[i..i + m];
            let nn = r.nn_index as usize;
            let dn = naive_distance(x, &self.base.series[nn..nn + m]).expect("valid nn");
            assert!(
                (dn - r.score).abs() <= TOL * (1.0 + dn),
                "{r:?}: nn distance {dn}"
            );
        }
        let scored = exact.iter().filter(|w| w.is_some()).count();
        assert_eq!(
            got.len(),
            scored,
            "every scorable subsequence is scored once"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn damp_exact_values_match_and_bounds_are_upper(p in any::<DampProblem>()) {
        p.check();
    }
}

#[test]
fn damp_push_exact_equals_exact_mode() {
    let mut series: Vec<f64> = (0..3_000).map(|k| (k as f64 * 0.05).sin() * 2.0).collect();
    series[2_100] += 1.5;
    let want = left_profile_discords(&series, 32);
    let mut d = Damp::new(DampConfig::new(32, 3_000)).expect("valid");
    for (k, &x) in series.iter().enumerate() {
        let r = d.push_exact(x);
        let w = want
            .get((k + 1).saturating_sub(32))
            .copied()
            .flatten()
            .filter(|_| k >= 31);
        assert_eq!(r.map(|r| r.exact), w.map(|_| true));
        if let (Some(r), Some(w)) = (r, w) {
            assert!((r.score - w.score).abs() <= TOL, "{r:?} vs {w:?}");
        }
    }
    assert_eq!(d.bound_count(), 0);
}

#[test]
fn damp_with_mass_finds_the_same_discord() {
    let mut series: Vec<f64> = (0..6_000).map(|k| (k as f64 * 0.013).sin()).collect();
    for (k, x) in series.iter_mut().enumerate().skip(4_000).take(50) {
        *x += 0.3 * ((k - 4_000) as f64 * 0.5).sin();
    }
    let top = |mass| {
        let mut d = Damp::new(DampConfig {
            mass,
            ..DampConfig::new(200, 6_000)
        })
        .expect("valid");
        // The first 1,000 points are a training prefix: before one period of history every
        // subsequence is novel.
        series[..1_000].iter().for_each(|&x| d.push_unscored(x));
        series[1_000..]
            .iter()
            .filter_map(|&x| d.push(x, None))
            .filter(|r| r.exact)
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .expect("some exact score")
    };
    let (direct, fft) = (top(MassMode::Never), top(MassMode::Always));
    assert_eq!(direct.index, fft.index);
    assert!((direct.score - fft.score).abs() < 1e-9);
    assert!((3_801..=4_050).contains(&direct.index), "{direct:?}");
}

// ---------------------------------------------------------------------------------------------
// Golden vectors from DAMP's reference implementation.

/// `$OSPREY_SHARED/datasets`, or `None` (with a message) when unset; under `CI=true` an unset
/// variable is a failure.
fn shared_datasets() -> Option<std::path::PathBuf> {
    match std::env::var_os("OSPREY_SHARED") {
        Some(root) => Some(std::path::Path::new(&root).join("datasets")),
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "OSPREY_SHARED must be set when CI=true"
            );
            println!("OSPREY_SHARED is not set: skipping this dataset test");
            None
        }
    }
}

fn read_column(path: &std::path::Path) -> Vec<f64> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(|l| l.trim().parse().expect("one number per line"))
        .collect()
}

/// One golden series: file stem, m, DAMP's 1-based split point, the published top discord.
struct Golden {
    stem: &'static str,
    m: usize,
    split_1based: usize,
    position: usize,
    score: f64,
}

const BOURKE: Golden = Golden {
    stem: "1-bourkestreetmall",
    m: 24,
    split_1based: 168,
    position: 7827,
    score: 4.456858,
};
const MACHINING: Golden = Golden {
    stem: "2-machining",
    m: 16,
    split_1based: 4895,
    position: 36765,
    score: 3.252981,
};

impl Golden {
    fn check(&self) {
        let Some(dir) = shared_datasets() else { return };
        let series = read_column(&dir.join(format!("damp/{}.in", self.stem)));
        let golden = read_column(&dir.join(format!("damp/{}.out", self.stem)));
        assert_eq!(series.len(), golden.len());
        // DAMP scores subsequences from its split point on (0 before it in the .out file).
        let split = self.split_1based - 1;
        let top = |scores: &mut dyn Iterator<Item = (usize, f64)>| {
            scores
                .filter(|&(i, _)| i >= split)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .expect("scores after the split")
        };

        // Exact mode, unbounded history.
        let exact = left_profile_discords(&series, self.m);
        let (pos, score) = top(&mut exact
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, (*d)?.score))));
        println!("{}: exact top-1 at {pos}, score {score:.9}", self.stem);
        assert_eq!(pos, self.position);
        assert!(
            (score - self.score).abs() <= 1e-6,
            "{score} vs {}",
            self.score
        );
        assert!(
            (score - golden[pos]).abs() <= 1e-6,
            "{score} vs .out {}",
            golden[pos]
        );
        let mut worst = f64::NEG_INFINITY;
        let mut equal = 0;
        let mut excused = Vec::new();
        for (i, d) in exact.iter().enumerate().skip(split) {
            let (Some(d), g) = (d, golden[i]) else {
                continue;
            };
            if g == 0.0 {
                continue;
            }
            worst = worst.max(d.score - g);
            if (d.score - g).abs() <= 1e-7 {
                equal += 1;
            }
            if d.score > g + 1e-7 {
                // DAMP's values are upper bounds of the exact minimum, so a DAMP value below
                // ours is either our error or DAMP's. Settle it with the naive O(n·m) minimum:
                // if ours is the true minimum, DAMP's value is below it (by rounding in DAMP's
                // own pipeline) and the point is reported, not failed.
                let x = &series[i..i + self.m];
                let naive = (0..=i + 1 - self.m)
                    .filter_map(|j| naive_distance(x, &series[j..j + self.m]))
                    .min_by(f64::total_cmp)
                    .expect("candidates");
                assert!(
                    (d.score - naive).abs() <= 1e-12 && d.score <= g + 2e-7,
                    "{}: at {i} exact {} > DAMP {g} (naive {naive})",
                    self.stem,
                    d.score
                );
                excused.push((i, d.score - g));
            }
        }
        println!(
            "{}: max(exact − DAMP) = {worst:.3e}; equal (1e-7) at {equal} of {} points; \
             DAMP below the true minimum by > 1e-7 at {excused:?}",
            self.stem,
            exact.len() - split
        );
        assert!(
            excused.len() <= 3,
            "too many points above DAMP's values: {excused:?}"
        );

        // DAMP mode, pure online and with a look-ahead.
        for lookahead in [0, (16 * self.m).next_power_of_two()] {
            let out = damp_profile(&series, self.m, split, lookahead).expect("valid");
            let (pos, score) = top(&mut out
                .iter()
                .enumerate()
                .filter_map(|(i, d)| Some((i, (*d)?.score))));
            let exact_count = out.iter().flatten().filter(|d| d.exact).count();
            println!(
                "{}: DAMP (lookahead {lookahead}) top-1 at {pos}, score {score:.9}; \
                 {exact_count} of {} scores exact",
                self.stem,
                out.iter().flatten().count()
            );
            assert_eq!(pos, self.position);
            assert!((score - self.score).abs() <= 1e-6);
            for (i, d) in out.iter().enumerate() {
                if let Some(d) = d.filter(|d| d.exact && golden[i] != 0.0) {
                    assert!(
                        d.score <= golden[i] + 1e-7,
                        "{}: DAMP-mode exact at {i}",
                        self.stem
                    );
                }
            }
        }
    }
}

#[test]
fn golden_bourke_street_mall() {
    BOURKE.check();
}

#[test]
fn golden_machining() {
    MACHINING.check();
}

// ---------------------------------------------------------------------------------------------
// The AWS sample's sine with the −17 drop.

/// `rad = (t/100) % 360; value = 10·sin(rad) + 10`, or −17 while `2.4 < rad < 2.6`.
fn aws_sine(n: usize) -> Vec<f64> {
    (0..n)
        .map(|t| {
            let rad = (t as f64 / 100.0) % 360.0;
            if rad > 2.4 && rad < 2.6 {
                -17.0
            } else {
                10.0 * rad.sin() + 10.0
            }
        })
        .collect()
}

/// The generator's events: the drops (t = 36000k + 241..=259) and the phase jump where
/// `rad` wraps at 360 (between t = 36000k − 1 and 36000k; 360 rad is not a whole number of
/// periods, so the sine jumps from ≈ 19.6 to 10 there).
fn event_points(n: usize) -> Vec<(usize, usize)> {
    let mut ev = vec![(241, 259)];
    let mut w = 36_000;
    while w < n {
        ev.push((w - 1, w));
        ev.push((w + 241, w + 259));
        w += 36_000;
    }
    ev
}

#[test]
fn aws_sine_drop_is_flagged_and_the_sine_is_quiet() {
    let (m, history, n) = (100, 10_000, 40_000);
    let series = aws_sine(n);
    let events = event_points(n);
    let overlaps = |i: u64, (a, b): (usize, usize)| (i as usize) <= b && i as usize + m > a;
    let mut mp = LeftMatrixProfile::new(m, history);
    let mut th = Threshold::new(ThresholdSpec::DEFAULT, m).expect("valid");
    let mut outs = Vec::new();
    mp.push_slice(&series, &mut outs);
    let mut alarms = Vec::new();
    let mut first_drop_warming = false;
    for d in outs.iter().flatten() {
        let j = th.judge(d.index, d.score, d.exact);
        if overlaps(d.index, events[0]) && j.warming_up {
            first_drop_warming = true;
        }
        if j.is_anomaly {
            alarms.push(*d);
        }
    }
    println!(
        "alarms: {:?}",
        alarms
            .iter()
            .map(|d| (d.index, d.score))
            .collect::<Vec<_>>()
    );
    // t = 241..259 falls in the first sine period: with less than one period of history every
    // subsequence is novel (scores up to 19 before the drop), so it is warm-up by necessity.
    assert!(first_drop_warming);
    // Every alarm overlaps a generator event; the first drop after warm-up is flagged.
    for d in &alarms {
        assert!(
            events.iter().any(|&e| overlaps(d.index, e)),
            "false alarm {d:?}"
        );
    }
    assert!(
        alarms.iter().any(|d| overlaps(d.index, (36_241, 36_259))),
        "drop not flagged"
    );

    // DAMP mode with DAMP's own threshold rule (a training prefix): same verdicts.
    let mut damp = Damp::new(DampConfig::new(m, history)).expect("valid");
    let mut th = Threshold::new(
        ThresholdSpec::Warmup {
            k: 5.0,
            train: 10_000,
        },
        m,
    )
    .expect("ok");
    let mut damp_alarms = Vec::new();
    for &x in &series {
        let r = if th.is_warming_up() {
            damp.push_exact(x)
        } else {
            damp.push(x, th.current())
        };
        if let Some(r) = r
            && th.judge(r.index, r.score, r.exact).is_anomaly
        {
            damp_alarms.push(r);
        }
    }
    println!(
        "damp alarms: {:?}; pruned {} of {}",
        damp_alarms
            .iter()
            .map(|d| (d.index, d.score))
            .collect::<Vec<_>>(),
        damp.bound_count(),
        damp.bound_count() + damp.exact_count()
    );
    for d in &damp_alarms {
        assert!(
            events.iter().any(|&e| overlaps(d.index, e)),
            "false alarm {d:?}"
        );
    }
    assert!(
        damp_alarms
            .iter()
            .any(|d| overlaps(d.index, (36_241, 36_259)))
    );
}

// ---------------------------------------------------------------------------------------------
// Thresholds.

#[test]
fn gaussian_threshold_learns_only_real_exact_scores() {
    let spec = ThresholdSpec::Gaussian {
        k: 3.0,
        half_life: 1e9,
        warmup: 3,
        floor: 0.0,
    };
    let mut th = Threshold::new(spec, 4).expect("valid");
    assert!(th.is_warming_up());
    for (i, s) in [2.0, 4.0, 3.0].into_iter().enumerate() {
        assert!(th.judge(i as u64, s, true).warming_up);
    }
    // Mean 3, population σ √(2/3): no zeros were learnt before the first score.
    let t = th.current().expect("warm");
    assert!(
        (t - (3.0 + 3.0 * (2.0f64 / 3.0).sqrt())).abs() < 1e-12,
        "{t}"
    );
    // An upper bound is neither an alarm nor learnt.
    let j = th.judge(10, 100.0, false);
    assert!(!j.is_anomaly && th.learnt() == 3);
    // An alarm, then suppression for m = 4 points, then alarms again.
    assert!(th.judge(20, 100.0, true).is_anomaly);
    assert!(th.judge(24, 100.0, true).suppressed);
    assert!(th.judge(25, 100.0, true).is_anomaly);
    assert_eq!(th.learnt(), 3, "alarms are not learnt");
}

#[test]
fn gaussian_forgets_with_its_half_life() {
    let spec = ThresholdSpec::Gaussian {
        k: 0.0,
        half_life: 100.0,
        warmup: 1,
        floor: 0.0,
    };
    let mut th = Threshold::new(spec, 2).expect("valid");
    for i in 0..1_000 {
        th.judge(i, 10.0, true);
    }
    for i in 1_000..1_100 {
        th.judge(i, 2.0, true);
    }
    // k = 0: the threshold is the weighted mean, half way from 10 towards 2 after one half-life
    // (scores at or below it are learnt; 2 always is).
    let t = th.current().expect("warm");
    assert!((t - 6.0).abs() < 0.05, "{t}");
}

#[test]
fn warmup_threshold_freezes_after_training() {
    let spec = ThresholdSpec::Warmup { k: 2.0, train: 4 };
    let mut th = Threshold::new(spec, 2).expect("valid");
    for (i, s) in [1.0, 2.0, 3.0, 4.0].into_iter().enumerate() {
        th.judge(i as u64, s, true);
    }
    let t = th.current().expect("trained");
    assert!((t - (2.5 + 2.0 * 1.25f64.sqrt())).abs() < 1e-12);
    th.judge(10, 0.0, true);
    assert_eq!(th.current(), Some(t));
}

#[test]
fn quantile_threshold_tracks_the_quantile() {
    let spec = ThresholdSpec::Quantile {
        q: 0.9,
        factor: 1.0,
        warmup: 100,
    };
    let mut th = Threshold::new(spec, 2).expect("valid");
    let mut s = 12345u64;
    for i in 0..20_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let u = (s >> 11) as f64 / (1u64 << 53) as f64;
        let _ = th.judge(i, u, true);
    }
    let t = th.current().expect("warm");
    assert!((t - 0.9).abs() < 0.02, "{t}");
}

#[test]
fn static_threshold_and_validation() {
    let mut th = Threshold::new(ThresholdSpec::Static { value: 1.5 }, 3).expect("valid");
    assert!(th.judge(0, 1.6, true).is_anomaly);
    assert!(!th.judge(10, 1.4, true).is_anomaly);
    assert!(
        Threshold::new(
            ThresholdSpec::Quantile {
                q: 1.5,
                factor: 1.0,
                warmup: 5
            },
            3
        )
        .is_err()
    );
    assert!(Threshold::new(ThresholdSpec::Static { value: f64::NAN }, 3).is_err());
    assert!(Threshold::new(ThresholdSpec::DEFAULT, 1).is_err());
}

#[test]
fn thresholds_round_trip_through_encode() {
    let specs = [
        ThresholdSpec::DEFAULT,
        ThresholdSpec::Warmup { k: 3.0, train: 50 },
        ThresholdSpec::Quantile {
            q: 0.99,
            factor: 1.2,
            warmup: 20,
        },
        ThresholdSpec::Static { value: 2.0 },
    ];
    for spec in specs {
        let mut a = Threshold::new(spec, 8).expect("valid");
        let scores: Vec<f64> = (0..400).map(|k| ((k * 37 % 101) as f64).sqrt()).collect();
        for (i, &s) in scores[..200].iter().enumerate() {
            a.judge(i as u64, s, i % 3 != 0);
        }
        let mut bytes = Vec::new();
        a.encode(&mut bytes);
        let mut b = Threshold::decode(&bytes).expect("decodes");
        assert_eq!(a, b);
        for (i, &s) in scores.iter().enumerate().skip(200) {
            assert_eq!(a.judge(i as u64, s, true), b.judge(i as u64, s, true));
        }
    }
}

#[test]
fn period_estimate_finds_the_sine_period() {
    let mut s = 99u64;
    let data: Vec<f64> = (0..5_000)
        .map(|k| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            (k as f64 * std::f64::consts::TAU / 73.0).sin() + 0.5 * noise
        })
        .collect();
    assert_eq!(estimate_period(&data, 10, 500), Some(73));
    assert_eq!(estimate_period(&[1.0; 1_000], 10, 200), None);
    let aws = aws_sine(5_000);
    let p = estimate_period(&aws, 50, 1_000).expect("periodic");
    // 628.3 points; the drop at t = 241 skews the estimate a little.
    assert!((622..=635).contains(&p), "{p}");
}

// ---------------------------------------------------------------------------------------------
// State encoding.

#[test]
fn decode_rejects_bad_states() {
    let mut mp = LeftMatrixProfile::new(4, 40);
    for k in 0..100 {
        mp.push((k as f64).sin());
    }
    let mut bytes = Vec::new();
    mp.encode(&mut bytes);
    assert!(LeftMatrixProfile::decode(&bytes).is_ok());
    use crate::core::DecodeError;
    assert!(matches!(
        LeftMatrixProfile::decode(&bytes[..bytes.len() - 1]),
        Err(DecodeError::Truncated { .. })
    ));
    let mut wrong = bytes.clone();
    wrong[0] = b'X';
    assert!(matches!(
        LeftMatrixProfile::decode(&wrong),
        Err(DecodeError::BadMagic(_))
    ));
    let mut newer = bytes.clone();
    newer[4] = 99;
    assert_eq!(
        LeftMatrixProfile::decode(&newer).err(),
        Some(DecodeError::UnsupportedVersion(99))
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        LeftMatrixProfile::decode(&longer),
        Err(DecodeError::TrailingBytes(1))
    ));
    assert!(Damp::decode(&bytes).is_err());
    assert!(Threshold::decode(&bytes).is_err());
}

#[test]
fn tiled_restore_and_memory_report() {
    // A long run through the tiled path with a restore in the middle (history full).
    let series: Vec<f64> = (0..5_000)
        .map(|k| (k as f64 * 0.07).sin() + ((k * 13) % 7) as f64 * 0.1)
        .collect();
    let mut a = LeftMatrixProfile::new(50, 1_000);
    let mut want = Vec::new();
    a.push_slice(&series, &mut want);
    let mut b = LeftMatrixProfile::new(50, 1_000);
    let mut got = Vec::new();
    b.push_slice(&series[..2_345], &mut got);
    let mut bytes = Vec::new();
    b.encode(&mut bytes);
    let mut c = LeftMatrixProfile::decode(&bytes).expect("decodes");
    c.push_slice(&series[2_345..], &mut got);
    assert_eq!(got, want);
    for h in [10_000, 100_000] {
        let mp = LeftMatrixProfile::new(100, h);
        let mut enc = Vec::new();
        mp.encode(&mut enc);
        println!("history {h}, m 100: {} bytes in memory", mp.memory_bytes());
        assert!(mp.memory_bytes() < 42 * h + 32 * 100 + 1_024);
    }
    println!(
        "encoded state at history 1,000 (full): {} bytes",
        bytes.len()
    );
    assert!(bytes.len() < 17 * 1_000 + 1_024);
}

#[test]
fn batch_left_profile_matches_the_reference() {
    let series: Vec<f64> = (0..500)
        .map(|k| ((k * k) % 37) as f64 + (k as f64 * 0.1).sin())
        .collect();
    let got = left_profile(&series, 10);
    let want = naive_profile(&series, 10, series.len());
    assert_eq!(got.len(), series.len() - 10 + 1);
    for (i, g) in got.iter().enumerate() {
        let w = want[i + 9].unwrap_or(0.0);
        assert!((g - w).abs() <= TOL * (1.0 + w), "{i}: {g} vs {w}");
    }
}
