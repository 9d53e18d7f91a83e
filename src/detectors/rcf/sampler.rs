//! The time-decayed reservoir sampler of each tree: a max-heap on `(weight, seq)` whose
//! weights are recomputed from `(seed, tree, seq)` rather than stored.

use super::forest::Scratch;
use super::rng::{Rng, counter_uniform};
use super::tree::TreeMut;

/// Fraction of the sample below which a filling sample takes every point (AWS default).
const INITIAL_ACCEPT_FRACTION: f64 = 0.125;

/// Probability that the sampler takes a point outright while `fill` of it is used.
#[inline]
fn initial_accept_probability(fill: f64) -> f64 {
    if fill < INITIAL_ACCEPT_FRACTION {
        1.0
    } else {
        1.0 - (fill - INITIAL_ACCEPT_FRACTION) / (1.0 - INITIAL_ACCEPT_FRACTION)
    }
}

/// Sampler weight of point `seq` in the tree whose weight stream is `stream`.
#[inline]
pub(super) fn sample_weight(stream: u64, seq: u64, time_decay: f64) -> f64 {
    let u = counter_uniform(stream, seq);
    (-u.ln()).ln() - time_decay * seq as f64
}

/// Heap order: larger weight first, then larger (newer) seq.
#[inline]
pub(super) fn above(w1: f64, s1: u64, w2: f64, s2: u64) -> bool {
    w1 > w2 || (w1 == w2 && s1 > s2)
}

impl TreeMut<'_> {
    pub(super) fn heap_swap(&mut self, a: usize, b: usize) {
        self.heap_weight.swap(a, b);
        self.heap_seq.swap(a, b);
        self.heap_leaf.swap(a, b);
    }

    pub(super) fn heap_push(&mut self, w: f64, seq: u64, leaf: u32) {
        let mut i = self.st.heap_len as usize;
        self.st.heap_len += 1;
        self.heap_weight[i] = w;
        self.heap_seq[i] = seq;
        self.heap_leaf[i] = leaf;
        while i > 0 {
            let up = (i - 1) / 2;
            if above(
                self.heap_weight[i],
                self.heap_seq[i],
                self.heap_weight[up],
                self.heap_seq[up],
            ) {
                self.heap_swap(i, up);
                i = up;
            } else {
                break;
            }
        }
    }

    /// Removes the heaviest entry; returns its leaf.
    pub(super) fn heap_pop(&mut self) -> u32 {
        let top = self.heap_leaf[0];
        self.st.heap_len -= 1;
        let n = self.st.heap_len as usize;
        self.heap_weight[0] = self.heap_weight[n];
        self.heap_seq[0] = self.heap_seq[n];
        self.heap_leaf[0] = self.heap_leaf[n];
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n
                && above(
                    self.heap_weight[l],
                    self.heap_seq[l],
                    self.heap_weight[m],
                    self.heap_seq[m],
                )
            {
                m = l;
            }
            if r < n
                && above(
                    self.heap_weight[r],
                    self.heap_seq[r],
                    self.heap_weight[m],
                    self.heap_seq[m],
                )
            {
                m = r;
            }
            if m == i {
                break;
            }
            self.heap_swap(i, m);
            i = m;
        }
        top
    }

    /// Offers point `seq` to this tree's sampler and, if taken, to the tree.
    pub(super) fn offer(
        &mut self,
        p: &[f32],
        seq: u64,
        time_decay: f64,
        rng: &mut Rng,
        s: &mut Scratch,
    ) {
        let w = sample_weight(self.st.weight_stream, seq, time_decay);
        let len = self.st.heap_len as usize;
        let initial = len < self.cap && {
            let fill = len as f64 / self.cap as f64;
            counter_uniform(self.st.accept_stream, seq) < initial_accept_probability(fill)
        };
        if !initial {
            // Only a lighter point than the heaviest kept one gets in, and evicts it. Ties go
            // to the incumbent (the newcomer has the larger seq).
            if len == 0 || w >= self.heap_weight[0] {
                return;
            }
            let evicted = self.heap_pop();
            self.delete(evicted, &mut s.path, &mut s.shadow);
        }
        let leaf = self.insert(p, rng, &mut s.path);
        self.heap_push(w, seq, leaf);
    }
}
