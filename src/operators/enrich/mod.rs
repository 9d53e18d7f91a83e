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
pub mod origin;
#[cfg(feature = "redis")]
pub mod redis;
pub mod table;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use prometheus::{Gauge, Histogram, IntCounter};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Duration, Instant};

use self::cache::{Lookup, TtlLru};
use self::config::{EnrichConfig, Mode, OnFailure, Order, OriginConfig};
use self::origin::{HttpClient, OriginError, TableSource};
use self::table::Table;
use super::{BuildContext, Context, MetricsScope, Operator, TableRef, TableSpec, Tables};
use crate::core::{Backoff, Batch, Field, Record};
use crate::state::StateValue;
use crate::state::codec::{DecodeError, Reader, Writer};
use crate::{Error, Result};

/// The partition's share of a preloaded reference table (`partitioned = true`).
const TABLE: TableRef<TableValue> = TableRef::new(0);

pub use config::EnrichConfig as Config;

/// Lookups by tier and outcome (labels `tier`: cache, redis, origin, table; `outcome`: hit,
/// miss, negative_hit, error, timeout).
pub const LOOKUPS: &str = "osprey_enrich_lookups_total";
/// Origin call retries.
pub const RETRIES: &str = "osprey_enrich_retries_total";
/// Origin lookups in flight.
pub const IN_FLIGHT: &str = "osprey_enrich_in_flight";
/// Duration of one Redis round trip (MGET).
pub const REDIS_LATENCY: &str = "osprey_enrich_redis_duration_seconds";
/// Duration of one origin lookup, retries included.
pub const ORIGIN_LATENCY: &str = "osprey_enrich_origin_duration_seconds";
/// Time a batch spends in the operator (the latency enrichment adds to its records).
pub const BATCH_LATENCY: &str = "osprey_enrich_batch_duration_seconds";
/// Entries of the reference table held by the partition (preload and file origins).
pub const TABLE_ENTRIES: &str = "osprey_enrich_table_entries";
/// Seconds since the reference table was loaded.
pub const TABLE_AGE: &str = "osprey_enrich_table_age_seconds";
/// Records whose lookup failed (error or timeout) and that `on_failure` passed on
/// un-enriched or dead-lettered.
pub const FALLBACKS: &str = "osprey_enrich_fallbacks_total";

const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// How the lookup key is read from a record.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyTemplate {
    /// The record's partitioning key.
    RecordKey,
    /// One field of the record.
    Field(String),
    /// Literal text and fields joined (`"{region}:{id}"`).
    Template(Vec<Part>),
}

/// A piece of a [`KeyTemplate::Template`].
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// A field value (`{key}` is the record key).
    Field(String),
}

