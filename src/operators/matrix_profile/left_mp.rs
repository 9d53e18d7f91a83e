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
//! The wrapper's `mod.rs` mounts the algorithm files as `pub mod {left_mp, damp, simd,
//! threshold}`, `mod algo; pub use algo::*;` and `#[cfg(test)] mod tests;`.
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
//!   most [`CONSTANT_REL_SIGMA`] of its largest magnitude (rounding noise).
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

use super::simd::{self, Best, Kernel, MAX_TILE, Step, Tile};

/// Version written by [`LeftMatrixProfile::encode`].
pub const LEFT_MP_STATE_VERSION: u16 = 1;
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
    fn to_byte(self) -> u8 {
        match self {
            NanPolicy::Gap => 0,
            NanPolicy::Skip => 1,
            NanPolicy::Reset => 2,
        }
    }

    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            0 => Ok(NanPolicy::Gap),
            1 => Ok(NanPolicy::Skip),
            2 => Ok(NanPolicy::Reset),
            _ => Err(DecodeError::Invalid("unknown nan policy")),
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

/// Invalid construction parameters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// `m` below 2: a z-normalised window needs two points.
    #[error("subsequence length m must be at least 2, got {0}")]
    MTooSmall(usize),
    /// The history cannot hold a subsequence and a non-overlapping predecessor.
    #[error("history must be at least 2·m = {min} points, got {history}")]
    HistoryTooShort {
        /// The history asked for.
        history: usize,
        /// The smallest accepted.
        min: usize,
    },
    /// The history is larger than this build allows.
    #[error("history of {0} points is larger than the supported 2^31")]
    HistoryTooLong(usize),
    /// The requested kernel cannot run on this CPU.
    #[error("kernel {0} is not supported by this CPU")]
    KernelUnavailable(&'static str),
    /// A parameter outside its documented range.
    #[error("invalid parameter: {0}")]
    Invalid(&'static str),
}

/// A checkpointed state that cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the state does.
    #[error("state is truncated")]
    Truncated,
    /// The bytes are not a state of this type.
    #[error("not a {0} state")]
    BadMagic(&'static str),
    /// Written by a newer (or unknown) format version.
    #[error("unsupported state version {0}")]
    UnsupportedVersion(u16),
    /// The bytes decode but describe an impossible state.
    #[error("invalid state: {0}")]
    Invalid(&'static str),
}

// ---------------------------------------------------------------------------------------------
// Little-endian codec shared by the matrix-profile states.

/// Appends little-endian fields to a byte vector.
pub(super) struct Writer<'a>(pub(super) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    pub(super) fn f64(&mut self, v: f64) {
        self.bytes(&v.to_bits().to_le_bytes());
    }
    pub(super) fn opt_u64(&mut self, v: Option<u64>) {
        // u64::MAX cannot be a point index reached in practice, so it marks "none".
        self.u64(v.unwrap_or(u64::MAX));
    }
}

