//! Online alarm thresholds for discord scores, with alarm suppression.
//!
//! A [`Threshold`] (one per key) turns each [`super::left_mp::Discord`] into a [`Judgement`]:
//! the threshold in force *before* the score was seen, whether the score is an alarm, and
//! whether the detector is still warming up. The rule is pluggable ([`ThresholdSpec`]):
//!
//! | rule | threshold | learns from |
//! |---|---|---|
//! | `gaussian` | EW mean + k·σ, at least `floor·2√m` | exact scores not above it |
//! | `warmup` | mean + k·σ of the first `train` exact scores, then fixed | the training prefix |
//! | `quantile` | `factor` × streaming P² estimate of quantile `q` | every exact score |
//! | `static` | a fixed value | nothing |
//!
//! Properties the AWS sample's mean + 2σ did not have:
//! - nothing is learnt before the first real score (no placeholder zeros in warm-up);
//! - upper bounds (DAMP's pruned scores) are never learnt, and neither are alarms by the
//!   moment-based rules, so an anomaly does not raise the bar for the next one (a quantile is
//!   robust to a few large values by construction, and excluding everything above it would
//!   make it chase itself down, so `quantile` learns every exact score);
//! - `gaussian` forgets (half-life in scores), so a slow change in the score level moves it;
//! - a constant stream gives scores of 0, σ = 0 and a finite threshold: never NaN;
//! - after an alarm at index `a`, further alarms are suppressed up to `a + m`: the
//!   subsequences that overlap the anomaly score high for the same reason.
//!
//! # Defaults ([`ThresholdSpec::DEFAULT`])
//!
//! `gaussian`, k = 5, half-life 10,000 scores, 500 warm-up scores, floor 0.05 (normalised).
//! Left-discord scores are right-skewed (a few large values), so the 2σ of the AWS sample alarms
//! on ordinary variation; 5σ keeps ordinary scores quiet on noisy data. The warm-up covers the
//! start of a stream, where every subsequence is novel (with less than one period of history,
//! everything is a left discord). The floor matters for very regular signals: on a clean sine,
//! normal scores are ~0.002 normalised and σ shrinks towards zero, so without a floor the
//! threshold would sink to rounding-level wobble.
//!
//! [`estimate_period`] picks `m` from the autocorrelation of warm-up data.

use super::{ParamError, read_opt_u64, write_opt_u64};
use crate::core::codec::{DecodeError, Reader, Writer};
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// Version written by [`Threshold::encode`].
pub const THRESHOLD_STATE_VERSION: u16 = 1;
const THRESHOLD_MAGIC: &[u8; 4] = b"OTHR";

/// A threshold rule and its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ThresholdSpec {
    /// Exponentially weighted mean + `k`·σ of exact, non-alarming scores, at least
    /// `floor·2√m`.
    Gaussian {
        /// Width in standard deviations.
        k: f64,
        /// Half-life of the weights, in learnt scores; the first `half_life / ln 2` scores are
        /// weighted equally, so early estimates are plain means.
        half_life: f64,
        /// Scores learnt before the first alarm is possible.
        warmup: u64,
        /// Lower bound of the threshold as a normalised score (`score / 2√m`, in [0, 1]);
        /// keeps a perfectly regular stream (σ → 0) from alarming on rounding-level wobble.
        floor: f64,
    },
    /// Mean + `k`·σ of the first `train` exact scores (DAMP's training prefix), then fixed.
    Warmup {
        /// Width in standard deviations.
        k: f64,
        /// Number of exact scores in the training prefix.
        train: u64,
    },
    /// `factor` × the streaming (P²) estimate of quantile `q` of the exact scores.
    Quantile {
        /// The quantile, in (0, 1).
        q: f64,
        /// Multiplier on the estimate (1 = the quantile itself).
        factor: f64,
        /// Scores learnt before the first alarm is possible (at least 5).
        warmup: u64,
    },
    /// A fixed threshold in score units.
    Static {
        /// The threshold.
        value: f64,
    },
}

impl ThresholdSpec {
    /// The default rule: `gaussian` with k = 5, half-life 10,000 scores, 500 warm-up scores and
    /// a normalised floor of 0.05 (the module docs say why).
    pub const DEFAULT: ThresholdSpec = ThresholdSpec::Gaussian {
        k: 5.0,
        half_life: 10_000.0,
        warmup: 500,
        floor: 0.05,
    };

