//! `type = "enrich"`: merges reference data into each record, looked up by a key taken from
//! the record.
//!
//! # Lookup mode
//!
//! One [`Operator::process`] call resolves one batch:
//!
//! 1. every record's lookup key is computed and the batch's distinct keys are collected, so a
//!    key that occurs 500 times in a batch is looked up once;
//! 2. tier 1, the in-process [`cache::TtlLru`] (size- and TTL-bounded, negative entries too);
//! 3. tier 2, [`redis::RedisTier`]: one `MGET` for all tier-1 misses;
//! 4. tier 3, the origin: concurrent `GET`s (at most `capacity` in flight per partition, a
//!    [`tokio::sync::Semaphore`]), each bounded by one `timeout` covering all its retries,
//!    retried with exponential backoff and deterministic jitter; answers (found or not found)
//!    are written back to Redis in one pipeline (cache-aside) and to tier 1.
//!
//! Records are then emitted in input order (`ordered`) or in the order their keys were
//! resolved (`unordered`: cache hits, then Redis hits, then origin answers as they came).
//!
//! # Checkpoints
//!
//! `process` returns only when every lookup of its batch has finished, so no lookup is ever
//! in flight when the partition handles a barrier: the checkpoint waits for them, and the
//! source position in a checkpoint never passes an un-enriched record. A crash therefore
//! neither loses nor duplicates records (the input is replayed from the checkpoint and the
//! transactional sink drops the uncommitted output). The price is that a batch is as slow as
//! its slowest lookup; with `capacity` lookups in flight per batch that was enough for the
//! throughput bars (see `benches/enrich.rs`), so lookups do not span batches.
//!
//! # Preload mode
//!
//! `mode = "preload"` loads the origin file at start. Unpartitioned, each partition keeps the
//! whole table in memory; `partitioned = true` keeps only the keys whose key group this
//! partition owns, in keyed state. `refresh` reloads the file on a background task (the
//! stream keeps flowing; the new table is swapped in at the next batch).

pub mod cache;
pub mod config;
pub mod http;
mod key;
mod metrics;
pub mod origin;
#[cfg(feature = "redis")]
pub mod redis;
mod resolve;
pub mod table;

impl super::OperatorSpec for EnrichConfig {
    fn type_name(&self) -> &'static str {
        "enrich"
    }
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("enrich")
    }
    fn validate(
        &self,
        record: &crate::core::RecordConfig,
        _values: &[String],
    ) -> Vec<crate::core::ConfigError> {
        EnrichConfig::validate(self, record)
    }
    fn output_fields(&self) -> Vec<String> {
        vec![self.output.clone()]
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Enrich::new(self, cx)?))
    }
}

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Duration, Instant};

use self::cache::{Lookup, TtlLru};
use self::config::{EnrichConfig, Mode, OnFailure, Order, OriginConfig};
use self::origin::{HttpClient, OriginError, TableSource};
use self::table::Table;
use super::{BuildContext, Context, Operator, TableRef, TableSpec, Tables};
use crate::core::{Backoff, Batch, Field, Record};
use crate::state::StateValue;
use crate::state::codec::{DecodeError, Reader, Writer};
use crate::{Error, Result};

/// The partition's share of a preloaded reference table (`partitioned = true`).
const TABLE: TableRef<TableValue> = TableRef::new(0);

pub use config::EnrichConfig as Config;
pub use key::{KeyTemplate, Part};
use metrics::Metrics;
pub use metrics::*;

/// A reference-table value in keyed state (partitioned preload).
#[derive(Debug, Clone, PartialEq)]
pub struct TableValue(pub Arc<serde_json::Value>);

impl StateValue for TableValue {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        Writer::new(out).len_bytes(self.0.to_string().as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        match r.u8()? {
            1 => {
                let v = serde_json::from_slice(r.len_bytes()?)
                    .map_err(|e| DecodeError::invalid(format!("table value: {e}")))?;
                r.finish()?;
                Ok(TableValue(Arc::new(v)))
            }
            v => Err(DecodeError::UnsupportedVersion(u16::from(v))),
        }
    }
}