/// Reads little-endian fields, failing with [`DecodeError::Truncated`] at the end.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(super) fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64()?))
    }
    pub(super) fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        let v = self.u64()?;
        Ok((v != u64::MAX).then_some(v))
    }
    /// A length field, bounded so that a corrupt state cannot make us allocate wildly.
    pub(super) fn len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let v = self.u64()?;
        if v > max as u64 {
            return Err(DecodeError::Invalid("length field out of range"));
        }
        Ok(v as usize)
    }
    /// Check the 4-byte magic and the version.
    pub(super) fn header(
        &mut self,
        magic: &[u8; 4],
        what: &'static str,
        version: u16,
    ) -> Result<(), DecodeError> {
        if self.take(4)? != magic {
            return Err(DecodeError::BadMagic(what));
        }
        let v = self.u16()?;
        if v != version {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        Ok(())
    }
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Invalid("trailing bytes"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The series ring: values plus per-subsequence statistics.

/// What a subsequence can be used for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Class {
    /// Non-constant and complete: mean and `1/σ`.
    Regular { mu: f64, inv: f64 },
    /// All values equal.
    Constant,
    /// Holds a missing point.
    Missing,
}

/// The last `cap` points of a series with the mean, `1/σ`, class and covariance-update term
/// `dg` of every subsequence starting in them, in rings indexed by `j mod cap`.
///
/// The first `mirror` ring slots are repeated after the end, so any run of up to `mirror`
/// values starting anywhere in the ring is one contiguous slice: the SIMD loops then never see
/// the wrap except at one split point per pass.
#[derive(Clone, Debug)]
pub(super) struct Series {
    pub(super) m: usize,
    pub(super) cap: usize,
    mirror: usize,
    /// Values; a missing point is stored as 0.0 so that the running cross products stay finite
    /// and consistent with their exact refresh.
    pub(super) vals: Vec<f64>,
    /// Mean of the subsequence starting here (missing points counted as 0.0).
    pub(super) mu: Vec<f64>,
    /// `1/σ` of the subsequence starting here; NaN if constant or missing.
    pub(super) inv: Vec<f64>,
    /// `dg_w = (T[w+m] − μ_{w+1}) + (T[w] − μ_w)`, set once subsequence `w + 1` is complete.
    pub(super) dg: Vec<f64>,
    /// [`Class`] of the subsequence starting here: 0 regular, 1 constant, 2 missing.
    flags: Vec<u8>,
    /// One bit per ring slot: the point there was missing.
    missing: Vec<u64>,
    /// Points pushed since creation or the last reset (the relative index of the next point).
    pub(super) len: u64,
    /// Relative index of the newest missing point.
    last_missing: Option<u64>,
}

impl Series {
    pub(super) fn new(m: usize, cap: usize, mirror: usize) -> Self {
        assert!(mirror >= m && mirror <= cap, "mirror must cover one window");
        let total = cap + mirror;
        Series {
            m,
            cap,
            mirror,
            vals: vec![0.0; total],
            mu: vec![0.0; total],
            inv: vec![f64::NAN; total],
            dg: vec![0.0; total],
            flags: vec![FLAG_MISSING; cap],
            missing: vec![0; cap.div_ceil(64)],
            len: 0,
            last_missing: None,
        }
    }

    pub(super) fn memory_bytes(&self) -> usize {
        (self.vals.len() + self.mu.len() + self.inv.len() + self.dg.len()) * 8
            + self.flags.len()
            + self.missing.len() * 8
    }

    #[inline]
    pub(super) fn pos(&self, j: u64) -> usize {
        (j % self.cap as u64) as usize
    }

    #[inline]
    pub(super) fn value(&self, j: u64) -> f64 {
        self.vals[self.pos(j)]
    }

    /// The `m` values of subsequence `j` (contiguous thanks to the mirror).
    #[inline]
    pub(super) fn window(&self, j: u64) -> &[f64] {
        let p = self.pos(j);
        &self.vals[p..p + self.m]
    }

    #[inline]
    pub(super) fn class(&self, j: u64) -> Class {
        let p = self.pos(j);
        match self.flags[p] {
            FLAG_REGULAR => Class::Regular {
                mu: self.mu[p],
                inv: self.inv[p],
            },
            FLAG_CONSTANT => Class::Constant,
            _ => Class::Missing,
        }
    }

    fn is_missing_at(&self, pos: usize) -> bool {
        self.missing[pos / 64] >> (pos % 64) & 1 == 1
    }

    fn set_missing_at(&mut self, pos: usize, on: bool) {
        let bit = 1u64 << (pos % 64);
        if on {
            self.missing[pos / 64] |= bit;
        } else {
            self.missing[pos / 64] &= !bit;
        }
    }

    #[inline]
    fn put(v: &mut [f64], cap: usize, mirror: usize, pos: usize, x: f64) {
        v[pos] = x;
        if pos < mirror {
            v[cap + pos] = x;
        }
    }

    /// Append one point; a non-finite value is stored as missing. Computes the statistics of
    /// the subsequence that this point completes.
    pub(super) fn push(&mut self, x: f64) {
        let j = self.len;
        let p = self.pos(j);
        let missing = !x.is_finite();
        Self::put(
            &mut self.vals,
            self.cap,
            self.mirror,
            p,
            if missing { 0.0 } else { x },
        );
        self.set_missing_at(p, missing);
        if missing {
            self.last_missing = Some(j);
        }
        self.len += 1;
        if self.len >= self.m as u64 {
            let start = self.len - self.m as u64;
            let holes = self.last_missing.is_some_and(|lm| lm >= start);
            self.set_stats(start, holes, start >= 1);
        }
    }

    /// Statistics of the subsequence `start` (just completed) and, with `with_dg`, `dg` of its
    /// predecessor.
    fn set_stats(&mut self, start: u64, holes: bool, with_dg: bool) {
        let w = self.window(start);
        let (mu, inv, flag) = if holes {
            // Mean of the zero-filled window: never used as a statistic, but it keeps the
            // covariance recurrence through the gap consistent with the exact refresh.
            (
                w.iter().sum::<f64>() / w.len() as f64,
                f64::NAN,
                FLAG_MISSING,
            )
        } else {
            let (mu, inv) = window_stats(w);
            (
                mu,
                inv,
                if inv.is_nan() {
                    FLAG_CONSTANT
                } else {
                    FLAG_REGULAR
                },
            )
        };
        let p = self.pos(start);
        Self::put(&mut self.mu, self.cap, self.mirror, p, mu);
        Self::put(&mut self.inv, self.cap, self.mirror, p, inv);
        self.flags[p] = flag;
        if with_dg {
            let prev = start - 1;
            let pp = self.pos(prev);
            let dg = (self.value(prev + self.m as u64) - mu) + (self.vals[pp] - self.mu[pp]);
            Self::put(&mut self.dg, self.cap, self.mirror, pp, dg);
        }
    }

    /// `Σ_k (T[i+k] − μ_i)(T[j+k] − μ_j)` directly, in increasing `k` (separate multiply and
    /// add): the exact value that the covariance recurrence starts from and is refreshed to.
    pub(super) fn centered_dot(&self, i: u64, j: u64) -> f64 {
        let (mi, mj) = (self.mu[self.pos(i)], self.mu[self.pos(j)]);
        let (x, y) = (self.window(i), self.window(j));
        let mut acc = (x[0] - mi) * (y[0] - mj);
        for (a, b) in x[1..].iter().zip(&y[1..]) {
            acc += (a - mi) * (b - mj);
        }
        acc
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
        self.last_missing = None;
        self.missing.iter_mut().for_each(|w| *w = 0);
    }

    /// Oldest relative index still held.
    pub(super) fn first_held(&self) -> u64 {
        self.len.saturating_sub(self.cap as u64)
    }

    /// Write the held points (oldest first) and which of them were missing.
    pub(super) fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.len);
        w.opt_u64(self.last_missing);
        let first = self.first_held();
        w.u64(self.len - first);
        for j in first..self.len {
            w.f64(self.vals[self.pos(j)]);
        }
        let mut bits = 0u8;
        for (k, j) in (first..self.len).enumerate() {
            if self.is_missing_at(self.pos(j)) {
                bits |= 1 << (k % 8);
            }
            if k % 8 == 7 {
                w.u8(bits);
                bits = 0;
            }
        }
        if !(self.len - first).is_multiple_of(8) {
            w.u8(bits);
        }
    }

    /// Inverse of [`Series::encode`]: rebuilds the ring and recomputes the statistics with the
    /// same code as `push`, so they come back bit for bit.
    pub(super) fn decode(
        r: &mut Reader<'_>,
        m: usize,
        cap: usize,
        mirror: usize,
    ) -> Result<Self, DecodeError> {
        let mut s = Series::new(m, cap, mirror);
        let len = r.u64()?;
        let last_missing = r.opt_u64()?;
        let held = r.len(cap)?;
        if held as u64 != len.min(cap as u64) {
            return Err(DecodeError::Invalid(
                "held points do not match the series length",
            ));
        }
        let first = len - held as u64;
        let raw = r.take(held * 8)?;
        let bits = r.take(held.div_ceil(8))?;
        for (k, chunk) in raw.chunks_exact(8).enumerate() {
            let x = f64::from_bits(u64::from_le_bytes(chunk.try_into().expect("8-byte chunk")));
            let p = s.pos(first + k as u64);
            let missing = bits[k / 8] >> (k % 8) & 1 == 1;
            if !x.is_finite() || (missing && x != 0.0) {
                return Err(DecodeError::Invalid("bad stored value"));
            }
            Self::put(&mut s.vals, cap, mirror, p, x);
            s.set_missing_at(p, missing);
        }
        s.len = len;
        s.last_missing = last_missing;
        // Statistics of every subsequence fully inside the held points.
        let mut newest_missing: Option<u64> = None;
        for j in first..len {
            if s.is_missing_at(s.pos(j)) {
                newest_missing = Some(j);
            }
            if j + 1 >= first + m as u64 {
                let start = j + 1 - m as u64;
                let holes = newest_missing.is_some_and(|lm| lm >= start);
                s.set_stats(start, holes, start > first);
            }
        }
        if newest_missing.is_some_and(|nm| last_missing.is_none_or(|lm| lm < nm)) {
            return Err(DecodeError::Invalid(
                "missing bits disagree with the newest gap",
            ));
        }
        Ok(s)
    }
}

