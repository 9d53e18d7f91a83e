//! The chunk dot products of DAMP's backward search: direct sliding dot products through
//! [`super::super::simd`], or MASS (FFT convolution, `rustfft`) for long chunks, in per-thread
//! scratch space that is reused across points and keys.

use super::Damp;
use super::MassMode;
use crate::detectors::matrix_profile::simd::{self, Best};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::cell::RefCell;
use std::sync::Arc;

/// FFT cost per point per log2(size) in units of one direct multiply-add; see `use_fft`.
const FFT_COST_PER_POINT_LOG: f64 = 8.0;

/// Per-thread scratch: chunk dot products and the FFT buffers of MASS.
struct Scratch {
    qt: Vec<f64>,
    /// The query minus its mean.
    query: Vec<f64>,
    planner: FftPlanner<f64>,
    z: Vec<Complex<f64>>,
    w: Vec<Complex<f64>>,
    fft_scratch: Vec<Complex<f64>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        qt: Vec::new(),
        query: Vec::new(),
        planner: FftPlanner::new(),
        z: Vec::new(),
        w: Vec::new(),
        fft_scratch: Vec::new(),
    });
}

impl Scratch {
    /// `out[j] = Σ_k q[k]·t[j+k]` by FFT convolution (MASS's core). Both real inputs ride in
    /// one complex transform (`t` real part, reversed `q` imaginary part) and are separated by
    /// conjugate symmetry, so two FFTs of size N do the work of three.
    fn mass_dot(&mut self, q: &[f64], t: &[f64], out: &mut [f64]) {
        let m = q.len();
        let n = t.len().next_power_of_two();
        let fwd: Arc<dyn Fft<f64>> = self.planner.plan_fft_forward(n);
        let inv: Arc<dyn Fft<f64>> = self.planner.plan_fft_inverse(n);
        self.z.clear();
        self.z.resize(n, Complex::new(0.0, 0.0));
        for (k, &x) in t.iter().enumerate() {
            self.z[k].re = x;
        }
        for (k, &x) in q.iter().rev().enumerate() {
            self.z[k].im = x;
        }
        let need = fwd
            .get_inplace_scratch_len()
            .max(inv.get_inplace_scratch_len());
        if self.fft_scratch.len() < need {
            self.fft_scratch.resize(need, Complex::new(0.0, 0.0));
        }
        fwd.process_with_scratch(&mut self.z, &mut self.fft_scratch[..need]);
        self.w.clear();
        self.w.resize(n, Complex::new(0.0, 0.0));
        for k in 0..n {
            let zk = self.z[k];
            let zc = self.z[(n - k) % n].conj();
            let a = (zk + zc) * 0.5;
            let b = (zk - zc) * Complex::new(0.0, -0.5);
            self.w[k] = a * b;
        }
        inv.process_with_scratch(&mut self.w, &mut self.fft_scratch[..need]);
        let scale = 1.0 / n as f64;
        for (j, o) in out.iter_mut().enumerate() {
            *o = self.w[j + m - 1].re * scale;
        }
    }
}

/// The per-piece callback of [`Damp::for_each_dots`]: `(dot products, c, ring position, first
/// index)`.
type PieceFn<'a> = dyn FnMut(&[f64], f64, usize, u64) + 'a;

impl Damp {
    /// Compute the dot products of subsequence `i` against `[lo, hi]` in wrap-free pieces and
    /// hand each piece's scan result (slot relative to the piece) and first index to `f`.
    pub(super) fn for_each_piece(
        &self,
        i: u64,
        (mu_i, _): (f64, f64),
        lo: u64,
        hi: u64,
        f: &mut dyn FnMut(Best, u64),
    ) {
        self.for_each_dots(i, mu_i, lo, hi, &mut |qt, c, p, j| {
            let run = qt.len();
            let b = simd::scan(
                self.kernel,
                qt,
                &self.series.mu[p..p + run],
                &self.series.inv[p..p + run],
                c,
                0,
            );
            f(b, j);
        });
    }

