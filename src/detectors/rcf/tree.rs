//! The trees: node and leaf storage for all trees in a few flat arenas, read-only and
//! mutable views of one tree, and insertion and deletion of sampled points.

use super::rng::Rng;
use crate::core::hash::{GOLDEN_GAMMA, mix64};

/// Marks a child reference as a leaf; the low 31 bits are the leaf slot.
pub(super) const LEAF: u32 = 1 << 31;
/// An absent node (empty tree, end of a free list).
pub(super) const NONE: u32 = u32::MAX;

/// An internal node: children and cut (16 bytes, four to a cache line).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Inner {
    /// Child references (internal slot, or leaf slot | [`LEAF`]); points with
    /// `x[dim] <= cut` are on the left. For a free slot, `left` links the free list.
    pub(super) left: u32,
    pub(super) right: u32,
    /// Always in `[left max, right min)` in dimension `dim`.
    pub(super) cut: f32,
    pub(super) dim: u32,
}

impl Inner {
    /// The child a point is routed to: the left one when `p[dim] <= cut`.
    #[inline]
    pub(super) fn child_for(&self, p: &[f32]) -> u32 {
        if p[self.dim as usize] <= self.cut {
            self.left
        } else {
            self.right
        }
    }
}

/// Per-tree bookkeeping; the nodes live in [`Arenas`].
#[derive(Debug, Clone)]
pub(super) struct TreeState {
    pub(super) root: u32,
    /// Sum of leaf masses = number of sampled points.
    pub(super) mass: u32,
    /// High-water marks of slot use; slots below are live or on a free list.
    pub(super) inner_used: u32,
    pub(super) leaf_used: u32,
    pub(super) inner_free: u32,
    pub(super) leaf_free: u32,
    /// Entries in this tree's sampler heap.
    pub(super) heap_len: u32,
    /// Counter-based random streams of the sampler (weights, initial acceptance).
    pub(super) weight_stream: u64,
    pub(super) accept_stream: u64,
}

impl TreeState {
    pub(super) fn new(seed: u64, tree: usize) -> Self {
        let base = mix64(seed ^ mix64((tree as u64).wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)));
        Self {
            root: NONE,
            mass: 0,
            inner_used: 0,
            leaf_used: 0,
            inner_free: NONE,
            leaf_free: NONE,
            heap_len: 0,
            weight_stream: base,
            accept_stream: mix64(base ^ 0x5DEE_CE66_D1CE_4E5B),
        }
    }
}

/// All trees' storage: per tree `cap` slots in each array.
#[derive(Debug, Clone)]
pub(super) struct Arenas {
    /// Point dimensions (`D·k`).
    pub(super) d: usize,
    /// Slots per tree (`sample_size`).
    pub(super) cap: usize,
    pub(super) trees: Vec<TreeState>,
    pub(super) inner: Vec<Inner>,
    /// Per internal slot: `d` minima then `d` maxima.
    pub(super) boxes: Vec<f32>,
    /// Per leaf slot: the point.
    pub(super) points: Vec<f32>,
    /// Per leaf slot: multiplicity (for a free slot: next free leaf).
    pub(super) mass: Vec<u32>,
    /// Sampler max-heaps on (weight, seq), per tree; `leaf` is where the point sits.
    pub(super) heap_weight: Vec<f64>,
    pub(super) heap_seq: Vec<u64>,
    pub(super) heap_leaf: Vec<u32>,
}

/// Read-only view of one tree.
#[derive(Clone, Copy)]
pub(super) struct TreeRef<'a> {
    pub(super) d: usize,
    pub(super) root: u32,
    pub(super) mass: u32,
    pub(super) inner: &'a [Inner],
    pub(super) boxes: &'a [f32],
    pub(super) points: &'a [f32],
    pub(super) leaf_mass: &'a [u32],
}