impl KeyTemplate {
    /// Parses a `key` option: `None` for unbalanced braces.
    pub fn parse(text: &str) -> Option<KeyTemplate> {
        if !text.contains('{') && !text.contains('}') {
            return Some(KeyTemplate::Field(text.to_string()));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if rest[..open].contains('}') {
                return None;
            }
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let close = rest[open..].find('}')? + open;
            let name = &rest[open + 1..close];
            if name.is_empty() || name.contains('{') {
                return None;
            }
            parts.push(Part::Field(name.to_string()));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return None;
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Some(match parts.as_slice() {
            [Part::Field(f)] if f == "key" => KeyTemplate::RecordKey,
            _ => KeyTemplate::Template(parts),
        })
    }

    /// The lookup key of `r`, or `None` when a field is missing (or not a scalar).
    pub fn key_of(&self, r: &Record) -> Option<Arc<str>> {
        fn scalar(v: &serde_json::Value) -> Option<String> {
            match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        }
        let object = || -> Option<serde_json::Map<String, serde_json::Value>> {
            serde_json::from_str(r.raw.as_deref()?).ok()
        };
        match self {
            KeyTemplate::RecordKey => Some(Arc::clone(&r.key)),
            KeyTemplate::Field(f) => scalar(object()?.get(f)?).map(Arc::from),
            KeyTemplate::Template(parts) => {
                let obj = if parts
                    .iter()
                    .any(|p| matches!(p, Part::Field(f) if f != "key"))
                {
                    Some(object()?)
                } else {
                    None
                };
                let mut s = String::new();
                for p in parts {
                    match p {
                        Part::Lit(l) => s.push_str(l),
                        Part::Field(f) if f == "key" => s.push_str(&r.key),
                        Part::Field(f) => s.push_str(&scalar(obj.as_ref()?.get(f)?)?),
                    }
                }
                Some(Arc::from(s))
            }
        }
    }
}

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

struct Metrics {
    lookups: prometheus::IntCounterVec,
    labels: [String; 2],
    retries: IntCounter,
    fallbacks: IntCounter,
    in_flight: Gauge,
    redis_latency: Histogram,
    origin_latency: Histogram,
    batch_latency: Histogram,
    table_entries: Gauge,
    table_age: Gauge,
}

impl Metrics {
    fn new(scope: &MetricsScope) -> Self {
        let m = scope.registry();
        let name = scope.operator();
        let labels = scope.labels();
        let hist = |n, help| {
            m.operator_histogram(n, help, LATENCY_BUCKETS.to_vec())
                .with_label_values(&[name])
        };
        let gauge = |n, help| {
            m.operator_gauge(n, help, &["operator", "partition"])
                .with_label_values(&labels)
        };
        Metrics {
            lookups: m.operator_counter_with(
                LOOKUPS,
                "Enrichment lookups by tier and outcome",
                &["tier", "outcome"],
            ),
            retries: m
                .operator_counter(RETRIES, "Enrichment origin retries")
                .with_label_values(&labels),
            fallbacks: m
                .operator_counter(FALLBACKS, "Records whose enrichment lookup failed")
                .with_label_values(&labels),
            in_flight: gauge(IN_FLIGHT, "Enrichment origin lookups in flight"),
            redis_latency: hist(REDIS_LATENCY, "Enrichment Redis round-trip time"),
            origin_latency: hist(
                ORIGIN_LATENCY,
                "Enrichment origin lookup time, retries included",
            ),
            batch_latency: hist(BATCH_LATENCY, "Time a batch spends in the enrich operator"),
            table_entries: gauge(TABLE_ENTRIES, "Entries of the enrichment reference table"),
            table_age: gauge(TABLE_AGE, "Seconds since the reference table was loaded"),
            labels: [name.to_string(), scope.partition().to_string()],
        }
    }

    fn count(&self, tier: &str, outcome: &str, n: u64) {
        if n > 0 {
            self.lookups
                .with_label_values(&[&self.labels[0], &self.labels[1], tier, outcome])
                .inc_by(n);
        }
    }
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

    /// Installs a freshly loaded table (at start and after each background refresh).
    fn install(&mut self, table: Arc<Table>, tables: &mut Tables) {
        self.loaded_at = Instant::now();
        self.metrics.table_age.set(0.0);
        if self.cfg.mode == Mode::Lookup {
            self.metrics.table_entries.set(table.len() as f64);
            self.origin = OriginTier::File(table);
            return;
        }
        match &mut self.preloaded {
            Preloaded::Keyed { keys } => {
                let state = tables.get(TABLE);
                let mut kept = Vec::new();
                for (k, v) in table.iter() {
                    let kg = crate::core::partition::key_group(k.as_bytes(), self.key_groups);
                    if crate::core::partition::partition_of(kg, self.key_groups, self.partitions)
                        == self.partition
                    {
                        state.insert(kg, k.as_bytes(), 0, TableValue(Arc::clone(v)));
                        kept.push((kg, Arc::clone(k)));
                    }
                }
                for (kg, k) in keys.iter() {
                    if !table.contains_key(k) {
                        state.remove(*kg, k.as_bytes());
                    }
                }
                self.metrics.table_entries.set(kept.len() as f64);
                *keys = kept;
            }
            _ => {
                self.metrics.table_entries.set(table.len() as f64);
                self.preloaded = Preloaded::Memory(table);
            }
        }
    }

