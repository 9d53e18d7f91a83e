//! A partition task: runs the operator chain over its key groups' records and writes the
//! results to its sink instance.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Ack, Fill, Message, dead_letter_record};
use crate::Result;
use crate::connectors::Sink;
use crate::core::Batch;
use crate::core::panic::catch;
use crate::operators::{Barrier, Context, Operator, Tables};

/// One operator of the chain with what the runtime keeps for it: its state tables (swapped
/// into the [`Context`] for each call) and its record counters, labelled once.
pub(super) struct Slot {
    pub op: Box<dyn Operator>,
    pub tables: Tables,
    pub records_in: prometheus::IntCounter,
    pub records_out: prometheus::IntCounter,
}

impl Slot {
    /// Builds the slot of `op` in partition `partition`: opens the tables it declares.
    pub fn new(op: Box<dyn Operator>, cx: &Context) -> Result<Slot> {
        let m = crate::metrics::get();
        let labels = [op.name(), cx.partition_name.as_str()];
        Ok(Slot {
            tables: Tables::open(&cx.backend, op.name(), op.tables())?,
            records_in: m.operator_in.with_label_values(&labels),
            records_out: m.operator_out.with_label_values(&labels),
            op,
        })
    }
}

/// Runs `call` on slot `$i`'s operator with its tables swapped into the context.
macro_rules! with_tables {
    ($self:ident, $i:expr, |$op:ident, $cx:ident| $call:expr) => {{
        let slot = &mut $self.ops[$i];
        std::mem::swap(&mut $self.cx.tables, &mut slot.tables);
        let $op = &mut slot.op;
        let $cx = &mut $self.cx;
        let result = $call.await;
        std::mem::swap(&mut $self.cx.tables, &mut slot.tables);
        result
    }};
}

pub(super) struct PartitionRunner {
    pub name: String,
    pub index: usize,
    pub ops: Vec<Slot>,
    pub cx: Context,
    pub sink: Box<dyn Sink>,
    pub dead_letter: Box<dyn Sink>,
    pub input: mpsc::Receiver<Message>,
    pub acks: mpsc::Sender<Ack>,
    pub fill: Arc<Fill>,
    /// The key groups this partition owns: one is swept for expired state per barrier.
    pub key_groups: Vec<u16>,
    /// The next of them to sweep.
    pub sweep_next: usize,
}

impl PartitionRunner {
    pub async fn run(mut self) -> Result<()> {
        let _release_source = super::fill::CloseOnDrop(Arc::clone(&self.fill));
        let tick = self.ops.iter().filter_map(|s| s.op.tick_interval()).min();
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
                        with_tables!(self, i, |op, cx| op.on_tick(cx, &mut out))?;
                        self.emitted(i, out).await?;
                    }
                    continue;
                }
            };
            match msg {
                Some(Message::Batch(batch)) => {
                    let (records, started) = (batch.len(), std::time::Instant::now());
                    let bytes = batch.iter().map(super::fill::record_bytes).sum();
                    self.downstream(0, batch).await?;
                    self.fill.done(records, bytes, started.elapsed());
                    fill_gauge.set(self.fill.get() as i64);
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

    /// Counts what operator `i` emitted outside `process` and sends it downstream.
    async fn emitted(&mut self, i: usize, out: Batch) -> Result<()> {
        self.ops[i].records_out.inc_by(out.len() as u64);
        if out.is_empty() && self.cx.dead_letters.is_empty() {
            return Ok(());
        }
        self.downstream(i + 1, out).await
    }

    /// Runs `batch` through operators `from..` and writes the result to the sink.
    async fn downstream(&mut self, from: usize, mut batch: Batch) -> Result<()> {
        for i in from..self.ops.len() {
            if batch.is_empty() {
                break;
            }
            self.ops[i].records_in.inc_by(batch.len() as u64);
            let mut out = Vec::with_capacity(batch.len());
            // Kept to retry one record at a time if the operator panics (issue 14.2).
            let kept = batch.clone();
            let dead_before = self.cx.dead_letters.len();
            let called = with_tables!(self, i, |op, cx| catch(op.process(batch, cx, &mut out)));
            match called {
                Ok(result) => result?,
                Err(payload) => {
                    self.cx.dead_letters.truncate(dead_before);
                    let panic = crate::core::panic::message(&*payload);
                    drop(payload);
                    out = self.one_at_a_time(i, kept, panic).await?;
                }
            }
            self.ops[i].records_out.inc_by(out.len() as u64);
            batch = out;
        }
        self.sink.write(&batch).await?;
        self.cx.dead_letters.extend(self.sink.take_dead_letters());
        self.write_dead().await
    }

    /// Operator `i` panicked on a batch: runs its records through it one at a time, and
    /// dead-letters (`internal_error`, with the panic's message) each record it panics on.
    ///
    /// The records before the one that panicked were already applied to the operator's state
    /// once; their retry applies them again, for their keys only. Containment favours a live
    /// job over that double count: a panic is a bug, and its dead letter says so.
    async fn one_at_a_time(&mut self, i: usize, records: Batch, panic: String) -> Result<Batch> {
        let operator = self.ops[i].op.name().to_string();
        tracing::error!(
            partition = %self.name,
            operator,
            panic,
            records = records.len(),
            "An operator panicked; retrying its batch one record at a time."
        );
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let kept = r.clone();
            let dead_before = self.cx.dead_letters.len();
            let mut one = Vec::new();
            match with_tables!(self, i, |op, cx| catch(op.process(vec![r], cx, &mut one))) {
                Ok(result) => {
                    result?;
                    out.append(&mut one);
                }
                Err(payload) => {
                    self.cx.dead_letters.truncate(dead_before);
                    let dl = super::dead_letters::panicked(&operator, &*payload, &kept);
                    self.cx.dead_letters.push(dl);
                }
            }
        }
        Ok(out)
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
        super::dead_letters::log(&self.name, &dead);
        self.dead_letter.write(&records).await
    }

    async fn barrier(&mut self, b: Barrier) -> Result<()> {
        if b.then_stop {
            for i in 0..self.ops.len() {
                let mut out = Vec::new();
                with_tables!(self, i, |op, cx| op.on_close(cx, &mut out))?;
                self.emitted(i, out).await?;
            }
        }
        // Work an operator must not carry across the checkpoint goes downstream first.
        for i in 0..self.ops.len() {
            let mut out = Vec::new();
            with_tables!(self, i, |op, cx| op.on_barrier(b, cx, &mut out))?;
            self.emitted(i, out).await?;
        }
        // One key group's expired entries per barrier, before the flush: the sweep skips
        // cached (possibly dirty) entries, and a delete after a put would win.
        let sweep = self.key_groups.get(self.sweep_next).copied();
        self.sweep_next = (self.sweep_next + 1) % self.key_groups.len().max(1);
        let mut expired = 0;
        for i in 0..self.ops.len() {
            with_tables!(self, i, |op, cx| op.on_checkpoint(b, cx))?;
            let slot = &mut self.ops[i];
            if let Some(kg) = sweep {
                expired += slot.tables.sweep(kg, &mut self.cx.writes)?;
            }
            slot.tables.flush(&mut self.cx.writes)?;
        }
        if expired > 0 {
            crate::metrics::get()
                .labeled_counter(
                    crate::metrics::STATE_EXPIRED,
                    "Keyed-state entries deleted because their TTL passed",
                    &["partition"],
                )
                .with_label_values(&[&self.name])
                .inc_by(expired as u64);
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

#[cfg(test)]
mod tests;
