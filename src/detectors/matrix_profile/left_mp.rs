//! Streaming left matrix profile, exact mode: pure, synchronous, no I/O.
//!
//! For each new point the newest subsequence `i` (length `m`, ending at that point) is compared
//! with every earlier subsequence `j` that lies inside the bounded history and overlaps it by at
//! most one point (`j ≤ i − m + 1`, DAMP's exclusion). The score is the smallest z-normalised
//! Euclidean distance (population σ); a large score is a *left discord*.
//!
//! # API for the operator wrapper
//!
//! One [`LeftMatrixProfile`] per key, built from the validated config:
//!
//! ```text
//! let mut mp = LeftMatrixProfile::try_new(m, history)?.with_nan_policy(NanPolicy::Gap);
//! // per record, in key order:
//! if let Some(d) = mp.push(value) { /* d.index, d.score, d.nn_index, d.exact */ }
//! // or, for all values of one key in a batch (same results, several times faster):
//! mp.push_slice(&values, &mut outs);          // one Option<Discord> per input value
//! // checkpoint / restore (bit-identical continuation):
//! mp.encode(&mut bytes);  let mp = LeftMatrixProfile::decode(&bytes)?;
//! ```
//!
//! Then a [`super::threshold::Threshold`] (one per key, `Threshold::new(spec, m)`) judges each
//! score: `let j = th.judge(d.index, d.score, d.exact)` gives the output fields `threshold`,
//! `is_anomaly` and `state` (`j.warming_up`); [`Discord::normalized`] gives `score / 2√m`.
//! For `mode = "damp"` use [`super::damp::Damp`] instead of this type: the same shape, with
//! `push(x, th.current())` once the threshold is warm and `push_exact(x)` while it warms up (so
//! that the threshold learns from exact scores); its state has the same encode/decode pair.
//!
//! Facts the wrapper needs:
//! - **Warm-up.** `push` returns `None` until `2m − 1` points have arrived (the first
//!   subsequence with a non-overlapping predecessor), after a [`NanPolicy::Reset`], and while the
//!   newest subsequence holds a missing point.
//! - **Missing values** (NaN, ±∞) follow [`NanPolicy`]; [`LeftMatrixProfile::missing_points`]
//!   counts them for the metrics.
//! - **Index.** [`Discord::index`] is the start of the newest subsequence, in points of this key
//!   since the profile was created (u64); the point that produced it is `index + m − 1`.
//! - **Memory** per key is [`LeftMatrixProfile::memory_bytes`], about `41·history + 32·m`
//!   bytes (history 10,000: 0.41 MB); the encoded state is about `16·history` bytes (values and
//!   running cross products; the statistics are recomputed on decode).
//! - **Cost** per point is O(history) with no heap allocation; every `history − 2m + 2` points
//!   each running cross product has been recomputed exactly once (one per point), so rounding
//!   drift cannot accumulate.
//! - **Constant windows**: a window is constant when all its values are equal or its σ is at
//!   most [`super::CONSTANT_REL_SIGMA`] of its largest magnitude (rounding noise).
//!
//! # How it works
//!
//! The centred cross product of the newest subsequence with each candidate is kept per
//! *diagonal* (fixed lag `i − j`), and two multiply-adds per candidate move it to the next
//! point (SCAMP's covariance form of the STOMP recurrence, see [`super::simd`]: unlike raw dot
//! products it does not lose precision on series far from zero); candidate means and `1/σ` are
//! computed once per subsequence, exactly, in O(m). The fused update-and-scan loop lives in
//! [`super::simd`] and can fuse up to [`super::simd::MAX_TILE`] points
//! ([`LeftMatrixProfile::push_slice`]). The distance reported for the winning candidate is
//! recomputed directly from the data in O(m), so the score carries no cancellation error from
//! the correlation formula, even near zero.
//!
//! Constant subsequences follow a fixed rule: two constant windows are at distance 0, a
//! constant and a non-constant one at `√m`. No score is ever NaN.

use super::series::{Class, Series, znorm_distance};
use super::simd::{self, Best, Kernel, MAX_TILE, Step, Tile};
use super::{ParamError, read_opt_u64, write_opt_u64};
use crate::core::codec::{DecodeError, Reader, Writer};