    /// Distances from `i` to every regular subsequence in `[lo, hi]` (formula, not polished).
    pub(super) fn for_each_distance(
        &self,
        i: u64,
        (mu_i, inv_i): (f64, f64),
        lo: u64,
        hi: u64,
        f: &mut dyn FnMut(u64, f64),
    ) {
        self.for_each_dots(i, mu_i, lo, hi, &mut |qt, c, p, j| {
            for (s, &q) in qt.iter().enumerate() {
                let v = (q - c * self.series.mu[p + s]) * self.series.inv[p + s];
                if !v.is_nan() {
                    f(j + s as u64, self.v_to_distance(v, inv_i));
                }
            }
        });
    }

    /// The dot products of the centred subsequence `i` against `[lo, hi]`, in wrap-free
    /// pieces: `f(dot products, c, ring position, first index)` per piece, with `c` as
    /// [`Damp::center_query`] returns it.
    fn for_each_dots(&self, i: u64, mu_i: f64, lo: u64, hi: u64, f: &mut PieceFn<'_>) {
        SCRATCH.with_borrow_mut(|sc| {
            let c = self.center_query(sc, i, mu_i);
            let mut j = lo;
            while j <= hi {
                let p = self.series.pos(j);
                let run = ((hi - j + 1) as usize).min(self.series.cap - p);
                self.dots(sc, p, run);
                f(&sc.qt[..run], c, p, j);
                j += run as u64;
            }
        });
    }

    /// Put subsequence `i` minus its mean into `sc.query` and return the sum of that centred
    /// query, `c`.
    ///
    /// With a centred query `q̃`, `Σ_k q̃_k·T[j+k] − c·μ_j = Σ_k q̃_k·(T[j+k] − μ_j)`, the
    /// centred cross product, so [`simd::scan`]'s `(QT − c·μ_j)·a_j` is `m·σ_i·ρ`. Centring
    /// the query keeps the products of the size `σ_i·|T|` instead of `|T|²`, which is what
    /// makes the correlation accurate on series far from zero (`c` is near zero, not `m·μ_i`).
    fn center_query(&self, sc: &mut Scratch, i: u64, mu_i: f64) -> f64 {
        sc.query.clear();
        sc.query
            .extend(self.series.window(i).iter().map(|&x| x - mu_i));
        sc.query.iter().sum()
    }

    /// Fill `sc.qt[..run]` with the dot products of the centred query and the `run`
    /// subsequences starting at ring position `p`.
    fn dots(&self, sc: &mut Scratch, p: usize, run: usize) {
        let m = self.cfg.m;
        if sc.qt.len() < run {
            sc.qt.resize(run, 0.0);
        }
        let t = &self.series.vals[p..p + run + m - 1];
        let mut qt = std::mem::take(&mut sc.qt);
        let q = std::mem::take(&mut sc.query);
        if self.use_fft(run) {
            sc.mass_dot(&q, t, &mut qt[..run]);
        } else {
            simd::sliding_dot(self.kernel, &q, t, &mut qt[..run]);
        }
        sc.qt = qt;
        sc.query = q;
    }

    /// The cost model for [`MassMode::Auto`]: the direct product costs `run·m` multiply-adds
    /// (vectorised), MASS about two complex FFTs of the padded length. The constant comes
    /// from timing both on this project's bench machine (see the bench file).
    fn use_fft(&self, run: usize) -> bool {
        match self.cfg.mass {
            MassMode::Never => false,
            MassMode::Always => true,
            MassMode::Auto => {
                let n = (run + self.cfg.m - 1).next_power_of_two() as f64;
                let fft_cost = FFT_COST_PER_POINT_LOG * n * n.log2();
                let direct_cost = (run * self.cfg.m) as f64;
                run >= 1024 && fft_cost < direct_cost
            }
        }
    }
}
