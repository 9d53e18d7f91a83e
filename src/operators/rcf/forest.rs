//! Random Cut Forest: streaming anomaly scores with per-dimension attribution.
//!
//! Pure, synchronous algorithm code: no async, no I/O, no knowledge of keys or batches. The
//! operator wrapper (`operators/rcf/mod.rs`) owns one [`Forest`] per key and adapts it.
//!
//! # API for the operator wrapper
//!
//! ```text
//! let cfg = ForestConfig::new(fields.len(), shingle_size, trees, sample_size); // defaults for
//! cfg.seed = seed; cfg.time_decay = ..; cfg.output_after = ..;                 // the rest
//! let mut forest = Forest::new(cfg)?;                  // ConfigError → user error at build()
//! match forest.process(&values) {                      // values: one f64 per field, in order
//!     Ok(Some(s)) => emit(s.score, s.attribution),     // attribution[i] ↔ fields[i]
//!     Ok(None) => {}                                   // shingle filling or before output_after
//!     Err(PointError) => count_and_skip(),             // NaN/∞/wrong arity: forest untouched
//! }
//! forest.encode(&mut buf);                             // keyed state value on each barrier
//! let forest = Forest::decode(&buf)?;                  // lazy load; DecodeError → internal
//! ```
//!
//! `process` borrows the forest for the lifetime of the returned [`Scored`] (its attribution
//! is a slice of a buffer inside the forest, so scoring never allocates); copy what you need
//! out before the next call. Pair it with a [`super::threshold::Thresholder`] per key for
//! grades. `Forest` is `Send` and plain data; it has no interior mutability.
//!
//! # Algorithm
//!
//! Each of `trees` trees keeps a time-decayed reservoir sample of at most `sample_size`
//! shingled points and a random cut tree over it. A point is *scored, then used to update*
//! the forest (as the AWS library and the AWS Flink sample do).
//!
//! - **Shingling.** With shingle size `k` over `D` input fields, the tree point is the last
//!   `k` inputs concatenated, oldest first (`D·k` dimensions). Nothing is scored or sampled
//!   until the first `k` inputs have arrived.
//! - **Sampling.** Point number `seq` (counting full shingles from 0) gets, in tree `j`, the
//!   weight `ln(-ln u) - time_decay·seq` with `u` uniform; each tree keeps the `sample_size`
//!   smallest weights (ties broken by the larger `seq` leaving first, which makes the sampled
//!   set independent of the heap's internal layout). While a sample is filling, a point is
//!   taken outright with probability 1 up to 1/8 full, then linearly less, the same rule as
//!   the AWS library's `initial_accept_fraction = 0.125`. Unlike the AWS library, `u` is not
//!   drawn from a sequential generator but computed from `(seed, tree, seq)`
//!   ([`super::rng::counter_uniform`]), so checkpoints need not store weights.
//! - **Cuts.** Insertion is top-down: at a node with bounding box `B`, the probability that a
//!   random cut of `B ∪ {p}` separates `p` from `B` is `gap(p,B) / (range(B) + gap(p,B))`;
//!   on separation, the dimension is chosen in proportion to its gap and the position is
//!   uniform within the gap, otherwise we follow the existing cut. This is the same
//!   distribution as the AWS library's bottom-up procedure, with fewer random draws. Equal
//!   points share a leaf whose mass counts them.
//! - **Cuts stay where they fell.** As in the AWS library, a cut value is fixed when its node
//!   is created, and later insertions and deletions only move the children's boxes on either
//!   side of it. (We tried re-placing cuts at a fixed fraction of the current gap, which would
//!   be cheaper to checkpoint: at shingle 8 it made the normal-score tail about 5% heavier than
//!   the AWS library's, because the cut is a real boundary of the space partition that future
//!   points are routed by.) The checkpoint still stores a cut in about 2 bytes: it always lies
//!   in `[left max, right min)`, so we write its offset among the `f32` values of that gap.
//! - **Score.** The standard RCF score, normalised as in the AWS library: per tree, walking
//!   from the leaf reached by `p` (at depth `d`) back to the root, `s = 1/(d+1)` at an unseen
//!   leaf, or `s = (1 - m/(2M)) / (d + log2(1+m))` at a leaf equal to `p` (mass `m`, tree mass
//!   `M`), and at each ancestor at depth `a` whose box does not contain `p`,
//!   `s ← (1-q)·s + q/(a+1)` with `q` the separation probability above. The tree score is
//!   `s·log2(1+M)` and the forest score their mean; inliers score below 1.
//! - **Attribution.** The same recursion run on the vector of per-dimension, per-direction
//!   separation probabilities (`high`: `p` above the box, `low`: below), rescaled per tree to
//!   the tree's score (for a duplicate leaf, against the box of the rest of the tree), so the
//!   parts sum to the score. Reported per input field, summed over the shingle.
//!
//! # Memory layout
//!
//! All trees live in a handful of flat arrays allocated once in [`Forest::new`] (per tree a
//! fixed region of `sample_size` slots: internal nodes, their boxes, leaf points and masses,
//! and the sampler heap), addressed with `u32` indices; freed slots are reused through
//! intrusive free lists. Together with fixed scratch buffers this means no heap allocation
//! per point. Points and boxes are `f32`, as in the AWS library; inputs are converted once,
//! on entry.