/// Why a key could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Redis failed and nothing else could answer: the reason code.
    Redis(&'static str),
    Origin(OriginError),
    Timeout,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Failure::Redis(reason) => reason,
            Failure::Origin(e) => e.reason(),
            Failure::Timeout => "lookup_timeout",
        }
    }
}

/// Retry policy of origin calls.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
}

impl RetryPolicy {
    /// Delay before retry `attempt` (0-based): `backoff · 2^attempt` capped, scaled by a
    /// jitter factor in [0.5, 1) drawn from `seed` (deterministic, no shared RNG).
    fn delay(&self, attempt: u32, seed: u64) -> Duration {
        Backoff::new(self.backoff, self.max_backoff).delay(attempt, seed)
    }
}

enum OriginTier {
    None,
    Http(Arc<HttpClient>),
    File(Arc<Table>),
}

/// The preloaded table of a partition.
enum Preloaded {
    /// Not loaded yet (before `on_start`), or lookup mode.
    None,
    /// The whole table, in memory.
    Memory(Arc<Table>),
    /// This partition's keys, in keyed state; `keys` lists them for refreshes.
    Keyed { keys: Vec<(u16, Arc<str>)> },
}

/// See the module docs.
pub struct Enrich {
    name: String,
    cfg: EnrichConfig,
    key: KeyTemplate,
    field: Arc<str>,
    error_field: Arc<str>,
    partition: usize,
    partitions: usize,
    key_groups: u16,
    cache: TtlLru,
    #[cfg(feature = "redis")]
    redis: Option<redis::RedisTier>,
    origin: OriginTier,
    semaphore: Arc<Semaphore>,
    policy: RetryPolicy,
    lookups_started: Arc<AtomicU64>,
    preloaded: Preloaded,
    loaded_at: Instant,
    refresh: Option<(watch::Receiver<Arc<Table>>, tokio::task::JoinHandle<()>)>,
    metrics: Metrics,
}

impl Drop for Enrich {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.refresh {
            task.abort();
        }
    }
}

impl Enrich {
    /// Builds the operator for one partition. The reference file (file origins) is read in
    /// `on_start`.
    pub fn new(cfg: &EnrichConfig, cx: &BuildContext) -> Result<Self> {
        let name = cfg.name.clone().unwrap_or_else(|| "enrich".into());
        let key = match &cfg.key {
            None => KeyTemplate::RecordKey,
            Some(k) => KeyTemplate::parse(k).ok_or_else(|| Error::Operator {
                operator: name.clone(),
                message: format!("bad key template `{k}`"),
            })?,
        };
        #[cfg(feature = "redis")]
        let redis = cfg.redis.as_ref().map(redis::RedisTier::new).transpose()?;
        #[cfg(not(feature = "redis"))]
        if cfg.redis.is_some() {
            return Err(Error::Operator {
                operator: name,
                message: "built without the `redis` feature".into(),
            });
        }
        let origin = match &cfg.origin {
            OriginConfig::Http(h) => OriginTier::Http(Arc::new(HttpClient::new(h)?)),
            OriginConfig::None | OriginConfig::File(_) | OriginConfig::S3(_) => OriginTier::None,
        };
        Ok(Enrich {
            metrics: Metrics::new(&cx.metrics(&name)),
            key,
            field: Arc::from(cfg.output.as_str()),
            error_field: Arc::from(cfg.error_output.as_str()),
            partition: cx.partition,
            partitions: cx.partitions.max(1),
            key_groups: cx.key_groups.max(1),
            cache: TtlLru::new(
                cfg.cache.max_entries,
                cfg.cache.ttl.as_std(),
                cfg.cache.negative_ttl.as_std(),
            ),
            #[cfg(feature = "redis")]
            redis,
            origin,
            semaphore: Arc::new(Semaphore::new(cfg.capacity.max(1))),
            policy: RetryPolicy {
                retries: cfg.retries,
                backoff: cfg.backoff.as_std(),
                max_backoff: cfg.max_backoff.as_std(),
                timeout: cfg.timeout.as_std(),
            },
            lookups_started: Arc::new(AtomicU64::new(0)),
            preloaded: Preloaded::None,
            loaded_at: Instant::now(),
            refresh: None,
            name,
            cfg: cfg.clone(),
        })
    }

    fn fail(&self, message: String) -> Error {
        Error::Operator {
            operator: self.name.clone(),
            message,
        }
    }
}

