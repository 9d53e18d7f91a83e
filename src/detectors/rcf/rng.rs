//! Seeded pseudo-random numbers for the Random Cut Forest.
//!
//! Two sources, both pure functions of the forest's seed, so that a forest restored from a
//! checkpoint draws exactly the numbers the original would have drawn:
//!
//! - [`Rng`], a xoshiro256** generator consumed sequentially for the random cuts. Its whole
//!   state is four `u64` words ([`Rng::state`] / [`Rng::from_state`]) and goes into the
//!   checkpoint.
//! - [`unit_open`] over splitmix64's [`mix64`] (from [`crate::core::hash`]), a counter-based
//!   draw: the reservoir sampler's random number for tree `j` and point `seq` is
//!   `unit_open(mix64(stream_j + seq * GOLDEN_GAMMA))`. Because it depends on nothing but
//!   `(seed, tree, seq)`, the sampler weights never need to be stored; the decoder
//!   recomputes them. That saves 8 bytes per sampled point in every checkpoint.
//!
//! We write these ourselves (no `rand` crate): the generators are a few lines each, their
//! output must never change between releases (it is baked into checkpoints), and a dependency
//! upgrade must not be able to change it.

use crate::core::hash::{GOLDEN_GAMMA, mix64, unit_f64};

/// Maps 64 random bits to a uniform `f64` in the open interval (0, 1).
///
/// The open interval matters: the sampler takes `ln(-ln(u))`, which is infinite at both ends.
#[inline]
pub fn unit_open(bits: u64) -> f64 {
    // 52 high bits, shifted by half a step so neither 0 nor 1 can come out: the largest
    // result is 1 - 2^-53, the largest f64 below 1. (With 53 bits, 1 - 2^-54 would round up
    // to exactly 1.0.)
    ((bits >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64)
}

/// The counter-based uniform draw for `stream` at position `counter`, in (0, 1).
#[inline]
pub fn counter_uniform(stream: u64, counter: u64) -> f64 {
    unit_open(mix64(
        stream.wrapping_add(counter.wrapping_mul(GOLDEN_GAMMA)),
    ))
}

/// A xoshiro256** generator (Blackman and Vigna), seeded through splitmix64.
///
/// Small (32 bytes), fast, and its state is plain data, so it is serialised verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose state is expanded from `seed` with splitmix64, as its authors
    /// recommend; any seed, including 0, gives a valid (non-zero) state.
    pub fn seed_from(seed: u64) -> Self {
        let mut s = [0u64; 4];
        for (i, word) in s.iter_mut().enumerate() {
            *word = mix64(seed.wrapping_add((i as u64 + 1).wrapping_mul(GOLDEN_GAMMA)));
        }
        if s == [0; 4] {
            // Cannot happen for splitmix64 output of four distinct inputs, but xoshiro must
            // never start from the all-zero state, so make the guarantee local.
            s[0] = GOLDEN_GAMMA;
        }
        Self { s }
    }

    /// Rebuilds a generator from [`Rng::state`]. `None` for the all-zero state, from which
    /// xoshiro would only ever return zeros.
    pub fn from_state(s: [u64; 4]) -> Option<Self> {
        if s == [0; 4] { None } else { Some(Self { s }) }
    }

    /// The full state, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform `f64` in [0, 1) with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn xoshiro_matches_reference_vector() {
        // Reference output of xoshiro256** from the state {1, 2, 3, 4} (from the authors' C
        // implementation), pinned so that a change to the generator, which would silently
        // change every restored forest, fails here first.
        let mut rng = Rng::from_state([1, 2, 3, 4]).expect("non-zero state");
        let got: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(got, vec![11520, 0, 1509978240, 1215971899390074240]);
    }

    #[test]
    fn unit_open_never_hits_the_ends() {
        assert!(unit_open(0) > 0.0);
        assert!(unit_open(u64::MAX) < 1.0);
        assert!((-(-unit_open(u64::MAX).ln()).ln()).is_finite());
        assert!((-(-unit_open(0).ln()).ln()).is_finite());
    }

    #[test]
    fn state_round_trips() {
        let mut a = Rng::seed_from(42);
        a.next_u64();
        let mut b = Rng::from_state(a.state()).expect("non-zero state");
        assert_eq!(a.next_u64(), b.next_u64());
        assert!(Rng::from_state([0; 4]).is_none());
    }

    #[test]
    fn counter_uniform_mean_is_one_half() {
        let n = 100_000u64;
        let mean: f64 = (0..n).map(|i| counter_uniform(7, i)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    }
}