use thiserror::Error;

pub use super::codec::DecodeError;
use super::codec::{BitReader, BitWriter, Reader, Writer};
use super::rng::{GOLDEN, Rng, counter_uniform, mix64};

/// Largest supported `dimensions × shingle_size`: far beyond what RCF is useful for, it only
/// keeps a bad configuration from allocating absurd boxes.
pub const MAX_POINT_DIMENSIONS: usize = 4096;
/// Largest supported number of trees.
pub const MAX_TREES: usize = 1000;
/// Largest supported sample size per tree.
pub const MAX_SAMPLE_SIZE: usize = 1 << 16;

/// Marks a child reference as a leaf; the low 31 bits are the leaf slot.
const LEAF: u32 = 1 << 31;
/// An absent node (empty tree, end of a free list).
const NONE: u32 = u32::MAX;
/// Fraction of the sample below which a filling sample takes every point (AWS default).
const INITIAL_ACCEPT_FRACTION: f64 = 0.125;
/// Trees descended together when scoring (see `Forest::score_current`).
const GROUP: usize = 8;
/// Checkpoint magic and current version.
const MAGIC: &[u8; 4] = b"ORCF";
const VERSION: u16 = 1;

/// Shape and behaviour of a forest. Build with [`ForestConfig::new`], which fills the
/// AWS library's defaults for the fields that depend on the sample size.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestConfig {
    /// Number of input fields per point (`D`).
    pub dimensions: usize,
    /// Number of consecutive inputs concatenated into one tree point (`k`, 1 = none).
    pub shingle_size: usize,
    /// Number of trees; more trees mean smoother scores and proportionally more work.
    pub trees: usize,
    /// Points kept per tree (the reservoir size).
    pub sample_size: usize,
    /// Exponential decay rate of sampling weights per point; larger forgets faster.
    /// `0.1 / sample_size` (the AWS default) keeps roughly the last `10·sample_size` points.
    pub time_decay: f64,
    /// Number of (full-shingle) points to absorb before scores are returned.
    pub output_after: usize,
    /// Seed of every random choice; equal seeds and inputs give equal scores.
    pub seed: u64,
}

impl ForestConfig {
    /// A configuration with `time_decay = 0.1 / sample_size`, `output_after = 1 +
    /// sample_size / 4` (both AWS library defaults) and `seed = 0`.
    pub fn new(dimensions: usize, shingle_size: usize, trees: usize, sample_size: usize) -> Self {
        Self {
            dimensions,
            shingle_size,
            trees,
            sample_size,
            time_decay: Self::default_time_decay(sample_size),
            output_after: Self::default_output_after(sample_size),
            seed: 0,
        }
    }

