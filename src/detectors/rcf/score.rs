//! Scoring: the RCF score of a point in each tree and its per-dimension attribution, and the
//! forest's mean over its trees (descended a group at a time).

use super::forest::{Attribution, Forest, Scratch};
use super::tree::{LEAF, NONE, TreeRef};

/// Trees descended together when scoring (see `Forest::score_current`).
pub(super) const GROUP: usize = 8;

/// Writes how far `p` lies outside the box `[lo, hi]` in each dimension into `gaps` (`d`
/// "high" parts, then `d` "low" parts) and returns the sums of the gaps and of the box's
/// side lengths. A random cut of the box grown to `p` separates `p` with probability
/// `gap / (gap + range)`, and dimension and direction in proportion to their parts.
///
/// The sums run in four fixed lanes: the compiler can vectorise that, and unlike a reordering
/// it chose itself, the result is the same on every run and after every restore.
#[inline]
fn gaps(lo: &[f32], hi: &[f32], p: &[f32], gaps: &mut [f64]) -> (f64, f64) {
    const LANES: usize = 4;
    let d = p.len();
    let (high, low) = gaps.split_at_mut(d);
    let mut gap = [0.0f64; LANES];
    let mut range = [0.0f64; LANES];
    for k in 0..d {
        let lane = k % LANES;
        let (l, h, x) = (f64::from(lo[k]), f64::from(hi[k]), f64::from(p[k]));
        let up = (x - h).max(0.0);
        let down = (l - x).max(0.0);
        high[k] = up;
        low[k] = down;
        gap[lane] += up + down;
        range[lane] += h - l;
    }
    (
        (gap[0] + gap[1]) + (gap[2] + gap[3]),
        (range[0] + range[1]) + (range[2] + range[3]),
    )
}

impl TreeRef<'_> {
    /// Scores `p` in this tree (see the module docs), given the leaf `p` routes to and the
    /// internal nodes on the way (`path`, root first), and writes the tree's attribution,
    /// rescaled to sum to the returned normalised score, into `s.tree_attr`.
    pub(super) fn score(&self, p: &[f32], leaf_ref: u32, path: &[u32], s: &mut Scratch) -> f64 {
        let d = self.d;
        if self.root == NONE {
            s.tree_attr.fill(0.0);
            return 0.0;
        }
        let leaf = (leaf_ref & !LEAF) as usize;
        let depth = path.len();
        let leaf_mass = self.leaf_mass[leaf] as usize;
        let mass = self.mass as usize;
        let mut score;
        if self.leaf_point(leaf) == p {
            // Seen before: the damped "seen" score; no ancestor box can separate `p`, so the
            // scalar recursion has converged. Attribution instead asks what separates `p`
            // from the rest of the tree, growing a shadow box of the siblings on the way up.
            let damp = 1.0 - leaf_mass as f64 / (2.0 * mass as f64);
            score = damp / (depth as f64 + s.log2_1p[leaf_mass]);
            s.tree_attr.fill(0.0);
            let mut child = leaf_ref;
            for (a, &node) in path.iter().enumerate().rev() {
                let n = &self.inner[node as usize];
                let sibling = if n.left == child { n.right } else { n.left };
                let (lo, hi) = self.bounds(sibling);
                let (slo, shi) = s.shadow.split_at_mut(d);
                if child == leaf_ref {
                    slo.copy_from_slice(lo);
                    shi.copy_from_slice(hi);
                } else {
                    for k in 0..d {
                        slo[k] = slo[k].min(lo[k]);
                        shi[k] = shi[k].max(hi[k]);
                    }
                }
                let (gap, range) = gaps(slo, shi, p, &mut s.prob);
                if gap == 0.0 {
                    break;
                }
                accumulate(&mut s.tree_attr, &s.prob, gap, range, a);
                child = node;
            }
        } else {
            // The leaf's box is its point, so a cut separates `p` from it for sure.
            score = 1.0 / (depth as f64 + 1.0);
            let lp = self.leaf_point(leaf);
            let (gap, _) = gaps(lp, lp, p, &mut s.prob);
            let f = score / gap;
            for (t, &g) in s.tree_attr.iter_mut().zip(s.prob.iter()) {
                *t = g * f;
            }
            for (a, &node) in path.iter().enumerate().rev() {
                let (lo, hi) = self.bounds(node);
                let (gap, range) = gaps(lo, hi, p, &mut s.prob);
                if gap == 0.0 {
                    // Inside this box, hence inside every box above it: converged.
                    break;
                }
                let q = gap / (gap + range);
                score = (1.0 - q) * score + q / (a as f64 + 1.0);
                accumulate(&mut s.tree_attr, &s.prob, gap, range, a);
            }
        }
        let normalised = score * s.log2_1p[mass];
        let total: f64 = s.tree_attr.iter().sum();
        if total > 0.0 {
            let f = normalised / total;
            s.tree_attr.iter_mut().for_each(|t| *t *= f);
        } else {
            // Nothing separates `p` from anything (a lone duplicate): spread evenly.
            let v = normalised / (2 * d) as f64;
            s.tree_attr.iter_mut().for_each(|t| *t = v);
        }
        normalised
    }
}

