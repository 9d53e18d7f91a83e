//! The forest's checkpoint encoding (see the layout below), on the shared codec of
//! [`crate::core::codec`].

use super::forest::{
    Forest, ForestConfig, MAX_POINT_DIMENSIONS, MAX_SAMPLE_SIZE, MAX_TREES, Scratch,
};
use super::rng::Rng;
use super::sampler::sample_weight;
use super::tree::{Inner, LEAF, NONE, TreeMut, TreeState};
use crate::core::codec::{BitReader, BitWriter, DecodeError, Reader, Writer};

/// Checkpoint magic and current version.
const MAGIC: &[u8; 4] = b"ORCF";
const VERSION: u16 = 1;

/// Order-preserving map of finite `f32`s (with one zero) onto integers: neighbouring values
/// get neighbouring numbers, so the `f32`s in `[a, b)` are `ordinal(b) - ordinal(a)` many.
#[inline]
fn ordinal(x: f32) -> i64 {
    let bits = x.to_bits();
    let magnitude = i64::from(bits & 0x7fff_ffff);
    if bits >> 31 == 1 {
        -magnitude
    } else {
        magnitude
    }
}

/// Inverse of [`ordinal`] (producing +0.0 for 0).
#[inline]
fn from_ordinal(o: i64) -> f32 {
    let magnitude = o.unsigned_abs() as u32;
    f32::from_bits(if o < 0 {
        magnitude | 0x8000_0000
    } else {
        magnitude
    })
}

/// Bits needed for a value below `n` (0 when `n` ≤ 1).
#[inline]
fn width_for(n: u64) -> u32 {
    u64::BITS - n.saturating_sub(1).leading_zeros()
}

// ---------------------------------------------------------------------------------------------
// Checkpoint encoding.
//
// Version 1 layout (little-endian; varint = unsigned LEB128):
//
//   "ORCF" u16:version
//   config    varint dimensions, shingle_size, trees, sample_size; f64 time_decay;
//             varint output_after; u64 seed
//   progress  varint inputs_seen, points_seen; f32 × D·k shingle (oldest first)
//   rng       4 × u64 xoshiro state
//   points    varint n; n ascending seqs as varint deltas (the first from 0): every point
//             sampled by any tree. Then the f32 input values these points span, in order:
//             point `seq` is inputs seq..seq+k, and each input is written once.
//   per tree  varint entries; entries' seqs ascending as varint deltas of their index in
//             the point list (weights are recomputed from (seed, tree, seq));
//             varint leaves; varint byte length of the following bit fields (LSB first):
//               preorder shape, 1 bit per node (1 = internal, 0 = leaf);
//               per internal node in preorder, ⌈log2(D·k)⌉ bits of cut dimension;
//               per leaf in preorder, ⌈log2(entries)⌉ bits: index of an entry it holds;
//               per internal node in preorder, the cut as its offset among the f32 values
//               of [left max, right min) in ⌈log2(that count)⌉ bits (computable once the
//               leaves, hence the boxes, are known).
//             Leaf masses and boxes are recomputed from these.
//   u64 FNV-1a checksum of all of the above
//
// The encoding is canonical: equal models encode to equal bytes, whatever their slot layout.

/// Bits needed for a cut dimension below `d`.
fn dim_bits(d: usize) -> u32 {
    usize::BITS - (d.max(1) - 1).leading_zeros()
}

impl Forest {
    /// Appends this forest's versioned binary state to `out` (about 6 bytes per sampled
    /// point for one field; see the layout comment in the source).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let cfg = &self.cfg;
        let a = &self.arenas;
        let (d, cap, k) = (a.d, a.cap, cfg.shingle_size as u64);
        let mut w = Writer::new(out);
        w.header(MAGIC, VERSION);
        for v in [cfg.dimensions, cfg.shingle_size, cfg.trees, cfg.sample_size] {
            w.varint(v as u64);
        }
        w.f64(cfg.time_decay);
        w.varint(cfg.output_after as u64);
        w.u64(cfg.seed);
        w.varint(self.inputs_seen);
        w.varint(self.points_seen);
        self.shingle.iter().for_each(|&v| w.f32(v));
        self.rng.state().iter().for_each(|&v| w.u64(v));