    /// The AWS default decay for a sample size: `0.1 / sample_size`.
    pub fn default_time_decay(sample_size: usize) -> f64 {
        0.1 / sample_size.max(1) as f64
    }

    /// The AWS default warm-up for a sample size: `1 + sample_size / 4`.
    pub fn default_output_after(sample_size: usize) -> usize {
        1 + sample_size / 4
    }

    /// Checks every limit; [`Forest::new`] calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dimensions == 0 {
            return Err(ConfigError::ZeroDimensions);
        }
        if self.shingle_size == 0 {
            return Err(ConfigError::ZeroShingleSize);
        }
        match self.dimensions.checked_mul(self.shingle_size) {
            Some(n) if n <= MAX_POINT_DIMENSIONS => {}
            _ => {
                return Err(ConfigError::TooManyDimensions {
                    dimensions: self.dimensions,
                    shingle_size: self.shingle_size,
                });
            }
        }
        if !(1..=MAX_TREES).contains(&self.trees) {
            return Err(ConfigError::Trees(self.trees));
        }
        if !(1..=MAX_SAMPLE_SIZE).contains(&self.sample_size) {
            return Err(ConfigError::SampleSize(self.sample_size));
        }
        if !(self.time_decay.is_finite() && self.time_decay >= 0.0) {
            return Err(ConfigError::TimeDecay(self.time_decay));
        }
        Ok(())
    }
}

/// An invalid [`ForestConfig`]; a user error in the pipeline configuration.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum ConfigError {
    /// `dimensions` is 0.
    #[error("rcf dimensions must be at least 1")]
    ZeroDimensions,
    /// `shingle_size` is 0.
    #[error("rcf shingle_size must be at least 1")]
    ZeroShingleSize,
    /// `dimensions × shingle_size` exceeds [`MAX_POINT_DIMENSIONS`].
    #[error(
        "rcf dimensions ({dimensions}) × shingle_size ({shingle_size}) exceeds {MAX_POINT_DIMENSIONS}"
    )]
    TooManyDimensions {
        /// The configured dimensions.
        dimensions: usize,
        /// The configured shingle size.
        shingle_size: usize,
    },
    /// `trees` outside 1..=[`MAX_TREES`].
    #[error("rcf trees must be between 1 and {MAX_TREES}, got {0}")]
    Trees(usize),
    /// `sample_size` outside 1..=[`MAX_SAMPLE_SIZE`].
    #[error("rcf sample_size must be between 1 and {MAX_SAMPLE_SIZE}, got {0}")]
    SampleSize(usize),
    /// `time_decay` negative or not finite.
    #[error("rcf time_decay must be finite and non-negative, got {0}")]
    TimeDecay(f64),
}

/// A point the forest refused; the forest is unchanged. Bad data: count it and skip it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PointError {
    /// The point does not have `dimensions` values.
    #[error("point has {got} values, expected {expected}")]
    WrongLength {
        /// The configured dimensions.
        expected: usize,
        /// The number of values given.
        got: usize,
    },
    /// A value is NaN, infinite, or too large for `f32`.
    #[error("point value at index {0} is not a finite f32")]
    NotFinite(usize),
}

/// How much one input field contributed to a score, split by direction.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Attribution {
    /// Share of the score due to the value being above what the forest has seen.
    pub high: f64,
    /// Share of the score due to the value being below what the forest has seen.
    pub low: f64,
}

/// The result of scoring one point. Borrowed from the forest until its next call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored<'a> {
    /// The RCF anomaly score: inliers below 1, clear anomalies several times higher.
    pub score: f64,
    /// One entry per input field; all `high + low` parts sum to `score`.
    pub attribution: &'a [Attribution],
}

