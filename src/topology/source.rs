//! The source task: polls the source, parses, routes records to partitions by key group, and
//! injects barriers when the coordinator asks.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Ack, Fill, Message, dead_letter_record};
use crate::connectors::{Poll, RawItem, Sink, Source};
use crate::core::partition::partition_of;
use crate::core::{Batch, Record};
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

    pub async fn run(mut self) -> Result<()> {
        let m = crate::metrics::get();
        let records_metric = m.source_records.with_label_values(&[&self.component]);
        let bytes_metric = m.source_bytes.with_label_values(&[&self.component]);
        let mut finished = false;
        let poll_size = self.batch_size * self.outputs.len();
        loop {
            if finished {
                // Everything is read; wait for the final barrier.
                let t = self.triggers.recv().await;
                if self.on_trigger(t).await? {
                    return Ok(());
                }
                continue;
            }
            // Control before input: a pending barrier is injected before more records are read.
            let polled = tokio::select! {
                biased;
                t = self.triggers.recv() => {
                    if self.on_trigger(t).await? {
                        return Ok(());
                    }
                    continue;
                }
                p = self.source.poll(poll_size) => p?,
            };
            match polled {
                Poll::Items(items) => {
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
                }
                Poll::Idle(wait) => {
                    self.flush().await?;
                    tokio::select! {
                        biased;
                        t = self.triggers.recv() => match t {
                            Some(b) => {
                                self.barrier(b).await?;
                                if b.then_stop {
                                    return Ok(());
                                }
                            }
                            None => return Ok(()),
                        },
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Poll::End => {
                    self.flush().await?;
                    finished = true;
                    self.acks
                        .send(Ack::SourceFinished)
                        .await
                        .map_err(|_| closed())?;
                }
            }
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
        match self.parser.parse_or_return(data, &stream, origin.clone()) {
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
        if let Some((first, _)) = dead.first() {
            tracing::warn!(reason = first.reason, error = %first.message, count = dead.len(), "Dead-lettered input.");
        }
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
            self.fills[p].add(batch.len());
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
