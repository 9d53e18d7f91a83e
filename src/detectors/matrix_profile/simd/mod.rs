//! The inner loops of the matrix profile, with a SIMD path chosen once at run time.
//!
//! The portable loops are in `scalar.rs`, the x86_64 ones (AVX2, AVX-512F) in `x86.rs`, the
//! aarch64 one (NEON) in `aarch64.rs`; the functions here check bounds and dispatch.
//!
//! Three loops carry nearly all of the work:
//!
//! - [`advance`]: the covariance recurrence of the streaming profile fused with the
//!   nearest-neighbour scan, for one to [`MAX_TILE`] consecutive points at once (a *tile*).
//!   Fusing several points means each candidate's state is read from memory once per tile
//!   instead of once per point, which is what keeps a 100k-point history fast: at one point
//!   per pass the loop is bound by memory bandwidth, not arithmetic.
//! - [`scan`]: the nearest-neighbour scan alone, over dot products computed elsewhere (DAMP).
//! - [`sliding_dot`]: the dot products of one query against every window of a chunk (DAMP).
//!
//! # Bit-identical paths
//!
//! Every path (scalar, AVX2, AVX-512, NEON) performs the same IEEE operations in the same order
//! for each element, with separate multiply and add (no FMA: a fused multiply-add rounds once
//! and would make the SIMD paths differ from the scalar one, and the scalar fallback would need
//! a slow libm call on CPUs without FMA). Ties in the arg-max go to the smallest slot index on
//! every path. So the paths agree bit for bit, which is what lets a checkpoint written on an
//! AVX-512 machine be restored on any other machine with identical continuation; the tests
//! compare every available path with [`Kernel::Scalar`] for exact equality.
//!
//! # Candidate encoding
//!
//! The streaming loop keeps, per candidate, the *centred* cross product
//! `cov_ij = Σ_k (T[i+k] − μ_i)(T[j+k] − μ_j)` and moves it one point along its diagonal with
//! `cov += df_i·dg_j + df_j·dg_i`, where `df_w = (T[w+m] − T[w])/2` and
//! `dg_w = (T[w+m] − μ_{w+1}) + (T[w] − μ_w)` (the update used by SCAMP). Every term is of the
//! size of the data's deviations from their local mean, so the rounding error does not grow
//! with the series' offset, as it does with raw dot products (`QT − m·μ_i·μ_j` loses
//! `(μ/σ)²` digits). The scan maximises `v_j = cov_ij·a_j` with `a_j = 1/σ_j`, which is
//! `m·σ_i·ρ_ij` (ρ the Pearson correlation): the largest `v` is the nearest neighbour under
//! z-normalised Euclidean distance.
//!
//! [`scan`] works from raw dot products instead: `v_j = (QT_j − c·μ_j)·a_j`.
//!
//! Candidates that must not take part (constant windows, windows with missing points) carry
//! `a = NaN`: their `v` is NaN and the ordered `>` comparison never selects it.

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use scalar::{advance_scalar, scan_scalar, sliding_dot_scalar};

/// Largest number of consecutive points one [`advance`] call may fuse.
pub const MAX_TILE: usize = 8;

/// Which implementation of the inner loops runs.
///
/// Chosen once, when a profile is constructed ([`Kernel::detect`]), and stored with it. A
/// kernel that the CPU does not support is never run: constructors check
/// [`Kernel::is_available`] and refuse such a kernel, and the dispatch functions here fall back
/// to the scalar loop if they are ever handed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Portable scalar loops; always available, the reference for the others.
    Scalar,
    /// x86_64 AVX2, 4 lanes of f64.
    Avx2,
    /// x86_64 AVX-512F, 8 lanes of f64.
    Avx512,
    /// aarch64 NEON (Advanced SIMD), 2 lanes of f64.
    Neon,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn detect() -> Kernel {
        [Kernel::Avx512, Kernel::Avx2, Kernel::Neon]
            .into_iter()
            .find(|k| k.is_available())
            .unwrap_or(Kernel::Scalar)
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every kernel this CPU can run, fastest first; always ends with [`Kernel::Scalar`].
    pub fn available() -> Vec<Kernel> {
        [Kernel::Avx512, Kernel::Avx2, Kernel::Neon, Kernel::Scalar]
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// Stable lower-case name, for bench ids and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
            Kernel::Neon => "neon",
        }
    }

    /// The kernel to actually run: `self` if available, else scalar. Dispatch goes through
    /// this so that a hand-made `Kernel` can never reach an unsupported instruction.
    #[inline]
    fn runnable(self) -> Kernel {
        if self == Kernel::Scalar || self.is_available() {
            self
        } else {
            Kernel::Scalar
        }
    }
}

