//! aarch64 path: NEON (2 lanes), each element computed with the same IEEE operations in the
//! same order as [`super::scalar`]. Only called after run-time feature detection
//! ([`super::Kernel::is_available`]).

use super::scalar::{advance_scalar, scan_scalar, sliding_dot_scalar};
use super::{Best, Consts, Tile};
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
pub(super) unsafe fn scan_neon(qt: &[f64], mu: &[f64], a: &[f64], c: f64, idx_base: usize) -> Best {
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