/// One step of the attribution recursion at depth `depth`: `attr ← (1-q)·attr + gaps/(gap +
/// range) · 1/(depth+1)`, where `q = gap/(gap + range)`. Fused into one pass over the vector.
#[inline]
fn accumulate(attr: &mut [f64], gaps: &[f64], gap: f64, range: f64, depth: usize) {
    let total = gap + range;
    let keep = range / total; // 1 - q, without the cancellation
    let add = 1.0 / (total * (depth as f64 + 1.0));
    for (t, &g) in attr.iter_mut().zip(gaps.iter()) {
        *t = *t * keep + g * add;
    }
}

impl Forest {
    /// Scores `scratch.point` against the current trees; fills `scratch.out`.
    pub(super) fn score_current(&mut self) -> f64 {
        let Self {
            arenas,
            scratch,
            cfg,
            ..
        } = self;
        let (d, dims, cap) = (arenas.d, cfg.dimensions, arenas.cap);
        scratch.forest_attr.fill(0.0);
        let mut total = 0.0;
        let point = std::mem::take(&mut scratch.point);
        let mut paths = std::mem::take(&mut scratch.paths);
        let mut leaves = [NONE; GROUP];
        let mut depths = [0usize; GROUP];
        for first in (0..cfg.trees).step_by(GROUP) {
            let group = GROUP.min(cfg.trees - first);
            // Descend `group` trees in lock-step. A descent is a chain of dependent loads that
            // mostly miss L1 (a forest outgrows L2 easily); interleaving independent chains
            // lets the core overlap their misses instead of waiting for each in turn.
            for g in 0..group {
                leaves[g] = arenas.trees[first + g].root;
                depths[g] = 0;
            }
            loop {
                let mut moving = false;
                for g in 0..group {
                    let node = leaves[g];
                    if node & LEAF != 0 {
                        continue; // a leaf, or NONE for an empty tree
                    }
                    moving = true;
                    paths[g * cap + depths[g]] = node;
                    depths[g] += 1;
                    leaves[g] = arenas.inner[(first + g) * cap + node as usize].child_for(&point);
                }
                if !moving {
                    break;
                }
            }
            for g in 0..group {
                let path = &paths[g * cap..g * cap + depths[g]];
                total += arenas
                    .tree(first + g)
                    .score(&point, leaves[g], path, scratch);
                for (f, &t) in scratch.forest_attr.iter_mut().zip(scratch.tree_attr.iter()) {
                    *f += t;
                }
            }
        }
        scratch.point = point;
        scratch.paths = paths;
        let inv = 1.0 / cfg.trees as f64;
        for (i, out) in scratch.out.iter_mut().enumerate() {
            let (mut high, mut low) = (0.0, 0.0);
            for b in (i..d).step_by(dims) {
                high += scratch.forest_attr[b];
                low += scratch.forest_attr[d + b];
            }
            *out = Attribution {
                high: high * inv,
                low: low * inv,
            };
        }
        total * inv
    }
}