/// The best candidate found so far for one step: the largest `v` and the slot it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Best {
    /// The largest `v = m·σ_i·ρ` seen; `-∞` when no candidate took part.
    pub v: f64,
    /// Slot index of that candidate; `usize::MAX` when none.
    pub idx: usize,
}

impl Best {
    /// No candidate yet.
    pub const NONE: Best = Best {
        v: f64::NEG_INFINITY,
        idx: usize::MAX,
    };

    /// Whether a candidate was found.
    pub fn is_some(&self) -> bool {
        self.idx != usize::MAX
    }

    /// Offer a candidate; a NaN `v` is ignored and ties keep the smaller index, so the
    /// result does not depend on the order in which slots are visited.
    #[inline(always)]
    pub fn offer(&mut self, v: f64, idx: usize) {
        if v > self.v || (v == self.v && idx < self.idx) {
            *self = Best { v, idx };
        }
    }

    /// The better of two; ties keep the smaller index.
    #[inline]
    pub fn merge(mut self, other: Best) -> Best {
        if other.is_some() {
            self.offer(other.v, other.idx);
        }
        self
    }
}

/// The data one [`advance`] call reads, laid out by slot.
///
/// For slot `s` and step `k` (0-based within the tile) the candidate `j` (before the step)
/// starts at `t[s + k]`, its point `m` later is `t[s + k + m]`, its `dg_j` is `dg[s + k]`, and
/// `a[s + k]` is `1/σ` of candidate `j + 1` (the one the step moves to).
#[derive(Clone, Copy, Debug)]
pub struct Tile<'a> {
    /// Series values, contiguous from the first slot's candidate start at step 0.
    pub t: &'a [f64],
    /// `dg` of each candidate, aligned like `t`.
    pub dg: &'a [f64],
    /// `1/σ` of the next candidate (NaN = not a regular candidate), aligned like `t`.
    pub a: &'a [f64],
    /// Subsequence length.
    pub m: usize,
}

/// One step of a tile: `df` and `dg` of the newest subsequence before the step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// `df_i = (T[i+m] − T[i]) / 2`.
    pub df: f64,
    /// `dg_i = (T[i+m] − μ_{i+1}) + (T[i] − μ_i)`.
    pub dg: f64,
}

/// Advance every slot in `cov` by `steps.len()` points and record, per step, the slot with
/// the largest `v` into `best[k]` (merged with what `best[k]` already holds).
///
/// Per slot `s` and step `k`, in this order:
/// `df_j = (t[s+k+m] − t[s+k]) · 0.5`, `cov[s] = (cov[s] + df_i·dg[s+k]) + df_j·dg_i`, then
/// `v = cov[s] · a[s+k]`. Slot indices reported are `idx_base + s`.
///
/// # Panics
/// If `steps` and `best` differ in length, `steps.len() > MAX_TILE`, or the tile's slices are
/// too short for `qt.len()` slots and `steps.len()` steps.
pub fn advance(
    kernel: Kernel,
    cov: &mut [f64],
    tile: &Tile<'_>,
    steps: &[Step],
    idx_base: usize,
    best: &mut [Best],
) {
    let qt = cov;
    assert_eq!(steps.len(), best.len(), "one best per step");
    assert!(steps.len() <= MAX_TILE, "tile longer than MAX_TILE");
    if qt.is_empty() || steps.is_empty() {
        return;
    }
    let n = qt.len();
    // These bounds make every unchecked load in the SIMD paths in range.
    assert!(tile.m >= 1, "m must be positive");
    assert!(
        tile.t.len() >= n + steps.len() - 1 + tile.m,
        "series slice too short"
    );
    assert!(tile.dg.len() >= n + steps.len() - 1, "dg slice too short");
    assert!(
        tile.a.len() >= n + steps.len() - 1,
        "inverse-sigma slice too short"
    );
    // Tiles of 1, 2, 4 and 8 steps are compiled separately so that the per-step accumulators
    // stay in registers; other lengths are split into those.
    let mut done = 0;
    while done < steps.len() {
        let left = steps.len() - done;
        let take = if left >= 8 {
            8
        } else if left >= 4 {
            4
        } else if left >= 2 {
            2
        } else {
            1
        };
        let sub = Tile {
            t: &tile.t[done..],
            dg: &tile.dg[done..],
            a: &tile.a[done..],
            m: tile.m,
        };
        let st = &steps[done..done + take];
        let bs = &mut best[done..done + take];
        match take {
            8 => advance_n::<8>(kernel, qt, &sub, st, idx_base, bs),
            4 => advance_n::<4>(kernel, qt, &sub, st, idx_base, bs),
            2 => advance_n::<2>(kernel, qt, &sub, st, idx_base, bs),
            _ => advance_n::<1>(kernel, qt, &sub, st, idx_base, bs),
        }
        done += take;
    }
}