    /// Resolves the distinct keys of a batch; returns per key its answer and a completion
    /// rank (for unordered emission).
    async fn resolve(
        &mut self,
        keys: &[Arc<str>],
        key_groups: &[u16],
        tables: &mut Tables,
    ) -> Result<Vec<(Result<Lookup, Failure>, u32)>> {
        let n = keys.len();
        let mut out: Vec<Option<(Result<Lookup, Failure>, u32)>> = vec![None; n];
        if self.cfg.mode == Mode::Preload {
            let (mut hit, mut miss) = (0, 0);
            for (i, k) in keys.iter().enumerate() {
                let v = match &mut self.preloaded {
                    Preloaded::Memory(t) => t.get(k).cloned(),
                    Preloaded::Keyed { .. } => tables
                        .get(TABLE)
                        .get(key_groups[i], k.as_bytes(), 0)?
                        .map(|v| Arc::clone(&v.0)),
                    Preloaded::None => None,
                };
                out[i] = Some(match v {
                    Some(v) => {
                        hit += 1;
                        (Ok(Lookup::Found(v)), 0)
                    }
                    None => {
                        miss += 1;
                        (Ok(Lookup::NotFound), 0)
                    }
                });
            }
            self.metrics.count("table", "hit", hit);
            self.metrics.count("table", "miss", miss);
            return Ok(out.into_iter().map(|o| o.expect("all set")).collect());
        }

        // Tier 1.
        let now = Instant::now();
        let (mut hit, mut neg) = (0, 0);
        let mut misses = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match self.cache.get(k, now) {
                Some(v) => {
                    if v == Lookup::NotFound {
                        neg += 1;
                    } else {
                        hit += 1;
                    }
                    out[i] = Some((Ok(v), 0));
                }
                None => misses.push(i),
            }
        }
        self.metrics.count("cache", "hit", hit);
        self.metrics.count("cache", "negative_hit", neg);
        self.metrics.count("cache", "miss", misses.len() as u64);

        // Tier 2.
        #[allow(unused_mut)]
        let mut redis_failed: Option<&'static str> = None;
        #[cfg(feature = "redis")]
        if let Some(redis) = &mut self.redis
            && !misses.is_empty()
        {
            let ks: Vec<Arc<str>> = misses.iter().map(|&i| Arc::clone(&keys[i])).collect();
            let t = std::time::Instant::now();
            let res = redis.mget(&ks).await;
            self.metrics
                .redis_latency
                .observe(t.elapsed().as_secs_f64());
            match res {
                Ok(values) => {
                    let (mut hit, mut neg) = (0, 0);
                    let mut still = Vec::new();
                    for (&i, v) in misses.iter().zip(values) {
                        match v {
                            Some(v) => {
                                if v == Lookup::NotFound {
                                    neg += 1;
                                } else {
                                    hit += 1;
                                }
                                self.cache.insert(Arc::clone(&keys[i]), v.clone(), now);
                                out[i] = Some((Ok(v), 1));
                            }
                            None => still.push(i),
                        }
                    }
                    self.metrics.count("redis", "hit", hit);
                    self.metrics.count("redis", "negative_hit", neg);
                    self.metrics.count("redis", "miss", still.len() as u64);
                    misses = still;
                }
                Err(e) => {
                    let (outcome, reason) = match e {
                        redis::RedisError::Timeout => ("timeout", "redis_unavailable"),
                        redis::RedisError::Failed => ("error", "redis_unavailable"),
                        redis::RedisError::Down(cause) => ("error", cause.reason()),
                    };
                    redis_failed = Some(reason);
                    self.metrics.count("redis", outcome, misses.len() as u64);
                }
            }
        }

