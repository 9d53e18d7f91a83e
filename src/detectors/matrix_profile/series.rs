//! The series ring shared by both detectors: the last points of a key with the mean, `1/σ`,
//! class and covariance-update term of every subsequence starting in them, and the direct
//! z-normalised distance between two windows.

use super::{read_opt_u64, write_opt_u64};
use crate::core::codec::{DecodeError, Reader, Writer};

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
        write_opt_u64(w, self.last_missing);
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
        let last_missing = read_opt_u64(r)?;
        let held = r.u64_len(cap)?;
        if held as u64 != len.min(cap as u64) {
            return Err(DecodeError::invalid(
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
                return Err(DecodeError::invalid("bad stored value"));
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
            return Err(DecodeError::invalid(
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