        // Every seq sampled by any tree, ascending.
        let mut seqs: Vec<u64> = Vec::new();
        for (j, st) in a.trees.iter().enumerate() {
            seqs.extend_from_slice(&a.heap_seq[j * cap..j * cap + st.heap_len as usize]);
        }
        seqs.sort_unstable();
        seqs.dedup();
        w.varint(seqs.len() as u64);
        let mut prev = 0;
        for &s in &seqs {
            w.varint(s - prev);
            prev = s;
        }
        // Input values spanned by the points (point `seq` is inputs seq..seq+k), each input
        // once; the values come from the leaves holding the points.
        let values = self.point_values(&seqs);
        let mut covered = 0u64; // inputs before this index are written
        for (idx, &s) in seqs.iter().enumerate() {
            let from = covered.max(s);
            for input in from..s + k {
                let offset = (input - s) as usize * cfg.dimensions;
                let p = &values[idx * d..(idx + 1) * d];
                p[offset..offset + cfg.dimensions]
                    .iter()
                    .for_each(|&v| w.f32(v));
            }
            covered = s + k;
        }

        let bits = dim_bits(d);
        let mut entries: Vec<(u64, u32)> = Vec::with_capacity(cap);
        let mut first_entry = vec![NONE; cap];
        let mut order: Vec<u32> = Vec::with_capacity(2 * cap);
        let mut stack: Vec<u32> = Vec::new();
        for (j, st) in a.trees.iter().enumerate() {
            entries.clear();
            let r = j * cap..j * cap + st.heap_len as usize;
            let leaves_of = a.heap_leaf[r.clone()].iter().copied();
            entries.extend(a.heap_seq[r].iter().copied().zip(leaves_of));
            entries.sort_unstable();
            w.varint(entries.len() as u64);
            let mut prev = 0usize;
            first_entry.fill(NONE);
            for (e, &(s, leaf)) in entries.iter().enumerate() {
                let idx = seqs
                    .binary_search(&s)
                    .expect("every sampled seq is in the list");
                w.varint((idx - prev) as u64);
                prev = idx;
                let slot = (leaf & !LEAF) as usize;
                if first_entry[slot] == NONE {
                    first_entry[slot] = e as u32;
                }
            }
            let t = a.tree(j);
            order.clear();
            stack.clear();
            if t.root != NONE {
                stack.push(t.root);
            }
            while let Some(node) = stack.pop() {
                order.push(node);
                if node & LEAF == 0 {
                    let n = &t.inner[node as usize];
                    stack.push(n.right);
                    stack.push(n.left);
                }
            }
            let internal = |&&node: &&u32| node & LEAF == 0;
            let leaves = order.iter().filter(|&&node| node & LEAF != 0).count();
            w.varint(leaves as u64);
            if leaves == 0 {
                continue;
            }
            let mut bw = BitWriter::new();
            for &node in &order {
                bw.bits(u32::from(node & LEAF == 0), 1);
            }
            for &node in order.iter().filter(internal) {
                bw.bits(t.inner[node as usize].dim, bits);
            }
            let rep_bits = width_for(entries.len() as u64);
            for &node in order.iter().filter(|&&node| node & LEAF != 0) {
                bw.bits(first_entry[(node & !LEAF) as usize], rep_bits);
            }
            for &node in order.iter().filter(internal) {
                let n = &t.inner[node as usize];
                let k = n.dim as usize;
                let (lmax, rmin) = (t.bounds(n.left).1[k], t.bounds(n.right).0[k]);
                let span = (ordinal(rmin) - ordinal(lmax)) as u64;
                bw.bits((ordinal(n.cut) - ordinal(lmax)) as u32, width_for(span));
            }
            let packed = bw.into_bytes();
            w.varint(packed.len() as u64);
            w.bytes(&packed);
        }
        w.finish_with_checksum();
    }

    /// The points (`D·k` values each) of the given sampled seqs, found in the leaves.
    fn point_values(&self, seqs: &[u64]) -> Vec<f32> {
        let a = &self.arenas;
        let (d, cap) = (a.d, a.cap);
        let mut values = vec![0.0f32; seqs.len() * d];
        for (j, st) in a.trees.iter().enumerate() {
            for e in j * cap..j * cap + st.heap_len as usize {
                let idx = seqs
                    .binary_search(&a.heap_seq[e])
                    .expect("every sampled seq is listed");
                let slot = (a.heap_leaf[e] & !LEAF) as usize;
                let src = &a.points[(j * cap + slot) * d..(j * cap + slot + 1) * d];
                values[idx * d..(idx + 1) * d].copy_from_slice(src);
            }
        }
        values
    }

    /// Restores a forest from [`Forest::encode`] output. The result continues exactly as the
    /// encoded forest would have: same scores, bit for bit, for the same inputs.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::with_checksum(bytes)?;
        r.header(MAGIC, "rcf forest", VERSION)?;
        let dimensions = r.varint_len(MAX_POINT_DIMENSIONS)?;
        let shingle_size = r.varint_len(MAX_POINT_DIMENSIONS)?;
        let trees = r.varint_len(MAX_TREES)?;
        let sample_size = r.varint_len(MAX_SAMPLE_SIZE)?;
        let time_decay = r.f64()?;
        let output_after = r.varint_len(usize::MAX)?;
        let seed = r.u64()?;
        let cfg = ForestConfig {
            dimensions,
            shingle_size,
            trees,
            sample_size,
            time_decay,
            output_after,
            seed,
        };
        cfg.validate()
            .map_err(|_| DecodeError::invalid("invalid configuration"))?;
        let inputs_seen = r.varint()?;
        let points_seen = r.varint()?;
        let k = shingle_size as u64;
        let consistent = if points_seen == 0 {
            inputs_seen < k
        } else {
            inputs_seen.checked_sub(k - 1) == Some(points_seen)
        };
        if !consistent {
            return Err(DecodeError::invalid("inconsistent progress counters"));
        }
        let d = dimensions * shingle_size;
        let mut shingle = vec![0.0f32; d];
        for v in shingle.iter_mut() {
            *v = r.f32()?;
            if !v.is_finite() {
                return Err(DecodeError::invalid("non-finite shingle value"));
            }
        }
        let mut state = [0u64; 4];
        for v in state.iter_mut() {
            *v = r.u64()?;
        }
        let rng = Rng::from_state(state).ok_or(DecodeError::invalid("all-zero rng state"))?;

        let n = r.varint_len(trees * sample_size)?;
        let mut seqs = Vec::with_capacity(n);
        let mut prev = 0u64;
        for i in 0..n {
            let delta = r.varint()?;
            if i > 0 && delta == 0 {
                return Err(DecodeError::invalid("point seqs not increasing"));
            }
            prev = prev
                .checked_add(delta)
                .ok_or(DecodeError::invalid("seq overflow"))?;
            if prev >= points_seen {
                return Err(DecodeError::invalid("point seq in the future"));
            }
            seqs.push(prev);
        }
        // Rebuild each point's values from the input stream segments.
        let mut values = vec![0.0f32; n * d];
        let mut covered = 0u64;
        for (idx, &s) in seqs.iter().enumerate() {
            for input in s..s + k {
                let offset = idx * d + (input - s) as usize * dimensions;
                if input < covered {
                    // Shared with the previous point, which spans it at a known offset.
                    let prev_s = seqs[idx - 1];
                    let src = (idx - 1) * d + (input - prev_s) as usize * dimensions;
                    values.copy_within(src..src + dimensions, offset);
                } else {
                    for v in &mut values[offset..offset + dimensions] {
                        *v = r.f32()?;
                        if !v.is_finite() {
                            return Err(DecodeError::invalid("non-finite point value"));
                        }
                    }
                }
            }
            covered = s + k;
        }

        let tree_states = (0..trees).map(|j| TreeState::new(seed, j)).collect();
        let mut forest = Self::assemble(cfg, tree_states, rng);
        forest.shingle = shingle;
        forest.inputs_seen = inputs_seen;
        forest.points_seen = points_seen;
        let Self {
            arenas,
            scratch,
            cfg,
            ..
        } = &mut forest;
        for j in 0..trees {
            let mut t = arenas.tree_mut(j);
            decode_tree(&mut r, &mut t, &seqs, &values, cfg.time_decay, scratch)?;
        }
        r.finish()?;
        Ok(forest)
    }
}

