//! DAMP pruning mode: left discords without computing every exact distance.
//!
//! DAMP (Lu, Wu, Mueen, Zuluaga, Keogh, KDD 2022) observes that a subsequence whose left
//! nearest neighbour is closer than some bound can be neither an alarm nor a new top discord,
//! so its search can stop as soon as *any* candidate that close is found. Per subsequence `i`:
//!
//! 1. Start from what is already known: an upper bound left by the look-ahead (step 4) and the
//!    `√m` of a constant candidate. If it is below the pruning bound, stop.
//! 2. Search backwards in chunks that double in length (the first covers `2^⌈log2 8m⌉` points
//!    before `i`), computing every distance of a chunk at once: the sliding dot products come
//!    from [`super::simd::sliding_dot`], or from MASS (FFT convolution, `rustfft`) when a chunk
//!    is long enough for the FFT to be cheaper. Stop when the best distance so far drops below
//!    the bound (the score is then an **upper bound**, [`Discord::exact`] = `false`) or the
//!    history is exhausted (the score is **exact**).
//! 3. The pruning bound is `min(alarm threshold, best-so-far)`, where best-so-far is the
//!    largest exact score seen: only scores that could be alarms or new top discords are
//!    computed exactly.
//! 4. Optional look-ahead (replay and batch mode): scoring is delayed by `lookahead` points, and
//!    each exactly searched subsequence also computes its distance to the future subsequences
//!    it is a left candidate of, leaving them an upper bound; many are then pruned in step 1.
//!
//! Distances, the exclusion zone, constant windows and missing values follow
//! [`super::left_mp`] exactly, and an exact score here equals the exact mode's.
//!
//! Scratch space for the chunk dot products and FFTs is per thread and reused, so the state per
//! key is the series ring (about `33·(history + lookahead)` bytes) and nothing is allocated per
//! point once the scratch has grown to its working size.
//!
//! With an adaptive threshold, call [`Damp::push_exact`] while the threshold warms up: after
//! that only the scores that may exceed it are computed exactly, and those are the ones an
//! adaptive rule does not learn from, so in this mode `gaussian` effectively freezes after its
//! warm-up. `warmup` (DAMP's training prefix) and `static` are the natural rules here.

use super::left_mp::{Discord, NanPolicy};
use super::series::{Class, Series, znorm_distance};
use super::simd::{Best, Kernel};
use super::{ParamError, read_opt_u64, write_opt_u64};
use crate::core::codec::{DecodeError, Reader, Writer};

mod mass;

/// Version written by [`Damp::encode`].
pub const DAMP_STATE_VERSION: u16 = 1;
const DAMP_MAGIC: &[u8; 4] = b"ODMP";

/// When chunk dot products use MASS (FFT) instead of the direct sliding dot product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MassMode {
    /// By a cost model: FFT once a chunk is long and `m` large enough for it to be cheaper.
    #[default]
    Auto,
    /// Always direct.
    Never,
    /// Always FFT (tests).
    Always,
}

/// Parameters of a [`Damp`] detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DampConfig {
    /// Subsequence length, at least 2.
    pub m: usize,
    /// History in points (candidates lie in the last `history` points), at least `2m`.
    pub history: usize,
    /// Scoring delay for forward pruning, in points; 0 = pure online (DAMP's golden vectors),
    /// otherwise at most `history − 2m`.
    pub lookahead: usize,
    /// Missing-value policy, as in the exact mode.
    pub nan_policy: NanPolicy,
    /// FFT use for chunk dot products.
    pub mass: MassMode,
}

impl DampConfig {
    /// Pure online DAMP with subsequence length `m` and `history` points.
    pub fn new(m: usize, history: usize) -> Self {
        DampConfig {
            m,
            history,
            lookahead: 0,
            nan_policy: NanPolicy::Gap,
            mass: MassMode::Auto,
        }
    }

