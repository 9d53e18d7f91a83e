//! The source task: polls the source, parses, routes records to partitions by key group, and
//! injects barriers when the coordinator asks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{Ack, DEAD_LETTER_DATA, Fill, Message, dead_letter_record};
use crate::connectors::{Poll, RawItem, Sink, Source};
use crate::core::partition::partition_of;
use crate::core::{Batch, Record};
use crate::metrics::Health;
use crate::operators::{Barrier, DeadLetter};
use crate::parse::Parser;
use crate::{Error, Result};

pub(super) struct SourceDriver {
    pub source: Box<dyn Source>,
    pub parser: Parser,
    pub outputs: Vec<mpsc::Sender<Message>>,
    pub fills: Vec<Arc<Fill>>,
    pub buffers: Vec<Batch>,
    pub batch_size: usize,
    pub key_groups: u16,
    pub dead_letter: Box<dyn Sink>,
    pub triggers: mpsc::Receiver<Barrier>,
    pub acks: mpsc::Sender<Ack>,
    pub records: u64,
    pub component: String,
    /// `/readyz`: false while the source is failing.
    pub health: Arc<Health>,
    /// How long the source may fail without progress before the task stops the job.
    pub fail_after: std::time::Duration,
}

impl SourceDriver {
    /// Handles a barrier request (`None`: the coordinator is gone). True when the task must
    /// stop: after the final barrier, or without a coordinator.
    async fn on_trigger(&mut self, trigger: Option<Barrier>) -> Result<bool> {
        match trigger {
            Some(b) => {
                self.barrier(b).await?;
                Ok(b.then_stop)
            }
            None => Ok(true),
        }
    }