/// Decodes one tree (see the layout comment) into the empty tree `t`.
fn decode_tree(
    r: &mut Reader<'_>,
    t: &mut TreeMut<'_>,
    seqs: &[u64],
    values: &[f32],
    time_decay: f64,
    s: &mut Scratch,
) -> Result<(), DecodeError> {
    let (d, cap) = (t.d, t.cap);
    let dim_bits = dim_bits(d);
    let n = r.varint_len(cap)?;
    let mut entries: Vec<usize> = Vec::with_capacity(n); // index into seqs
    let mut idx = 0usize;
    for e in 0..n {
        let delta = r.varint_len(seqs.len())?;
        if e > 0 && delta == 0 {
            return Err(DecodeError::invalid("tree entries not increasing"));
        }
        idx = idx
            .checked_add(delta)
            .ok_or(DecodeError::invalid("entry index overflow"))?;
        if idx >= seqs.len() {
            return Err(DecodeError::invalid("entry index out of range"));
        }
        entries.push(idx);
    }
    let leaves = r.varint_len(n)?;
    if (leaves == 0) != (n == 0) {
        return Err(DecodeError::invalid("leaf count does not match the sample"));
    }
    if leaves == 0 {
        return Ok(());
    }
    let internals = leaves - 1;
    let packed_len = r.varint_len(usize::MAX)?;
    let mut bits = BitReader::new(r.take(packed_len)?);

    // Rebuild the shape in preorder: internal slots and leaf slots are numbered in preorder.
    // `open` holds internal nodes still waiting for a right child.
    let mut open: Vec<u32> = Vec::new();
    let (mut next_inner, mut next_leaf) = (0u32, 0u32);
    let mut root = NONE;
    for pos in 0..2 * leaves - 1 {
        let internal = bits.bits(1)? == 1;
        let node = if internal {
            if next_inner as usize >= internals {
                return Err(DecodeError::invalid(
                    "tree shape has too many internal nodes",
                ));
            }
            next_inner += 1;
            next_inner - 1
        } else {
            if next_leaf as usize >= leaves {
                return Err(DecodeError::invalid("tree shape has too many leaves"));
            }
            next_leaf += 1;
            (next_leaf - 1) | LEAF
        };
        if pos == 0 {
            root = node;
        } else {
            // Attach to the innermost open node: as its left child if it has none yet.
            let Some(&parent) = open.last() else {
                return Err(DecodeError::invalid("tree shape ends early"));
            };
            let pn = &mut t.inner[parent as usize];
            if pn.left == NONE {
                pn.left = node;
            } else {
                pn.right = node;
                open.pop();
            }
        }
        if internal {
            t.inner[node as usize] = Inner {
                left: NONE,
                right: NONE,
                cut: 0.0,
                dim: 0,
            };
            open.push(node);
        }
    }
    if !open.is_empty() || next_leaf as usize != leaves {
        return Err(DecodeError::invalid("tree shape is incomplete"));
    }
    // Cut dimensions (preorder = slot order), then leaf points.
    for node in t.inner[..internals].iter_mut() {
        let dim = bits.bits(dim_bits)?;
        if dim as usize >= d {
            return Err(DecodeError::invalid("cut dimension out of range"));
        }
        node.dim = dim;
    }
    let rep_bits = width_for(n as u64);
    for leaf in 0..leaves {
        let e = bits.bits(rep_bits)? as usize;
        let idx = *entries
            .get(e)
            .ok_or(DecodeError::invalid("leaf entry out of range"))?;
        t.points[leaf * d..(leaf + 1) * d].copy_from_slice(&values[idx * d..(idx + 1) * d]);
        t.mass[leaf] = 0;
    }
    t.st.root = root;
    t.st.inner_used = internals as u32;
    t.st.leaf_used = leaves as u32;
    // Boxes bottom-up (children have larger preorder slots than their parent), then cuts.
    for node in (0..internals as u32).rev() {
        t.refresh(node, &mut s.shadow);
    }
    for node in 0..internals {
        let Inner {
            left, right, dim, ..
        } = t.inner[node];
        let k = dim as usize;
        let (lmax, rmin) = (t.hi_at(left, k), t.lo_at(right, k));
        if lmax >= rmin {
            return Err(DecodeError::invalid("no gap between the children of a cut"));
        }
        let span = (ordinal(rmin) - ordinal(lmax)) as u64;
        let offset = bits.bits(width_for(span))?;
        if u64::from(offset) >= span {
            return Err(DecodeError::invalid("cut outside the gap of its children"));
        }
        t.inner[node].cut = from_ordinal(ordinal(lmax) + i64::from(offset));
    }
    bits.finish()?;
    // Route every entry to its leaf: this checks the tree and yields masses and heap slots.
    for &idx in &entries {
        let p = &values[idx * d..(idx + 1) * d];
        let leaf = t.view().descend(p, &mut s.path);
        let slot = (leaf & !LEAF) as usize;
        if &t.points[slot * d..(slot + 1) * d] != p {
            return Err(DecodeError::invalid("sampled point is not in its tree"));
        }
        t.mass[slot] += 1;
        let seq = seqs[idx];
        let w = sample_weight(t.st.weight_stream, seq, time_decay);
        t.heap_push(w, seq, leaf);
    }
    if t.mass[..leaves].contains(&0) {
        return Err(DecodeError::invalid("leaf without a sampled point"));
    }
    t.st.mass = n as u32;
    Ok(())
}
