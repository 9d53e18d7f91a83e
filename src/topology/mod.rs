//! Builds and runs a job: one source task, one task per key partition, and the checkpoint
//! coordinator, connected by bounded channels.
//!
//! ```text
//!  source task ──(batches, barriers)──▶ partition 0: op → op → sink ─┐
//!  parse, route by key group          ▶ partition 1: op → op → sink ─┼─ acks ─▶ coordinator
//!        │ dead letters                …                              │
//!        └───────────────────────────── acks ────────────────────────┘
//! ```

mod coordinator;
mod dead_letters;
mod fill;
mod partition;
mod progress;
mod source;

pub use dead_letters::{DEAD_LETTER_DATA, dead_letter_record};
use fill::Fill;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::JobConfig;
use crate::connectors::SinkConfig;
use crate::connectors::output::{OutputIdentity, SinkRole};
use crate::core::Batch;
use crate::core::partition::partition_of;
use crate::metrics::Health;
use crate::operators::{Barrier, BuildContext, Context};
use crate::parse::Parser;
use crate::state::DataDirLock;
use crate::state::checkpoint::{Commit, Manifest};
use crate::state::store::{self, CheckpointStore};
use crate::{Error, Result};

/// What flows from the source to a partition.
#[derive(Debug)]
pub enum Message {
    /// Records, in source order.
    Batch(Batch),
    /// A checkpoint barrier: every record before it belongs to the checkpoint.
    Barrier(Barrier),
}

/// What tasks report to the coordinator.
#[derive(Debug)]
pub enum Ack {
    /// The source injected barrier `epoch` at `position`.
    Source {
        /// Epoch.
        epoch: u64,
        /// Source position at the barrier.
        position: serde_json::Value,
        /// Dead-letter output to publish.
        commits: Vec<Commit>,
        /// Records read so far.
        records: u64,
    },
    /// A partition handled barrier `epoch`.
    Partition {
        /// Partition index.
        partition: usize,
        /// Epoch.
        epoch: u64,
        /// Output to publish.
        commits: Vec<Commit>,
    },
    /// A bounded source delivered everything.
    SourceFinished,
}

/// How to start.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Restore this checkpoint directory instead of the latest.
    pub from_checkpoint: Option<PathBuf>,
    /// Ignore existing checkpoints.
    pub fresh: bool,
    /// The data directory's lock, when the caller took it already (`app::run_job` takes it
    /// before binding the metrics port); `None`: [`run`] takes it.
    pub lock: Option<Arc<DataDirLock>>,
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Epoch restored from, if any.
    pub restored_epoch: Option<u64>,
    /// Epoch of the final checkpoint.
    pub final_epoch: u64,
    /// Records read by the source over the job's life (including before a restore).
    pub records_in: u64,
}

/// The first error a task reported; the job stops with it.
#[derive(Default)]
pub(crate) struct Failure(std::sync::Mutex<Option<Error>>);

impl Failure {
    fn set(&self, e: Error) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }
    fn take(&self) -> Option<Error> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Spawns a task that cancels `root` (stopping the job) if it fails.
fn spawn_named(
    tracker: &TaskTracker,
    root: &CancellationToken,
    failure: &Arc<Failure>,
    name: String,
    fut: impl std::future::Future<Output = Result<()>> + Send + 'static,
) {
    let root = root.clone();
    let failure = Arc::clone(failure);
    tracker.spawn(async move {
        if let Err(e) = fut.await {
            tracing::error!(task = %name, error = %e, "Task failed; stopping the job.");
            failure.set(e);
            root.cancel();
        }
    });
}

/// The checkpoint a run restores.
struct Chosen {
    /// Its name (`<checkpoint.dir>/chk-<epoch>`).
    name: PathBuf,
    epoch: u64,
    manifest: Manifest,
    /// The store holding it; `None` for a `--from-checkpoint` directory outside the job's
    /// store, restored where it is.
    store: Option<Arc<dyn CheckpointStore>>,
    /// Whether it is in the job's own store (a rollback supersedes the newer ones there).
    own: bool,
}