/// Mutable view of one tree and its sampler.
pub(super) struct TreeMut<'a> {
    pub(super) d: usize,
    pub(super) cap: usize,
    pub(super) st: &'a mut TreeState,
    pub(super) inner: &'a mut [Inner],
    pub(super) boxes: &'a mut [f32],
    pub(super) points: &'a mut [f32],
    pub(super) mass: &'a mut [u32],
    pub(super) heap_weight: &'a mut [f64],
    pub(super) heap_seq: &'a mut [u64],
    pub(super) heap_leaf: &'a mut [u32],
}

/// A cut at fraction `u` ∈ [0, 1) of the gap `[lmax, rmin)`, rounded to an `f32` inside it
/// (`lmax` itself if rounding lands on `rmin`), with zero always +0.0 so that the
/// checkpoint's ordinal encoding is a bijection.
#[inline]
fn cut_in_gap(lmax: f32, rmin: f32, u: f64) -> f32 {
    let (a, b) = (f64::from(lmax), f64::from(rmin));
    let c = (a + u * (b - a)) as f32 + 0.0;
    if c >= lmax && c < rmin { c } else { lmax }
}

impl Arenas {
    pub(super) fn new(d: usize, cap: usize, trees: Vec<TreeState>) -> Self {
        let t = trees.len();
        Self {
            d,
            cap,
            trees,
            inner: vec![Inner::default(); t * cap],
            boxes: vec![0.0; t * cap * 2 * d],
            points: vec![0.0; t * cap * d],
            mass: vec![0; t * cap],
            heap_weight: vec![0.0; t * cap],
            heap_seq: vec![0; t * cap],
            heap_leaf: vec![0; t * cap],
        }
    }

    pub(super) fn tree(&self, j: usize) -> TreeRef<'_> {
        let (d, cap) = (self.d, self.cap);
        let slots = j * cap..(j + 1) * cap;
        TreeRef {
            d,
            root: self.trees[j].root,
            mass: self.trees[j].mass,
            inner: &self.inner[slots.clone()],
            boxes: &self.boxes[j * cap * 2 * d..(j + 1) * cap * 2 * d],
            points: &self.points[j * cap * d..(j + 1) * cap * d],
            leaf_mass: &self.mass[slots],
        }
    }

    pub(super) fn tree_mut(&mut self, j: usize) -> TreeMut<'_> {
        let (d, cap) = (self.d, self.cap);
        let slots = j * cap..(j + 1) * cap;
        TreeMut {
            d,
            cap,
            st: &mut self.trees[j],
            inner: &mut self.inner[slots.clone()],
            boxes: &mut self.boxes[j * cap * 2 * d..(j + 1) * cap * 2 * d],
            points: &mut self.points[j * cap * d..(j + 1) * cap * d],
            mass: &mut self.mass[slots.clone()],
            heap_weight: &mut self.heap_weight[slots.clone()],
            heap_seq: &mut self.heap_seq[slots.clone()],
            heap_leaf: &mut self.heap_leaf[slots],
        }
    }
}

impl<'a> TreeRef<'a> {
    #[inline]
    pub(super) fn leaf_point(&self, leaf: usize) -> &'a [f32] {
        &self.points[leaf * self.d..(leaf + 1) * self.d]
    }

    /// Bounding box of a child reference: a leaf's box is its point.
    #[inline]
    pub(super) fn bounds(&self, c: u32) -> (&'a [f32], &'a [f32]) {
        if c & LEAF != 0 {
            let p = self.leaf_point((c & !LEAF) as usize);
            (p, p)
        } else {
            let base = c as usize * 2 * self.d;
            (
                &self.boxes[base..base + self.d],
                &self.boxes[base + self.d..base + 2 * self.d],
            )
        }
    }

    /// Descends to the leaf `p` routes to, recording the internal nodes in `path`.
    #[inline]
    pub(super) fn descend(&self, p: &[f32], path: &mut Vec<u32>) -> u32 {
        path.clear();
        let mut node = self.root;
        while node & LEAF == 0 {
            path.push(node);
            node = self.inner[node as usize].child_for(p);
        }
        node
    }
}

