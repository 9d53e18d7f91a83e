//! The portable scalar loops: always available, the reference every SIMD path must equal bit
//! for bit, and the finisher of the slots a SIMD block leaves over.

use super::{Best, Consts, Tile, dot};

/// The reference loop; also finishes the slots left over after the SIMD blocks.
// `step` indexes four parallel arrays; an iterator chain would hide the reference order.
#[allow(clippy::needless_range_loop)]
pub(super) fn advance_scalar<const S: usize>(
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

pub(super) fn scan_scalar(
    qt: &[f64],
    mu: &[f64],
    a: &[f64],
    c: f64,
    idx_base: usize,
    mut b: Best,
) -> Best {
    for (s, &q) in qt.iter().enumerate() {
        b.offer((q - c * mu[s]) * a[s], idx_base + s);
    }
    b
}

pub(super) fn sliding_dot_scalar(q: &[f64], t: &[f64], out: &mut [f64], from: usize) {
    for (j, o) in out.iter_mut().enumerate().skip(from) {
        *o = dot(q, &t[j..j + q.len()]);
    }
}