/// Version written by [`LeftMatrixProfile::encode`].
pub const LEFT_MP_STATE_VERSION: u16 = 2;
const LEFT_MP_MAGIC: &[u8; 4] = b"OLMP";

/// What a non-finite value (NaN, ±∞, "missing") does to the profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NanPolicy {
    /// The point takes its index, but no subsequence containing it is scored or used as a
    /// candidate; history is kept. Outputs resume `m` points after the gap.
    #[default]
    Gap,
    /// The point is dropped as if it never arrived: indexes count accepted points only.
    Skip,
    /// The point takes its index and the history is cleared: warm-up starts again after it.
    Reset,
}

impl NanPolicy {
    pub(super) fn to_byte(self) -> u8 {
        match self {
            NanPolicy::Gap => 0,
            NanPolicy::Skip => 1,
            NanPolicy::Reset => 2,
        }
    }

    pub(super) fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            0 => Ok(NanPolicy::Gap),
            1 => Ok(NanPolicy::Skip),
            2 => Ok(NanPolicy::Reset),
            _ => Err(DecodeError::invalid("unknown nan policy")),
        }
    }
}

/// The score of the newest subsequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Discord {
    /// Start of the newest subsequence (0-based, in points of this series).
    pub index: u64,
    /// Distance to its nearest earlier non-overlapping subsequence, in `[0, 2√m]`.
    pub score: f64,
    /// Start of that nearest neighbour.
    pub nn_index: u64,
    /// `true` when `score` is the exact minimum; `false` when it is an upper bound (DAMP mode
    /// stopped searching once the score was known to be below its pruning bound).
    pub exact: bool,
}

impl Discord {
    /// `score / (2√m)`: 0 for a perfect match, 1 for a perfectly anti-correlated one.
    pub fn normalized(&self, m: usize) -> f64 {
        self.score / (2.0 * (m as f64).sqrt())
    }
}

// ---------------------------------------------------------------------------------------------

/// Streaming left matrix profile over a bounded history (exact mode).
///
/// Holds `history` points per key; see the module docs for the API, the warm-up and the
/// missing-value rules.
#[derive(Clone, Debug)]
pub struct LeftMatrixProfile {
    m: usize,
    history: usize,
    nan_policy: NanPolicy,
    kernel: Kernel,
    series: Series,
    /// Running centred cross product per diagonal: slot `s` holds lag
    /// `i − j = history − m − s`, so at point count `p` slot `s` pairs the newest subsequence
    /// with `j = p − history + s`.
    qt: Vec<f64>,
    /// Absolute index of relative point 0 (moves forward on a reset).
    origin: u64,
    /// Newest constant subsequence that has become a candidate (relative index).
    last_const: Option<u64>,
    missing: u64,
}

impl LeftMatrixProfile {
    /// A profile with subsequence length `m` and `history` points of memory, using the fastest
    /// kernel of this CPU and [`NanPolicy::Gap`].
    ///
    /// # Panics
    /// If the parameters are invalid (see [`LeftMatrixProfile::try_new`]); the operator config
    /// validates them first, so this only fires on a programming error.
    pub fn new(m: usize, history: usize) -> Self {
        Self::try_new(m, history).expect("invalid matrix profile parameters")
    }

    /// A profile, or why the parameters are invalid: `m ≥ 2`, `history ≥ 2m`.
    pub fn try_new(m: usize, history: usize) -> Result<Self, ParamError> {
        Self::with_kernel(m, history, Kernel::detect())
    }

    /// As [`LeftMatrixProfile::try_new`] with a forced kernel (tests and benches).
    pub fn with_kernel(m: usize, history: usize, kernel: Kernel) -> Result<Self, ParamError> {
        check_params(m, history)?;
        if !kernel.is_available() {
            return Err(ParamError::KernelUnavailable(kernel.name()));
        }
        Ok(LeftMatrixProfile {
            m,
            history,
            nan_policy: NanPolicy::default(),
            kernel,
            series: Series::new(m, history + MAX_TILE, m + MAX_TILE + 1),
            qt: vec![0.0; history - 2 * m + 2],
            origin: 0,
            last_const: None,
            missing: 0,
        })
    }

    /// Set the missing-value policy (builder style).
    pub fn with_nan_policy(mut self, policy: NanPolicy) -> Self {
        self.nan_policy = policy;
        self
    }