const FLAG_REGULAR: u8 = 0;
const FLAG_CONSTANT: u8 = 1;
const FLAG_MISSING: u8 = 2;

/// A window whose population σ is at most this fraction of its largest magnitude is treated as
/// constant. Such a spread is rounding noise (a "flat" series after arithmetic differs in the
/// last bits), and z-normalising it would amplify that noise to unit variance: its shape is
/// meaningless and its correlations cannot be computed to any useful precision.
pub const CONSTANT_REL_SIGMA: f64 = 1e-9;

/// Mean and `1/σ` (population) of a complete window; `1/σ` is NaN for a constant window
/// (all values equal, or σ ≤ [`CONSTANT_REL_SIGMA`] × the largest magnitude).
///
/// Two passes (mean, then squared deviations) rather than running sums: no drift to refresh,
/// and an exactly constant window gets its value as mean, bit for bit.
pub(super) fn window_stats(w: &[f64]) -> (f64, f64) {
    let first = w[0];
    if w.iter().all(|&x| x == first) {
        return (first, f64::NAN);
    }
    let n = w.len() as f64;
    let mu = w.iter().sum::<f64>() / n;
    let var = w.iter().map(|&x| (x - mu) * (x - mu)).sum::<f64>() / n;
    let sigma = var.sqrt();
    let scale = w.iter().fold(0.0f64, |a, &x| a.max(x.abs()));
    if sigma > CONSTANT_REL_SIGMA * scale && sigma.is_finite() {
        (mu, 1.0 / sigma)
    } else {
        (mu, f64::NAN)
    }
}

