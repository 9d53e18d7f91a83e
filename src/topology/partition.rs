//! A partition task: runs the operator chain over its key groups' records and writes the
//! results to its sink instance.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Ack, Fill, Message, dead_letter_record};
use crate::Result;
use crate::connectors::Sink;
use crate::event::Batch;
use crate::operators::{Barrier, Context, Operator};

pub(super) struct PartitionRunner {
    pub name: String,
    pub index: usize,
    pub ops: Vec<Box<dyn Operator>>,
    pub cx: Context,
    pub sink: Box<dyn Sink>,
    pub dead_letter: Box<dyn Sink>,
    pub input: mpsc::Receiver<Message>,
    pub acks: mpsc::Sender<Ack>,
    pub fill: Arc<Fill>,
}

impl PartitionRunner {
    pub async fn run(mut self) -> Result<()> {
        let tick = self.ops.iter().filter_map(|o| o.tick_interval()).min();
        let mut ticker = tick.map(|d| {
            let mut t = tokio::time::interval(d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let fill_gauge = crate::metrics::get()
            .channel_fill
            .with_label_values(&[&self.name]);
        loop {
            let msg = tokio::select! {
                biased;
                msg = self.input.recv() => msg,
                _ = async { ticker.as_mut().expect("guarded by the if").tick().await }, if ticker.is_some() => {
                    for i in 0..self.ops.len() {
                        let mut out = Vec::new();
                        self.ops[i].on_tick(&mut self.cx, &mut out).await?;
                        self.downstream(i + 1, out).await?;
                    }
                    continue;
                }
            };
            match msg {
                Some(Message::Batch(batch)) => {
                    self.fill.sub(batch.len());
                    fill_gauge.set(self.fill.get() as i64);
                    self.downstream(0, batch).await?;
                }
                Some(Message::Barrier(b)) => {
                    self.barrier(b).await?;
                    if b.then_stop {
                        return Ok(());
                    }
                }
                // The source stopped without a final barrier: the job is failing elsewhere.
                None => return Ok(()),
            }
        }
    }

    /// Runs `batch` through operators `from..` and writes the result to the sink.
    async fn downstream(&mut self, from: usize, mut batch: Batch) -> Result<()> {
        for op in &mut self.ops[from..] {
            if batch.is_empty() {
                break;
            }
            let mut out = Vec::with_capacity(batch.len());
            op.process(batch, &mut self.cx, &mut out).await?;
            batch = out;
        }
        self.sink.write(&batch).await?;
        self.cx.dead_letters.extend(self.sink.take_dead_letters());
        self.write_dead().await
    }

    async fn write_dead(&mut self) -> Result<()> {
        if self.cx.dead_letters.is_empty() {
            return Ok(());
        }
        let m = crate::metrics::get();
        let dead = std::mem::take(&mut self.cx.dead_letters);
        let records: Vec<_> = dead
            .iter()
            .map(|dl| {
                m.dead_letter
                    .with_label_values(&[&self.name, dl.reason])
                    .inc();
                m.processing_errors
                    .with_label_values(&[&self.name, dl.reason])
                    .inc();
                dead_letter_record(&self.name, dl, None)
            })
            .collect();
        tracing::warn!(partition = %self.name, reason = dead[0].reason, error = %dead[0].message, count = dead.len(), "Dead-lettered records.");
        self.dead_letter.write(&records).await
    }

    async fn barrier(&mut self, b: Barrier) -> Result<()> {
        if b.then_stop {
            for i in 0..self.ops.len() {
                let mut out = Vec::new();
                self.ops[i].on_close(&mut self.cx, &mut out).await?;
                self.downstream(i + 1, out).await?;
            }
        }
        // Work an operator must not carry across the checkpoint goes downstream first.
        for i in 0..self.ops.len() {
            let mut out = Vec::new();
            self.ops[i].on_barrier(b, &mut self.cx, &mut out).await?;
            if !out.is_empty() || !self.cx.dead_letters.is_empty() {
                self.downstream(i + 1, out).await?;
            }
        }
        for op in &mut self.ops {
            op.on_checkpoint(b, &mut self.cx).await?;
        }
        let writes = std::mem::take(&mut self.cx.writes);
        if !writes.is_empty() {
            let backend = Arc::clone(&self.cx.backend);
            // The batch write is the one heavy RocksDB call per epoch; keep it off the
            // runtime's worker threads.
            tokio::task::spawn_blocking(move || backend.write(writes))
                .await
                .map_err(|e| crate::Error::Internal(format!("state write panicked: {e}")))??;
        }
        let mut commits = self.sink.precommit(b.epoch).await?;
        commits.extend(self.dead_letter.precommit(b.epoch).await?);
        self.acks
            .send(Ack::Partition {
                partition: self.index,
                epoch: b.epoch,
                commits,
            })
            .await
            .map_err(|_| crate::Error::Internal("the coordinator stopped early".into()))
    }
}
