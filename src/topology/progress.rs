//! The operator's view of a running job in the log: one `Checkpoint complete.` line per
//! checkpoint (what flowed since the previous one) and, for inputs of known size, a
//! `Progress.` line with percent done and ETA at most every [`PROGRESS_EVERY`].

use std::time::{Duration, Instant};

/// Least time between two `Progress.` lines (the line at 100 % is always logged).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Running totals at one checkpoint, to log the difference at the next.
#[derive(Debug, Clone, Copy)]
pub(super) struct Totals {
    pub records_in: u64,
    pub records_out: u64,
    pub dead_lettered: u64,
    pub at: Instant,
}

impl Totals {
    /// The totals now: `records_in` from the source's ack; records out and dead-lettered from
    /// the process's counters. Sinks count dead letters in `osprey_sink_records_total` too,
    /// so records out are that total less `osprey_dead_letter_records_total`.
    pub fn now(records_in: u64) -> Totals {
        let m = crate::metrics::get();
        let written = sum(&m.sink_records);
        let dead = sum(&m.dead_letter);
        Totals {
            records_in,
            records_out: written.saturating_sub(dead),
            dead_lettered: dead,
            at: Instant::now(),
        }
    }

    /// Logs the `Checkpoint complete.` line for the interval from `prev` to `self`.
    pub fn log_checkpoint(&self, prev: &Totals, epoch: u64, state_bytes: u64, took: Duration) {
        let secs = self.at.duration_since(prev.at).as_secs_f64();
        let records_in = self.records_in.saturating_sub(prev.records_in);
        let rate = if secs > 0.0 {
            records_in as f64 / secs
        } else {
            0.0
        };
        tracing::info!(
            epoch,
            records_in,
            records_out = self.records_out.saturating_sub(prev.records_out),
            dead_lettered = self.dead_lettered.saturating_sub(prev.dead_lettered),
            records_per_sec = (rate * 10.0).round() / 10.0,
            state_bytes,
            duration_ms = took.as_millis() as u64,
            "Checkpoint complete."
        );
    }
}

fn sum(c: &prometheus::IntCounterVec) -> u64 {
    use prometheus::core::Collector;
    c.collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Throttles and formats `Progress.` lines from a source's `(done, total)`.
#[derive(Debug)]
pub(super) struct ProgressLog {
    started: Instant,
    /// `done` when the run started (after a restore), so the rate counts this run only.
    first_done: Option<u64>,
    last: Option<Instant>,
    finished: bool,
}

impl ProgressLog {
    pub fn new() -> ProgressLog {
        ProgressLog {
            started: Instant::now(),
            first_done: None,
            last: None,
            finished: false,
        }
    }

    /// Called after each poll with the source's progress; logs when due.
    pub fn observe(&mut self, component: &str, done: u64, total: u64) {
        let first = *self.first_done.get_or_insert(done);
        let now = Instant::now();
        let complete = total > 0 && done >= total;
        // The first line comes one interval after the start, the next one interval later.
        let since = self.last.unwrap_or(self.started);
        if self.finished || !(complete || now.duration_since(since) >= PROGRESS_EVERY) {
            return;
        }
        self.last = Some(now);
        self.finished = complete;
        let done = done.min(total);
        let percent = if total == 0 {
            100.0
        } else {
            (done as f64 * 1000.0 / total as f64).floor() / 10.0
        };
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let rate = done.saturating_sub(first) as f64 / elapsed.max(1e-3);
        let eta_secs = if rate > 0.0 {
            ((total - done) as f64 / rate).ceil() as u64
        } else {
            0
        };
        tracing::info!(component, done, total, percent, eta_secs, "Progress.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_at_completion_and_never_again() {
        let mut p = ProgressLog::new();
        p.observe("file", 10, 100);
        assert!(p.last.is_none(), "not due before the first interval");
        p.observe("file", 100, 100);
        assert!(p.finished);
        let at = p.last;
        p.observe("file", 100, 100);
        assert_eq!(p.last, at);
    }
}