/// An internal node: children and cut (16 bytes, four to a cache line).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Inner {
    /// Child references (internal slot, or leaf slot | [`LEAF`]); points with
    /// `x[dim] <= cut` are on the left. For a free slot, `left` links the free list.
    left: u32,
    right: u32,
    /// Always in `[left max, right min)` in dimension `dim`.
    cut: f32,
    dim: u32,
}

/// Per-tree bookkeeping; the nodes live in [`Arenas`].
#[derive(Debug, Clone)]
struct TreeState {
    root: u32,
    /// Sum of leaf masses = number of sampled points.
    mass: u32,
    /// High-water marks of slot use; slots below are live or on a free list.
    inner_used: u32,
    leaf_used: u32,
    inner_free: u32,
    leaf_free: u32,
    /// Entries in this tree's sampler heap.
    heap_len: u32,
    /// Counter-based random streams of the sampler (weights, initial acceptance).
    weight_stream: u64,
    accept_stream: u64,
}

impl TreeState {
    fn new(seed: u64, tree: usize) -> Self {
        let base = mix64(seed ^ mix64((tree as u64).wrapping_add(1).wrapping_mul(GOLDEN)));
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
struct Arenas {
    /// Point dimensions (`D·k`).
    d: usize,
    /// Slots per tree (`sample_size`).
    cap: usize,
    trees: Vec<TreeState>,
    inner: Vec<Inner>,
    /// Per internal slot: `d` minima then `d` maxima.
    boxes: Vec<f32>,
    /// Per leaf slot: the point.
    points: Vec<f32>,
    /// Per leaf slot: multiplicity (for a free slot: next free leaf).
    mass: Vec<u32>,
    /// Sampler max-heaps on (weight, seq), per tree; `leaf` is where the point sits.
    heap_weight: Vec<f64>,
    heap_seq: Vec<u64>,
    heap_leaf: Vec<u32>,
}

/// Read-only view of one tree.
#[derive(Clone, Copy)]
struct TreeRef<'a> {
    d: usize,
    root: u32,
    mass: u32,
    inner: &'a [Inner],
    boxes: &'a [f32],
    points: &'a [f32],
    leaf_mass: &'a [u32],
}

/// Mutable view of one tree and its sampler.
struct TreeMut<'a> {
    d: usize,
    cap: usize,
    st: &'a mut TreeState,
    inner: &'a mut [Inner],
    boxes: &'a mut [f32],
    points: &'a mut [f32],
    mass: &'a mut [u32],
    heap_weight: &'a mut [f64],
    heap_seq: &'a mut [u64],
    heap_leaf: &'a mut [u32],
}

/// Fixed buffers reused by every call, so that processing a point never allocates.
#[derive(Debug, Clone)]
struct Scratch {
    /// Internal nodes from the root to the current leaf (at most `cap - 1`).
    path: Vec<u32>,
    /// The same for [`GROUP`] trees descended together while scoring (`cap` slots each).
    paths: Vec<u32>,
    /// Current point as `f32`.
    point: Vec<f32>,
    /// Per-dimension separation probabilities: `d` high parts then `d` low parts.
    prob: Vec<f64>,
    /// One tree's attribution (same layout), and the forest's sum.
    tree_attr: Vec<f64>,
    forest_attr: Vec<f64>,
    /// Shadow box (minima then maxima) for duplicate leaves.
    shadow: Vec<f32>,
    /// `log2(1 + m)` for masses `m` in `0..=sample_size`, used twice per tree and point.
    log2_1p: Vec<f64>,
    /// Attribution folded per input field; what [`Scored`] borrows.
    out: Vec<Attribution>,
}

/// A Random Cut Forest over a stream of `dimensions`-valued points. See the module docs.
#[derive(Debug, Clone)]
pub struct Forest {
    cfg: ForestConfig,
    /// The last `shingle_size` inputs as `f32`, oldest first.
    shingle: Vec<f32>,
    /// Inputs accepted so far.
    inputs_seen: u64,
    /// Full shingles fed to the trees so far (the `seq` of the next one).
    points_seen: u64,
    /// Randomness of the cuts.
    rng: Rng,
    arenas: Arenas,
    scratch: Scratch,
}