    /// Check the ranges documented on the fields.
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.m < 2 {
            return Err(ParamError::MTooSmall(self.m));
        }
        if self.history > 1 << 31 || self.lookahead > 1 << 31 {
            return Err(ParamError::HistoryTooLong(self.history.max(self.lookahead)));
        }
        if self.history < 2 * self.m {
            return Err(ParamError::HistoryTooShort {
                history: self.history,
                min: 2 * self.m,
            });
        }
        if self.lookahead > 0 && self.lookahead + 2 * self.m > self.history {
            return Err(ParamError::Invalid(
                "lookahead must be at most history − 2m",
            ));
        }
        Ok(())
    }
}

/// Candidate found by a search, in distance units.
#[derive(Clone, Copy, Debug)]
struct Cand {
    d: f64,
    nn: u64,
}

/// Streaming left-discord detector in DAMP pruning mode; one per key.
///
/// Same shape as [`super::left_mp::LeftMatrixProfile`], but [`Damp::push`] takes the alarm
/// threshold and may return an upper bound ([`Discord::exact`] = `false`) when the score is
/// known to be below `min(threshold, best-so-far)`.
#[derive(Clone, Debug)]
pub struct Damp {
    cfg: DampConfig,
    kernel: Kernel,
    series: Series,
    /// Largest exact score so far (−∞ before the first).
    bsf: f64,
    /// Upper bounds left by the look-ahead for the pending subsequences, ring of
    /// `lookahead + 1` entries indexed by subsequence start.
    ub: Vec<f64>,
    ub_nn: Vec<u64>,
    /// Next subsequence start to score (relative).
    next: u64,
    origin: u64,
    last_const: Option<u64>,
    missing: u64,
    exact_count: u64,
    bound_count: u64,
}

impl Damp {
    /// A detector with the fastest kernel of this CPU.
    pub fn new(cfg: DampConfig) -> Result<Self, ParamError> {
        Self::with_kernel(cfg, Kernel::detect())
    }

