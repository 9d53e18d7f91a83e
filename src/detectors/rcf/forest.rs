//! The [`Forest`]: its configuration and errors, its storage, and the per-point driver that
//! scores a point and then offers it to every tree's sampler. See the module docs of
//! [`super`] for the algorithm.

use thiserror::Error;

use super::rng::Rng;
use super::score::GROUP;
use super::tree::{Arenas, Inner, TreeState};

/// Largest supported `dimensions × shingle_size`: far beyond what RCF is useful for, it only
/// keeps a bad configuration from allocating absurd boxes.
pub const MAX_POINT_DIMENSIONS: usize = 4096;
/// Largest supported number of trees.
pub const MAX_TREES: usize = 1000;
/// Largest supported sample size per tree.
pub const MAX_SAMPLE_SIZE: usize = 1 << 16;

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

/// Fixed buffers reused by every call, so that processing a point never allocates.
#[derive(Debug, Clone)]
pub(super) struct Scratch {
    /// Internal nodes from the root to the current leaf (at most `cap - 1`).
    pub(super) path: Vec<u32>,
    /// The same for [`GROUP`] trees descended together while scoring (`cap` slots each).
    pub(super) paths: Vec<u32>,
    /// Current point as `f32`.
    pub(super) point: Vec<f32>,
    /// Per-dimension separation probabilities: `d` high parts then `d` low parts.
    pub(super) prob: Vec<f64>,
    /// One tree's attribution (same layout), and the forest's sum.
    pub(super) tree_attr: Vec<f64>,
    pub(super) forest_attr: Vec<f64>,
    /// Shadow box (minima then maxima) for duplicate leaves.
    pub(super) shadow: Vec<f32>,
    /// `log2(1 + m)` for masses `m` in `0..=sample_size`, used twice per tree and point.
    pub(super) log2_1p: Vec<f64>,
    /// Attribution folded per input field; what [`Scored`] borrows.
    pub(super) out: Vec<Attribution>,
}

/// A Random Cut Forest over a stream of `dimensions`-valued points. See the module docs.
#[derive(Debug, Clone)]
pub struct Forest {
    pub(super) cfg: ForestConfig,
    /// The last `shingle_size` inputs as `f32`, oldest first.
    pub(super) shingle: Vec<f32>,
    /// Inputs accepted so far.
    pub(super) inputs_seen: u64,
    /// Full shingles fed to the trees so far (the `seq` of the next one).
    pub(super) points_seen: u64,
    /// Randomness of the cuts.
    pub(super) rng: Rng,
    pub(super) arenas: Arenas,
    pub(super) scratch: Scratch,
}

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

    pub(super) fn assemble(cfg: ForestConfig, trees: Vec<TreeState>, rng: Rng) -> Self {
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