    /// Subsequence length.
    pub fn m(&self) -> usize {
        self.m
    }

    /// History length in points.
    pub fn history(&self) -> usize {
        self.history
    }

    /// The kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The missing-value policy.
    pub fn nan_policy(&self) -> NanPolicy {
        self.nan_policy
    }

    /// Index the next point will get: points seen, less those dropped by [`NanPolicy::Skip`].
    pub fn len_points(&self) -> u64 {
        self.origin + self.series.len
    }

    /// Non-finite values pushed so far (under every policy).
    pub fn missing_points(&self) -> u64 {
        self.missing
    }

    /// Whether the next point can produce a score (enough history since start or reset).
    pub fn is_warm(&self) -> bool {
        self.series.len + 1 >= 2 * self.m as u64 - 1
    }

    /// Heap bytes held by this profile.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.series.memory_bytes() + self.qt.len() * 8
    }

    /// Score one point. `None` during warm-up, while the newest subsequence holds a missing
    /// point, or when no valid candidate exists.
    pub fn push(&mut self, x: f64) -> Option<Discord> {
        let mut out = None;
        self.push_one(x, &mut |d| out = d);
        out
    }

    /// Score a run of points of this series, appending one entry per input to `out`; the
    /// results equal calling [`LeftMatrixProfile::push`] for each, bit for bit, but up to
    /// [`MAX_TILE`] points share one pass over the history.
    pub fn push_slice(&mut self, xs: &[f64], out: &mut Vec<Option<Discord>>) {
        let mut k = 0;
        while k < xs.len() {
            let run = xs[k..]
                .iter()
                .take(MAX_TILE)
                .take_while(|x| x.is_finite())
                .count();
            if run >= 2 && self.can_tile() {
                self.advance(&xs[k..k + run], &mut |d| out.push(d));
                k += run;
            } else {
                self.push_one(xs[k], &mut |d| out.push(d));
                k += 1;
            }
        }
    }

    fn can_tile(&self) -> bool {
        self.series.len >= 2 * self.m as u64 - 1 && self.qt.len() > MAX_TILE
    }

    fn push_one(&mut self, x: f64, emit: &mut dyn FnMut(Option<Discord>)) {
        if !x.is_finite() {
            self.missing += 1;
            match self.nan_policy {
                NanPolicy::Skip => return emit(None),
                NanPolicy::Reset => {
                    self.origin += self.series.len + 1;
                    self.series.clear();
                    self.last_const = None;
                    return emit(None);
                }
                NanPolicy::Gap => {}
            }
        }
        self.advance(std::slice::from_ref(&x), emit);
    }

    /// Slots valid (diagonal exists) at point count `p`: `[lo(p), S)`.
    fn lo(&self, p: u64) -> usize {
        (self.history as u64).saturating_sub(p) as usize
    }

    /// Relative candidate start of slot `s` at point count `p` (slot must be valid).
    fn slot_j(&self, s: usize, p: u64) -> u64 {
        p + s as u64 - self.history as u64
    }

    /// Move the profile forward by `xs.len()` points (1, or up to MAX_TILE finite points once
    /// `2m − 1` points are held) and emit one result per point.
    ///
    /// Per point, in this order (the reference semantics that every tile reproduces):
    /// 1. push the point (statistics of the subsequence it completes);
    /// 2. every diagonal that existed before moves one step (recurrence) and is scanned;
    /// 3. during the first `history` points one new diagonal starts, computed exactly;
    /// 4. diagonal `p mod S` (if it existed) is replaced by its exact cross product;
    /// 5. the result is assembled, with the constant-window rules.
    fn advance(&mut self, xs: &[f64], emit: &mut dyn FnMut(Option<Discord>)) {
        let b = xs.len();
        debug_assert!(b == 1 || (b <= MAX_TILE && self.can_tile()));
        let m = self.m as u64;
        let p = self.series.len;
        for &x in xs {
            self.series.push(x);
        }
        let mut steps = [Step { df: 0.0, dg: 0.0 }; MAX_TILE];
        let mut best = [Best::NONE; MAX_TILE];
        for (k, st) in steps.iter_mut().enumerate().take(b) {
            // df and dg of the newest subsequence before step k (they exist once it does).
            let pk = p + k as u64;
            if pk >= m {
                st.df = (self.series.value(pk) - self.series.value(pk - m)) * 0.5;
                st.dg = self.series.dg[self.series.pos(pk - m)];
            }
        }
        let s_total = self.qt.len();
        // Diagonals that exist before this block: the SIMD tile, minus the ones that are
        // refreshed inside the block, which take the scalar path so the refresh lands between
        // the right two steps.
        if p >= 2 * m - 1 {
            let lo = self.lo(p);
            let mut refresh = [usize::MAX; MAX_TILE];
            for (k, r) in refresh.iter_mut().enumerate().take(b) {
                let slot = ((p + k as u64) % s_total as u64) as usize;
                if slot >= lo {
                    *r = slot;
                }
            }
            let mut excluded: [usize; MAX_TILE] = refresh;
            excluded[..b].sort_unstable();
            let mut start = lo;
            for &ex in excluded[..b].iter().chain(std::iter::once(&s_total)) {
                if ex == usize::MAX {
                    continue;
                }
                if ex > start {
                    self.tile_range(start, ex, p, &steps[..b], &mut best[..b]);
                }
                start = start.max(ex + 1);
            }
            for (k, &r) in refresh.iter().enumerate().take(b) {
                if r != usize::MAX {
                    self.slot_scalar(r, p, 0, false, Some(k), &steps[..b], &mut best[..b]);
                }
            }
        }
        // Diagonals born inside this block (only during the first `history` points).
        for k in 0..b {
            let pk1 = p + k as u64 + 1;
            if pk1 >= 2 * m - 1 && pk1 <= self.history as u64 {
                let s_new = self.history - pk1 as usize;
                // A refresh of this slot later in the block (step k2 > k) is repeated exactly
                // as the one-point path would do it.
                let refresh_k =
                    (k + 1..b).find(|&k2| (p + k2 as u64) % s_total as u64 == s_new as u64);
                self.slot_scalar(s_new, p, k, true, refresh_k, &steps[..b], &mut best[..b]);
            }
        }
        for (k, bk) in best.iter().enumerate().take(b) {
            let d = self.finish_step(p + k as u64 + 1, *bk);
            emit(d);
        }
    }

    /// Run the SIMD tile over slots `[s0, s1)`, all valid at count `p`, split where the ring
    /// wraps.
    fn tile_range(&mut self, s0: usize, s1: usize, p: u64, steps: &[Step], best: &mut [Best]) {
        let mut s = s0;
        while s < s1 {
            let base = self.series.pos(self.slot_j(s, p));
            // Slots whose candidate start does not wrap past the ring's end.
            let run = (s1 - s).min(self.series.cap - base);
            let tile = Tile {
                t: &self.series.vals[base..],
                dg: &self.series.dg[base..],
                a: &self.series.inv[base + 1..],
                m: self.m,
            };
            simd::advance(self.kernel, &mut self.qt[s..s + run], &tile, steps, s, best);
            s += run;
        }
    }

    /// The scalar path for one slot over the block's steps `from..`: `born` starts the
    /// diagonal exactly at step `from`; `refresh_at` replaces it by its exact value after
    /// that step's scan. Arithmetic identical to [`simd::advance`].
    #[allow(clippy::too_many_arguments)]
    fn slot_scalar(
        &mut self,
        s: usize,
        p: u64,
        from: usize,
        born: bool,
        refresh_at: Option<usize>,
        steps: &[Step],
        best: &mut [Best],
    ) {
        let m = self.m as u64;
        let mut q = self.qt[s];
        for (k, st) in steps.iter().enumerate().skip(from) {
            let pk1 = p + k as u64 + 1;
            let j_new = self.slot_j(s, pk1);
            if born && k == from {
                q = self.series.centered_dot(pk1 - m, j_new);
            } else {
                let j_old = j_new - 1;
                let dfj = (self.series.value(j_old + m) - self.series.value(j_old)) * 0.5;
                let dgj = self.series.dg[self.series.pos(j_old)];
                q = (q + st.df * dgj) + dfj * st.dg;
            }
            best[k].offer(q * self.series.inv[self.series.pos(j_new)], s);
            if refresh_at == Some(k) {
                q = self.series.centered_dot(pk1 - m, j_new);
            }
        }
        self.qt[s] = q;
    }

    /// Assemble the result at point count `p1` (after the point), from the scan's best slot.
    fn finish_step(&mut self, p1: u64, best: Best) -> Option<Discord> {
        let m = self.m as u64;
        if p1 < 2 * m - 1 {
            return None;
        }
        let i = p1 - m;
        let j_lo = p1.saturating_sub(self.history as u64);
        // The candidate entering now: remember it if constant (see `last_const`).
        let j_enter = i + 1 - m;
        if self.series.class(j_enter) == Class::Constant {
            self.last_const = Some(j_enter);
        }
        let konst = self.last_const.filter(|&c| c >= j_lo);
        let regular = best.is_some().then(|| self.slot_j(best.idx, p1));
        let sqrt_m = (self.m as f64).sqrt();
        let (score, nn) = match self.series.class(i) {
            Class::Missing => return None,
            Class::Constant => match (konst, regular) {
                (Some(c), _) => (0.0, c),
                (None, Some(j)) => (sqrt_m, j),
                (None, None) => return None,
            },
            Class::Regular { mu, inv } => {
                let reg = regular.map(|j| {
                    let Class::Regular { mu: mj, inv: ij } = self.series.class(j) else {
                        unreachable!("the scan only selects regular candidates")
                    };
                    let d = znorm_distance(
                        self.series.window(i),
                        (mu, inv),
                        self.series.window(j),
                        (mj, ij),
                    );
                    (d, j)
                });
                match (reg, konst) {
                    (Some((d, j)), Some(c)) => {
                        if d <= sqrt_m {
                            (d, j)
                        } else {
                            (sqrt_m, c)
                        }
                    }
                    (Some(r), None) => r,
                    (None, Some(c)) => (sqrt_m, c),
                    (None, None) => return None,
                }
            }
        };
        Some(Discord {
            index: self.origin + i,
            score,
            nn_index: self.origin + nn,
            exact: true,
        })
    }

    /// Append the versioned little-endian state (format [`LEFT_MP_STATE_VERSION`]) to `out`.
    ///
    /// Layout: magic `OLMP`, version u16, m u64, history u64, nan policy u8, origin u64,
    /// last constant candidate u64 (`u64::MAX` = none), missing count u64, the series (length,
    /// newest gap, held points oldest first as f64 bits, a missing-point bitmap), then the
    /// `history − 2m + 2` running cross products as f64 bits. Statistics are recomputed on
    /// decode. The kernel is not stored: every kernel computes identical bits.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.header(LEFT_MP_MAGIC, LEFT_MP_STATE_VERSION);
        w.u64(self.m as u64);
        w.u64(self.history as u64);
        w.u8(self.nan_policy.to_byte());
        w.u64(self.origin);
        write_opt_u64(&mut w, self.last_const);
        w.u64(self.missing);
        self.series.encode(&mut w);
        // Version 2: the slots no pair has reached yet (zeros at either end while the history
        // fills) are counted, not written, so a new key's state is bytes, not `8 × history`.
        let zero = |q: &&f64| q.to_bits() == 0;
        let lead = self.qt.iter().take_while(zero).count();
        let trail = self.qt[lead..].iter().rev().take_while(zero).count();
        w.u64(self.qt.len() as u64);
        w.u64(lead as u64);
        w.u64(trail as u64);
        for &q in &self.qt[lead..self.qt.len() - trail] {
            w.f64(q);
        }
    }

    /// Restore a state written by [`LeftMatrixProfile::encode`], with the fastest kernel of
    /// this CPU. The restored profile continues exactly as the original would have.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.header_in(
            LEFT_MP_MAGIC,
            "left matrix profile",
            1..=LEFT_MP_STATE_VERSION,
        )?;
        let m = r.u64_len(1 << 31)?;
        let history = r.u64_len(1 << 31)?;
        check_params(m, history).map_err(|_| DecodeError::invalid("bad m or history"))?;
        let nan_policy = NanPolicy::from_byte(r.u8()?)?;
        let mut mp = LeftMatrixProfile::new(m, history).with_nan_policy(nan_policy);
        mp.origin = r.u64()?;
        mp.last_const = read_opt_u64(&mut r)?;
        mp.missing = r.u64()?;
        mp.series = Series::decode(&mut r, m, history + MAX_TILE, m + MAX_TILE + 1)?;
        if r.u64_len(history)? != mp.qt.len() {
            return Err(DecodeError::invalid(
                "cross-product count does not match history",
            ));
        }
        let n = mp.qt.len();
        let (lead, trail) = match version {
            1 => (0, 0),
            _ => (r.u64_len(n)?, r.u64_len(n)?),
        };
        if lead + trail > n {
            return Err(DecodeError::invalid("more zero slots than cross products"));
        }
        for q in &mut mp.qt[lead..n - trail] {
            *q = r.f64()?;
        }
        r.finish()?;
        Ok(mp)
    }
}

