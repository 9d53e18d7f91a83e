//! The AWS left-discords sample reproduced: its synthetic stream, its detector (weaknesses
//! included), and the side-by-side with ours (`osprey eval aws-sample`).

use std::path::Path;
use std::time::Instant;

use super::datasets::read_series;
use super::scoring::detect;
use super::{DetectorSpec, EvalError, MChoice, Mode, choose_m};
use crate::core::hash::{GOLDEN_GAMMA, mix64, unit_f64};
use crate::detectors::matrix_profile::ThresholdSpec;

/// SplitMix64: a small seeded generator, so the stream is the same on every machine.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }
}

/// Points between injected anomalies in the sample's stream.
pub const AWS_SPIKE_EVERY: u64 = 30;

/// The AWS sample's synthetic stream.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsStream {
    /// The values, one per 100 ms.
    pub values: Vec<f64>,
    /// Points replaced by an anomaly (0-based) and the value put there.
    pub injected: Vec<(u64, f64)>,
}

impl AwsStream {
    /// Injected points whose value differs from the sine's (a replacement of 0 lands on the
    /// sine's own zero crossing, since sin(30j·π/5) = 0, and cannot be seen by any detector).
    pub fn visible(&self) -> Vec<u64> {
        self.injected
            .iter()
            .filter(|(_, v)| v.abs() > 0.5)
            .map(|(p, _)| *p)
            .collect()
    }
}

/// The AWS sample's stream generator, reimplemented with a seeded generator: point `k`
/// (counting from 1, as the sample's script does) is `sin(k·π/5)`, except that every 30th
/// point is replaced by `sign·round(3·U)` with a random sign and `U` uniform in [0, 1).
pub fn aws_sample_stream(n: usize, seed: u64) -> AwsStream {
    let mut rng = SplitMix64::new(seed);
    let mut values = Vec::with_capacity(n);
    let mut injected = Vec::new();
    for i in 0..n as u64 {
        let k = i + 1;
        let mut x = (k as f64 * std::f64::consts::PI / 5.0).sin();
        if k % AWS_SPIKE_EVERY == 0 {
            let sign = if rng.next_f64() < 0.5 { -1.0 } else { 1.0 };
            x = sign * (rng.next_f64() * 3.0).round();
            injected.push((i, x));
        }
        values.push(x);
    }
    AwsStream { values, injected }
}

/// The AWS sample's detector, reimplemented for the comparison (its weaknesses included on
/// purpose): a ring of `64·m` points; once more than `2m` points have arrived, the newest
/// subsequence's nearest neighbour by **raw squared Euclidean distance** is found by brute
/// force over the ring (skipping the `2m − 1` newest starts and the oldest slot), where a
/// candidate reaching into not-yet-filled slots counts as distance 0; every such distance,
/// zeros included, feeds a never-forgetting mean + 2σ; after `16·m` points a distance above
/// it is an alarm. The sample uses `m = floor(0.8 · 3) = 2`.
#[derive(Clone, Debug)]
pub struct AwsSampleDetector {
    m: usize,
    ring: std::collections::VecDeque<f64>,
    capacity: usize,
    seen: u64,
    sum: f64,
    sum_sq: f64,
    count: u64,
}

impl AwsSampleDetector {
    /// The sample's subsequence length.
    pub const SAMPLE_M: usize = 2;

    /// A detector with subsequence length `m` (the sample's: [`Self::SAMPLE_M`]).
    pub fn new(m: usize) -> Self {
        AwsSampleDetector {
            m,
            ring: std::collections::VecDeque::with_capacity(64 * m),
            capacity: 64 * m,
            seen: 0,
            sum: 0.0,
            sum_sq: 0.0,
            count: 0,
        }
    }

    /// Takes one point; returns its distance (0 while initialising) and whether it alarms.
    pub fn push(&mut self, x: f64) -> (f64, bool) {
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(x);
        self.seen += 1;
        let (m, size) = (self.m, self.ring.len());
        if size <= 2 * m {
            return (0.0, false);
        }
        // Candidate starts, absolute: seen − capacity + 1 ..= seen − 2m. Those before the
        // first point read empty slots, which the sample sums as nothing: distance 0.
        let t = self.seen as i64;
        let oldest = t - size as i64;
        let query = size - m;
        let mut best = f64::MAX;
        for s in (t - self.capacity as i64 + 1)..=(t - 2 * m as i64) {
            let d = if s < oldest {
                0.0
            } else {
                let j = (s - oldest) as usize;
                (0..m)
                    .map(|k| {
                        let diff = self.ring[j + k] - self.ring[query + k];
                        diff * diff
                    })
                    .sum()
            };
            best = best.min(d);
        }
        self.sum += best;
        self.sum_sq += best * best;
        self.count += 1;
        let mean = self.sum / self.count as f64;
        let threshold = mean + 2.0 * (self.sum_sq / self.count as f64 - mean * mean).sqrt();
        let alarm = size > 16 * m && best > threshold;
        (best, alarm)
    }
}

/// Alarms of the AWS sample's detector over `series` (points that alarmed).
pub fn aws_sample_alarms(series: &[f64], m: usize) -> Vec<u64> {
    let mut det = AwsSampleDetector::new(m);
    series
        .iter()
        .enumerate()
        .filter_map(|(i, &x)| det.push(x).1.then_some(i as u64))
        .collect()
}

/// Alarms against injected anomalies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Alarms raised.
    pub alarms: usize,
    /// Alarms whose subsequence holds an injected point.
    pub true_alarms: usize,
    /// The others.
    pub false_alarms: usize,
    /// Injected points with at least one alarm on a subsequence holding them.
    pub detected: usize,
    /// Injected points without.
    pub missed: usize,
}