    /// Check the parameters' ranges.
    pub fn validate(&self) -> Result<(), ParamError> {
        let ok = match *self {
            ThresholdSpec::Gaussian {
                k,
                half_life,
                floor,
                ..
            } => {
                k.is_finite()
                    && k >= 0.0
                    && half_life >= 1.0
                    && half_life.is_finite()
                    && (0.0..=1.0).contains(&floor)
            }
            ThresholdSpec::Warmup { k, train } => k.is_finite() && k >= 0.0 && train >= 2,
            ThresholdSpec::Quantile { q, factor, .. } => {
                q > 0.0 && q < 1.0 && factor.is_finite() && factor > 0.0
            }
            ThresholdSpec::Static { value } => value.is_finite(),
        };
        if ok {
            Ok(())
        } else {
            Err(ParamError::Invalid("threshold parameter out of range"))
        }
    }

    fn kind(&self) -> u8 {
        match self {
            ThresholdSpec::Gaussian { .. } => 0,
            ThresholdSpec::Warmup { .. } => 1,
            ThresholdSpec::Quantile { .. } => 2,
            ThresholdSpec::Static { .. } => 3,
        }
    }
}

impl Default for ThresholdSpec {
    fn default() -> Self {
        ThresholdSpec::DEFAULT
    }
}

/// The verdict on one score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement {
    /// The threshold the score was compared with; `None` while warming up.
    pub threshold: Option<f64>,
    /// The score is an alarm.
    pub is_anomaly: bool,
    /// Above the threshold, but within `m` points after the previous alarm.
    pub suppressed: bool,
    /// The rule has not learnt enough yet (output `state = warming_up`).
    pub warming_up: bool,
}

/// Running mean and variance; exponentially weighted once `count ≥ 1/alpha`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Moments {
    count: u64,
    mean: f64,
    var: f64,
}

impl Moments {
    /// Weighted update (West 1979); with `alpha = 1/count` it is Welford's exact population
    /// variance, so starting with equal weights needs no special case.
    fn learn(&mut self, x: f64, alpha: f64) {
        self.count += 1;
        let a = alpha.max(1.0 / self.count as f64);
        let diff = x - self.mean;
        let incr = a * diff;
        self.mean += incr;
        // Both factors are non-negative, so the variance can never go negative (or NaN).
        self.var = (1.0 - a) * (self.var + diff * incr);
    }

    fn sigma(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }
}

/// P² streaming quantile estimator (Jain & Chlamtac, 1985): five markers, O(1) per score.
#[derive(Clone, Copy, Debug, PartialEq)]
struct P2 {
    q: f64,
    count: u64,
    h: [f64; 5],
    n: [f64; 5],
    want: [f64; 5],
}

impl P2 {
    fn new(q: f64) -> Self {
        P2 {
            q,
            count: 0,
            h: [0.0; 5],
            n: [0.0; 5],
            want: [0.0; 5],
        }
    }

    fn learn(&mut self, x: f64) {
        let q = self.q;
        if self.count < 5 {
            self.h[self.count as usize] = x;
            self.count += 1;
            if self.count == 5 {
                self.h.sort_by(f64::total_cmp);
                self.n = [1.0, 2.0, 3.0, 4.0, 5.0];
                self.want = [1.0, 1.0 + 2.0 * q, 1.0 + 4.0 * q, 3.0 + 2.0 * q, 5.0];
            }
            return;
        }
        self.count += 1;
        let k = if x < self.h[0] {
            self.h[0] = x;
            0
        } else if x >= self.h[4] {
            self.h[4] = x;
            3
        } else {
            (0..4)
                .find(|&i| x < self.h[i + 1])
                .expect("h[0] <= x < h[4]")
        };
        for n in &mut self.n[k + 1..] {
            *n += 1.0;
        }
        let dn = [0.0, q / 2.0, q, (1.0 + q) / 2.0, 1.0];
        for (w, d) in self.want.iter_mut().zip(dn) {
            *w += d;
        }
        for i in 1..4 {
            let d = self.want[i] - self.n[i];
            if (d >= 1.0 && self.n[i + 1] - self.n[i] > 1.0)
                || (d <= -1.0 && self.n[i - 1] - self.n[i] < -1.0)
            {
                let d = d.signum();
                let hp = self.parabolic(i, d);
                self.h[i] = if self.h[i - 1] < hp && hp < self.h[i + 1] {
                    hp
                } else {
                    self.linear(i, d)
                };
                self.n[i] += d;
            }
        }
    }

    fn parabolic(&self, i: usize, d: f64) -> f64 {
        let (h, n) = (&self.h, &self.n);
        h[i] + d / (n[i + 1] - n[i - 1])
            * ((n[i] - n[i - 1] + d) * (h[i + 1] - h[i]) / (n[i + 1] - n[i])
                + (n[i + 1] - n[i] - d) * (h[i] - h[i - 1]) / (n[i] - n[i - 1]))
    }

    fn linear(&self, i: usize, d: f64) -> f64 {
        let j = if d > 0.0 { i + 1 } else { i - 1 };
        self.h[i] + d * (self.h[j] - self.h[i]) / (self.n[j] - self.n[i])
    }

