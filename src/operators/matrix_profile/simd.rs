//! The inner loops of the matrix profile, with a SIMD path chosen once at run time.
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
        Kernel::Neon => unsafe { arm::advance_neon::<S>(qt, tile, &k, idx_base, best) },
        _ => advance_scalar::<S>(qt, tile, &k, idx_base, best),
    }
}

/// The reference loop; also finishes the slots left over after the SIMD blocks.
// `step` indexes four parallel arrays; an iterator chain would hide the reference order.
#[allow(clippy::needless_range_loop)]
fn advance_scalar<const S: usize>(
    qt: &mut [f64],
    tile: &Tile<'_>,
    k: &Consts<S>,
    idx_base: usize,
    best: &mut [Best; S],
) {
    let m = tile.m;
    for (s, q) in qt.iter_mut().enumerate() {
        let mut qv = *q;
        for step in 0..S {
            let dfj = (tile.t[s + step + m] - tile.t[s + step]) * 0.5;
            qv = (qv + k.df[step] * tile.dg[s + step]) + dfj * k.dg[step];
            let v = qv * tile.a[s + step];
            best[step].offer(v, idx_base + s);
        }
        *q = qv;
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
        Kernel::Neon => unsafe { arm::scan_neon(qt, mu, a, c, idx_base) },
        _ => scan_scalar(qt, mu, a, c, idx_base, Best::NONE),
    }
}

fn scan_scalar(qt: &[f64], mu: &[f64], a: &[f64], c: f64, idx_base: usize, mut b: Best) -> Best {
    for (s, &q) in qt.iter().enumerate() {
        b.offer((q - c * mu[s]) * a[s], idx_base + s);
    }
    b
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
        Kernel::Neon => unsafe { arm::sliding_dot_neon(q, t, out) },
        _ => sliding_dot_scalar(q, t, out, 0),
    }
}