impl TreeMut<'_> {
    #[inline]
    pub(super) fn view(&self) -> TreeRef<'_> {
        TreeRef {
            d: self.d,
            root: self.st.root,
            mass: self.st.mass,
            inner: self.inner,
            boxes: self.boxes,
            points: self.points,
            leaf_mass: self.mass,
        }
    }

    #[inline]
    pub(super) fn lo_at(&self, c: u32, k: usize) -> f32 {
        if c & LEAF != 0 {
            self.points[(c & !LEAF) as usize * self.d + k]
        } else {
            self.boxes[c as usize * 2 * self.d + k]
        }
    }

    #[inline]
    pub(super) fn hi_at(&self, c: u32, k: usize) -> f32 {
        if c & LEAF != 0 {
            self.points[(c & !LEAF) as usize * self.d + k]
        } else {
            self.boxes[c as usize * 2 * self.d + self.d + k]
        }
    }

    pub(super) fn alloc_leaf(&mut self, p: &[f32]) -> u32 {
        let slot = if self.st.leaf_free != NONE {
            let s = self.st.leaf_free;
            self.st.leaf_free = self.mass[s as usize];
            s
        } else {
            let s = self.st.leaf_used;
            self.st.leaf_used += 1;
            s
        };
        let i = slot as usize;
        debug_assert!(i < self.cap, "more leaves than sampled points");
        self.points[i * self.d..(i + 1) * self.d].copy_from_slice(p);
        self.mass[i] = 1;
        slot | LEAF
    }

    pub(super) fn free_leaf(&mut self, leaf: u32) {
        let i = (leaf & !LEAF) as usize;
        self.mass[i] = self.st.leaf_free;
        self.st.leaf_free = leaf & !LEAF;
    }

    pub(super) fn alloc_inner(&mut self) -> u32 {
        if self.st.inner_free != NONE {
            let s = self.st.inner_free;
            self.st.inner_free = self.inner[s as usize].left;
            s
        } else {
            let s = self.st.inner_used;
            self.st.inner_used += 1;
            s
        }
    }

    pub(super) fn free_inner(&mut self, node: u32) {
        self.inner[node as usize].left = self.st.inner_free;
        self.st.inner_free = node;
    }

    /// Recomputes `node`'s box from its children; returns whether it changed (if not, no box
    /// above it changes either). `tmp` is scratch space for `2·d` values.
    pub(super) fn refresh(&mut self, node: u32, tmp: &mut [f32]) -> bool {
        let d = self.d;
        let Inner { left, right, .. } = self.inner[node as usize];
        let (lo, hi) = tmp[..2 * d].split_at_mut(d);
        {
            let t = self.view();
            let (llo, lhi) = t.bounds(left);
            let (rlo, rhi) = t.bounds(right);
            for k in 0..d {
                lo[k] = llo[k].min(rlo[k]);
                hi[k] = lhi[k].max(rhi[k]);
            }
        }
        let base = node as usize * 2 * d;
        let dst = &mut self.boxes[base..base + 2 * d];
        if dst == &tmp[..2 * d] {
            return false;
        }
        dst.copy_from_slice(&tmp[..2 * d]);
        true
    }

    /// Grows `node`'s box to contain `p`; returns whether it changed.
    pub(super) fn grow(&mut self, node: u32, p: &[f32]) -> bool {
        let base = node as usize * 2 * self.d;
        let (lo, hi) = self.boxes[base..base + 2 * self.d].split_at_mut(self.d);
        let mut changed = false;
        for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(p) {
            if x < *l {
                *l = x;
                changed = true;
            }
            if x > *h {
                *h = x;
                changed = true;
            }
        }
        changed
    }

    /// Replaces the child reference `old` of `parent` (or the root) by `new`.
    pub(super) fn replace_child(&mut self, parent: Option<u32>, old: u32, new: u32) {
        match parent {
            None => self.st.root = new,
            Some(a) => {
                let n = &mut self.inner[a as usize];
                if n.left == old {
                    n.left = new;
                } else {
                    n.right = new;
                }
            }
        }
    }

    /// Inserts `p` (one more sampled copy); returns the leaf that holds it.
    pub(super) fn insert(&mut self, p: &[f32], rng: &mut Rng, path: &mut Vec<u32>) -> u32 {
        let d = self.d;
        self.st.mass += 1;
        if self.st.root == NONE {
            let leaf = self.alloc_leaf(p);
            self.st.root = leaf;
            return leaf;
        }
        path.clear();
        let mut node = self.st.root;
        // Walk down until a random cut separates `p` from the subtree at `node`: yields the
        // cut's dimension, whether `p` is below the subtree, and the cut value.
        let (dim, below, cut) = loop {
            let (lo, hi) = self.view().bounds(node);
            let mut gap = 0.0;
            let mut range = 0.0;
            for k in 0..d {
                let (l, h, x) = (f64::from(lo[k]), f64::from(hi[k]), f64::from(p[k]));
                gap += if x > h {
                    x - h
                } else if x < l {
                    l - x
                } else {
                    0.0
                };
                range += h - l;
            }
            if node & LEAF != 0 && gap == 0.0 {
                // Equal to the leaf's point: one more copy; no box or cut changes.
                let i = (node & !LEAF) as usize;
                self.mass[i] += 1;
                return node;
            }
            if gap > 0.0 {
                let r = rng.next_f64() * (gap + range);
                if r < gap {
                    // Separated here: find the dimension whose gap `r` falls in; the rest of
                    // `r` gives the position inside that gap.
                    let mut acc = 0.0;
                    let mut chosen = None;
                    for k in 0..d {
                        let (l, h, x) = (f64::from(lo[k]), f64::from(hi[k]), f64::from(p[k]));
                        let g = if x > h {
                            x - h
                        } else if x < l {
                            l - x
                        } else {
                            0.0
                        };
                        if g > 0.0 {
                            chosen = Some((k, x < l, ((r - acc) / g).clamp(0.0, 1.0)));
                            if r < acc + g {
                                break;
                            }
                            acc += g;
                        }
                    }
                    let (k, below, u) = chosen.expect("gap > 0 means some dimension has a gap");
                    let cut = if below {
                        cut_in_gap(p[k], lo[k], u)
                    } else {
                        cut_in_gap(hi[k], p[k], u)
                    };
                    break (k, below, cut);
                }
            }
            // Not separated here; `node` is internal (a leaf with a gap always separates).
            path.push(node);
            node = self.inner[node as usize].child_for(p);
        };
        let leaf = self.alloc_leaf(p);
        let joined = self.alloc_inner();
        let (left, right) = if below { (leaf, node) } else { (node, leaf) };
        self.inner[joined as usize] = Inner {
            left,
            right,
            cut,
            dim: dim as u32,
        };
        // The new node's box is the old subtree's grown by `p`.
        let base = joined as usize * 2 * d;
        for (k, &x) in p.iter().enumerate() {
            self.boxes[base + k] = self.lo_at(node, k).min(x);
            self.boxes[base + d + k] = self.hi_at(node, k).max(x);
        }
        self.replace_child(path.last().copied(), node, joined);
        for &a in path.iter().rev() {
            if !self.grow(a, p) {
                break;
            }
        }
        leaf
    }

    /// Removes one copy of the point held by `leaf`. `tmp` as for [`TreeMut::refresh`].
    pub(super) fn delete(&mut self, leaf: u32, path: &mut Vec<u32>, tmp: &mut [f32]) {
        let i = (leaf & !LEAF) as usize;
        self.st.mass -= 1;
        if self.mass[i] > 1 {
            self.mass[i] -= 1;
            return;
        }
        // Find the path by routing the leaf's own point: every point routes to its leaf.
        let d = self.d;
        let found = {
            let t = self.view();
            let p = &t.points[i * d..(i + 1) * d];
            t.descend(p, path)
        };
        debug_assert_eq!(found, leaf, "a sampled point must route to its own leaf");
        self.free_leaf(leaf);
        let Some(parent) = path.pop() else {
            self.st.root = NONE;
            return;
        };
        let n = self.inner[parent as usize];
        let sibling = if n.left == leaf { n.right } else { n.left };
        self.free_inner(parent);
        self.replace_child(path.last().copied(), parent, sibling);
        for &a in path.iter().rev() {
            if !self.refresh(a, tmp) {
                break;
            }
        }
    }
}