/// Scores `alarms` (the last points of alarming subsequences of length `m`) against the
/// injected points: an alarm at `a` is true iff an injected point lies in `[a − m + 1, a]`.
pub fn tally(alarms: &[u64], injected: &[u64], m: usize) -> Tally {
    let span = m as u64 - 1;
    let covers = |a: u64, p: u64| p <= a && a <= p + span;
    let true_alarms = alarms
        .iter()
        .filter(|&&a| injected.iter().any(|&p| covers(a, p)))
        .count();
    let detected = injected
        .iter()
        .filter(|&&p| alarms.iter().any(|&a| covers(a, p)))
        .count();
    Tally {
        alarms: alarms.len(),
        true_alarms,
        false_alarms: alarms.len() - true_alarms,
        detected,
        missed: injected.len() - detected,
    }
}

/// Options of `osprey eval aws-sample`.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsOptions {
    /// Points of the synthetic stream.
    pub points: usize,
    /// Seed of the anomaly generator.
    pub seed: u64,
    /// osprey's m (`auto`: the period of the first 1,000 points).
    pub m: MChoice,
    /// osprey's history.
    pub history: usize,
    /// osprey's mode.
    pub mode: Mode,
    /// osprey's threshold.
    pub threshold: ThresholdSpec,
}

impl Default for AwsOptions {
    fn default() -> Self {
        AwsOptions {
            points: 36_000,
            seed: 1,
            m: MChoice::Auto,
            history: 10_000,
            mode: Mode::Exact,
            threshold: ThresholdSpec::DEFAULT,
        }
    }
}

/// One detector's line of the side-by-side.
#[derive(Clone, Debug, PartialEq)]
pub struct SideBySide {
    /// Who.
    pub detector: String,
    /// Subsequence length.
    pub m: usize,
    /// Against the visible injected points.
    pub tally: Tally,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Both detectors over `series`, scored against `injected` (visible points only).
pub fn compare_on(
    series: &[f64],
    injected: &[u64],
    opts: &AwsOptions,
) -> Result<Vec<SideBySide>, EvalError> {
    let started = Instant::now();
    let sample = aws_sample_alarms(series, AwsSampleDetector::SAMPLE_M);
    let sample_secs = started.elapsed().as_secs_f64();
    let (m, _) = choose_m(opts.m, &series[..series.len().min(1_000)]);
    let spec = DetectorSpec {
        m,
        history: Some(opts.history),
        mode: opts.mode,
        threshold: opts.threshold,
    };
    let run = detect(series, &spec, 0)?;
    Ok(vec![
        SideBySide {
            detector: "AWS sample (raw sq. distance, mean + 2σ, brute force)".into(),
            m: AwsSampleDetector::SAMPLE_M,
            tally: tally(&sample, injected, AwsSampleDetector::SAMPLE_M),
            seconds: sample_secs,
        },
        SideBySide {
            detector: format!(
                "osprey discord ({:?}, history {}, {})",
                opts.mode,
                opts.history,
                threshold_name(&opts.threshold)
            ),
            m,
            tally: tally(&run.alarms, injected, m),
            seconds: run.seconds,
        },
    ])
}

fn threshold_name(t: &ThresholdSpec) -> String {
    match *t {
        ThresholdSpec::Gaussian { k, warmup, .. } => format!("gaussian k={k} warmup={warmup}"),
        ThresholdSpec::Warmup { k, train } => format!("warmup k={k} train={train}"),
        ThresholdSpec::Quantile { q, factor, .. } => format!("quantile q={q} ×{factor}"),
        ThresholdSpec::Static { value } => format!("static {value}"),
    }
}

/// `osprey eval aws-sample`: the side-by-side on the sample's stream, then alarm counts and
/// run times on `<data>/aws-leftdiscords/97.csv` when `data` holds it.
pub fn run_aws_eval(data: Option<&Path>, opts: &AwsOptions) -> Result<String, EvalError> {
    use std::fmt::Write;
    let stream = aws_sample_stream(opts.points, opts.seed);
    let visible = stream.visible();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "AWS left-discords sample stream: {} points (sin(k·π/5) at 10 Hz), seed {}, \
         {} injected anomalies (every {AWS_SPIKE_EVERY}th point), {} visible \
         ({} were replaced by 0, the sine's own value there)\n",
        opts.points,
        opts.seed,
        stream.injected.len(),
        visible.len(),
        stream.injected.len() - visible.len()
    );
    let _ = writeln!(
        s,
        "| detector | m | injected (visible) | alarms | true positives | false positives | \
         detected | missed | seconds |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in compare_on(&stream.values, &visible, opts)? {
        let t = r.tally;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
            r.detector,
            r.m,
            visible.len(),
            t.alarms,
            t.true_alarms,
            t.false_alarms,
            t.detected,
            t.missed,
            r.seconds
        );
    }
    if let Some(path) = data
        .map(|d| d.join("aws-leftdiscords/97.csv"))
        .filter(|p| p.is_file())
    {
        let series = read_series(&path)?;
        let _ = writeln!(
            s,
            "\n{} ({} points, no labels):\n",
            path.display(),
            series.len()
        );
        let _ = writeln!(s, "| detector | m | alarms | seconds | points/s |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for r in compare_on(&series, &[], opts)? {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.0} |",
                r.detector,
                r.m,
                r.tally.alarms,
                r.seconds,
                series.len() as f64 / r.seconds.max(1e-9)
            );
        }
    }
    Ok(s)
}
