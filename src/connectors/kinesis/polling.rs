//! Reading shards with GetRecords (`consumer = { type = "polling" }`, the default): per shard
//! an iterator and when it may be read next. See the module docs of [`super`]: *Reading*.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use tokio::time::Instant;

use super::client::{ApiError, IteratorStart, KinesisApi, RecordsPage};
use super::shards::Shards;
use super::{COMPONENT, Metrics};
use crate::Result;
use crate::connectors::SourceFailure;
use crate::core::Backoff;
use crate::core::backoff::Attempts;

/// Throttled reads of a shard wait 0.5 s, 1 s, 2 s … up to 10 s.
pub(super) const THROTTLE_BACKOFF: Backoff =
    Backoff::new(StdDuration::from_millis(500), StdDuration::from_secs(10)).without_jitter();
/// After any other failed read (or ListShards call): one fixed wait.
pub(super) const ERROR_BACKOFF: StdDuration = StdDuration::from_secs(1);

/// One shard's reading state.
pub(super) struct Reader {
    iterator: Option<String>,
    next_read: Instant,
    /// Reads that found nothing in a row: `min_interval`, doubling up to `idle_backoff_max`.
    empty: Attempts,
    /// The current wait between empty reads (zero after a read that found records).
    pub(super) empty_backoff: StdDuration,
    throttled: Attempts,
}

/// The GetRecords side of the source.
pub(super) struct Polling {
    stream: String,
    records_per_read: i32,
    /// Between two reads of one shard, at least (`1 / max_reads_per_second`).
    pub(super) min_interval: StdDuration,
    empty_backoff: Backoff,
    pub(super) readers: HashMap<Arc<str>, Reader>,
    /// Set when every read of the last round failed (other than throttling or an expired
    /// iterator); cleared by a read that succeeds. See [`crate::connectors::Source::failure`].
    pub(super) failing: Option<SourceFailure>,
}

impl Polling {
    pub(super) fn new(
        stream: &str,
        records_per_read: i32,
        max_reads_per_second: f64,
        idle_backoff_max: StdDuration,
    ) -> Self {
        let min_interval = StdDuration::from_secs_f64(1.0 / max_reads_per_second.max(0.001));
        Polling {
            stream: stream.to_string(),
            records_per_read,
            min_interval,
            empty_backoff: Backoff::new(min_interval, idle_backoff_max.max(min_interval))
                .without_jitter(),
            readers: HashMap::new(),
            failing: None,
        }
    }

    fn reader(&mut self, id: &Arc<str>) -> &mut Reader {
        let empty = self.empty_backoff;
        self.readers
            .entry(Arc::clone(id))
            .or_insert_with(|| Reader {
                iterator: None,
                next_read: Instant::now(),
                empty: empty.attempts(0),
                empty_backoff: StdDuration::ZERO,
                throttled: THROTTLE_BACKOFF.attempts(0),
            })
    }

    /// Reads every due shard (readable, nothing buffered, its wait over) once, concurrently,
    /// and buffers what came back; `false` when no shard was due.
    pub(super) async fn read(
        &mut self,
        api: &Arc<dyn KinesisApi>,
        shards: &mut Shards,
        metrics: &Metrics,
    ) -> Result<bool> {
        let readable = shards.readable();
        self.readers.retain(|id, _| readable.contains(id));
        let now = Instant::now();
        let mut due: Vec<(Arc<str>, Option<String>, IteratorStart)> = Vec::new();
        for id in readable {
            let reader = self.reader(&id);
            if reader.next_read <= now && !shards.is_buffered(&id) {
                due.push((
                    Arc::clone(&id),
                    reader.iterator.clone(),
                    shards.start_of(&id),
                ));
            }
        }
        if due.is_empty() {
            return Ok(false);
        }
        let mut set = tokio::task::JoinSet::new();
        for (id, iterator, start) in due {
            let api = Arc::clone(api);
            let stream = self.stream.clone();
            let limit = self.records_per_read;
            set.spawn(async move {
                let it = match iterator {
                    Some(it) => it,
                    None => match api.get_shard_iterator(&stream, &id, &start).await {
                        Ok(it) => it,
                        Err(e) => return (id, None, Err(e)),
                    },
                };
                let page = api.get_records(&it, limit).await;
                (id, Some(it), page)
            });
        }
        // Each read is applied as it returns: a call dropped mid-round (only at shutdown)
        // keeps the reads that finished; the rest are aborted with the set and read again.
        let mut ok = false;
        let mut failed: Option<SourceFailure> = None;
        while let Some(r) = set.join_next().await {
            let (id, it, page) = r.map_err(|e| {
                let message = format!("read task failed: {e}");
                super::error(&self.stream, message, crate::Retry::No)
            })?;
            self.reader(&id).iterator = it;
            match page {
                Ok(p) => {
                    ok = true;
                    self.apply_page(&id, p, shards, metrics);
                }
                Err(e) => {
                    if !matches!(e, ApiError::Throttled(_) | ApiError::ExpiredIterator(_)) {
                        failed.get_or_insert_with(|| e.failure());
                    } else {
                        ok = true;
                    }
                    self.apply_error(&id, e, metrics);
                }
            }
        }
        if ok {
            self.failing = None;
        } else if failed.is_some() {
            self.failing = failed;
        }
        Ok(true)
    }

    /// When the next shard is due (`None`: no readable shard).
    pub(super) fn next_due(&self, shards: &Shards) -> Option<Instant> {
        shards
            .readable()
            .iter()
            .map(|id| {
                self.readers
                    .get(id)
                    .map_or_else(Instant::now, |r| r.next_read)
            })
            .min()
    }

    fn apply_page(&mut self, id: &Arc<str>, page: RecordsPage, shards: &mut Shards, m: &Metrics) {
        let min_interval = self.min_interval;
        let now = Instant::now();
        let got = !page.records.is_empty();
        let behind = page.millis_behind_latest;
        m.read(id, shards.buffer(id, page.records), behind);
        let reader = self.reader(id);
        reader.throttled.reset();
        match page.next_iterator {
            Some(it) => reader.iterator = Some(it),
            None => {
                reader.iterator = None;
                shards.end(id);
            }
        }
        if got || behind.unwrap_or(0) > 0 {
            reader.empty.reset();
            reader.empty_backoff = StdDuration::ZERO;
            reader.next_read = now + min_interval;
        } else {
            reader.empty_backoff = reader.empty.next_delay();
            reader.next_read = now + reader.empty_backoff;
        }
    }

    fn apply_error(&mut self, id: &Arc<str>, e: ApiError, m: &Metrics) {
        let labels = [COMPONENT, &**id];
        let now = Instant::now();
        let reader = self.reader(id);
        match e {
            ApiError::Throttled(msg) => {
                m.throttles.with_label_values(&labels).inc();
                let backoff = reader.throttled.next_delay();
                reader.next_read = now + backoff;
                tracing::debug!(shard = %id, error = %msg, ?backoff, "Read throttled.");
            }
            ApiError::ExpiredIterator(msg) => {
                m.resets.with_label_values(&labels).inc();
                tracing::info!(shard = %id, error = %msg, "Shard iterator expired; getting a new one after the last record returned.");
                // Nothing is buffered when a shard is read, so the last record read is the
                // last one returned.
                reader.iterator = None;
                reader.next_read = now;
            }
            e => {
                tracing::warn!(shard = %id, error = %e, "Reading the shard failed; retrying.");
                reader.next_read = now + ERROR_BACKOFF;
            }
        }
    }
}