// ---------------------------------------------------------------------------------------------
// Small numeric helpers.

/// A cut at fraction `u` ∈ [0, 1) of the gap `[lmax, rmin)`, rounded to an `f32` inside it
/// (`lmax` itself if rounding lands on `rmin`), with zero always +0.0 so that the
/// checkpoint's ordinal encoding is a bijection.
#[inline]
fn cut_in_gap(lmax: f32, rmin: f32, u: f64) -> f32 {
    let (a, b) = (f64::from(lmax), f64::from(rmin));
    let c = (a + u * (b - a)) as f32 + 0.0;
    if c >= lmax && c < rmin { c } else { lmax }
}

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
fn sample_weight(stream: u64, seq: u64, time_decay: f64) -> f64 {
    let u = counter_uniform(stream, seq);
    (-u.ln()).ln() - time_decay * seq as f64
}

/// Heap order: larger weight first, then larger (newer) seq.
#[inline]
fn above(w1: f64, s1: u64, w2: f64, s2: u64) -> bool {
    w1 > w2 || (w1 == w2 && s1 > s2)
}

// ---------------------------------------------------------------------------------------------
// Tree views.

impl Arenas {
    fn new(d: usize, cap: usize, trees: Vec<TreeState>) -> Self {
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

    fn tree(&self, j: usize) -> TreeRef<'_> {
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

    fn tree_mut(&mut self, j: usize) -> TreeMut<'_> {
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
    fn leaf_point(&self, leaf: usize) -> &'a [f32] {
        &self.points[leaf * self.d..(leaf + 1) * self.d]
    }

