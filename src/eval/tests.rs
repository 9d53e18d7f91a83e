//! Unit tests of the evaluation: flags, parsing, the scoring rules and the AWS sample.

use super::datasets::parse_series;
use super::*;

#[test]
fn threshold_flag_uses_the_operator_defaults() {
    assert_eq!(parse_threshold("gaussian").unwrap(), ThresholdSpec::DEFAULT);
    assert_eq!(
        parse_threshold("gaussian:k=4,warmup=200").unwrap(),
        ThresholdSpec::Gaussian {
            k: 4.0,
            half_life: 10_000.0,
            warmup: 200,
            floor: 0.05
        }
    );
    assert_eq!(
        parse_threshold("static:value=2.5").unwrap(),
        ThresholdSpec::Static { value: 2.5 }
    );
    assert_eq!(
        parse_threshold("warmup:train=1000").unwrap(),
        ThresholdSpec::Warmup {
            k: 5.0,
            train: 1000
        }
    );
    for bad in [
        "nope",
        "gaussian:k",
        "gaussian:k=x",
        "gaussian:colour=1",
        "quantile:q=2",
        "static",
        "gaussian:k=inf",
        "gaussian:a\"=1",
    ] {
        assert!(parse_threshold(bad).is_err(), "{bad} should fail");
    }
}

#[test]
fn m_and_mode_flags() {
    assert_eq!("auto".parse(), Ok(MChoice::Auto));
    assert_eq!("24".parse(), Ok(MChoice::Fixed(24)));
    assert!("1".parse::<MChoice>().is_err());
    assert_eq!("damp".parse(), Ok(Mode::Damp));
    assert!("fast".parse::<Mode>().is_err());
}

#[test]
fn timestamps_match_unix_time() {
    assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
    // 2014-04-10 16:15:00 UTC = 1397146500 (date -u -d … +%s).
    assert_eq!(parse_timestamp("2014-04-10 16:15:00"), Some(1_397_146_500));
    assert_eq!(
        parse_timestamp("2014-04-10 16:15:00.000000"),
        Some(1_397_146_500)
    );
    assert_eq!(parse_timestamp("2000-02-29 23:59:59"), Some(951_868_799));
    assert_eq!(parse_timestamp("2014-13-10 16:15:00"), None);
    assert_eq!(parse_timestamp("yesterday"), None);
}

#[test]
fn ucr_names_and_rule() {
    assert_eq!(
        parse_ucr_name("025_UCR_Anomaly_DISTORTEDCIMIS44AirTemperature1_4000_5391_5392.txt"),
        Some((4000, 5391, 5392))
    );
    assert_eq!(parse_ucr_name("1-bourkestreetmall.in"), None);
    assert_eq!(parse_ucr_name("x_1_2_3.txt"), None);
    // Region [5391, 5392], 1-based: starts 5290..=5491 (0-based) are correct.
    assert!(ucr_correct(5290, 5391, 5392));
    assert!(!ucr_correct(5289, 5391, 5392));
    assert!(ucr_correct(5491, 5391, 5392));
    assert!(!ucr_correct(5492, 5391, 5392));
    assert!(ucr_correct(0, 50, 60));
}

#[test]
fn series_parsing() {
    assert_eq!(
        parse_series("1\n2.5\n\n-3e2\n").unwrap(),
        vec![1.0, 2.5, -300.0]
    );
    assert_eq!(parse_series("1 2  3").unwrap(), vec![1.0, 2.0, 3.0]);
    assert_eq!(parse_series("1\nx\n").unwrap_err().0, 2);
}

#[test]
fn windows_map_to_points_and_score() {
    let ts: Vec<i64> = (0..100).map(|i| i * 300).collect();
    let w = windows_to_points(&ts, &[(3000, 4500), (29_000, 40_000), (50_000, 60_000)]);
    assert_eq!(w, vec![(10, 15), (97, 99)]);
    let (found, fa, outside) = score_windows(&[12, 50, 51], &w, 100);
    assert_eq!((found, fa, outside), (1, 2, 100 - 6 - 3));
}

