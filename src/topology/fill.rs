//! What is queued ahead of a partition, and how much may be: the in-flight bound between the
//! source task and a partition task.
//!
//! A bounded channel alone bounds records, not work: 16,384 queued records are a few
//! milliseconds for `stats` and minutes for an image classifier or a slow sink, and a
//! checkpoint barrier waits behind all of them (issue 14.11). So the source also asks the
//! partition's [`Fill`] before sending a batch. A batch is admitted when what is queued,
//! plus the batch, stays within
//!
//! - **time**: the partition's measured cost per record (an average over recent batches,
//!   operators and sink included) times the queued records stays under `in_flight_target`
//!   (Flink calls this buffer debloating); before the first measurement, two batches;
//! - **bytes**: `max_in_flight_bytes` of record payload (objects' bytes, raw lines);
//!
//! and always when nothing is queued, so one oversized batch still passes. The partition
//! reports each batch it finished; the source waits on a [`tokio::sync::Notify`] meanwhile.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::core::Record;

/// Bound settings (from `[runtime]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Queued work at most, as time at the measured rate; zero: no time bound.
    pub target: Duration,
    /// Queued payload bytes at most.
    pub max_bytes: usize,
    /// Records per batch: the floor of the time bound.
    pub batch_size: usize,
}

/// One partition's queue (see the module docs).
#[derive(Debug)]
pub(crate) struct Fill {
    bounds: Bounds,
    records: AtomicUsize,
    bytes: AtomicUsize,
    /// Smoothed cost per record in nanoseconds; 0 before the first measurement.
    cost_ns: AtomicU64,
    freed: tokio::sync::Notify,
    /// The partition task ended: admit everything (the send then fails as closed).
    closed: std::sync::atomic::AtomicBool,
}

/// Closes the fill when dropped: held by the partition task for its life, so a source
/// waiting on a partition that failed is released.
pub(crate) struct CloseOnDrop(pub std::sync::Arc<Fill>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Relaxed);
        self.0.freed.notify_waiters();
    }
}

/// The payload bytes of a record, for the byte bound: its object bytes, raw text and
/// string fields (the fixed part is small and bounded by the record count anyway).
pub(crate) fn record_bytes(r: &Record) -> usize {
    r.blob.as_ref().map_or(0, |b| b.len()) + r.raw.as_ref().map_or(0, |s| s.len()) + 64
}

impl Fill {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Fill {
            bounds,
            records: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            cost_ns: AtomicU64::new(0),
            freed: tokio::sync::Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Records queued.
    pub(crate) fn get(&self) -> usize {
        self.records.load(Ordering::Relaxed)
    }

    /// Bytes queued.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// How many records may be queued under the time bound.
    pub(crate) fn record_limit(&self) -> usize {
        let floor = self.bounds.batch_size.max(1);
        if self.bounds.target.is_zero() {
            return usize::MAX;
        }
        match self.cost_ns.load(Ordering::Relaxed) {
            0 => 2 * floor,
            c => ((self.bounds.target.as_nanos() / u128::from(c)) as usize).max(floor),
        }
    }

    fn admits(&self, records: usize, bytes: usize) -> bool {
        let (queued, queued_bytes) = (self.get(), self.bytes());
        self.closed.load(Ordering::Relaxed)
            || queued == 0
            || (queued + records <= self.record_limit()
                && queued_bytes + bytes <= self.bounds.max_bytes)
    }

    /// Waits until a batch of `records` records and `bytes` bytes may be queued, then counts
    /// it as queued.
    pub(crate) async fn admit(&self, records: usize, bytes: usize) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Register before checking, so a release between the check and the wait is seen.
            freed.as_mut().enable();
            if self.admits(records, bytes) {
                break;
            }
            freed.await;
        }
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The partition finished a batch of `records` records and `bytes` bytes in `took`.
    pub(crate) fn done(&self, records: usize, bytes: usize, took: Duration) {
        self.records.fetch_sub(records, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        if records > 0 {
            let sample = (took.as_nanos() / records as u128).clamp(1, u128::from(u64::MAX >> 4));
            let sample = sample as u64;
            let old = self.cost_ns.load(Ordering::Relaxed);
            // An exponential average over about the last 8 batches, except that a slower
            // batch weighs in at once: a sudden slowdown is not hidden by a fast past.
            let new = if old == 0 || sample > old {
                sample.max(old / 2 + sample / 2)
            } else {
                old - old / 8 + sample / 8
            };
            self.cost_ns.store(new, Ordering::Relaxed);
        }
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(target_ms: u64, max_bytes: usize) -> Fill {
        Fill::new(Bounds {
            target: Duration::from_millis(target_ms),
            max_bytes,
            batch_size: 10,
        })
    }

    #[test]
    fn the_time_bound_follows_the_measured_cost() {
        let f = fill(1000, usize::MAX);
        assert_eq!(f.record_limit(), 20, "two batches before a measurement");
        // 10 records in 100 ms: 10 ms each, so 1 s holds 100 records.
        f.records.store(10, Ordering::Relaxed);
        f.done(10, 0, Duration::from_millis(100));
        assert_eq!(f.record_limit(), 100);
        // A slow batch raises the cost at once (1 s a record), but never below one batch.
        f.records.store(10, Ordering::Relaxed);
        f.done(10, 0, Duration::from_secs(10));
        assert_eq!(f.record_limit(), 10);
        // Fast batches lower it gradually.
        for _ in 0..3 {
            f.records.store(10, Ordering::Relaxed);
            f.done(10, 0, Duration::from_micros(10));
        }
        assert_eq!(f.record_limit(), 10, "still slow after three fast batches");
        for _ in 0..200 {
            f.records.store(10, Ordering::Relaxed);
            f.done(10, 0, Duration::from_micros(10));
        }
        assert!(f.record_limit() > 10_000, "{}", f.record_limit());
    }

    #[test]
    fn an_empty_queue_admits_any_batch_and_bytes_bound_the_rest() {
        let f = fill(0, 1000);
        assert!(
            f.admits(5, 10_000),
            "an empty queue takes an oversized batch"
        );
        f.records.store(1, Ordering::Relaxed);
        f.bytes.store(900, Ordering::Relaxed);
        assert!(f.admits(1, 100));
        assert!(!f.admits(1, 101));
    }

    #[tokio::test]
    async fn a_closed_fill_admits_everything() {
        let f = std::sync::Arc::new(fill(0, 10));
        f.admit(1, 10).await;
        drop(CloseOnDrop(std::sync::Arc::clone(&f)));
        f.admit(1, 10).await;
    }

    #[tokio::test]
    async fn admit_waits_for_the_partition() {
        let f = std::sync::Arc::new(fill(0, 100));
        f.admit(1, 100).await;
        let g = std::sync::Arc::clone(&f);
        let waiter = tokio::spawn(async move { g.admit(1, 50).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        f.done(1, 100, Duration::from_millis(1));
        waiter.await.unwrap();
        assert_eq!((f.get(), f.bytes()), (1, 50));
    }
}