fn sliding_dot_scalar(q: &[f64], t: &[f64], out: &mut [f64], from: usize) {
    for (j, o) in out.iter_mut().enumerate().skip(from) {
        *o = dot(q, &t[j..j + q.len()]);
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Best, Consts, MAX_TILE, Tile, advance_scalar, scan_scalar, sliding_dot_scalar};
    use std::arch::x86_64::*;

    // Loads and stores go through the masked forms with a full mask: they compile to the same
    // instructions as `loadu`/`storeu`, but `loadu` is written with `ptr::read_unaligned`, whose
    // debug-build precondition checks (our tests and benches run the dev profile with debug
    // assertions) force every vector through a stack temporary and cost a factor of two.

    /// # Safety
    /// AVX-512F; `p` valid for reading 8 f64.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn ld8(p: *const f64) -> __m512d {
        // SAFETY: forwarded precondition.
        unsafe { _mm512_maskz_loadu_pd(0xFF, p) }
    }

    /// # Safety
    /// AVX-512F; `p` valid for writing 8 f64.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn st8(p: *mut f64, v: __m512d) {
        // SAFETY: forwarded precondition.
        unsafe { _mm512_mask_storeu_pd(p, 0xFF, v) }
    }

    /// # Safety
    /// AVX2; `p` valid for reading 4 f64.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn ld4(p: *const f64) -> __m256d {
        // SAFETY: forwarded precondition.
        unsafe { _mm256_maskload_pd(p, _mm256_set1_epi64x(-1)) }
    }

    /// # Safety
    /// AVX2; `p` valid for writing 4 f64.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn st4(p: *mut f64, v: __m256d) {
        // SAFETY: forwarded precondition.
        unsafe { _mm256_maskstore_pd(p, _mm256_set1_epi64x(-1), v) }
    }

    /// Copy the lanes of the per-step accumulators back into `best`.
    fn reduce_lanes<const L: usize>(vals: [f64; L], idxs: [i64; L], b: &mut Best) {
        for (v, i) in vals.into_iter().zip(idxs) {
            if i >= 0 {
                b.offer(v, i as usize);
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F and the slices must satisfy [`super::advance`]'s bounds.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn advance_avx512<const S: usize>(
        qt: &mut [f64],
        tile: &Tile<'_>,
        k: &Consts<S>,
        idx_base: usize,
        best: &mut [Best; S],
    ) {
        let n = qt.len();
        let blocks = n / 8;
        let m = tile.m;
        let (qp, tp, gp, ap) = (
            qt.as_mut_ptr(),
            tile.t.as_ptr(),
            tile.dg.as_ptr(),
            tile.a.as_ptr(),
        );
        let mut dfi = [_mm512_setzero_pd(); S];
        let mut dgi = [_mm512_setzero_pd(); S];
        for s in 0..S {
            dfi[s] = _mm512_set1_pd(k.df[s]);
            dgi[s] = _mm512_set1_pd(k.dg[s]);
        }
        let half = _mm512_set1_pd(0.5);
        let mut bv = [_mm512_set1_pd(f64::NEG_INFINITY); S];
        let mut bi = [_mm512_set1_epi64(-1); S];
        let lanes = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
        let tm = tp.wrapping_add(m);
        for blk in 0..blocks {
            let s = blk * 8;
            let cur = _mm512_add_epi64(lanes, _mm512_set1_epi64((idx_base + s) as i64));
            // SAFETY (all loads/stores below): s + 7 < n, and `advance` checked that `t` holds
            // n + S − 1 + m values and `dg`, `a` hold n + S − 1.
            let mut q = unsafe { ld8(qp.wrapping_add(s)) };
            // Per-block base pointers: the step loop then does no index arithmetic that the
            // debug build would overflow-check.
            let (tb, hb, gb, ab) = (
                tp.wrapping_add(s),
                tm.wrapping_add(s),
                gp.wrapping_add(s),
                ap.wrapping_add(s),
            );
            for st in 0..S {
                let tl = unsafe { ld8(tb.wrapping_add(st)) };
                let th = unsafe { ld8(hb.wrapping_add(st)) };
                let dg = unsafe { ld8(gb.wrapping_add(st)) };
                let dfj = _mm512_mul_pd(_mm512_sub_pd(th, tl), half);
                q = _mm512_add_pd(
                    _mm512_add_pd(q, _mm512_mul_pd(dfi[st], dg)),
                    _mm512_mul_pd(dfj, dgi[st]),
                );
                let a = unsafe { ld8(ab.wrapping_add(st)) };
                let v = _mm512_mul_pd(q, a);
                let gt = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(v, bv[st]);
                bv[st] = _mm512_mask_mov_pd(bv[st], gt, v);
                bi[st] = _mm512_mask_mov_epi64(bi[st], gt, cur);
            }
            unsafe { st8(qp.wrapping_add(s), q) };
        }
        for st in 0..S {
            let mut vals = [0.0f64; 8];
            let mut idxs = [0i64; 8];
            // SAFETY: both arrays hold exactly 8 lanes.
            unsafe {
                st8(vals.as_mut_ptr(), bv[st]);
                _mm512_mask_storeu_epi64(idxs.as_mut_ptr(), 0xFF, bi[st]);
            }
            reduce_lanes(vals, idxs, &mut best[st]);
        }
        let done = blocks * 8;
        let rest = Tile {
            t: &tile.t[done..],
            dg: &tile.dg[done..],
            a: &tile.a[done..],
            m,
        };
        advance_scalar::<S>(&mut qt[done..], &rest, k, idx_base + done, best);
    }

    /// # Safety
    /// The CPU must support AVX2 and the slices must satisfy [`super::advance`]'s bounds.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn advance_avx2<const S: usize>(
        qt: &mut [f64],
        tile: &Tile<'_>,
        k: &Consts<S>,
        idx_base: usize,
        best: &mut [Best; S],
    ) {
        // 16 ymm registers hold at most 4 steps' accumulators (value + index) alongside the
        // loads, so longer tiles run as passes of 4 steps; `qt` carries the state between them.
        if S > 4 {
            let mut lo = Consts::<4> {
                df: [0.0; 4],
                dg: [0.0; 4],
            };
            for half in 0..S / 4 {
                for j in 0..4 {
                    lo.df[j] = k.df[half * 4 + j];
                    lo.dg[j] = k.dg[half * 4 + j];
                }
                let off = half * 4;
                let sub = Tile {
                    t: &tile.t[off..],
                    dg: &tile.dg[off..],
                    a: &tile.a[off..],
                    ..*tile
                };
                let bs: &mut [Best; 4] = (&mut best[off..off + 4])
                    .try_into()
                    .expect("4 steps per pass");
                // SAFETY: same CPU and bounds as the caller's, shifted by whole steps.
                unsafe { advance_avx2_n::<4>(qt, &sub, &lo, idx_base, bs) };
            }
            debug_assert!(S.is_multiple_of(4) && S <= MAX_TILE);
        } else {
            // SAFETY: forwarded precondition.
            unsafe { advance_avx2_n::<S>(qt, tile, k, idx_base, best) };
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn advance_avx2_n<const S: usize>(
        qt: &mut [f64],
        tile: &Tile<'_>,
        k: &Consts<S>,
        idx_base: usize,
        best: &mut [Best; S],
    ) {
        let n = qt.len();
        let blocks = n / 4;
        let m = tile.m;
        let (qp, tp, gp, ap) = (
            qt.as_mut_ptr(),
            tile.t.as_ptr(),
            tile.dg.as_ptr(),
            tile.a.as_ptr(),
        );
        let half = _mm256_set1_pd(0.5);
        let mut bv = [_mm256_set1_pd(f64::NEG_INFINITY); S];
        // Slot indices ride in f64 lanes (exact below 2^53) so one blend instruction serves both.
        let mut bi = [_mm256_set1_pd(-1.0); S];
        let lanes = _mm256_set_pd(3.0, 2.0, 1.0, 0.0);
        let tm = tp.wrapping_add(m);
        for blk in 0..blocks {
            let s = blk * 4;
            let cur = _mm256_add_pd(lanes, _mm256_set1_pd((idx_base + s) as f64));
            // SAFETY (all loads/stores below): see `advance_avx512`.
            let mut q = unsafe { ld4(qp.wrapping_add(s)) };
            // Per-block base pointers: the step loop then does no index arithmetic that the
            // debug build would overflow-check.
            let (tb, hb, gb, ab) = (
                tp.wrapping_add(s),
                tm.wrapping_add(s),
                gp.wrapping_add(s),
                ap.wrapping_add(s),
            );
            for st in 0..S {
                let tl = unsafe { ld4(tb.wrapping_add(st)) };
                let th = unsafe { ld4(hb.wrapping_add(st)) };
                let dg = unsafe { ld4(gb.wrapping_add(st)) };
                let dfj = _mm256_mul_pd(_mm256_sub_pd(th, tl), half);
                q = _mm256_add_pd(
                    _mm256_add_pd(q, _mm256_mul_pd(_mm256_set1_pd(k.df[st]), dg)),
                    _mm256_mul_pd(dfj, _mm256_set1_pd(k.dg[st])),
                );
                let a = unsafe { ld4(ab.wrapping_add(st)) };
                let v = _mm256_mul_pd(q, a);
                let gt = _mm256_cmp_pd::<_CMP_GT_OQ>(v, bv[st]);
                bv[st] = _mm256_blendv_pd(bv[st], v, gt);
                bi[st] = _mm256_blendv_pd(bi[st], cur, gt);
            }
            unsafe { st4(qp.wrapping_add(s), q) };
        }
        for st in 0..S {
            let mut vals = [0.0f64; 4];
            let mut idxs = [0.0f64; 4];
            // SAFETY: both arrays hold exactly 4 lanes.
            unsafe {
                st4(vals.as_mut_ptr(), bv[st]);
                st4(idxs.as_mut_ptr(), bi[st]);
            }
            reduce_lanes(vals, idxs.map(|i| i as i64), &mut best[st]);
        }
        let done = blocks * 4;
        let rest = Tile {
            t: &tile.t[done..],
            dg: &tile.dg[done..],
            a: &tile.a[done..],
            m,
        };
        advance_scalar::<S>(&mut qt[done..], &rest, k, idx_base + done, best);
    }

    /// # Safety
    /// AVX-512F, and `mu`, `a` at least as long as `qt`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scan_avx512(
        qt: &[f64],
        mu: &[f64],
        a: &[f64],
        c: f64,
        idx_base: usize,
    ) -> Best {
        let blocks = qt.len() / 8;
        let cc = _mm512_set1_pd(c);
        let mut bv = _mm512_set1_pd(f64::NEG_INFINITY);
        let mut bi = _mm512_set1_epi64(-1);
        let lanes = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
        for blk in 0..blocks {
            let s = blk * 8;
            // SAFETY: s + 7 < qt.len() <= mu.len(), a.len().
            let (q, m, av) = unsafe {
                (
                    ld8(qt.as_ptr().wrapping_add(s)),
                    ld8(mu.as_ptr().wrapping_add(s)),
                    ld8(a.as_ptr().wrapping_add(s)),
                )
            };
            let v = _mm512_mul_pd(_mm512_sub_pd(q, _mm512_mul_pd(cc, m)), av);
            let gt = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(v, bv);
            bv = _mm512_mask_mov_pd(bv, gt, v);
            let cur = _mm512_add_epi64(lanes, _mm512_set1_epi64((idx_base + s) as i64));
            bi = _mm512_mask_mov_epi64(bi, gt, cur);
        }
        let mut vals = [0.0f64; 8];
        let mut idxs = [0i64; 8];
        // SAFETY: both arrays hold exactly 8 lanes.
        unsafe {
            st8(vals.as_mut_ptr(), bv);
            _mm512_mask_storeu_epi64(idxs.as_mut_ptr(), 0xFF, bi);
        }
        let mut b = Best::NONE;
        reduce_lanes(vals, idxs, &mut b);
        let done = blocks * 8;
        scan_scalar(&qt[done..], &mu[done..], &a[done..], c, idx_base + done, b)
    }

    /// # Safety
    /// AVX2, and `mu`, `a` at least as long as `qt`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn scan_avx2(
        qt: &[f64],
        mu: &[f64],
        a: &[f64],
        c: f64,
        idx_base: usize,
    ) -> Best {
        let blocks = qt.len() / 4;
        let cc = _mm256_set1_pd(c);
        let mut bv = _mm256_set1_pd(f64::NEG_INFINITY);
        let mut bi = _mm256_set1_pd(-1.0);
        let lanes = _mm256_set_pd(3.0, 2.0, 1.0, 0.0);
        for blk in 0..blocks {
            let s = blk * 4;
            // SAFETY: s + 3 < qt.len() <= mu.len(), a.len().
            let (q, m, av) = unsafe {
                (
                    ld4(qt.as_ptr().wrapping_add(s)),
                    ld4(mu.as_ptr().wrapping_add(s)),
                    ld4(a.as_ptr().wrapping_add(s)),
                )
            };
            let v = _mm256_mul_pd(_mm256_sub_pd(q, _mm256_mul_pd(cc, m)), av);
            let gt = _mm256_cmp_pd::<_CMP_GT_OQ>(v, bv);
            bv = _mm256_blendv_pd(bv, v, gt);
            let cur = _mm256_add_pd(lanes, _mm256_set1_pd((idx_base + s) as f64));
            bi = _mm256_blendv_pd(bi, cur, gt);
        }
        let mut vals = [0.0f64; 4];
        let mut idxs = [0.0f64; 4];
        // SAFETY: both arrays hold exactly 4 lanes.
        unsafe {
            st4(vals.as_mut_ptr(), bv);
            st4(idxs.as_mut_ptr(), bi);
        }
        let mut b = Best::NONE;
        reduce_lanes(vals, idxs.map(|i| i as i64), &mut b);
        let done = blocks * 4;
        scan_scalar(&qt[done..], &mu[done..], &a[done..], c, idx_base + done, b)
    }

    /// # Safety
    /// AVX-512F, non-empty `q`, and `t.len() >= out.len() + q.len() − 1`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sliding_dot_avx512(q: &[f64], t: &[f64], out: &mut [f64]) {
        // Four independent accumulators (32 windows) hide the add latency; each window's sum
        // still runs over k in order, as in the scalar loop.
        let n = out.len();
        let mut j = 0;
        let tp = t.as_ptr();
        while j + 32 <= n {
            let b0 = _mm512_set1_pd(q[0]);
            // SAFETY (all loads below): j + 31 + k < n + q.len() − 1 <= t.len().
            let mut acc = unsafe {
                [
                    _mm512_mul_pd(b0, ld8(tp.wrapping_add(j))),
                    _mm512_mul_pd(b0, ld8(tp.wrapping_add(j + 8))),
                    _mm512_mul_pd(b0, ld8(tp.wrapping_add(j + 16))),
                    _mm512_mul_pd(b0, ld8(tp.wrapping_add(j + 24))),
                ]
            };
            for (kk, &qk) in q.iter().enumerate().skip(1) {
                let b = _mm512_set1_pd(qk);
                for (r, ac) in acc.iter_mut().enumerate() {
                    let x = unsafe { ld8(tp.wrapping_add(j + 8 * r + kk)) };
                    *ac = _mm512_add_pd(*ac, _mm512_mul_pd(b, x));
                }
            }
            for (r, ac) in acc.iter().enumerate() {
                // SAFETY: j + 8r + 7 < n = out.len().
                unsafe { st8(out.as_mut_ptr().wrapping_add(j + 8 * r), *ac) };
            }
            j += 32;
        }
        while j + 8 <= n {
            // SAFETY: as above, one block of 8.
            let mut ac = unsafe { _mm512_mul_pd(_mm512_set1_pd(q[0]), ld8(tp.wrapping_add(j))) };
            for (kk, &qk) in q.iter().enumerate().skip(1) {
                let x = unsafe { ld8(tp.wrapping_add(j + kk)) };
                ac = _mm512_add_pd(ac, _mm512_mul_pd(_mm512_set1_pd(qk), x));
            }
            unsafe { st8(out.as_mut_ptr().wrapping_add(j), ac) };
            j += 8;
        }
        sliding_dot_scalar(q, t, out, j);
    }

    /// # Safety
    /// AVX2, non-empty `q`, and `t.len() >= out.len() + q.len() − 1`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sliding_dot_avx2(q: &[f64], t: &[f64], out: &mut [f64]) {
        let n = out.len();
        let mut j = 0;
        let tp = t.as_ptr();
        while j + 16 <= n {
            let b0 = _mm256_set1_pd(q[0]);
            // SAFETY (all loads below): j + 15 + k < n + q.len() − 1 <= t.len().
            let mut acc = unsafe {
                [
                    _mm256_mul_pd(b0, ld4(tp.wrapping_add(j))),
                    _mm256_mul_pd(b0, ld4(tp.wrapping_add(j + 4))),
                    _mm256_mul_pd(b0, ld4(tp.wrapping_add(j + 8))),
                    _mm256_mul_pd(b0, ld4(tp.wrapping_add(j + 12))),
                ]
            };
            for (kk, &qk) in q.iter().enumerate().skip(1) {
                let b = _mm256_set1_pd(qk);
                for (r, ac) in acc.iter_mut().enumerate() {
                    let x = unsafe { ld4(tp.wrapping_add(j + 4 * r + kk)) };
                    *ac = _mm256_add_pd(*ac, _mm256_mul_pd(b, x));
                }
            }
            for (r, ac) in acc.iter().enumerate() {
                // SAFETY: j + 4r + 3 < n = out.len().
                unsafe { st4(out.as_mut_ptr().wrapping_add(j + 4 * r), *ac) };
            }
            j += 16;
        }
        sliding_dot_scalar(q, t, out, j);
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{Best, Consts, Tile, advance_scalar, scan_scalar, sliding_dot_scalar};
    use std::arch::aarch64::*;

    /// # Safety
    /// NEON, and the slices must satisfy [`super::advance`]'s bounds.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn advance_neon<const S: usize>(
        qt: &mut [f64],
        tile: &Tile<'_>,
        k: &Consts<S>,
        idx_base: usize,
        best: &mut [Best; S],
    ) {
        let n = qt.len();
        let blocks = n / 2;
        let m = tile.m;
        let (qp, tp, gp, ap) = (
            qt.as_mut_ptr(),
            tile.t.as_ptr(),
            tile.dg.as_ptr(),
            tile.a.as_ptr(),
        );
        let half = vdupq_n_f64(0.5);
        let mut bv = [vdupq_n_f64(f64::NEG_INFINITY); S];
        let mut bi = [vdupq_n_u64(u64::MAX); S];
        for blk in 0..blocks {
            let s = blk * 2;
            let base = (idx_base + s) as u64;
            let cur = vcombine_u64(vcreate_u64(base), vcreate_u64(base + 1));
            // SAFETY (all loads/stores below): see `advance_avx512`.
            let mut q = unsafe { vld1q_f64(qp.add(s)) };
            for st in 0..S {
                let tl = unsafe { vld1q_f64(tp.add(s + st)) };
                let th = unsafe { vld1q_f64(tp.add(s + st + m)) };
                let dg = unsafe { vld1q_f64(gp.add(s + st)) };
                let dfj = vmulq_f64(vsubq_f64(th, tl), half);
                q = vaddq_f64(
                    vaddq_f64(q, vmulq_f64(vdupq_n_f64(k.df[st]), dg)),
                    vmulq_f64(dfj, vdupq_n_f64(k.dg[st])),
                );
                let a = unsafe { vld1q_f64(ap.add(s + st)) };
                let v = vmulq_f64(q, a);
                let gt = vcgtq_f64(v, bv[st]);
                bv[st] = vbslq_f64(gt, v, bv[st]);
                bi[st] = vbslq_u64(gt, cur, bi[st]);
            }
            unsafe { vst1q_f64(qp.add(s), q) };
        }
        for st in 0..S {
            for lane in 0..2 {
                let (v, i) = if lane == 0 {
                    (vgetq_lane_f64::<0>(bv[st]), vgetq_lane_u64::<0>(bi[st]))
                } else {
                    (vgetq_lane_f64::<1>(bv[st]), vgetq_lane_u64::<1>(bi[st]))
                };
                if i != u64::MAX {
                    best[st].offer(v, i as usize);
                }
            }
        }
        let done = blocks * 2;
        let rest = Tile {
            t: &tile.t[done..],
            dg: &tile.dg[done..],
            a: &tile.a[done..],
            m,
        };
        advance_scalar::<S>(&mut qt[done..], &rest, k, idx_base + done, best);
    }

    /// # Safety
    /// NEON, and `mu`, `a` at least as long as `qt`.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn scan_neon(
        qt: &[f64],
        mu: &[f64],
        a: &[f64],
        c: f64,
        idx_base: usize,
    ) -> Best {
        let blocks = qt.len() / 2;
        let cc = vdupq_n_f64(c);
        let mut bv = vdupq_n_f64(f64::NEG_INFINITY);
        let mut bi = vdupq_n_u64(u64::MAX);
        for blk in 0..blocks {
            let s = blk * 2;
            // SAFETY: s + 1 < qt.len() <= mu.len(), a.len().
            let (q, m, av) = unsafe {
                (
                    vld1q_f64(qt.as_ptr().add(s)),
                    vld1q_f64(mu.as_ptr().add(s)),
                    vld1q_f64(a.as_ptr().add(s)),
                )
            };
            let v = vmulq_f64(vsubq_f64(q, vmulq_f64(cc, m)), av);
            let gt = vcgtq_f64(v, bv);
            bv = vbslq_f64(gt, v, bv);
            let base = (idx_base + s) as u64;
            let cur = vcombine_u64(vcreate_u64(base), vcreate_u64(base + 1));
            bi = vbslq_u64(gt, cur, bi);
        }
        let mut b = Best::NONE;
        for (v, i) in [
            (vgetq_lane_f64::<0>(bv), vgetq_lane_u64::<0>(bi)),
            (vgetq_lane_f64::<1>(bv), vgetq_lane_u64::<1>(bi)),
        ] {
            if i != u64::MAX {
                b.offer(v, i as usize);
            }
        }
        let done = blocks * 2;
        scan_scalar(&qt[done..], &mu[done..], &a[done..], c, idx_base + done, b)
    }

    /// # Safety
    /// NEON, non-empty `q`, and `t.len() >= out.len() + q.len() − 1`.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn sliding_dot_neon(q: &[f64], t: &[f64], out: &mut [f64]) {
        let n = out.len();
        let mut j = 0;
        let tp = t.as_ptr();
        while j + 8 <= n {
            let b0 = vdupq_n_f64(q[0]);
            // SAFETY (all loads below): j + 7 + k < n + q.len() − 1 <= t.len().
            let mut acc = unsafe {
                [
                    vmulq_f64(b0, vld1q_f64(tp.add(j))),
                    vmulq_f64(b0, vld1q_f64(tp.add(j + 2))),
                    vmulq_f64(b0, vld1q_f64(tp.add(j + 4))),
                    vmulq_f64(b0, vld1q_f64(tp.add(j + 6))),
                ]
            };
            for (kk, &qk) in q.iter().enumerate().skip(1) {
                let b = vdupq_n_f64(qk);
                for (r, ac) in acc.iter_mut().enumerate() {
                    let x = unsafe { vld1q_f64(tp.add(j + 2 * r + kk)) };
                    *ac = vaddq_f64(*ac, vmulq_f64(b, x));
                }
            }
            for (r, ac) in acc.iter().enumerate() {
                // SAFETY: j + 2r + 1 < n = out.len().
                unsafe { vst1q_f64(out.as_mut_ptr().add(j + 2 * r), *ac) };
            }
            j += 8;
        }
        sliding_dot_scalar(q, t, out, j);
    }
}