    /// Polls, routes and injects barriers until the final barrier.
    ///
    /// Barriers are injected between polls only: a poll in flight is never dropped, so a
    /// poll slower than the checkpoint interval still makes progress, and the position acked
    /// with a barrier is that of exactly the items routed before it (see the contract on
    /// [`Source`]). While the source has nothing to return (idle or failing), barriers are
    /// taken during the wait.
    pub async fn run(mut self) -> Result<()> {
        let m = crate::metrics::get();
        let records_metric = m.source_records.with_label_values(&[&self.component]);
        let bytes_metric = m.source_bytes.with_label_values(&[&self.component]);
        let errors_metric = m.labeled_counter(
            crate::metrics::SOURCE_ERRORS,
            "Polls that found the source failing (access denied, not found, unreachable), by kind",
            &["component", "kind"],
        );
        let mut finished = false;
        // Since when the source has been failing without progress.
        let mut failing_since: Option<tokio::time::Instant> = None;
        let poll_size = self.batch_size * self.outputs.len();
        let mut progress = super::progress::ProgressLog::new();
        loop {
            // Control before input: a pending barrier is injected before more records are read.
            match self.triggers.try_recv() {
                Ok(b) => {
                    if self.on_trigger(Some(b)).await? {
                        return Ok(());
                    }
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if finished {
                // Everything is read; wait for the final barrier.
                let t = self.triggers.recv().await;
                if self.on_trigger(t).await? {
                    return Ok(());
                }
                continue;
            }
            let polled = self.source.poll(poll_size).await?;
            if let Some((done, total)) = self.source.progress() {
                progress.observe(&self.component, done, total);
            }
            let unreadable = self.source.take_dead_letters();
            if !unreadable.is_empty() {
                let dead: Vec<_> = unreadable.into_iter().map(|dl| (dl, None)).collect();
                self.write_dead(&dead).await?;
            }
            let wait = match polled {
                Poll::Items(items) => {
                    self.recovered(&mut failing_since);
                    let mut dead = Vec::new();
                    for item in items {
                        bytes_metric.inc_by(item.data.len() as u64);
                        if !item.header {
                            self.records += 1;
                            records_metric.inc();
                        }
                        if let Some(dl) = self.route(item) {
                            dead.push(dl);
                        }
                    }
                    self.flush().await?;
                    self.write_dead(&dead).await?;
                    continue;
                }
                Poll::Idle(wait) => {
                    self.flush().await?;
                    match self.source.failure() {
                        None => {
                            self.recovered(&mut failing_since);
                            wait
                        }
                        Some(f) => {
                            errors_metric
                                .with_label_values(&[&self.component, f.kind])
                                .inc();
                            // Every failing poll says so again: the topology marks the job
                            // ready once, possibly after the first failure.
                            self.health.ready.store(false, Ordering::Relaxed);
                            m.ready.set(0);
                            let now = tokio::time::Instant::now();
                            let since = *failing_since.get_or_insert_with(|| {
                                tracing::warn!(component = %self.component, kind = f.kind, error = %f.message, "The source is failing; not ready.");
                                now
                            });
                            let failed_for = now.duration_since(since);
                            if failed_for >= self.fail_after {
                                return Err(Error::Source {
                                    component: self.component.clone(),
                                    message: format!(
                                        "{} (failing for {:?} without progress)",
                                        f.message, failed_for
                                    ),
                                    retry: crate::Retry::No,
                                });
                            }
                            wait.min(self.fail_after - failed_for)
                        }
                    }
                }
                Poll::End => {
                    self.recovered(&mut failing_since);
                    self.flush().await?;
                    finished = true;
                    self.acks
                        .send(Ack::SourceFinished)
                        .await
                        .map_err(|_| closed())?;
                    continue;
                }
            };
            tokio::select! {
                biased;
                t = self.triggers.recv() => {
                    if self.on_trigger(t).await? {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The source made progress (or had nothing to do without failing): ready again.
    fn recovered(&self, failing_since: &mut Option<tokio::time::Instant>) {
        if failing_since.take().is_some() {
            tracing::info!(component = %self.component, "The source recovered; ready.");
            self.health.ready.store(true, Ordering::Relaxed);
            crate::metrics::get().ready.set(1);
        }
    }

    /// Parses one item and buffers it for its partition; returns a dead letter on failure.
    fn route(&mut self, item: RawItem) -> Option<(DeadLetter, Option<usize>)> {
        let RawItem {
            data,
            stream,
            origin,
            header,
            too_large,
            record,
        } = item;
        if header {
            return self.parser.set_header(&data).err().map(|e| {
                (
                    DeadLetter {
                        reason: e.reason(),
                        message: e.to_string(),
                        data: lossy(&data),
                        origin,
                    },
                    None,
                )
            });
        }
        if let Some(len) = too_large {
            let max = self.parser.config().max_record_bytes;
            let message = format!("record of {len} bytes is over the {max}-byte limit");
            return Some((
                DeadLetter {
                    reason: "too_large",
                    message,
                    data: lossy(&data),
                    origin,
                },
                Some(len),
            ));
        }
        if let Some(mut record) = record {
            // Built by the source (object sources): route it as it is, keyed by its key.
            let (key, group) = self.parser.key(&record.key);
            record.key = key;
            record.key_group = group;
            let p = partition_of(group, self.key_groups, self.outputs.len());
            self.buffers[p].push(*record);
            return None;
        }
        // A panic in the parser dead-letters this input alone (issue 14.2). The dead letter
        // keeps at most its first 4 KiB, so that is all that is copied beforehand.
        let (len, head) = (
            data.len(),
            data[..data.len().min(DEAD_LETTER_DATA)].to_vec(),
        );
        let parser = &mut self.parser;
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            parser.parse_or_return(data, &stream, origin.clone())
        }));
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(payload) => {
                let message = crate::core::panic::report("the parser", &*payload);
                let reason = crate::core::panic::INTERNAL_ERROR;
                let data = lossy(&head);
                return Some((
                    DeadLetter {
                        reason,
                        message,
                        data,
                        origin,
                    },
                    Some(len),
                ));
            }
        };
        match parsed {
            Ok(Some(record)) => {
                let p = partition_of(record.key_group, self.key_groups, self.outputs.len());
                self.buffers[p].push(record);
                None
            }
            Ok(None) => None,
            Err((e, data)) => {
                let len = data.len();
                Some((
                    DeadLetter {
                        reason: e.reason(),
                        message: e.to_string(),
                        data: lossy(&data),
                        origin,
                    },
                    Some(len),
                ))
            }
        }
    }

    async fn write_dead(&mut self, dead: &[(DeadLetter, Option<usize>)]) -> Result<()> {
        if dead.is_empty() {
            return Ok(());
        }
        let m = crate::metrics::get();
        let records: Vec<Record> = dead
            .iter()
            .map(|(dl, bytes)| {
                m.dead_letter
                    .with_label_values(&["source", dl.reason])
                    .inc();
                m.processing_errors
                    .with_label_values(&["source", dl.reason])
                    .inc();
                dead_letter_record("source", dl, *bytes)
            })
            .collect();
        super::dead_letters::log("source", dead.iter().map(|(dl, _)| dl));
        self.dead_letter.write(&records).await
    }

    /// Sends every non-empty buffer to its partition (waiting when a channel is full: that
    /// wait is the backpressure that slows the source).
    async fn flush(&mut self) -> Result<()> {
        for (p, buf) in self.buffers.iter_mut().enumerate() {
            if buf.is_empty() {
                continue;
            }
            let batch = std::mem::replace(buf, Vec::with_capacity(self.batch_size));
            // Waits while the partition has enough queued (see `topology::fill`).
            let bytes = batch.iter().map(super::fill::record_bytes).sum();
            self.fills[p].admit(batch.len(), bytes).await;
            self.outputs[p]
                .send(Message::Batch(batch))
                .await
                .map_err(|_| closed())?;
        }
        Ok(())
    }

    async fn barrier(&mut self, b: Barrier) -> Result<()> {
        self.flush().await?;
        for out in &self.outputs {
            out.send(Message::Barrier(b)).await.map_err(|_| closed())?;
        }
        let commits = self.dead_letter.precommit(b.epoch).await?;
        let ack = Ack::Source {
            epoch: b.epoch,
            position: self.source.position(),
            commits,
            records: self.records,
        };
        self.acks.send(ack).await.map_err(|_| closed())
    }
}

fn lossy(data: &[u8]) -> String {
    String::from_utf8_lossy(&data[..data.len().min(4096)]).into_owned()
}

fn closed() -> Error {
    Error::Internal("a partition or the coordinator stopped early".into())
}

#[cfg(test)]
pub(super) mod tests;
