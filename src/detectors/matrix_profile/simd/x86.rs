//! x86_64 paths: AVX2 (4 lanes) and AVX-512F (8 lanes), each element computed with the same
//! IEEE operations in the same order as [`super::scalar`]. Only called after run-time feature
//! detection ([`super::Kernel::is_available`]).

use super::scalar::{advance_scalar, scan_scalar, sliding_dot_scalar};
use super::{Best, Consts, MAX_TILE, Tile};
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
pub(super) unsafe fn scan_avx2(qt: &[f64], mu: &[f64], a: &[f64], c: f64, idx_base: usize) -> Best {
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