    fn estimate(&self) -> Option<f64> {
        match self.count {
            0 => None,
            c if c < 5 => {
                // Too few for markers: nearest-rank quantile of what we have.
                let mut v = [0.0; 5];
                let c = c as usize;
                v[..c].copy_from_slice(&self.h[..c]);
                v[..c].sort_by(f64::total_cmp);
                Some(v[((self.q * c as f64).ceil() as usize).clamp(1, c) - 1])
            }
            _ => Some(self.h[2]),
        }
    }
}

/// An online threshold with alarm suppression; one per key. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    spec: ThresholdSpec,
    m: u64,
    last_alarm: Option<u64>,
    moments: Moments,
    p2: P2,
    /// Frozen `warmup` threshold once the training prefix is complete.
    frozen: Option<f64>,
}

impl Threshold {
    /// A threshold following `spec` for scores of subsequence length `m`; after an alarm at
    /// index `a`, scores up to index `a + m` cannot alarm.
    pub fn new(spec: ThresholdSpec, m: usize) -> Result<Self, ParamError> {
        spec.validate()?;
        if m < 2 {
            return Err(ParamError::MTooSmall(m));
        }
        let q = if let ThresholdSpec::Quantile { q, .. } = spec {
            q
        } else {
            0.5
        };
        Ok(Threshold {
            spec,
            m: m as u64,
            last_alarm: None,
            moments: Moments::default(),
            p2: P2::new(q),
            frozen: None,
        })
    }

    /// The rule.
    pub fn spec(&self) -> &ThresholdSpec {
        &self.spec
    }

    /// Exact scores learnt so far.
    pub fn learnt(&self) -> u64 {
        match self.spec {
            ThresholdSpec::Quantile { .. } => self.p2.count,
            _ => self.moments.count,
        }
    }

    /// Whether the rule is still learning its first estimate (no alarms yet).
    pub fn is_warming_up(&self) -> bool {
        self.current().is_none()
    }

    /// The threshold now; `None` while warming up.
    pub fn current(&self) -> Option<f64> {
        match self.spec {
            ThresholdSpec::Gaussian {
                k, warmup, floor, ..
            } => {
                let floor = floor * 2.0 * (self.m as f64).sqrt();
                (self.moments.count >= warmup.max(1))
                    .then(|| (self.moments.mean + k * self.moments.sigma()).max(floor))
            }
            ThresholdSpec::Warmup { .. } => self.frozen,
            ThresholdSpec::Quantile { factor, warmup, .. } => {
                if self.p2.count >= warmup.max(5) {
                    self.p2.estimate().map(|e| e * factor)
                } else {
                    None
                }
            }
            ThresholdSpec::Static { value } => Some(value),
        }
    }

    /// Judge the score of the subsequence starting at `index`, then learn from it if it is
    /// exact and (except for `quantile`) not above the threshold. An upper bound
    /// (`exact = false`) is never an alarm.
    pub fn judge(&mut self, index: u64, score: f64, exact: bool) -> Judgement {
        let threshold = self.current();
        let over = threshold.is_some_and(|t| score > t);
        let alarm = over && exact;
        let suppressed = alarm
            && self
                .last_alarm
                .is_some_and(|a| index > a && index - a <= self.m);
        let is_anomaly = alarm && !suppressed;
        if is_anomaly {
            self.last_alarm = Some(index);
        }
        let robust = matches!(self.spec, ThresholdSpec::Quantile { .. });
        if exact && (!over || robust) && score.is_finite() {
            self.learn(score);
        }
        Judgement {
            threshold,
            is_anomaly,
            suppressed,
            warming_up: threshold.is_none(),
        }
    }

    fn learn(&mut self, score: f64) {
        match self.spec {
            ThresholdSpec::Gaussian { half_life, .. } => {
                let alpha = 1.0 - 0.5f64.powf(1.0 / half_life);
                self.moments.learn(score, alpha);
            }
            ThresholdSpec::Warmup { k, train } => {
                if self.frozen.is_none() {
                    self.moments.learn(score, 0.0);
                    if self.moments.count >= train {
                        self.frozen = Some(self.moments.mean + k * self.moments.sigma());
                    }
                }
            }
            ThresholdSpec::Quantile { .. } => self.p2.learn(score),
            ThresholdSpec::Static { .. } => {}
        }
    }

