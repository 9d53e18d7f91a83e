//! The checkpoint coordinator: triggers barriers on a timer, collects acknowledgements and
//! turns them into a complete checkpoint.
//!
//! Protocol for epoch `n`:
//! 1. ask the source to inject barrier `n`; it sends the barrier to every partition and acks
//!    with its position;
//! 2. each partition, on the barrier, writes its dirty state to the backend, seals its sink
//!    output and acks with the commits that would publish it;
//! 3. with all acks in, snapshot the backend into the directory the checkpoint store
//!    prepares and save it ([`CheckpointStore::save`]: a local directory renames it into
//!    place; S3 uploads the new files, then the manifest): the checkpoint is complete;
//! 4. publish the sink output: each commit goes back to the sink config that sealed it
//!    ([`SinkConfig::publish`]; renames for file sinks, uploads for S3), then let the store
//!    drop old checkpoints ([`CheckpointStore::retain`]).
//!
//! Only one checkpoint is in flight; partitions write state only on barriers, so nothing
//! touches the backend between step 2 and step 3 except reads.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::progress::Totals;
use super::{Ack, Fill};
use crate::config::JobConfig;
use crate::connectors::SinkConfig;
use crate::core::Barrier;
use crate::state::StateBackend;
use crate::state::checkpoint::{self, Commit, Manifest};
use crate::state::store::CheckpointStore;
use crate::{Error, Result};

pub(super) struct Coordinator<'a> {
    pub cfg: &'a JobConfig,
    pub store: Arc<dyn CheckpointStore>,
    pub backend: Arc<dyn StateBackend>,
    pub epoch: u64,
    /// The run id written into each manifest (see `connectors::output`).
    pub run_id: String,
    /// The job's sink and dead-letter sink, bound to its output identity: they publish.
    pub sinks: [SinkConfig; 2],
    pub triggers: mpsc::Sender<Barrier>,
    pub acks: mpsc::Receiver<Ack>,
    pub partitions: usize,
    pub fills: Vec<Arc<Fill>>,
    /// Totals at the previous checkpoint (or the start), for the `Checkpoint complete.` line.
    pub last: Totals,
}

struct InFlight {
    barrier: Barrier,
    started: Instant,
    source: Option<(serde_json::Value, u64)>,
    partitions_done: usize,
    commits: Vec<Commit>,
}