fn check_params(m: usize, history: usize) -> Result<(), ParamError> {
    if m < 2 {
        return Err(ParamError::MTooSmall(m));
    }
    if history > 1 << 31 {
        return Err(ParamError::HistoryTooLong(history));
    }
    if history < 2 * m {
        return Err(ParamError::HistoryTooShort {
            history,
            min: 2 * m,
        });
    }
    Ok(())
}

/// Left matrix profile of a whole series with unbounded history, for evaluation.
///
/// Entry `i` is the score of the subsequence starting at `i` (`series.len() − m + 1` entries);
/// entries with no candidate (the first `m − 1`, and those touching a missing value, which
/// follows [`NanPolicy::Gap`]) are 0.0, as in DAMP's output files.
///
/// # Panics
/// If `m < 2` or the series is shorter than `2m`.
pub fn left_profile(series: &[f64], m: usize) -> Vec<f64> {
    left_profile_discords(series, m)
        .into_iter()
        .map(|d| d.map_or(0.0, |d| d.score))
        .collect()
}

/// As [`left_profile`], with nearest-neighbour indexes: entry `i` is the [`Discord`] of the
/// subsequence starting at `i`, `None` where it has no candidate.
///
/// # Panics
/// If `m < 2` or the series is shorter than `2m`.
pub fn left_profile_discords(series: &[f64], m: usize) -> Vec<Option<Discord>> {
    let mut mp = LeftMatrixProfile::new(m, series.len());
    let mut outs = Vec::with_capacity(series.len());
    mp.push_slice(series, &mut outs);
    // Output k belongs to the subsequence ending at point k, i.e. starting at k + 1 − m.
    outs.split_off(m - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The format before version 2: every cross product written.
    fn encode_v1(mp: &LeftMatrixProfile) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.header(LEFT_MP_MAGIC, 1);
        w.u64(mp.m as u64);
        w.u64(mp.history as u64);
        w.u8(mp.nan_policy.to_byte());
        w.u64(mp.origin);
        write_opt_u64(&mut w, mp.last_const);
        w.u64(mp.missing);
        mp.series.encode(&mut w);
        w.u64(mp.qt.len() as u64);
        for &q in &mp.qt {
            w.f64(q);
        }
        out
    }

    /// Issue 14.11: a new key's state is small on disk (and in a spill), and states written
    /// in version 1 still restore to the same profile as version 2's.
    #[test]
    fn new_keys_encode_small_and_version_1_still_decodes() {
        let mut mp = LeftMatrixProfile::new(100, 10_000);
        mp.push(1.0);
        let mut v2 = Vec::new();
        mp.encode(&mut v2);
        assert!(v2.len() < 200, "{} bytes for one point", v2.len());
        for n in [1, 150, 5_000, 12_000] {
            let mut mp = LeftMatrixProfile::new(16, 2_000);
            for i in 0..n {
                mp.push(((i * 37 % 101) as f64).sin());
            }
            let mut v2 = Vec::new();
            mp.encode(&mut v2);
            for bytes in [v2, encode_v1(&mp)] {
                let mut back = LeftMatrixProfile::decode(&bytes).unwrap();
                assert_eq!(back.qt, mp.qt, "{n} points");
                let mut again = Vec::new();
                back.encode(&mut again);
                let mut orig = Vec::new();
                mp.encode(&mut orig);
                assert_eq!(again, orig);
                let (a, b) = (back.push(0.5), mp.clone().push(0.5));
                assert_eq!(a, b, "{n} points");
            }
        }
    }
}