    /// Bounding box of a child reference: a leaf's box is its point.
    #[inline]
    fn bounds(&self, c: u32) -> (&'a [f32], &'a [f32]) {
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
    fn descend(&self, p: &[f32], path: &mut Vec<u32>) -> u32 {
        path.clear();
        let mut node = self.root;
        while node & LEAF == 0 {
            path.push(node);
            let n = &self.inner[node as usize];
            node = if p[n.dim as usize] <= n.cut {
                n.left
            } else {
                n.right
            };
        }
        node
    }

    /// Scores `p` in this tree (see the module docs), given the leaf `p` routes to and the
    /// internal nodes on the way (`path`, root first), and writes the tree's attribution,
    /// rescaled to sum to the returned normalised score, into `s.tree_attr`.
    fn score(&self, p: &[f32], leaf_ref: u32, path: &[u32], s: &mut Scratch) -> f64 {
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

impl TreeMut<'_> {
    #[inline]
    fn view(&self) -> TreeRef<'_> {
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
    fn lo_at(&self, c: u32, k: usize) -> f32 {
        if c & LEAF != 0 {
            self.points[(c & !LEAF) as usize * self.d + k]
        } else {
            self.boxes[c as usize * 2 * self.d + k]
        }
    }

    #[inline]
    fn hi_at(&self, c: u32, k: usize) -> f32 {
        if c & LEAF != 0 {
            self.points[(c & !LEAF) as usize * self.d + k]
        } else {
            self.boxes[c as usize * 2 * self.d + self.d + k]
        }
    }

    fn alloc_leaf(&mut self, p: &[f32]) -> u32 {
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

    fn free_leaf(&mut self, leaf: u32) {
        let i = (leaf & !LEAF) as usize;
        self.mass[i] = self.st.leaf_free;
        self.st.leaf_free = leaf & !LEAF;
    }

    fn alloc_inner(&mut self) -> u32 {
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

    fn free_inner(&mut self, node: u32) {
        self.inner[node as usize].left = self.st.inner_free;
        self.st.inner_free = node;
    }

    /// Recomputes `node`'s box from its children; returns whether it changed (if not, no box
    /// above it changes either). `tmp` is scratch space for `2·d` values.
    fn refresh(&mut self, node: u32, tmp: &mut [f32]) -> bool {
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
    fn grow(&mut self, node: u32, p: &[f32]) -> bool {
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
    fn replace_child(&mut self, parent: Option<u32>, old: u32, new: u32) {
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
    fn insert(&mut self, p: &[f32], rng: &mut Rng, path: &mut Vec<u32>) -> u32 {
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
            let n = &self.inner[node as usize];
            node = if p[n.dim as usize] <= n.cut {
                n.left
            } else {
                n.right
            };
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
    fn delete(&mut self, leaf: u32, path: &mut Vec<u32>, tmp: &mut [f32]) {
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

    // Sampler heap (max-heap on weight, then seq).

    fn heap_swap(&mut self, a: usize, b: usize) {
        self.heap_weight.swap(a, b);
        self.heap_seq.swap(a, b);
        self.heap_leaf.swap(a, b);
    }

    fn heap_push(&mut self, w: f64, seq: u64, leaf: u32) {
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
    fn heap_pop(&mut self) -> u32 {
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
    fn offer(&mut self, p: &[f32], seq: u64, time_decay: f64, rng: &mut Rng, s: &mut Scratch) {
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

// ---------------------------------------------------------------------------------------------

impl Forest {
    /// An empty forest. Allocates all storage for the configured sample up front.
    pub fn new(cfg: ForestConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let trees = (0..cfg.trees)
            .map(|j| TreeState::new(cfg.seed, j))
            .collect();
        let rng = Rng::seed_from(cfg.seed);
        Ok(Self::assemble(cfg, trees, rng))
    }

    fn assemble(cfg: ForestConfig, trees: Vec<TreeState>, rng: Rng) -> Self {
        let d = cfg.dimensions * cfg.shingle_size;
        let cap = cfg.sample_size;
        let scratch = Scratch {
            path: Vec::with_capacity(cap),
            paths: vec![0; GROUP * cap],
            point: vec![0.0; d],
            prob: vec![0.0; 2 * d],
            tree_attr: vec![0.0; 2 * d],
            forest_attr: vec![0.0; 2 * d],
            shadow: vec![0.0; 2 * d],
            log2_1p: (0..=cap).map(|m| (1.0 + m as f64).log2()).collect(),
            out: vec![Attribution::default(); cfg.dimensions],
        };
        Self {
            shingle: vec![0.0; d],
            inputs_seen: 0,
            points_seen: 0,
            rng,
            arenas: Arenas::new(d, cap, trees),
            scratch,
            cfg,
        }
    }

    /// The configuration this forest was built (or decoded) with.
    pub fn config(&self) -> &ForestConfig {
        &self.cfg
    }

    /// Inputs accepted so far (including those still filling the first shingle).
    pub fn inputs_seen(&self) -> u64 {
        self.inputs_seen
    }

    /// Full-shingle points absorbed into the forest so far.
    pub fn points_seen(&self) -> u64 {
        self.points_seen
    }

    /// Scores `point` and then adds it to the forest.
    ///
    /// Returns `Ok(None)` while the first shingle is filling and while fewer than
    /// `output_after` points have been absorbed (the point is still learnt from).
    /// `Err` leaves the forest untouched. Never allocates.
    pub fn process(&mut self, point: &[f64]) -> Result<Option<Scored<'_>>, PointError> {
        let dims = self.cfg.dimensions;
        if point.len() != dims {
            return Err(PointError::WrongLength {
                expected: dims,
                got: point.len(),
            });
        }
        // Convert and validate everything before touching any state.
        let d = self.arenas.d;
        let (_, newest) = self.scratch.point.split_at_mut(d - dims);
        for (i, (&x, slot)) in point.iter().zip(newest.iter_mut()).enumerate() {
            // `+ 0.0` turns -0.0 into +0.0: equal points must be bitwise equal, or a restored
            // forest could hold a zero of the other sign than the original.
            let v = x as f32 + 0.0;
            if !v.is_finite() {
                return Err(PointError::NotFinite(i));
            }
            *slot = v;
        }
        self.shingle.copy_within(dims.., 0);
        self.shingle[d - dims..].copy_from_slice(&self.scratch.point[d - dims..]);
        self.inputs_seen += 1;
        if self.inputs_seen < self.cfg.shingle_size as u64 {
            return Ok(None);
        }
        self.scratch.point.copy_from_slice(&self.shingle);
        let seq = self.points_seen;
        let emit = seq >= self.cfg.output_after as u64;
        let score = if emit { self.score_current() } else { 0.0 };
        let Self {
            arenas,
            rng,
            scratch,
            cfg,
            ..
        } = self;
        let point = std::mem::take(&mut scratch.point);
        for j in 0..cfg.trees {
            arenas
                .tree_mut(j)
                .offer(&point, seq, cfg.time_decay, rng, scratch);
        }
        scratch.point = point;
        self.points_seen += 1;
        Ok(emit.then_some(Scored {
            score,
            attribution: &self.scratch.out,
        }))
    }

    /// Scores `scratch.point` against the current trees; fills `scratch.out`.
    fn score_current(&mut self) -> f64 {
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
                    let n = &arenas.inner[(first + g) * cap + node as usize];
                    leaves[g] = if point[n.dim as usize] <= n.cut {
                        n.left
                    } else {
                        n.right
                    };
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

    /// Heap bytes owned by this forest (its arrays' capacities), plus the struct itself.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let a = &self.arenas;
        let s = &self.scratch;
        size_of::<Self>()
            + a.trees.capacity() * size_of::<TreeState>()
            + a.inner.capacity() * size_of::<Inner>()
            + (a.boxes.capacity() + a.points.capacity() + self.shingle.capacity()) * 4
            + (a.mass.capacity() + a.heap_leaf.capacity()) * 4
            + (s.path.capacity() + s.paths.capacity()) * 4
            + (a.heap_weight.capacity() + a.heap_seq.capacity()) * 8
            + (s.point.capacity() + s.shadow.capacity()) * 4
            + (s.prob.capacity() + s.tree_attr.capacity() + s.forest_attr.capacity()) * 8
            + s.log2_1p.capacity() * 8
            + s.out.capacity() * size_of::<Attribution>()
    }
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
        w.bytes(MAGIC);
        w.u16(VERSION);
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
        w.finish();
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
        let mut r = Reader::checked(bytes)?;
        if r.take(4)? != MAGIC {
            return Err(DecodeError::BadMagic("rcf forest"));
        }
        let version = r.u16()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let dimensions = r.len(MAX_POINT_DIMENSIONS)?;
        let shingle_size = r.len(MAX_POINT_DIMENSIONS)?;
        let trees = r.len(MAX_TREES)?;
        let sample_size = r.len(MAX_SAMPLE_SIZE)?;
        let time_decay = r.f64()?;
        let output_after = r.len(usize::MAX)?;
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
            .map_err(|_| DecodeError::Corrupt("invalid configuration"))?;
        let inputs_seen = r.varint()?;
        let points_seen = r.varint()?;
        let k = shingle_size as u64;
        let consistent = if points_seen == 0 {
            inputs_seen < k
        } else {
            inputs_seen.checked_sub(k - 1) == Some(points_seen)
        };
        if !consistent {
            return Err(DecodeError::Corrupt("inconsistent progress counters"));
        }
        let d = dimensions * shingle_size;
        let mut shingle = vec![0.0f32; d];
        for v in shingle.iter_mut() {
            *v = r.f32()?;
            if !v.is_finite() {
                return Err(DecodeError::Corrupt("non-finite shingle value"));
            }
        }
        let mut state = [0u64; 4];
        for v in state.iter_mut() {
            *v = r.u64()?;
        }
        let rng = Rng::from_state(state).ok_or(DecodeError::Corrupt("all-zero rng state"))?;

        let n = r.len(trees * sample_size)?;
        let mut seqs = Vec::with_capacity(n);
        let mut prev = 0u64;
        for i in 0..n {
            let delta = r.varint()?;
            if i > 0 && delta == 0 {
                return Err(DecodeError::Corrupt("point seqs not increasing"));
            }
            prev = prev
                .checked_add(delta)
                .ok_or(DecodeError::Corrupt("seq overflow"))?;
            if prev >= points_seen {
                return Err(DecodeError::Corrupt("point seq in the future"));
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
                            return Err(DecodeError::Corrupt("non-finite point value"));
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
        r.end()?;
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
    let n = r.len(cap)?;
    let mut entries: Vec<usize> = Vec::with_capacity(n); // index into seqs
    let mut idx = 0usize;
    for e in 0..n {
        let delta = r.len(seqs.len())?;
        if e > 0 && delta == 0 {
            return Err(DecodeError::Corrupt("tree entries not increasing"));
        }
        idx = idx
            .checked_add(delta)
            .ok_or(DecodeError::Corrupt("entry index overflow"))?;
        if idx >= seqs.len() {
            return Err(DecodeError::Corrupt("entry index out of range"));
        }
        entries.push(idx);
    }
    let leaves = r.len(n)?;
    if (leaves == 0) != (n == 0) {
        return Err(DecodeError::Corrupt("leaf count does not match the sample"));
    }
    if leaves == 0 {
        return Ok(());
    }
    let internals = leaves - 1;
    let packed_len = r.len(usize::MAX)?;
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
                return Err(DecodeError::Corrupt(
                    "tree shape has too many internal nodes",
                ));
            }
            next_inner += 1;
            next_inner - 1
        } else {
            if next_leaf as usize >= leaves {
                return Err(DecodeError::Corrupt("tree shape has too many leaves"));
            }
            next_leaf += 1;
            (next_leaf - 1) | LEAF
        };
        if pos == 0 {
            root = node;
        } else {
            // Attach to the innermost open node: as its left child if it has none yet.
            let Some(&parent) = open.last() else {
                return Err(DecodeError::Corrupt("tree shape ends early"));
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
        return Err(DecodeError::Corrupt("tree shape is incomplete"));
    }
    // Cut dimensions (preorder = slot order), then leaf points.
    for node in t.inner[..internals].iter_mut() {
        let dim = bits.bits(dim_bits)?;
        if dim as usize >= d {
            return Err(DecodeError::Corrupt("cut dimension out of range"));
        }
        node.dim = dim;
    }
    let rep_bits = width_for(n as u64);
    for leaf in 0..leaves {
        let e = bits.bits(rep_bits)? as usize;
        let idx = *entries
            .get(e)
            .ok_or(DecodeError::Corrupt("leaf entry out of range"))?;
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
            return Err(DecodeError::Corrupt("no gap between the children of a cut"));
        }
        let span = (ordinal(rmin) - ordinal(lmax)) as u64;
        let offset = bits.bits(width_for(span))?;
        if u64::from(offset) >= span {
            return Err(DecodeError::Corrupt("cut outside the gap of its children"));
        }
        t.inner[node].cut = from_ordinal(ordinal(lmax) + i64::from(offset));
    }
    bits.end()?;
    // Route every entry to its leaf: this checks the tree and yields masses and heap slots.
    for &idx in &entries {
        let p = &values[idx * d..(idx + 1) * d];
        let leaf = t.view().descend(p, &mut s.path);
        let slot = (leaf & !LEAF) as usize;
        if &t.points[slot * d..(slot + 1) * d] != p {
            return Err(DecodeError::Corrupt("sampled point is not in its tree"));
        }
        t.mass[slot] += 1;
        let seq = seqs[idx];
        let w = sample_weight(t.st.weight_stream, seq, time_decay);
        t.heap_push(w, seq, leaf);
    }
    if t.mass[..leaves].contains(&0) {
        return Err(DecodeError::Corrupt("leaf without a sampled point"));
    }
    t.st.mass = n as u32;
    Ok(())
}

#[cfg(test)]
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