/// Finds the checkpoint to restore, or explains why it cannot; and the highest epoch in the
/// job's store.
async fn choose_checkpoint(
    cfg: &JobConfig,
    opts: &RunOptions,
    store: &Arc<dyn CheckpointStore>,
) -> Result<(Option<Chosen>, u64)> {
    let listing = store.list().await?;
    let max_epoch = listing.max_epoch;
    let chosen = if let Some(path) = &opts.from_checkpoint {
        let s3 = path.to_string_lossy().starts_with("s3://");
        let split = store::split_checkpoint(&path.to_string_lossy());
        if s3 {
            let (parent, epoch) = split.ok_or_else(|| {
                Error::checkpoint(
                    path,
                    "is not a checkpoint (`s3://bucket/prefix/chk-<epoch>`)",
                )
            })?;
            let own = parent.trim_end_matches('/') == store.location().trim_end_matches('/');
            let from = if own {
                Arc::clone(store)
            } else {
                let mut spec = cfg.checkpoint_store();
                spec.dir = PathBuf::from(&parent);
                store::open(&spec, &cfg.data_dir().join(SCRATCH)).await?
            };
            let manifest = from.read(epoch).await?;
            Some(Chosen {
                name: from.name_of(epoch),
                epoch,
                manifest,
                store: Some(from),
                own,
            })
        } else {
            let manifest = Manifest::read(path)?;
            let own = cfg.checkpoint_store().s3_location().is_none()
                && path
                    .parent()
                    .and_then(|p| p.canonicalize().ok())
                    .is_some_and(|p| cfg.checkpoint_dir().canonicalize().ok() == Some(p));
            Some(Chosen {
                name: path.clone(),
                epoch: manifest.epoch,
                manifest,
                store: None,
                own,
            })
        }
    } else if opts.fresh {
        None
    } else {
        match listing.checkpoints.into_iter().next_back() {
            None => None,
            Some(f) => match f.manifest {
                Ok(m) => Some(Chosen {
                    name: f.name,
                    epoch: f.epoch,
                    manifest: m,
                    store: Some(Arc::clone(store)),
                    own: true,
                }),
                Err(e) => {
                    return Err(Error::checkpoint(
                        &f.name,
                        format!(
                            "is the newest checkpoint but cannot be used ({e}); \
                             pick another with --from-checkpoint or start over with --fresh"
                        ),
                    ));
                }
            },
        }
    };
    if let Some(c) = &chosen {
        let (path, m) = (&c.name, &c.manifest);
        let want = cfg.state_fingerprint();
        if m.fingerprint != want {
            return Err(Error::checkpoint(
                path,
                format!(
                    "was taken by a job with another state layout ({}; this job: {want}); \
                     use --fresh to start over",
                    m.fingerprint
                ),
            ));
        }
        let backend = format!("{:?}", cfg.state.backend).to_lowercase();
        if m.backend != backend {
            return Err(Error::checkpoint(
                path,
                format!("holds {} state but the job uses {backend}", m.backend),
            ));
        }
    }
    Ok((chosen, max_epoch))
}

/// Under the data directory: where an object store stages uploads and restores.
const SCRATCH: &str = "checkpoint-scratch";

/// Restores `chosen`: supersedes the checkpoints a rollback passes over (durably, before
/// anything runs), fetches the snapshot and the sealed output, publishes the output again
/// (the worker may have died between the manifest and the publish) and returns the local
/// snapshot directory.
async fn restore(
    cfg: &JobConfig,
    store: &Arc<dyn CheckpointStore>,
    chosen: &Chosen,
    sink: &SinkConfig,
    dead_letter: &SinkConfig,
) -> Result<PathBuf> {
    tracing::info!(checkpoint = %chosen.name.display(), epoch = chosen.epoch, "Restoring checkpoint.");
    if chosen.own {
        let passed = store.supersede_after(chosen.epoch).await?;
        if !passed.is_empty() {
            tracing::warn!(epochs = ?passed, "Rolling back: newer checkpoints are superseded and will not be restored.");
        }
    }
    let started = std::time::Instant::now();
    let dir = match &chosen.store {
        Some(s) => {
            let scratch = cfg.data_dir().join(SCRATCH).join("restore");
            let (dir, _, stats) = s.fetch(chosen.epoch, &scratch).await?;
            let sm = crate::metrics::store();
            sm.restore_bytes.set(stats.bytes as i64);
            sm.restore_duration.set(started.elapsed().as_secs_f64());
            if stats.bytes > 0 {
                tracing::info!(
                    bytes = stats.bytes,
                    files = stats.files,
                    seconds = started.elapsed().as_secs_f64(),
                    "Checkpoint downloaded."
                );
            }
            dir
        }
        None => chosen.name.clone(),
    };
    SinkConfig::publish(&[sink, dead_letter], &chosen.manifest.commits).await?;
    Ok(dir)
}