    /// A detector with a forced kernel (tests and benches).
    pub fn with_kernel(cfg: DampConfig, kernel: Kernel) -> Result<Self, ParamError> {
        cfg.validate()?;
        if !kernel.is_available() {
            return Err(ParamError::KernelUnavailable(kernel.name()));
        }
        let l = cfg.lookahead;
        Ok(Damp {
            cfg,
            kernel,
            series: Series::new(cfg.m, cfg.history + l + 1, cfg.m),
            bsf: f64::NEG_INFINITY,
            ub: vec![f64::INFINITY; l + 1],
            ub_nn: vec![0; l + 1],
            next: 0,
            origin: 0,
            last_const: None,
            missing: 0,
            exact_count: 0,
            bound_count: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DampConfig {
        &self.cfg
    }

    /// Largest exact score so far (DAMP's best-so-far discord), −∞ before the first.
    pub fn best_so_far(&self) -> f64 {
        self.bsf
    }

    /// Scores emitted as exact values.
    pub fn exact_count(&self) -> u64 {
        self.exact_count
    }

    /// Scores emitted as upper bounds (pruned); `bound / (exact + bound)` is the pruned fraction.
    pub fn bound_count(&self) -> u64 {
        self.bound_count
    }

    /// Index the next point will get.
    pub fn len_points(&self) -> u64 {
        self.origin + self.series.len
    }

    /// Non-finite values pushed so far.
    pub fn missing_points(&self) -> u64 {
        self.missing
    }

    /// Heap bytes held by this detector (the shared per-thread scratch not included).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.series.memory_bytes() + self.ub.len() * 16
    }

    /// Append a point and score the subsequence `lookahead` points behind it, pruning against
    /// `min(threshold, best-so-far)`; pass `None` while the threshold is not known yet.
    pub fn push(&mut self, x: f64, threshold: Option<f64>) -> Option<Discord> {
        let bound = threshold.unwrap_or(f64::INFINITY).min(self.bsf);
        self.push_bound(x, Some(bound))
    }

    /// As [`Damp::push`] but never prunes: every score is exact (threshold warm-up).
    pub fn push_exact(&mut self, x: f64) -> Option<Discord> {
        self.push_bound(x, Some(f64::NEG_INFINITY))
    }

    /// Append a point without scoring (a training prefix, as DAMP's split point): the
    /// subsequence that would have been scored is skipped and the best-so-far is not updated.
    pub fn push_unscored(&mut self, x: f64) {
        self.push_bound(x, None);
    }

    /// Score the subsequences still pending at the end of a replay (only with a look-ahead),
    /// with the same bound rule as [`Damp::push`].
    pub fn flush(&mut self, threshold: Option<f64>, out: &mut Vec<Discord>) {
        let m = self.cfg.m as u64;
        while self.series.len >= m && self.next + m <= self.series.len {
            let bound = threshold.unwrap_or(f64::INFINITY).min(self.bsf);
            let i = self.next;
            self.next += 1;
            if let Some(d) = self.score(i, Some(bound)) {
                out.push(d);
            }
        }
    }

    fn push_bound(&mut self, x: f64, bound: Option<f64>) -> Option<Discord> {
        if !x.is_finite() {
            self.missing += 1;
            match self.cfg.nan_policy {
                NanPolicy::Skip => return None,
                NanPolicy::Reset => {
                    self.origin += self.series.len + 1;
                    self.series.clear();
                    self.next = 0;
                    self.last_const = None;
                    self.ub.iter_mut().for_each(|u| *u = f64::INFINITY);
                    return None;
                }
                NanPolicy::Gap => {}
            }
        }
        self.series.push(x);
        let m = self.cfg.m as u64;
        let l = self.cfg.lookahead as u64;
        // The subsequence whose look-ahead window just completed.
        if self.series.len < m + l {
            return None;
        }
        let i = self.series.len - m - l;
        debug_assert_eq!(i, self.next);
        self.next = i + 1;
        self.score(i, bound)
    }

    /// Score subsequence `i` (relative); `bound = None` skips it (unscored prefix).
    fn score(&mut self, i: u64, bound: Option<f64>) -> Option<Discord> {
        let m = self.cfg.m as u64;
        let slot = (i % self.ub.len() as u64) as usize;
        // Take the look-ahead bound and free the slot for subsequence i + lookahead + 1.
        let pending = Cand {
            d: self.ub[slot],
            nn: self.ub_nn[slot],
        };
        self.ub[slot] = f64::INFINITY;
        if i < m - 1 {
            return None;
        }
        let j_hi = i + 1 - m;
        if self.series.class(j_hi) == Class::Constant {
            self.last_const = Some(j_hi);
        }
        let bound = bound?;
        let j_lo = (i + m).saturating_sub(self.cfg.history as u64);
        let konst = self.last_const.filter(|&c| c >= j_lo);
        let sqrt_m = (self.cfg.m as f64).sqrt();
        let (cand, exact) = match self.series.class(i) {
            Class::Missing => return None,
            Class::Constant => {
                // Exact in O(1): 0 to a constant candidate, else √m to any regular one.
                if let Some(c) = konst {
                    (Cand { d: 0.0, nn: c }, true)
                } else {
                    let j = (j_lo..=j_hi)
                        .rev()
                        .find(|&j| matches!(self.series.class(j), Class::Regular { .. }))?;
                    (Cand { d: sqrt_m, nn: j }, true)
                }
            }
            Class::Regular { mu, inv } => {
                let mut best = pending;
                if let Some(c) = konst
                    && sqrt_m < best.d
                {
                    best = Cand { d: sqrt_m, nn: c };
                }
                let (best, exact) = if best.d < bound {
                    (best, false)
                } else {
                    self.backward(i, (mu, inv), j_lo, j_hi, bound, best)
                };
                if self.cfg.lookahead > 0 && pending.d >= bound {
                    self.forward(i, (mu, inv));
                }
                if !best.d.is_finite() {
                    return None;
                }
                // Report the directly computed distance of the winner (see left_mp).
                let d = match self.series.class(best.nn) {
                    Class::Regular { mu: mj, inv: ij } => znorm_distance(
                        self.series.window(i),
                        (mu, inv),
                        self.series.window(best.nn),
                        (mj, ij),
                    ),
                    _ => best.d,
                };
                (Cand { d, nn: best.nn }, exact)
            }
        };
        if exact {
            self.exact_count += 1;
            self.bsf = self.bsf.max(cand.d);
        } else {
            self.bound_count += 1;
        }
        Some(Discord {
            index: self.origin + i,
            score: cand.d,
            nn_index: self.origin + cand.nn,
            exact,
        })
    }

    /// Backward search in doubling chunks; returns the best candidate and whether the whole
    /// history was searched.
    fn backward(
        &self,
        i: u64,
        stats: (f64, f64),
        j_lo: u64,
        j_hi: u64,
        bound: f64,
        mut best: Cand,
    ) -> (Cand, bool) {
        let m = self.cfg.m;
        let mut len = (8 * m).next_power_of_two() as u64 - m as u64 + 1;
        let mut hi = j_hi;
        loop {
            let lo = j_lo.max((hi + 1).saturating_sub(len));
            if let Some(c) = self.chunk_best(i, stats, lo, hi)
                && c.d < best.d
            {
                best = c;
            }
            if lo == j_lo {
                return (best, true);
            }
            if best.d < bound {
                return (best, false);
            }
            hi = lo - 1;
            len *= 2;
        }
    }

    /// Look-ahead: leave `d(i, k)` as an upper bound for each future subsequence `k` that has
    /// `i` as a left candidate and whose data has arrived.
    fn forward(&mut self, i: u64, stats: (f64, f64)) {
        let m = self.cfg.m as u64;
        let k_lo = i + m - 1;
        let newest = self.series.len; // exclusive
        if newest < k_lo + m {
            return;
        }
        let k_hi = (newest - m).min(i + self.cfg.lookahead as u64);
        if k_hi < k_lo {
            return;
        }
        // Moved out for the duration so the closure can update them while `self` is borrowed;
        // `mem::take` on a Vec does not allocate.
        let mut ub = std::mem::take(&mut self.ub);
        let mut ub_nn = std::mem::take(&mut self.ub_nn);
        let ring = ub.len() as u64;
        self.for_each_distance(i, stats, k_lo, k_hi, &mut |k, d| {
            let slot = (k % ring) as usize;
            if d < ub[slot] {
                ub[slot] = d;
                ub_nn[slot] = i;
            }
        });
        self.ub = ub;
        self.ub_nn = ub_nn;
    }

    /// Best candidate among subsequences `[lo, hi]` for subsequence `i`.
    fn chunk_best(&self, i: u64, stats: (f64, f64), lo: u64, hi: u64) -> Option<Cand> {
        let mut best: Option<(Best, u64)> = None;
        self.for_each_piece(i, stats, lo, hi, &mut |b, j0| {
            if b.is_some() {
                let cand = (b, j0 + b.idx as u64);
                best = Some(match best {
                    Some(prev) if b.v <= prev.0.v => prev,
                    _ => cand,
                });
            }
        });
        let (b, j) = best?;
        Some(Cand {
            d: self.v_to_distance(b.v, stats.1),
            nn: j,
        })
    }

    fn v_to_distance(&self, v: f64, inv_i: f64) -> f64 {
        let m = self.cfg.m as f64;
        let rho = (v * inv_i / m).min(1.0);
        (2.0 * m * (1.0 - rho)).max(0.0).sqrt()
    }

    /// Append the versioned little-endian state (format [`DAMP_STATE_VERSION`]).
    ///
    /// Layout: magic `ODMP`, version u16, m, history, lookahead (u64), nan policy u8, mass mode
    /// u8, origin, next, last constant (`u64::MAX` = none), missing, exact count, bound count
    /// (u64), best-so-far f64, the look-ahead ring (`lookahead + 1` × (f64, u64)), the series.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.header(DAMP_MAGIC, DAMP_STATE_VERSION);
        w.u64(self.cfg.m as u64);
        w.u64(self.cfg.history as u64);
        w.u64(self.cfg.lookahead as u64);
        w.u8(self.cfg.nan_policy.to_byte());
        w.u8(match self.cfg.mass {
            MassMode::Auto => 0,
            MassMode::Never => 1,
            MassMode::Always => 2,
        });
        w.u64(self.origin);
        w.u64(self.next);
        write_opt_u64(&mut w, self.last_const);
        w.u64(self.missing);
        w.u64(self.exact_count);
        w.u64(self.bound_count);
        w.f64(self.bsf);
        for (u, n) in self.ub.iter().zip(&self.ub_nn) {
            w.f64(*u);
            w.u64(*n);
        }
        self.series.encode(&mut w);
    }

    /// Restore a state written by [`Damp::encode`], with the fastest kernel of this CPU.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(DAMP_MAGIC, "damp", DAMP_STATE_VERSION)?;
        let m = r.u64_len(1 << 31)?;
        let history = r.u64_len(1 << 31)?;
        let lookahead = r.u64_len(1 << 31)?;
        let nan_policy = NanPolicy::from_byte(r.u8()?)?;
        let mass = match r.u8()? {
            0 => MassMode::Auto,
            1 => MassMode::Never,
            2 => MassMode::Always,
            _ => return Err(DecodeError::invalid("unknown mass mode")),
        };
        let cfg = DampConfig {
            m,
            history,
            lookahead,
            nan_policy,
            mass,
        };
        let mut d = Damp::new(cfg).map_err(|_| DecodeError::invalid("bad damp parameters"))?;
        d.origin = r.u64()?;
        d.next = r.u64()?;
        d.last_const = read_opt_u64(&mut r)?;
        d.missing = r.u64()?;
        d.exact_count = r.u64()?;
        d.bound_count = r.u64()?;
        d.bsf = r.f64()?;
        for k in 0..d.ub.len() {
            d.ub[k] = r.f64()?;
            d.ub_nn[k] = r.u64()?;
        }
        d.series = Series::decode(&mut r, m, history + lookahead + 1, m)?;
        r.finish()?;
        Ok(d)
    }
}