#[async_trait]
impl Operator for Enrich {
    fn name(&self) -> &str {
        &self.name
    }

    fn tables(&self) -> Vec<TableSpec> {
        if self.cfg.partitioned {
            vec![TABLE.spec("table")]
        } else {
            Vec::new()
        }
    }

    async fn on_start(&mut self, cx: &mut Context) -> Result<()> {
        if self.cfg.partitioned {
            self.preloaded = Preloaded::Keyed { keys: Vec::new() };
        }
        let Some(source) = TableSource::new(&self.cfg.origin).await? else {
            return Ok(());
        };
        let (table, skipped) = source.load().await.map_err(|e| match e {
            Error::Operator { message, .. } => self.fail(message),
            e => e,
        })?;
        if skipped > 0 {
            tracing::warn!(operator = %self.name, skipped, table = %source.describe(), "Skipped reference rows without a key.");
        }
        self.install(Arc::new(table), &mut cx.tables);
        if let Some(every) = self.cfg.refresh.map(|d| d.as_std()) {
            let (tx, rx) = watch::channel(Arc::new(Table::new()));
            let name = self.name.clone();
            // Aborted when the operator is dropped (see `Drop`): never outlives the job.
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match source.load().await {
                        Ok((t, _)) => {
                            if tx.send(Arc::new(t)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(operator = %name, error = %e, "Reference table reload failed; keeping the old one.")
                        }
                    }
                }
            });
            self.refresh = Some((rx, task));
        }
        Ok(())
    }

    async fn process(&mut self, batch: Batch, cx: &mut Context, out: &mut Batch) -> Result<()> {
        let started = std::time::Instant::now();
        if let Some((rx, _)) = &mut self.refresh
            && rx.has_changed().unwrap_or(false)
        {
            let t = Arc::clone(&rx.borrow_and_update());
            self.install(t, &mut cx.tables);
        }
        self.metrics
            .table_age
            .set(self.loaded_at.elapsed().as_secs_f64());

        // Distinct keys of the batch.
        let mut slot_of: HashMap<Arc<str>, usize> = HashMap::with_capacity(batch.len());
        let mut keys: Vec<Arc<str>> = Vec::new();
        let mut groups: Vec<u16> = Vec::new();
        let mut slots: Vec<Option<usize>> = Vec::with_capacity(batch.len());
        for r in &batch {
            let slot = self.key.key_of(r).map(|k| {
                *slot_of.entry(Arc::clone(&k)).or_insert_with(|| {
                    keys.push(k);
                    groups.push(r.key_group);
                    keys.len() - 1
                })
            });
            slots.push(slot);
        }
        let answers = self.resolve(&keys, &groups, &mut cx.tables).await?;

        let mut emitted: Vec<(u32, Record)> = Vec::with_capacity(batch.len());
        for (r, slot) in batch.into_iter().zip(slots) {
            let Some(slot) = slot else {
                cx.dead_letter("missing_lookup_key", "record has no lookup-key field", &r);
                continue;
            };
            let (answer, rank) = &answers[slot];
            let mut r = r;
            match answer {
                Ok(Lookup::Found(v)) => r.push_field(&self.field, Field::Json((**v).clone())),
                Ok(Lookup::NotFound) => {}
                Err(f) => match self.cfg.on_failure {
                    OnFailure::Emit => {
                        self.metrics.fallbacks.inc();
                        r.push_field(&self.error_field, Field::Str(Arc::from(f.reason())));
                    }
                    OnFailure::DeadLetter => {
                        self.metrics.fallbacks.inc();
                        cx.dead_letter(
                            f.reason(),
                            format!("lookup of `{}` failed", keys[slot]),
                            &r,
                        );
                        continue;
                    }
                    OnFailure::Fail => {
                        return Err(self.fail(format!(
                            "lookup of `{}` failed: {}",
                            keys[slot],
                            f.reason()
                        )));
                    }
                },
            }
            emitted.push((*rank, r));
        }
        if self.cfg.order == Order::Unordered {
            // Stable: records of one key keep their relative order.
            emitted.sort_by_key(|(rank, _)| *rank);
        }
        out.extend(emitted.into_iter().map(|(_, r)| r));
        self.metrics
            .batch_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }
}
