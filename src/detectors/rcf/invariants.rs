//! Test-only views of a forest's internals: structural invariants, sample sizes and a naive
//! reference score, for the property tests.

use super::forest::Forest;
use super::sampler::above;
use super::tree::{LEAF, NONE};

impl Forest {
    /// Checks every structural invariant; for property tests. Returns the first violation.
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        let a = &self.arenas;
        let (d, cap) = (a.d, a.cap);
        for (j, st) in a.trees.iter().enumerate() {
            let t = a.tree(j);
            let heap_len = st.heap_len as usize;
            // Heap order.
            for i in 1..heap_len {
                let (c, p) = (j * cap + i, j * cap + (i - 1) / 2);
                if above(
                    a.heap_weight[c],
                    a.heap_seq[c],
                    a.heap_weight[p],
                    a.heap_seq[p],
                ) {
                    return Err(format!("tree {j}: heap order broken at {i}"));
                }
            }
            // Each sampled point is in the tree exactly once: its leaf (reached by routing)
            // holds an equal point, and leaf masses equal the number of entries pointing there.
            let mut counted = vec![0u32; cap];
            let mut path = Vec::new();
            for e in j * cap..j * cap + heap_len {
                let leaf = a.heap_leaf[e];
                let slot = (leaf & !LEAF) as usize;
                let p = t.leaf_point(slot);
                if t.descend(p, &mut path) != leaf {
                    return Err(format!("tree {j}: entry {e} does not route to its leaf"));
                }
                counted[slot] += 1;
            }
            // Walk the tree: boxes contain (and are exactly) their subtree, cuts separate.
            let mut seen_leaves = 0usize;
            let mut total_mass = 0u64;
            if st.root != NONE {
                let mut stack = vec![st.root];
                while let Some(node) = stack.pop() {
                    if node & LEAF != 0 {
                        let slot = (node & !LEAF) as usize;
                        if t.leaf_mass[slot] == 0 || t.leaf_mass[slot] != counted[slot] {
                            return Err(format!("tree {j}: leaf {slot} mass mismatch"));
                        }
                        seen_leaves += 1;
                        total_mass += u64::from(t.leaf_mass[slot]);
                        continue;
                    }
                    let n = t.inner[node as usize];
                    let (lo, hi) = t.bounds(node);
                    for c in [n.left, n.right] {
                        let (clo, chi) = t.bounds(c);
                        for k in 0..d {
                            if clo[k] < lo[k] || chi[k] > hi[k] {
                                return Err(format!("tree {j}: box of {node} misses child {c}"));
                            }
                        }
                        stack.push(c);
                    }
                    let (llo, lhi) = t.bounds(n.left);
                    let (rlo, rhi) = t.bounds(n.right);
                    for k in 0..d {
                        if lo[k] != llo[k].min(rlo[k]) || hi[k] != lhi[k].max(rhi[k]) {
                            return Err(format!("tree {j}: box of {node} is not tight"));
                        }
                    }
                    let k = n.dim as usize;
                    if !(lhi[k] <= n.cut && n.cut < rlo[k]) {
                        return Err(format!("tree {j}: cut of {node} does not separate"));
                    }
                }
            }
            if total_mass != u64::from(st.mass) || st.mass as usize != heap_len {
                return Err(format!("tree {j}: mass {} vs sample {heap_len}", st.mass));
            }
            if seen_leaves != counted.iter().filter(|&&c| c > 0).count() {
                return Err(format!(
                    "tree {j}: entries point to leaves outside the tree"
                ));
            }
        }
        Ok(())
    }

    /// Number of sampled points per tree.
    pub(super) fn sample_sizes(&self) -> Vec<usize> {
        self.arenas
            .trees
            .iter()
            .map(|t| t.heap_len as usize)
            .collect()
    }

    /// The score `process(point)` is about to return, computed naively: every box is
    /// recomputed from the leaves below it instead of read from the maintained boxes.
    /// `None` if `process` will not return a score. For reference tests.
    pub(super) fn reference_score(&self, point: &[f64]) -> Option<f64> {
        let (dims, k) = (self.cfg.dimensions, self.cfg.shingle_size);
        if self.inputs_seen + 1 < k as u64 || self.points_seen < self.cfg.output_after as u64 {
            return None;
        }
        let mut p = self.shingle[dims..].to_vec();
        p.extend(point.iter().map(|&x| x as f32 + 0.0));
        let mut total = 0.0;
        for j in 0..self.cfg.trees {
            let t = self.arenas.tree(j);
            if t.root == NONE {
                continue;
            }
            let subtree_box = |node: u32| {
                let (mut lo, mut hi) = (vec![f32::INFINITY; t.d], vec![f32::NEG_INFINITY; t.d]);
                let mut stack = vec![node];
                while let Some(n) = stack.pop() {
                    if n & LEAF != 0 {
                        let q = t.leaf_point((n & !LEAF) as usize);
                        for i in 0..t.d {
                            lo[i] = lo[i].min(q[i]);
                            hi[i] = hi[i].max(q[i]);
                        }
                    } else {
                        stack.push(t.inner[n as usize].left);
                        stack.push(t.inner[n as usize].right);
                    }
                }
                (lo, hi)
            };
            let mut path = Vec::new();
            let leaf = t.descend(&p, &mut path);
            let slot = (leaf & !LEAF) as usize;
            let depth = path.len() as f64;
            let m = f64::from(t.leaf_mass[slot]);
            let mass = f64::from(t.mass);
            let mut score = if t.leaf_point(slot) == p.as_slice() {
                (1.0 - m / (2.0 * mass)) / (depth + (1.0 + m).log2())
            } else {
                let mut s = 1.0 / (depth + 1.0);
                for (a, &node) in path.iter().enumerate().rev() {
                    let (lo, hi) = subtree_box(node);
                    let (mut gap, mut range) = (0.0, 0.0);
                    for i in 0..t.d {
                        let (l, h, x) = (f64::from(lo[i]), f64::from(hi[i]), f64::from(p[i]));
                        gap += (x - h).max(0.0) + (l - x).max(0.0);
                        range += h - l;
                    }
                    if gap == 0.0 {
                        break;
                    }
                    let q = gap / (gap + range);
                    s = (1.0 - q) * s + q / (a as f64 + 1.0);
                }
                s
            };
            score *= (1.0 + mass).log2();
            total += score;
        }
        Some(total / self.cfg.trees as f64)
    }
}