#[test]
fn tally_counts_alarms_within_the_subsequence_span() {
    // m = 3: an alarm at a covers injected points a−2..=a.
    let t = tally(&[10, 12, 13, 40], &[10, 30], 3);
    assert_eq!(
        t,
        Tally {
            alarms: 4,
            true_alarms: 2,
            false_alarms: 2,
            detected: 1,
            missed: 1
        }
    );
}

#[test]
fn aws_stream_is_the_samples_shape() {
    let s = aws_sample_stream(300, 7);
    assert_eq!(s.values.len(), 300);
    let idx: Vec<u64> = s.injected.iter().map(|p| p.0).collect();
    assert_eq!(idx, (1..=10).map(|j| 30 * j - 1).collect::<Vec<_>>());
    for (p, v) in &s.injected {
        assert!([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0].contains(v));
        assert_eq!(s.values[*p as usize], *v);
    }
    // Point k (1-based) is sin(k·π/5) elsewhere: a period of 10.
    assert!((s.values[0] - (std::f64::consts::PI / 5.0).sin()).abs() < 1e-15);
    assert!((s.values[3] - s.values[13]).abs() < 1e-12);
    assert_eq!(aws_sample_stream(300, 7), s, "seeded");
    assert_ne!(aws_sample_stream(300, 8).injected, s.injected);
}

/// The sample's method, written the slow way from its description: all earlier
/// subsequence starts in the ring window, absolute indices.
fn sample_reference(series: &[f64], m: usize) -> Vec<(f64, bool)> {
    let cap = 64 * m as i64;
    let (mut sum, mut sq, mut n) = (0.0, 0.0, 0.0);
    let mut out = Vec::new();
    for t in 1..=series.len() as i64 {
        let size = t.min(cap);
        if size <= 2 * m as i64 {
            out.push((0.0, false));
            continue;
        }
        let q = (t - m as i64) as usize;
        let mut best = f64::MAX;
        for s in (t - cap + 1)..=(t - 2 * m as i64) {
            let d: f64 = if s < 0 {
                0.0
            } else {
                (0..m)
                    .map(|k| (series[s as usize + k] - series[q + k]).powi(2))
                    .sum()
            };
            best = best.min(d);
        }
        sum += best;
        sq += best * best;
        n += 1.0;
        let mean = sum / n;
        let th = mean + 2.0 * (sq / n - mean * mean).sqrt();
        out.push((best, size > 16 * m as i64 && best > th));
    }
    out
}

#[test]
fn aws_detector_matches_its_reference() {
    let s = aws_sample_stream(1_000, 3);
    for m in [2, 3] {
        let mut det = AwsSampleDetector::new(m);
        let got: Vec<(f64, bool)> = s.values.iter().map(|&x| det.push(x)).collect();
        assert_eq!(got, sample_reference(&s.values, m));
    }
    // Zeros during warm-up: until 127 points have arrived, some candidate reads an
    // empty slot and counts as distance 0.
    let mut det = AwsSampleDetector::new(2);
    let d: Vec<f64> = s.values.iter().take(200).map(|&x| det.push(x).0).collect();
    assert!(d[..126].iter().all(|&x| x == 0.0));
    assert!(d[126..].iter().any(|&x| x > 0.0));
}

#[test]
fn aws_detector_goes_nan_free_but_silent_on_a_constant_stream() {
    // sqrt of a rounding-negative variance is NaN and compares false: no alarms, no panic.
    let alarms = aws_sample_alarms(&[1.0; 500], 2);
    assert!(alarms.is_empty());
}