    /// Append the versioned little-endian state (format [`THRESHOLD_STATE_VERSION`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.header(THRESHOLD_MAGIC, THRESHOLD_STATE_VERSION);
        w.u8(self.spec.kind());
        let params: [f64; 4] = match self.spec {
            ThresholdSpec::Gaussian {
                k,
                half_life,
                warmup,
                floor,
            } => [k, half_life, warmup as f64, floor],
            ThresholdSpec::Warmup { k, train } => [k, train as f64, 0.0, 0.0],
            ThresholdSpec::Quantile { q, factor, warmup } => [q, factor, warmup as f64, 0.0],
            ThresholdSpec::Static { value } => [value, 0.0, 0.0, 0.0],
        };
        params.iter().for_each(|&p| w.f64(p));
        w.u64(self.m);
        write_opt_u64(&mut w, self.last_alarm);
        w.u64(self.moments.count);
        w.f64(self.moments.mean);
        w.f64(self.moments.var);
        w.u64(self.p2.count);
        for v in self.p2.h.iter().chain(&self.p2.n).chain(&self.p2.want) {
            w.f64(*v);
        }
        w.f64(self.frozen.unwrap_or(f64::NAN));
    }

    /// Restore a state written by [`Threshold::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(THRESHOLD_MAGIC, "threshold", THRESHOLD_STATE_VERSION)?;
        let kind = r.u8()?;
        let mut p = [0.0; 4];
        for v in &mut p {
            *v = r.f64()?;
        }
        let spec = match kind {
            0 => ThresholdSpec::Gaussian {
                k: p[0],
                half_life: p[1],
                warmup: p[2] as u64,
                floor: p[3],
            },
            1 => ThresholdSpec::Warmup {
                k: p[0],
                train: p[1] as u64,
            },
            2 => ThresholdSpec::Quantile {
                q: p[0],
                factor: p[1],
                warmup: p[2] as u64,
            },
            3 => ThresholdSpec::Static { value: p[0] },
            _ => return Err(DecodeError::invalid("unknown threshold rule")),
        };
        let m = r.u64_len(1 << 31)?;
        let mut t = Threshold::new(spec, m)
            .map_err(|_| DecodeError::invalid("threshold parameter out of range"))?;
        t.last_alarm = read_opt_u64(&mut r)?;
        t.moments = Moments {
            count: r.u64()?,
            mean: r.f64()?,
            var: r.f64()?,
        };
        t.p2.count = r.u64()?;
        for v in
            t.p2.h
                .iter_mut()
                .chain(t.p2.n.iter_mut())
                .chain(t.p2.want.iter_mut())
        {
            *v = r.f64()?;
        }
        let frozen = r.f64()?;
        t.frozen = (!frozen.is_nan()).then_some(frozen);
        r.finish()?;
        Ok(t)
    }
}

/// The dominant period of `data` from its autocorrelation, for choosing `m` automatically.
///
/// Returns the first autocorrelation peak in `[min_lag, max_lag]`, after the autocorrelation
/// first drops below zero, that is within 10% of the highest such peak and at least 0.2; `None` for
/// data with no clear period (noise, trends, constant data, or too short: fewer than
/// `2·max_lag` points). Non-finite values are replaced by the mean. DAMP recommends `m` near the
/// period; the wrapper typically uses the period itself, clamped to its configured bounds.
pub fn estimate_period(data: &[f64], min_lag: usize, max_lag: usize) -> Option<usize> {
    let min_lag = min_lag.max(2);
    if max_lag < min_lag || data.len() < 2 * max_lag {
        return None;
    }
    let finite: Vec<f64> = data.iter().copied().filter(|x| x.is_finite()).collect();
    if finite.len() < 2 * max_lag {
        return None;
    }
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    let n = data.len();
    let size = (2 * n).next_power_of_two();
    let mut buf: Vec<Complex<f64>> = data
        .iter()
        .map(|&x| Complex::new(if x.is_finite() { x - mean } else { 0.0 }, 0.0))
        .chain(std::iter::repeat(Complex::new(0.0, 0.0)))
        .take(size)
        .collect();
    let mut planner = FftPlanner::<f64>::new();
    planner.plan_fft_forward(size).process(&mut buf);
    for c in &mut buf {
        *c = Complex::new(c.norm_sqr(), 0.0);
    }
    planner.plan_fft_inverse(size).process(&mut buf);
    let acf0 = buf[0].re;
    if acf0 <= 0.0 || !acf0.is_finite() {
        return None;
    }
    // Unbiased normalisation: lag k has n − k products.
    let acf = |k: usize| buf[k].re / acf0 * n as f64 / (n - k) as f64;
    let first_negative = (1..=max_lag).find(|&k| acf(k) < 0.0)?;
    let peaks = || {
        (first_negative.max(min_lag)..max_lag)
            .filter(move |&k| acf(k) >= acf(k - 1) && acf(k) >= acf(k + 1) && acf(k) >= 0.2)
    };
    let top = peaks().map(acf).fold(f64::NEG_INFINITY, f64::max);
    // Multiples of the period peak almost as high as the period itself: take the first peak
    // within 10% of the highest.
    peaks().find(|&k| acf(k) >= 0.9 * top)
}