impl Coordinator<'_> {
    /// Runs until the final checkpoint completes. Returns its epoch and the records read.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send,
        cancelled: CancellationToken,
    ) -> Result<(u64, u64)> {
        let interval = self.cfg.checkpoint.interval.as_std();
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut in_flight: Option<InFlight> = None;
        let mut stopping = false;
        let mut records = 0;
        // Output sealed by a checkpoint that then failed is published by the next one.
        let mut carried: Vec<Commit> = Vec::new();
        tokio::pin!(shutdown);
        let mut shutdown_seen = false;
        // Set by a shutdown request: the final checkpoint must be complete by then.
        let mut deadline: Option<tokio::time::Instant> = None;
        let limit = self.cfg.runtime.shutdown_timeout.as_std();
        let past_deadline = || Error::ShutdownTimeout(limit);
        loop {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancelled.cancelled() => {
                    return Err(Error::Internal("a task failed".into()));
                }
                () = timer => return Err(past_deadline()),
                () = &mut shutdown, if !shutdown_seen => {
                    shutdown_seen = true;
                    deadline = Some(tokio::time::Instant::now() + limit);
                    tracing::info!("Shutdown requested: taking a final checkpoint.");
                    stopping = true;
                    if in_flight.is_none() {
                        in_flight = Some(self.trigger(true).await?);
                    }
                }
                _ = ticker.tick(), if in_flight.is_none() && !stopping => {
                    in_flight = Some(self.trigger(false).await?);
                }
                ack = self.acks.recv() => {
                    let Some(ack) = ack else {
                        return Err(Error::Internal("every task stopped before the final checkpoint".into()));
                    };
                    match ack {
                        Ack::SourceFinished => {
                            tracing::info!("Input finished: taking a final checkpoint.");
                            stopping = true;
                            if in_flight.is_none() {
                                in_flight = Some(self.trigger(true).await?);
                            }
                        }
                        Ack::Source { epoch, position, commits, records: n } => {
                            let f = in_flight.as_mut().filter(|f| f.barrier.epoch == epoch).ok_or_else(|| unexpected(epoch))?;
                            f.source = Some((position, n));
                            f.commits.extend(commits);
                        }
                        Ack::Partition { epoch, commits, .. } => {
                            let f = in_flight.as_mut().filter(|f| f.barrier.epoch == epoch).ok_or_else(|| unexpected(epoch))?;
                            f.partitions_done += 1;
                            f.commits.extend(commits);
                        }
                    }
                    let complete = in_flight.as_ref().is_some_and(|f| f.source.is_some() && f.partitions_done == self.partitions);
                    if complete {
                        let mut f = in_flight.take().expect("checked above");
                        let (position, n) = f.source.take().expect("checked above");
                        records = n;
                        let mut commits = std::mem::take(&mut carried);
                        commits.append(&mut f.commits);
                        let completing = self.complete(&f, position, n, commits.clone());
                        // A wedged store or sink must not hold a graceful stop past its bound.
                        let completed = match deadline {
                            Some(d) => tokio::time::timeout_at(d, completing)
                                .await
                                .map_err(|_| past_deadline())?,
                            None => completing.await,
                        };
                        match completed {
                            Ok(()) => {}
                            Err(e) if f.barrier.then_stop => return Err(e),
                            Err(e) => {
                                crate::metrics::get().checkpoint_failures.inc();
                                tracing::error!(epoch = f.barrier.epoch, error = %e, "Checkpoint failed; the next one will retry.");
                                carried = commits;
                            }
                        }
                        if f.barrier.then_stop {
                            return Ok((f.barrier.epoch, records));
                        }
                        if stopping {
                            in_flight = Some(self.trigger(true).await?);
                        }
                    }
                }
            }
            let _ = records;
        }
    }

    async fn trigger(&mut self, then_stop: bool) -> Result<InFlight> {
        self.epoch += 1;
        let barrier = Barrier {
            epoch: self.epoch,
            then_stop,
        };
        self.triggers
            .send(barrier)
            .await
            .map_err(|_| Error::Internal("the source stopped early".into()))?;
        Ok(InFlight {
            barrier,
            started: Instant::now(),
            source: None,
            partitions_done: 0,
            commits: Vec::new(),
        })
    }

    async fn complete(
        &mut self,
        f: &InFlight,
        position: serde_json::Value,
        records_in: u64,
        commits: Vec<Commit>,
    ) -> Result<()> {
        let epoch = f.barrier.epoch;
        let backend = Arc::clone(&self.backend);
        let keep = self.cfg.checkpoint.keep;
        let mut manifest = Manifest {
            format: checkpoint::FORMAT_VERSION,
            osprey_version: env!("CARGO_PKG_VERSION").to_string(),
            job: self.cfg.name.clone(),
            fingerprint: self.cfg.state_fingerprint(),
            epoch,
            created_ms: (crate::metrics::now_secs() * 1000.0) as i64,
            backend: format!("{:?}", self.cfg.state.backend).to_lowercase(),
            source: position,
            commits: commits.clone(),
            records_in,
            state_bytes: 0,
            duration_ms: 0,
            files: Vec::new(),
            outputs: Vec::new(),
            run_id: self.run_id.clone(),
            checksum: String::new(),
        };
        let dir = self.store.prepare(epoch).await?;
        let started = f.started;
        let snapshot = dir.clone();
        let (size, state_size) = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
            backend.checkpoint(&snapshot)?;
            Ok((checkpoint::dir_size(&snapshot), backend.size_bytes()))
        })
        .await
        .map_err(|e| Error::Internal(format!("checkpoint task panicked: {e}")))??;
        manifest.state_bytes = size;
        manifest.duration_ms = started.elapsed().as_millis() as u64;
        let upload_started = Instant::now();
        let saved = self.store.save(&dir, manifest).await?;
        let sm = crate::metrics::store();
        sm.uploaded_bytes.set(saved.bytes_uploaded as i64);
        sm.uploaded_bytes_total.inc_by(saved.bytes_uploaded);
        sm.files_uploaded.inc_by(saved.files_uploaded);
        sm.files_reused.inc_by(saved.files_reused);
        sm.upload_duration
            .observe(upload_started.elapsed().as_secs_f64());
        // The checkpoint is complete: publish its output, then forget old checkpoints.
        let [sink, dead_letter] = &self.sinks;
        SinkConfig::publish(&[sink, dead_letter], &commits).await?;
        match self.store.retain(keep).await {
            Ok(n) => sm.gc_deleted.inc_by(n),
            // The checkpoint stands; what was not deleted now is deleted next time.
            Err(e) => tracing::warn!(epoch, error = %e, "Deleting old checkpoints failed."),
        }
        let m = crate::metrics::get();
        m.checkpoints.inc();
        m.checkpoint_duration
            .observe(f.started.elapsed().as_secs_f64());
        m.checkpoint_size.set(size as i64);
        m.checkpoint_last_success.set(crate::metrics::now_secs());
        m.checkpoint_epoch.set(epoch as i64);
        m.state_size.set(state_size as i64);
        let queued: usize = self.fills.iter().map(|f| f.get()).sum();
        tracing::debug!(
            epoch,
            bytes = size,
            uploaded = saved.bytes_uploaded,
            files_uploaded = saved.files_uploaded,
            files_reused = saved.files_reused,
            records_in,
            queued,
            "Checkpoint saved."
        );
        let now = Totals::now(records_in);
        now.log_checkpoint(&self.last, epoch, state_size, f.started.elapsed());
        self.last = now;
        Ok(())
    }
}

fn unexpected(epoch: u64) -> Error {
    Error::Internal(format!(
        "acknowledgement for epoch {epoch}, which is not in flight"
    ))
}