/// Direct z-normalised Euclidean distance between two regular windows.
pub(super) fn znorm_distance(
    x: &[f64],
    (mx, ix): (f64, f64),
    y: &[f64],
    (my, iy): (f64, f64),
) -> f64 {
    // Four partial sums: a fixed order (so deterministic everywhere) that still pipelines.
    let mut acc = [0.0f64; 4];
    let mut cx = x.chunks_exact(4);
    let mut cy = y.chunks_exact(4);
    for (a, b) in (&mut cx).zip(&mut cy) {
        for k in 0..4 {
            let d = (a[k] - mx) * ix - (b[k] - my) * iy;
            acc[k] += d * d;
        }
    }
    for (a, b) in cx.remainder().iter().zip(cy.remainder()) {
        let d = (a - mx) * ix - (b - my) * iy;
        acc[0] += d * d;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])).sqrt()
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
        let mut w = Writer(out);
        w.bytes(LEFT_MP_MAGIC);
        w.u16(LEFT_MP_STATE_VERSION);
        w.u64(self.m as u64);
        w.u64(self.history as u64);
        w.u8(self.nan_policy.to_byte());
        w.u64(self.origin);
        w.opt_u64(self.last_const);
        w.u64(self.missing);
        self.series.encode(&mut w);
        w.u64(self.qt.len() as u64);
        for &q in &self.qt {
            w.f64(q);
        }
    }

    /// Restore a state written by [`LeftMatrixProfile::encode`], with the fastest kernel of
    /// this CPU. The restored profile continues exactly as the original would have.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.header(LEFT_MP_MAGIC, "left matrix profile", LEFT_MP_STATE_VERSION)?;
        let m = r.len(1 << 31)?;
        let history = r.len(1 << 31)?;
        check_params(m, history).map_err(|_| DecodeError::Invalid("bad m or history"))?;
        let nan_policy = NanPolicy::from_byte(r.u8()?)?;
        let mut mp = LeftMatrixProfile::new(m, history).with_nan_policy(nan_policy);
        mp.origin = r.u64()?;
        mp.last_const = r.opt_u64()?;
        mp.missing = r.u64()?;
        mp.series = Series::decode(&mut r, m, history + MAX_TILE, m + MAX_TILE + 1)?;
        if r.len(history)? != mp.qt.len() {
            return Err(DecodeError::Invalid(
                "cross-product count does not match history",
            ));
        }
        for q in mp.qt.iter_mut() {
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