/// Runs a job until its bounded source ends or `shutdown` resolves, then takes a final
/// checkpoint, publishes the output and returns.
pub async fn run(
    cfg: JobConfig,
    opts: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send,
    health: Arc<Health>,
) -> Result<RunSummary> {
    let m = crate::metrics::get();
    let data_dir = cfg.data_dir();
    // Before anything in the data directory is read or written: another process on it would
    // have its live state, in-progress checkpoint and staged output deleted under it.
    let _lock = match &opts.lock {
        Some(l) => Arc::clone(l),
        None => Arc::new(DataDirLock::acquire(&data_dir)?),
    };
    let store = store::open(&cfg.checkpoint_store(), &data_dir.join(SCRATCH)).await?;

    let (chosen, max_epoch) = choose_checkpoint(&cfg, &opts, &store).await?;
    let restored_epoch = chosen.as_ref().map(|c| c.epoch);
    // New epochs are numbered after every existing checkpoint (also on --fresh or when an
    // older checkpoint is restored), so neither checkpoint directories nor part files can
    // collide with an earlier run's.
    let base_epoch = max_epoch.max(restored_epoch.unwrap_or(0));
    // Part names and object keys carry the job's output identity: the restored checkpoint's
    // run id (so a replay names its output as the first run did, also on a fresh machine),
    // else the one kept in the checkpoint directory (the data directory for an object store).
    let identity_dir = if cfg.checkpoint_store().s3_location().is_some() {
        data_dir.clone()
    } else {
        cfg.checkpoint_dir()
    };
    let restored_run = chosen
        .as_ref()
        .map(|c| c.manifest.run_id.as_str())
        .filter(|r| !r.is_empty());
    let identity = OutputIdentity::load_or_adopt(&identity_dir, &cfg.name, restored_run)?;
    let role = |role: &'static str| SinkRole {
        identity: &identity,
        role,
        data_dir: &data_dir,
    };
    let sink = cfg.sink.for_job(role("sink"));
    let dead_letter = cfg
        .dead_letter
        .resolve(&data_dir)
        .for_job(role("dead_letter"));
    let restore_dir = match &chosen {
        Some(c) => Some(restore(&cfg, &store, c, &sink, &dead_letter).await?),
        None => None,
    };
    sink.recover(restored_epoch)?;
    dead_letter.recover(restored_epoch)?;

    let backend = crate::state::open_backend(
        cfg.state.backend,
        &data_dir.join("state"),
        restore_dir.as_deref(),
    )?;
    // A downloaded snapshot is in the live directory now (hard links): drop the copy.
    let fetched = data_dir.join(SCRATCH).join("restore");
    if fetched.exists() {
        std::fs::remove_dir_all(&fetched).map_err(|e| Error::io("removing", &fetched, e))?;
    }
    let restore = chosen.map(|c| (c.name, c.manifest));

    // Source.
    let mut src = cfg.source.build()?;
    if let Some((_, manifest)) = &restore {
        src.restore(&manifest.source).await?;
    }
    let parser_cfg = cfg
        .source
        .parser_config(&cfg.record, cfg.runtime.key_groups);
    let build_cx_values = parser_cfg.values.clone();
    let has_time = parser_cfg.time.is_some();
    let parser = Parser::new(parser_cfg);

    let partitions = cfg.runtime.partitions();
    let batch_size = cfg.runtime.batch_size;
    let channel_batches = (cfg.runtime.channel_capacity / batch_size).max(1);
    let bounds = fill::Bounds {
        target: cfg.runtime.in_flight_target.as_std(),
        max_bytes: usize::try_from(cfg.runtime.max_in_flight_bytes).unwrap_or(usize::MAX),
        batch_size,
    };
    let (ack_tx, ack_rx) = mpsc::channel::<Ack>(64 + 4 * partitions);
    let (trigger_tx, trigger_rx) = mpsc::channel::<Barrier>(4);
    let root_token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let failure = Arc::new(Failure::default());

    let mut senders = Vec::with_capacity(partitions);
    let mut fills = Vec::with_capacity(partitions);
    // One per run: every partition's operators share what they load (a model) through it.
    let resources = crate::operators::Resources::default();
    for p in 0..partitions {
        let (tx, rx) = mpsc::channel::<Message>(channel_batches);
        let fill = Arc::new(Fill::new(bounds));
        let name = format!("p{p:03}");
        m.channel_capacity
            .with_label_values(&[&name])
            .set((channel_batches * batch_size) as i64);
        let bcx = BuildContext {
            partition: p,
            values: build_cx_values.len(),
            value_names: build_cx_values.clone(),
            has_time,
            partitions,
            key_groups: cfg.runtime.key_groups,
            resources: resources.clone(),
        };
        let mut cx = Context::new(p, Arc::clone(&backend));
        let mut ops = Vec::new();
        for op in &cfg.operators {
            let mut slot = partition::Slot::new(op.build(&bcx)?, &cx)?;
            std::mem::swap(&mut cx.tables, &mut slot.tables);
            let started = slot.op.on_start(&mut cx).await;
            std::mem::swap(&mut cx.tables, &mut slot.tables);
            started?;
            ops.push(slot);
        }
        let runner = partition::PartitionRunner {
            name: name.clone(),
            index: p,
            ops,
            cx,
            sink: sink.build(&name, base_epoch + 1)?,
            dead_letter: dead_letter.build(&name, base_epoch + 1)?,
            input: rx,
            acks: ack_tx.clone(),
            fill: Arc::clone(&fill),
            key_groups: (0..cfg.runtime.key_groups)
                .filter(|&g| partition_of(g, cfg.runtime.key_groups, partitions) == p)
                .collect(),
            sweep_next: 0,
        };
        spawn_named(&tracker, &root_token, &failure, name, runner.run());
        senders.push(tx);
        fills.push(fill);
    }

    let restored_records = restore.as_ref().map_or(0, |(_, m)| m.records_in);
    // Taken before the source starts, so the first checkpoint line counts all it reads.
    let baseline = progress::Totals::now(restored_records);
    let driver = source::SourceDriver {
        source: src,
        parser,
        outputs: senders,
        fills: fills.clone(),
        buffers: (0..partitions)
            .map(|_| Vec::with_capacity(batch_size))
            .collect(),
        batch_size,
        key_groups: cfg.runtime.key_groups,
        dead_letter: dead_letter.build("source", base_epoch + 1)?,
        triggers: trigger_rx,
        acks: ack_tx,
        records: restored_records,
        component: cfg.source.type_name().to_string(),
        health: Arc::clone(&health),
        fail_after: cfg.source.spec().fail_after(),
    };
    spawn_named(
        &tracker,
        &root_token,
        &failure,
        "source".into(),
        driver.run(),
    );
    tracker.close();

    health.ready.store(true, Ordering::Relaxed);
    m.ready.set(1);
    tracing::info!(job = %cfg.name, partitions, data_dir = %data_dir.display(), "Job running.");
    m.checkpoint_interval
        .set(cfg.checkpoint.interval.as_std().as_secs_f64());

    let coordinator = coordinator::Coordinator {
        cfg: &cfg,
        store,
        backend,
        epoch: base_epoch,
        run_id: identity.run().to_string(),
        sinks: [sink.clone(), dead_letter.clone()],
        triggers: trigger_tx,
        acks: ack_rx,
        partitions,
        fills,
        last: baseline,
    };
    let outcome = coordinator.run(shutdown, root_token.clone()).await;
    health.ready.store(false, Ordering::Relaxed);
    m.ready.set(0);
    if outcome.is_err() {
        root_token.cancel();
    }
    // Tasks end on their own after the final barrier; the timeout guards a wedged sink. Past
    // the shutdown timeout they are wedged by definition: do not wait for them again.
    let grace = if matches!(outcome, Err(Error::ShutdownTimeout(_))) {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::from_secs(30)
    };
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() && !grace.is_zero() {
        tracing::warn!("Tasks did not stop within 30 s of the final checkpoint.");
    }
    if let Err(e @ Error::ShutdownTimeout(_)) = outcome {
        return Err(e);
    }
    if let Some(e) = failure.take() {
        return Err(e);
    }
    let (final_epoch, records_in) = outcome?;
    Ok(RunSummary {
        restored_epoch,
        final_epoch,
        records_in,
    })
}
