//! The one retry-delay policy: exponential backoff, capped, with deterministic jitter.
//!
//! Every retry loop in osprey (Kinesis and S3 calls, the Kinesis sink's failed entries,
//! enrichment origins, resubscriptions) asks a [`Backoff`] for its next delay, so their
//! behaviour is one thing to reason about. Jitter is drawn from a seed rather than a shared
//! RNG: two tasks with different seeds spread out, and a test sees the same delays every run.

use std::time::Duration;

use super::hash::{splitmix64, unit_f64};

/// Exponential backoff: `initial · 2^attempt`, capped at `max`, scaled by a jitter factor in
/// `[1 - jitter, 1)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Largest delay (before jitter).
    pub max: Duration,
    /// Fraction of the delay that jitter may remove, in `[0, 1]`: 0.5 gives delays in
    /// `[d/2, d)`, 0 gives exactly `d`.
    pub jitter: f64,
}

impl Backoff {
    /// A policy with jitter 0.5.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            jitter: 0.5,
        }
    }

    /// The same policy without jitter.
    pub const fn without_jitter(self) -> Self {
        Backoff {
            jitter: 0.0,
            ..self
        }
    }

    /// The delay before retry `attempt` (0-based); `seed` picks the jitter.
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        if self.jitter <= 0.0 {
            return base;
        }
        let jitter = self.jitter.min(1.0);
        base.mul_f64(1.0 - jitter + jitter * unit_f64(splitmix64(seed)))
    }

    /// An iterator-like helper for a retry loop: the delay for each attempt in turn.
    pub fn attempts(self, seed: u64) -> Attempts {
        Attempts {
            policy: self,
            attempt: 0,
            seed,
        }
    }
}

/// The delays of one retry loop (see [`Backoff::attempts`]).
#[derive(Debug, Clone)]
pub struct Attempts {
    policy: Backoff,
    attempt: u32,
    seed: u64,
}

impl Attempts {
    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.policy.delay(
            self.attempt,
            self.seed.wrapping_add(u64::from(self.attempt)),
        );
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Retries handed out so far.
    pub fn count(&self) -> u32 {
        self.attempt
    }

    /// Starts again from the first delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_is_capped_and_jitters_within_bounds() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
        for attempt in 0..8 {
            let base = (10u64 << attempt).min(50);
            for seed in 0..50 {
                let d = b.delay(attempt, seed).as_secs_f64() * 1000.0;
                assert!(
                    d >= base as f64 * 0.5 && d < base as f64,
                    "{attempt} {seed} {d}"
                );
            }
        }
        assert_eq!(b.delay(3, 7), b.delay(3, 7));
    }

    #[test]
    fn without_jitter_is_exact() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).without_jitter();
        let mut a = b.attempts(1);
        let got: Vec<u128> = (0..8).map(|_| a.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        a.reset();
        assert_eq!(a.next_delay(), Duration::from_millis(100));
    }
}