        // Tier 3.
        let mut answers: Vec<(Arc<str>, Lookup)> = Vec::new();
        match &self.origin {
            OriginTier::None => {
                for &i in &misses {
                    out[i] = Some(if let Some(reason) = redis_failed {
                        (Err(Failure::Redis(reason)), 2)
                    } else {
                        // Redis (or nothing) is the store: a miss there is "not found".
                        self.cache
                            .insert(Arc::clone(&keys[i]), Lookup::NotFound, now);
                        (Ok(Lookup::NotFound), 2)
                    });
                }
            }
            OriginTier::File(table) => {
                let (mut hit, mut miss) = (0, 0);
                for &i in &misses {
                    let v = match table.get(&keys[i]) {
                        Some(v) => {
                            hit += 1;
                            Lookup::Found(Arc::clone(v))
                        }
                        None => {
                            miss += 1;
                            Lookup::NotFound
                        }
                    };
                    self.cache.insert(Arc::clone(&keys[i]), v.clone(), now);
                    answers.push((Arc::clone(&keys[i]), v.clone()));
                    out[i] = Some((Ok(v), 2));
                }
                self.metrics.count("origin", "hit", hit);
                self.metrics.count("origin", "miss", miss);
            }
            OriginTier::Http(client) => {
                let mut tasks = tokio::task::JoinSet::new();
                for &i in &misses {
                    let client = Arc::clone(client);
                    let sem = Arc::clone(&self.semaphore);
                    let key = Arc::clone(&keys[i]);
                    let policy = self.policy;
                    let seed = ((self.partition as u64) << 40)
                        ^ self.lookups_started.fetch_add(1, Ordering::Relaxed);
                    let in_flight = self.metrics.in_flight.clone();
                    let retries = self.metrics.retries.clone();
                    let latency = self.metrics.origin_latency.clone();
                    tasks.spawn(async move {
                        // The permit bounds concurrent origin calls; the timeout starts once
                        // we hold it, so queueing behind `capacity` is not a failure.
                        let _permit = sem.acquire_owned().await.expect("semaphore never closed");
                        in_flight.inc();
                        let t = std::time::Instant::now();
                        let r = tokio::time::timeout(policy.timeout, async {
                            let mut attempt = 0;
                            loop {
                                match client.get(&key).await {
                                    Ok(v) => return Ok(v),
                                    Err(e) if attempt >= policy.retries => {
                                        return Err(Failure::Origin(e));
                                    }
                                    Err(_) => {
                                        retries.inc();
                                        tokio::time::sleep(
                                            policy.delay(attempt, seed ^ u64::from(attempt)),
                                        )
                                        .await;
                                        attempt += 1;
                                    }
                                }
                            }
                        })
                        .await
                        .unwrap_or(Err(Failure::Timeout));
                        latency.observe(t.elapsed().as_secs_f64());
                        in_flight.dec();
                        (i, r)
                    });
                }
                let mut rank = 3;
                while let Some(res) = tasks.join_next().await {
                    let (i, r) = res.map_err(|e| self.fail(format!("lookup task: {e}")))?;
                    let outcome = match &r {
                        Ok(Lookup::Found(_)) => "hit",
                        Ok(Lookup::NotFound) => "miss",
                        Err(Failure::Timeout) => "timeout",
                        Err(_) => "error",
                    };
                    self.metrics.count("origin", outcome, 1);
                    if let Ok(v) = &r {
                        self.cache.insert(Arc::clone(&keys[i]), v.clone(), now);
                        answers.push((Arc::clone(&keys[i]), v.clone()));
                    }
                    out[i] = Some((r, rank));
                    rank += 1;
                }
            }
        }

        // Cache-aside write-back; a failure only costs a later origin call.
        #[cfg(feature = "redis")]
        if let Some(redis) = &mut self.redis
            && !answers.is_empty()
            && redis_failed.is_none()
            && let Err(e) = redis.write_back(&answers).await
        {
            let outcome = match e {
                redis::RedisError::Timeout => "timeout",
                _ => "error",
            };
            self.metrics.count("redis", outcome, answers.len() as u64);
        }
        let _ = answers;
        Ok(out
            .into_iter()
            .map(|o| o.expect("every key resolved by some tier"))
            .collect())
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