/// Run DAMP over a whole series, as the authors' batch script does: subsequences starting
/// before `split` (0-based) are training data and not scored; the rest are scored against
/// all earlier data with the best-so-far as the only bound. Entry `i` of the result is the
/// [`Discord`] of the subsequence starting at `i` (`series.len() − m + 1` entries), `None`
/// where unscored.
pub fn damp_profile(
    series: &[f64],
    m: usize,
    split: usize,
    lookahead: usize,
) -> Result<Vec<Option<Discord>>, ParamError> {
    let n = series.len();
    let cfg = DampConfig {
        lookahead,
        ..DampConfig::new(m, n.max(2 * m))
    };
    let mut d = Damp::new(cfg)?;
    let mut out = vec![None; (n + 1).saturating_sub(m)];
    for &x in series {
        // The subsequence this push scores (if any) starts here.
        let i = (d.series.len + 1).checked_sub((m + lookahead) as u64);
        match i {
            Some(i) if i as usize >= split => {
                if let Some(r) = d.push(x, None) {
                    out[r.index as usize] = Some(r);
                }
            }
            _ => d.push_unscored(x),
        }
    }
    let mut rest = Vec::new();
    d.flush(None, &mut rest);
    for r in rest {
        out[r.index as usize] = Some(r);
    }
    Ok(out)
}