/// Unpacked per-step constants of a tile of `S` steps.
#[derive(Clone, Copy)]
struct Consts<const S: usize> {
    df: [f64; S],
    dg: [f64; S],
}

impl<const S: usize> Consts<S> {
    fn new(steps: &[Step]) -> Self {
        let mut k = Consts {
            df: [0.0; S],
            dg: [0.0; S],
        };
        for (i, st) in steps.iter().enumerate().take(S) {
            k.df[i] = st.df;
            k.dg[i] = st.dg;
        }
        k
    }
}

fn advance_n<const S: usize>(
    kernel: Kernel,
    qt: &mut [f64],
    tile: &Tile<'_>,
    steps: &[Step],
    idx_base: usize,
    best: &mut [Best],
) {
    let k = Consts::<S>::new(steps);
    let best: &mut [Best; S] = best.try_into().expect("caller passes exactly S bests");
    match kernel.runnable() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `runnable` confirmed the CPU has AVX-512F; `advance` checked the slice lengths.
        Kernel::Avx512 => unsafe { x86::advance_avx512::<S>(qt, tile, &k, idx_base, best) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `runnable` confirmed the CPU has AVX2; `advance` checked the slice lengths.
        Kernel::Avx2 => unsafe { x86::advance_avx2::<S>(qt, tile, &k, idx_base, best) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: `runnable` confirmed NEON; `advance` checked the slice lengths.
        Kernel::Neon => unsafe { aarch64::advance_neon::<S>(qt, tile, &k, idx_base, best) },
        _ => advance_scalar::<S>(qt, tile, &k, idx_base, best),
    }
}

/// The arg-max of `v_s = (qt[s] − c·mu[s])·a[s]` over all slots, as slot `idx_base + s`.
///
/// # Panics
/// If `mu` or `a` is shorter than `qt`.
pub fn scan(kernel: Kernel, qt: &[f64], mu: &[f64], a: &[f64], c: f64, idx_base: usize) -> Best {
    assert!(
        mu.len() >= qt.len() && a.len() >= qt.len(),
        "statistics slices too short"
    );
    match kernel.runnable() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F confirmed by `runnable`; lengths checked above.
        Kernel::Avx512 => unsafe { x86::scan_avx512(qt, mu, a, c, idx_base) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 confirmed by `runnable`; lengths checked above.
        Kernel::Avx2 => unsafe { x86::scan_avx2(qt, mu, a, c, idx_base) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON confirmed by `runnable`; lengths checked above.
        Kernel::Neon => unsafe { aarch64::scan_neon(qt, mu, a, c, idx_base) },
        _ => scan_scalar(qt, mu, a, c, idx_base, Best::NONE),
    }
}

/// Dot products of `q` with every window of `t`: `out[j] = Σ_k q[k]·t[j+k]`, summed in
/// increasing `k` with separate multiply and add (so equal to [`dot`] bit for bit).
///
/// # Panics
/// If `q` is empty or `t.len() < out.len() + q.len() − 1`.
pub fn sliding_dot(kernel: Kernel, q: &[f64], t: &[f64], out: &mut [f64]) {
    assert!(!q.is_empty(), "empty query");
    if out.is_empty() {
        return;
    }
    assert!(t.len() >= out.len() + q.len() - 1, "series slice too short");
    match kernel.runnable() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F confirmed by `runnable`; lengths checked above.
        Kernel::Avx512 => unsafe { x86::sliding_dot_avx512(q, t, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 confirmed by `runnable`; lengths checked above.
        Kernel::Avx2 => unsafe { x86::sliding_dot_avx2(q, t, out) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON confirmed by `runnable`; lengths checked above.
        Kernel::Neon => unsafe { aarch64::sliding_dot_neon(q, t, out) },
        _ => sliding_dot_scalar(q, t, out, 0),
    }
}

/// `Σ_k x[k]·y[k]` in increasing `k`, separate multiply and add: the exact-refresh and
/// new-diagonal computations use this so that they agree with [`sliding_dot`].
#[inline]
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = x[0] * y[0];
    for (a, b) in x[1..].iter().zip(&y[1..]) {
        acc += a * b;
    }
    acc
}