#[test]
fn detect_flags_a_spike_in_a_sine_and_finds_it_as_top1() {
    let mut xs: Vec<f64> = (0..3_000).map(|i| (i as f64 * 0.1).sin()).collect();
    xs[2_000] += 3.0;
    for mode in [Mode::Exact, Mode::Damp] {
        let spec = DetectorSpec {
            m: 63,
            history: None,
            mode,
            threshold: ThresholdSpec::DEFAULT,
        };
        let run = detect(&xs, &spec, 0).unwrap();
        let top = run.top.unwrap();
        assert!((1_938..=2_000).contains(&top.index), "{mode:?}: {top:?}");
        assert_eq!(run.alarms.len(), 1, "{mode:?}: {:?}", run.alarms);
        assert!((2_000..2_063).contains(&run.alarms[0]));
    }
}

#[test]
fn detect_exact_and_damp_agree_on_top1_with_a_split() {
    let mut rng = SplitMix64::new(5);
    let mut x = 0.0;
    let xs: Vec<f64> = (0..2_000)
        .map(|_| {
            x += rng.next_f64() - 0.5;
            x
        })
        .collect();
    let spec = |mode| DetectorSpec {
        m: 20,
        history: None,
        mode,
        threshold: ThresholdSpec::Static { value: f64::MAX },
    };
    let exact = detect(&xs, &spec(Mode::Exact), 500).unwrap();
    let damp = detect(&xs, &spec(Mode::Damp), 500).unwrap();
    let (e, d) = (exact.top.unwrap(), damp.top.unwrap());
    assert!(e.index >= 500);
    assert_eq!(e.index, d.index);
    assert!((e.score - d.score).abs() < 1e-9);
    // The naive top-1 over starts ≥ 500 against every earlier non-overlapping start.
    let m = 20;
    let naive = |i: usize| {
        (0..=i + 1 - m)
            .map(|j| znorm(&xs[i..i + m], &xs[j..j + m]))
            .fold(f64::INFINITY, f64::min)
    };
    let (ni, ns) =
        (500..=xs.len() - m)
            .map(|i| (i, naive(i)))
            .fold(
                (0, f64::NEG_INFINITY),
                |b, c| if c.1 >= b.1 { c } else { b },
            );
    assert_eq!(e.index, ni as u64);
    assert!((e.score - ns).abs() < 1e-9);
}

fn znorm(a: &[f64], b: &[f64]) -> f64 {
    let stats = |x: &[f64]| {
        let n = x.len() as f64;
        let mu = x.iter().sum::<f64>() / n;
        let sd = (x.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / n).sqrt();
        (mu, sd)
    };
    let ((ma, sa), (mb, sb)) = (stats(a), stats(b));
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - ma) / sa - (y - mb) / sb).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn choose_m_finds_the_period_or_falls_back() {
    let sine: Vec<f64> = (0..2_000)
        .map(|i| (i as f64 * 2.0 * std::f64::consts::PI / 50.0).sin())
        .collect();
    assert_eq!(choose_m(MChoice::Auto, &sine), (50, "auto"));
    assert_eq!(choose_m(MChoice::Fixed(7), &sine), (7, "fixed"));
    let mut rng = SplitMix64::new(1);
    let noise: Vec<f64> = (0..2_000).map(|_| rng.next_f64()).collect();
    assert_eq!(choose_m(MChoice::Auto, &noise), (FALLBACK_M, "fallback"));
}

#[test]
fn discover_finds_root_or_folder() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(discover(dir.path()), Found::default());
    let damp = dir.path().join("damp");
    std::fs::create_dir(&damp).unwrap();
    std::fs::write(damp.join("2-machining.in"), "1\n2\n").unwrap();
    assert_eq!(discover(dir.path()).damp.as_deref(), Some(damp.as_path()));
    assert_eq!(discover(&damp).damp.as_deref(), Some(damp.as_path()));
    assert!(matches!(
        run_discord_eval(&dir.path().join("nothing"), &EvalOptions::default()),
        Err(EvalError::NoData(_))
    ));
}
