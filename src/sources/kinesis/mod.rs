//! `type = "kinesis"`: reads every shard of a Kinesis data stream.
//!
//! - **Discovery.** ListShards every `discovery_interval` (and at once when a shard ends). A
//!   child shard (after a split or merge) is read only after all of its parents are finished,
//!   i.e. every parent record has been *returned by `poll`*; so records of one partition key
//!   stay in order across a reshard. Finished shards are remembered in the position until
//!   ListShards no longer reports them.
//! - **Position.** Per shard, the sequence number (and KPL sub-sequence number) of the last
//!   record returned; plus the finished shards and the start time. A shard without a position
//!   starts at the configured `start` (`latest` only applies to the shards of a fresh run's
//!   first listing; later shards start at the job's start time, which for them is their
//!   beginning).
//! - **Reading.** GetRecords per shard at most `max_reads_per_second` times a second (Kinesis
//!   allows 5 per shard, shared by all consumers), backing off exponentially on empty reads
//!   (up to `idle_backoff_max`) and on throttling (up to 10 s). An expired iterator is replaced
//!   by one AFTER the last record returned. Due shards are read concurrently; results are
//!   applied only once every read has finished, so dropping `poll` loses nothing.
//! - **KPL.** Aggregated records are split into their user records, sub-sequence numbers
//!   0, 1, …; a restore inside an aggregated record re-reads it AT its sequence number and
//!   skips the sub-records already returned.
//!
//! - **Enhanced fan-out** (`consumer = { type = "efo", name = "…" }`). The consumer is
//!   registered (or an existing one of that name reused) and the source waits until it is
//!   ACTIVE. Each readable shard gets a task holding a SubscribeToShard event stream, started
//!   where polling would start its iterator (so checkpoints are interchangeable between the
//!   two modes). Events go through one bounded channel to `poll`, which buffers their records
//!   exactly as GetRecords pages are buffered (same KPL, sub-sequence and checkpoint path). A
//!   subscription that ends (the service ends each after 5 minutes) or fails is replaced AFTER
//!   the last event's continuation sequence number (failures back off 1 s … 10 s, e.g. while a
//!   replaced subscription is still alive: ResourceInUse). Watchdog: no event within
//!   `stall_timeout` (the service sends one at least every ~5 s, even for an idle shard) →
//!   the subscription is dropped (which cancels it) and replaced. Every replacement counts in
//!   `osprey_kinesis_resubscriptions_total{reason = expired | stalled | error}`. An event
//!   without continuation ends the shard; its children follow by the parent-before-child
//!   rule above. (kinesis-local 0.6.2 never sends that event: against it, EFO does not get
//!   past a closed shard.)
//!
//! Items: `stream` = the partition key (the default record key), `origin` =
//! `{shard id, "<sequence>" or "<sequence>:<sub-sequence>"}`.

pub mod client;
pub mod kpl;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::time::Instant;

use self::client::{
    ApiError, IteratorStart, KinesisApi, KinesisRecord, RecordsPage, SdkKinesis, ShardEvent,
    ShardInfo,
};
use super::{Poll, RawItem, Source};
use crate::config::{ConfigError, Duration};
use crate::core::time::TimeUnit;
use crate::event::Origin;
use crate::{Error, Result, Retry};

/// Records read, per shard.
pub const RECORDS_READ: &str = "osprey_kinesis_records_read_total";
/// Bytes read, per shard.
pub const BYTES_READ: &str = "osprey_kinesis_bytes_read_total";
/// GetRecords calls answered with ProvisionedThroughputExceeded, per shard.
pub const THROTTLES: &str = "osprey_kinesis_read_throttles_total";
/// Shard iterators that expired and were replaced, per shard.
pub const ITERATOR_RESETS: &str = "osprey_kinesis_iterator_resets_total";
/// MillisBehindLatest of the newest GetRecords answer or SubscribeToShard event, per shard.
pub const MILLIS_BEHIND: &str = "osprey_kinesis_millis_behind_latest";
/// Enhanced fan-out subscriptions replaced, per shard and `reason`: `expired` (the service
/// ended it), `stalled` (no event within `stall_timeout`), `error`.
pub const RESUBSCRIPTIONS: &str = "osprey_kinesis_resubscriptions_total";

const COMPONENT: &str = "kinesis";
const THROTTLE_BACKOFF_MIN: StdDuration = StdDuration::from_millis(500);
const THROTTLE_BACKOFF_MAX: StdDuration = StdDuration::from_secs(10);
const ERROR_BACKOFF: StdDuration = StdDuration::from_secs(1);
/// Between DescribeStreamConsumer calls while the consumer is being created.
const CONSUMER_POLL: StdDuration = StdDuration::from_millis(500);
/// Subscription events in flight from all shard tasks to `poll`.
const EVENT_CHANNEL: usize = 8;

/// Where a fresh run starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// The oldest retained record.
    #[default]
    TrimHorizon,
    /// Records put after the job starts.
    Latest,
    /// Records put at or after `start_timestamp`.
    AtTimestamp,
}

/// `type = "kinesis"` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSourceConfig {
    /// Stream name or ARN.
    pub stream: String,
    /// Endpoint override (a local server); else `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Where a fresh run starts: `trim_horizon` (default), `latest` or `at_timestamp`.
    /// After a restore the checkpoint decides.
    #[serde(default)]
    pub start: StartPosition,
    /// RFC 3339 time for `start = "at_timestamp"`.
    pub start_timestamp: Option<String>,
    /// How often to list shards to find new ones. Default 10s.
    #[serde(default = "default_discovery")]
    pub discovery_interval: Duration,
    /// GetRecords calls per shard and second, at most (Kinesis allows 5, shared by all
    /// consumers of the shard). Default 5.
    #[serde(default = "default_reads")]
    pub max_reads_per_second: f64,
    /// Records per GetRecords call (1..=10000). Default 1000.
    #[serde(default = "default_limit")]
    pub records_per_read: i32,
    /// Longest wait between reads of an idle shard. Default 1s.
    #[serde(default = "default_idle")]
    pub idle_backoff_max: Duration,
    /// Largest accepted record; longer ones are dead-lettered. Default 1 MiB.
    #[serde(default = "super::default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// How shards are read: `{ type = "polling" }` (default: GetRecords, throughput shared by
    /// every consumer of the stream) or `{ type = "efo", name = "…" }` (enhanced fan-out:
    /// SubscribeToShard, a dedicated 2 MB/s per shard for this consumer, records pushed as
    /// they arrive). With `efo`, `max_reads_per_second`, `records_per_read` and
    /// `idle_backoff_max` do not apply.
    #[serde(default)]
    pub consumer: ConsumerConfig,
}

/// `source.consumer`: how shards are read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConsumerConfig {
    /// GetRecords on every shard (the default).
    #[default]
    Polling,
    /// Enhanced fan-out (SubscribeToShard).
    Efo(EfoConfig),
}

/// `source.consumer = { type = "efo", … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfoConfig {
    /// Consumer name (1-128 characters of `a-z A-Z 0-9 _ . -`). Registered on the stream when
    /// missing, reused when present; osprey never deregisters it (AWS bills per consumer-shard
    /// hour: remove an unused one with DeregisterStreamConsumer). Give each job its own.
    pub name: String,
    /// Watchdog: a subscription that delivers no event for this long is cancelled and replaced
    /// (the service sends an event at least every ~5 s, even when the shard is idle).
    /// Default 30s.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: Duration,
}

fn default_stall_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_discovery() -> Duration {
    Duration::from_millis(10_000)
}
fn default_reads() -> f64 {
    5.0
}
fn default_limit() -> i32 {
    1000
}
fn default_idle() -> Duration {
    Duration::from_millis(1000)
}

impl KinesisSourceConfig {
    /// Semantic checks.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.stream.is_empty() {
            errors.push(ConfigError::new("source.stream", "must name a stream"));
        }
        match (self.start, &self.start_timestamp) {
            (StartPosition::AtTimestamp, None) => errors.push(ConfigError::new(
                "source.start_timestamp",
                "is required with start = \"at_timestamp\"",
            )),
            (StartPosition::AtTimestamp, Some(t))
                if crate::core::time::parse_time(t, TimeUnit::Millis).is_err() =>
            {
                errors.push(ConfigError::new(
                    "source.start_timestamp",
                    format!("`{t}` is not RFC 3339 time"),
                ))
            }
            (StartPosition::TrimHorizon | StartPosition::Latest, Some(_)) => {
                errors.push(ConfigError::new(
                    "source.start_timestamp",
                    "only applies to start = \"at_timestamp\"",
                ))
            }
            _ => {}
        }
        if !(self.max_reads_per_second.is_finite() && self.max_reads_per_second > 0.0) {
            errors.push(ConfigError::new(
                "source.max_reads_per_second",
                "must be a positive number",
            ));
        }
        if !(1..=10_000).contains(&self.records_per_read) {
            errors.push(ConfigError::new(
                "source.records_per_read",
                "must be between 1 and 10000",
            ));
        }
        if self.discovery_interval.as_std().is_zero() {
            errors.push(ConfigError::new(
                "source.discovery_interval",
                "must be longer than zero",
            ));
        }
        if let ConsumerConfig::Efo(efo) = &self.consumer {
            let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
            if efo.name.is_empty() || efo.name.len() > 128 || !efo.name.chars().all(ok) {
                errors.push(ConfigError::new(
                    "source.consumer.name",
                    "must be 1-128 characters of a-z A-Z 0-9 _ . -",
                ));
            }
            if efo.stall_timeout.as_std().is_zero() {
                errors.push(ConfigError::new(
                    "source.consumer.stall_timeout",
                    "must be longer than zero",
                ));
            }
        }
        errors
    }
}

/// A position in a shard: sequence number and, inside an aggregated record, sub-sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// Sequence number (decimal digits).
    pub seq: String,
    /// Sub-sequence number, for records de-aggregated from a KPL aggregate.
    pub sub: Option<u64>,
}

impl Pos {
    /// Orders positions: sequence numbers numerically (they are decimal strings of up to 128
    /// bits), then sub-sequence numbers.
    pub fn cmp_key(&self) -> (usize, &str, u64) {
        let digits = self.seq.trim_start_matches('0');
        (digits.len(), digits, self.sub.unwrap_or(0))
    }

    fn text(&self) -> String {
        match self.sub {
            Some(s) => format!("{}:{s}", self.seq),
            None => self.seq.clone(),
        }
    }
}

fn after(a: &Pos, b: &Pos) -> bool {
    a.cmp_key() > b.cmp_key()
}

struct Shard {
    id: Arc<str>,
    parents: Vec<String>,
    iterator: Option<String>,
    /// Last record returned by `poll`.
    delivered: Option<Pos>,
    /// Last record buffered (≥ `delivered`).
    read: Option<Pos>,
    buffer: VecDeque<(Pos, RawItem)>,
    /// The iterator ran out: the shard is closed and read to its end.
    ended: bool,
    next_read: Instant,
    empty_backoff: StdDuration,
    throttle_backoff: StdDuration,
    /// Listed by a fresh run's first discovery (where `start = "latest"` applies).
    initial: bool,
    /// Enhanced fan-out: a subscription task runs for this shard.
    subscribed: bool,
}

struct Metrics {
    records: prometheus::IntCounterVec,
    bytes: prometheus::IntCounterVec,
    throttles: prometheus::IntCounterVec,
    resets: prometheus::IntCounterVec,
    behind: prometheus::GaugeVec,
    resubscriptions: prometheus::IntCounterVec,
}

impl Metrics {
    fn new() -> Self {
        let m = crate::metrics::get();
        let l = &["component", "shard"];
        Metrics {
            records: m.labeled_counter(RECORDS_READ, "Kinesis records read, per shard", l),
            bytes: m.labeled_counter(BYTES_READ, "Kinesis bytes read, per shard", l),
            throttles: m.labeled_counter(THROTTLES, "GetRecords calls throttled, per shard", l),
            resets: m.labeled_counter(ITERATOR_RESETS, "Expired shard iterators replaced", l),
            behind: m.operator_gauge(
                MILLIS_BEHIND,
                "MillisBehindLatest of the newest GetRecords answer or subscription event, per shard",
                l,
            ),
            resubscriptions: m.labeled_counter(
                RESUBSCRIPTIONS,
                "Enhanced fan-out subscriptions replaced, per shard and reason",
                &["component", "shard", "reason"],
            ),
        }
    }
}

/// See the module docs.
pub struct KinesisSource {
    cfg: KinesisSourceConfig,
    api: Option<Arc<dyn KinesisApi>>,
    shards: BTreeMap<Arc<str>, Shard>,
    finished: HashSet<String>,
    /// Positions from the checkpoint, applied when discovery lists the shard.
    restored: HashMap<String, Pos>,
    restored_any: bool,
    discovered_once: bool,
    next_discovery: Instant,
    /// The job's start time for `latest` / `at_timestamp` (epoch ms); kept in the position.
    start_ms: Option<i64>,
    min_interval: StdDuration,
    /// Round-robin start for delivery.
    rotate: usize,
    metrics: Metrics,
    /// Enhanced fan-out state (`consumer.type = "efo"`).
    efo: Option<Efo>,
}

/// One subscription event for `poll`.
struct EfoMsg {
    shard: Arc<str>,
    event: ShardEvent,
}

struct Efo {
    cfg: EfoConfig,
    /// Set once the consumer is ACTIVE.
    consumer_arn: Option<String>,
    next_consumer_check: Instant,
    tx: tokio::sync::mpsc::Sender<EfoMsg>,
    rx: tokio::sync::mpsc::Receiver<EfoMsg>,
    /// The shard tasks; dropped (aborted, cancelling their subscriptions) with the source.
    tasks: tokio::task::JoinSet<()>,
    /// Shortest and longest wait before subscribing again after an error (tests shorten it).
    backoff: (StdDuration, StdDuration),
}

impl KinesisSource {
    /// A source that connects on first use.
    pub fn new(cfg: KinesisSourceConfig) -> Self {
        let start_ms = match cfg.start {
            StartPosition::TrimHorizon => None,
            StartPosition::Latest => Some((crate::metrics::now_secs() * 1000.0) as i64),
            StartPosition::AtTimestamp => cfg
                .start_timestamp
                .as_deref()
                .and_then(|t| crate::core::time::parse_time(t, TimeUnit::Millis).ok()),
        };
        let min_interval = StdDuration::from_secs_f64(1.0 / cfg.max_reads_per_second.max(0.001));
        let efo = match &cfg.consumer {
            ConsumerConfig::Polling => None,
            ConsumerConfig::Efo(e) => {
                let (tx, rx) = tokio::sync::mpsc::channel(EVENT_CHANNEL);
                Some(Efo {
                    cfg: e.clone(),
                    consumer_arn: None,
                    next_consumer_check: Instant::now(),
                    tx,
                    rx,
                    tasks: tokio::task::JoinSet::new(),
                    backoff: (ERROR_BACKOFF, THROTTLE_BACKOFF_MAX),
                })
            }
        };
        KinesisSource {
            cfg,
            api: None,
            shards: BTreeMap::new(),
            finished: HashSet::new(),
            restored: HashMap::new(),
            restored_any: false,
            discovered_once: false,
            next_discovery: Instant::now(),
            start_ms,
            min_interval,
            rotate: 0,
            metrics: Metrics::new(),
            efo,
        }
    }

    /// A source over a given client (tests inject faults this way).
    pub fn with_api(cfg: KinesisSourceConfig, api: Arc<dyn KinesisApi>) -> Self {
        let mut s = Self::new(cfg);
        s.api = Some(api);
        s
    }

    async fn api(&mut self) -> Arc<dyn KinesisApi> {
        if let Some(a) = &self.api {
            return Arc::clone(a);
        }
        let a: Arc<dyn KinesisApi> =
            Arc::new(SdkKinesis::new(self.cfg.endpoint_url.as_deref()).await);
        self.api = Some(Arc::clone(&a));
        a
    }

    fn err(&self, message: String, retry: Retry) -> Error {
        Error::Source {
            component: format!("kinesis {}", self.cfg.stream),
            message,
            retry,
        }
    }

    /// Lists shards and adds the new ones.
    async fn discover(&mut self, api: &Arc<dyn KinesisApi>) -> Result<()> {
        let listed = match api.list_shards(&self.cfg.stream).await {
            Ok(l) => l,
            Err(ApiError::NotFound(m)) => {
                return Err(self.err(format!("stream not found: {m}"), Retry::No));
            }
            Err(e) => {
                tracing::warn!(stream = %self.cfg.stream, error = %e, "ListShards failed; retrying.");
                self.next_discovery = Instant::now() + ERROR_BACKOFF;
                return Ok(());
            }
        };
        self.apply_listing(listed);
        self.next_discovery = Instant::now() + self.cfg.discovery_interval.as_std();
        Ok(())
    }

    fn apply_listing(&mut self, listed: Vec<ShardInfo>) {
        let initial = !self.discovered_once && !self.restored_any;
        self.discovered_once = true;
        let ids: HashSet<&str> = listed.iter().map(|s| s.id.as_str()).collect();
        // Finished shards no longer listed are past retention: forget them (an unlisted
        // parent counts as finished).
        self.finished.retain(|id| ids.contains(id.as_str()));
        for s in listed {
            if self.finished.contains(&s.id) || self.shards.contains_key(s.id.as_str()) {
                continue;
            }
            let pos = self.restored.remove(&s.id);
            tracing::info!(stream = %self.cfg.stream, shard = %s.id, parents = ?s.parents, resume = ?pos.as_ref().map(Pos::text), "Found shard.");
            let id: Arc<str> = Arc::from(s.id.as_str());
            self.shards.insert(
                Arc::clone(&id),
                Shard {
                    id,
                    parents: s.parents,
                    iterator: None,
                    delivered: pos.clone(),
                    read: pos,
                    buffer: VecDeque::new(),
                    ended: false,
                    next_read: Instant::now(),
                    empty_backoff: StdDuration::ZERO,
                    throttle_backoff: StdDuration::ZERO,
                    initial,
                    subscribed: false,
                },
            );
        }
    }

    fn readable(&self, shard: &Shard) -> bool {
        shard
            .parents
            .iter()
            .all(|p| !self.shards.contains_key(p.as_str()))
    }

    fn start_of(&self, shard: &Shard) -> IteratorStart {
        match &shard.read {
            Some(Pos { seq, sub: Some(_) }) => IteratorStart::AtSequence(seq.clone()),
            Some(Pos { seq, sub: None }) => IteratorStart::AfterSequence(seq.clone()),
            None if shard.initial && self.cfg.start == StartPosition::Latest => {
                IteratorStart::Latest
            }
            None => match self.start_ms {
                Some(ms) => IteratorStart::AtTimestamp(ms),
                None => IteratorStart::TrimHorizon,
            },
        }
    }

    /// Moves buffered items out, up to `max`, and retires shards read to their end.
    fn take(&mut self, max: usize) -> Vec<RawItem> {
        let mut out = Vec::new();
        let n = self.shards.len();
        if n > 0 {
            let keys: Vec<Arc<str>> = self.shards.keys().cloned().collect();
            self.rotate = (self.rotate + 1) % n;
            for i in 0..n {
                if out.len() >= max {
                    break;
                }
                let Some(shard) = self.shards.get_mut(&keys[(self.rotate + i) % n]) else {
                    continue;
                };
                while out.len() < max {
                    let Some((pos, item)) = shard.buffer.pop_front() else {
                        break;
                    };
                    shard.delivered = Some(pos);
                    out.push(item);
                }
            }
        }
        let done: Vec<Arc<str>> = self
            .shards
            .values()
            .filter(|s| s.ended && s.buffer.is_empty())
            .map(|s| Arc::clone(&s.id))
            .collect();
        for id in done {
            tracing::info!(stream = %self.cfg.stream, shard = %id, "Shard finished.");
            self.shards.remove(&id);
            self.finished.insert(id.to_string());
            // Its children may be listed already; look again soon for those that are not.
            self.next_discovery = self.next_discovery.min(Instant::now());
        }
        out
    }

    /// Buffers the records of a GetRecords page or subscription event: de-aggregated, without
    /// those returned before (a resume inside an aggregate).
    fn buffer_records(
        &mut self,
        id: &Arc<str>,
        records: Vec<KinesisRecord>,
        millis_behind_latest: Option<i64>,
    ) {
        let max_bytes = self.cfg.max_record_bytes;
        let Some(shard) = self.shards.get_mut(id) else {
            return;
        };
        let labels = [COMPONENT, &**id];
        if let Some(ms) = millis_behind_latest {
            self.metrics
                .behind
                .with_label_values(&labels)
                .set(ms as f64);
        }
        let mut bytes = 0u64;
        let mut count = 0u64;
        for r in records {
            bytes += r.data.len() as u64;
            let subs = match kpl::decode(&r.data) {
                Ok(None) => vec![(None, r.partition_key, r.data)],
                Ok(Some(subs)) => subs
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| (Some(i as u64), s.partition_key, s.data))
                    .collect(),
                Err(e) => {
                    // Handed on as it is: the parser dead-letters it with its reason.
                    tracing::warn!(shard = %id, sequence = %r.sequence, error = %e, "Bad aggregated record.");
                    vec![(None, r.partition_key, r.data)]
                }
            };
            for (sub, pk, mut data) in subs {
                let pos = Pos {
                    seq: r.sequence.clone(),
                    sub,
                };
                if shard.read.as_ref().is_some_and(|last| !after(&pos, last)) {
                    continue; // returned before (a resume inside an aggregate)
                }
                count += 1;
                let too_large = (data.len() > max_bytes).then(|| {
                    let len = data.len();
                    data.truncate(max_bytes.min(4096));
                    len
                });
                let item = RawItem {
                    data,
                    stream: Arc::from(pk),
                    origin: Origin {
                        stream: Some(Arc::clone(id)),
                        position: Some(pos.text().into_boxed_str()),
                    },
                    header: false,
                    too_large,
                    record: None,
                };
                shard.read = Some(pos.clone());
                shard.buffer.push_back((pos, item));
            }
        }
        self.metrics
            .records
            .with_label_values(&labels)
            .inc_by(count);
        self.metrics.bytes.with_label_values(&labels).inc_by(bytes);
    }

    fn apply_page(&mut self, id: &Arc<str>, page: RecordsPage) {
        let min_interval = self.min_interval;
        let idle_max = self.cfg.idle_backoff_max.as_std();
        let now = Instant::now();
        let got = !page.records.is_empty();
        self.buffer_records(id, page.records, page.millis_behind_latest);
        let Some(shard) = self.shards.get_mut(id) else {
            return;
        };
        shard.throttle_backoff = StdDuration::ZERO;
        match page.next_iterator {
            Some(it) => shard.iterator = Some(it),
            None => {
                shard.iterator = None;
                shard.ended = true;
            }
        }
        let behind = page.millis_behind_latest.unwrap_or(0) > 0;
        if got || behind {
            shard.empty_backoff = StdDuration::ZERO;
            shard.next_read = now + min_interval;
        } else {
            shard.empty_backoff =
                (shard.empty_backoff * 2).clamp(min_interval, idle_max.max(min_interval));
            shard.next_read = now + shard.empty_backoff;
        }
    }

    fn apply_error(&mut self, id: &Arc<str>, e: ApiError) {
        let labels = [COMPONENT, &**id];
        let Some(shard) = self.shards.get_mut(id) else {
            return;
        };
        let now = Instant::now();
        match e {
            ApiError::Throttled(m) => {
                self.metrics.throttles.with_label_values(&labels).inc();
                shard.throttle_backoff =
                    (shard.throttle_backoff * 2).clamp(THROTTLE_BACKOFF_MIN, THROTTLE_BACKOFF_MAX);
                shard.next_read = now + shard.throttle_backoff;
                tracing::debug!(shard = %id, error = %m, backoff = ?shard.throttle_backoff, "Read throttled.");
            }
            ApiError::ExpiredIterator(m) => {
                self.metrics.resets.with_label_values(&labels).inc();
                tracing::info!(shard = %id, error = %m, "Shard iterator expired; getting a new one after the last record returned.");
                // Nothing is buffered when a shard is read, so `read` is the last record returned.
                shard.iterator = None;
                shard.next_read = now;
            }
            e => {
                tracing::warn!(shard = %id, error = %e, "Reading the shard failed; retrying.");
                shard.next_read = now + ERROR_BACKOFF;
            }
        }
    }
}

/// Why a subscription is replaced (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resubscribe {
    Expired,
    Stalled,
    Error,
}

impl Resubscribe {
    fn label(self) -> &'static str {
        match self {
            Resubscribe::Expired => "expired",
            Resubscribe::Stalled => "stalled",
            Resubscribe::Error => "error",
        }
    }
}

/// One shard's enhanced fan-out reading.
struct SubscriptionTask {
    api: Arc<dyn KinesisApi>,
    consumer_arn: String,
    shard: Arc<str>,
    start: IteratorStart,
    stall_timeout: StdDuration,
    /// Shortest and longest wait before subscribing again after an error.
    backoff: (StdDuration, StdDuration),
    tx: tokio::sync::mpsc::Sender<EfoMsg>,
    resubscriptions: prometheus::IntCounterVec,
}

/// The life of one shard's enhanced fan-out reading: subscribe from `start`, forward events,
/// replace the subscription when it ends, fails or stalls, until the shard ends (an event
/// without continuation) or the source is dropped (the channel closes or the task is aborted).
async fn subscription_task(task: SubscriptionTask) {
    let SubscriptionTask {
        api,
        consumer_arn,
        shard,
        mut start,
        stall_timeout,
        backoff: (backoff_min, backoff_max),
        tx,
        resubscriptions,
    } = task;
    let mut backoff = StdDuration::ZERO;
    let mut first = true;
    let mut why = Resubscribe::Expired;
    loop {
        if !first {
            resubscriptions
                .with_label_values(&[COMPONENT, &shard, why.label()])
                .inc();
        }
        first = false;
        if why == Resubscribe::Error {
            tokio::time::sleep(backoff).await;
        }
        let mut sub = match api.subscribe(&consumer_arn, &shard, &start).await {
            Ok(sub) => sub,
            Err(e) => {
                backoff = (backoff * 2).clamp(backoff_min, backoff_max);
                why = Resubscribe::Error;
                tracing::warn!(%shard, error = %e, ?backoff, "SubscribeToShard failed; retrying.");
                continue;
            }
        };
        tracing::debug!(%shard, ?start, "Subscribed.");
        why = loop {
            match tokio::time::timeout(stall_timeout, sub.next_event()).await {
                Err(_) => {
                    tracing::warn!(%shard, ?stall_timeout, "No subscription event within the stall timeout; subscribing again.");
                    break Resubscribe::Stalled;
                }
                Ok(Ok(None)) => {
                    tracing::debug!(%shard, "Subscription ended; subscribing again.");
                    break Resubscribe::Expired;
                }
                Ok(Err(e)) => {
                    backoff = (backoff * 2).clamp(backoff_min, backoff_max);
                    tracing::warn!(%shard, error = %e, ?backoff, "Subscription failed; subscribing again.");
                    break Resubscribe::Error;
                }
                Ok(Ok(Some(event))) => {
                    backoff = StdDuration::ZERO;
                    let end = event.continuation.is_none();
                    if let Some(c) = &event.continuation {
                        start = IteratorStart::AfterSequence(c.clone());
                    }
                    let msg = EfoMsg {
                        shard: Arc::clone(&shard),
                        event,
                    };
                    if tx.send(msg).await.is_err() || end {
                        return;
                    }
                }
            }
        };
        // Dropping the subscription cancels it before the next one starts.
        drop(sub);
    }
}

impl KinesisSource {
    /// `poll` for enhanced fan-out, after discovery and with nothing buffered.
    async fn poll_efo(&mut self, api: &Arc<dyn KinesisApi>, max: usize) -> Result<Poll> {
        let Some(efo) = self.efo.as_mut() else {
            return Ok(Poll::Idle(StdDuration::from_millis(1)));
        };
        // A task that panicked stops the source.
        while let Some(r) = efo.tasks.try_join_next() {
            if let Err(e) = r {
                let message = format!("subscription task failed: {e}");
                return Err(self.err(message, Retry::No));
            }
        }
        let arn = match &efo.consumer_arn {
            Some(arn) => arn.clone(),
            None => {
                let now = Instant::now();
                if now < efo.next_consumer_check {
                    let wait = efo.next_consumer_check - now;
                    return Ok(Poll::Idle(wait.min(StdDuration::from_secs(1))));
                }
                match api.consumer(&self.cfg.stream, &efo.cfg.name).await {
                    Ok(c) if c.active => {
                        tracing::info!(stream = %self.cfg.stream, consumer = %c.arn, "Enhanced fan-out consumer is active.");
                        efo.consumer_arn = Some(c.arn.clone());
                        c.arn
                    }
                    Ok(c) => {
                        tracing::info!(stream = %self.cfg.stream, consumer = %c.arn, "Waiting for the enhanced fan-out consumer to become active.");
                        efo.next_consumer_check = now + CONSUMER_POLL;
                        return Ok(Poll::Idle(CONSUMER_POLL));
                    }
                    Err(e) => {
                        tracing::warn!(stream = %self.cfg.stream, consumer = %efo.cfg.name, error = %e, "Registering or describing the enhanced fan-out consumer failed; retrying.");
                        efo.next_consumer_check = now + ERROR_BACKOFF;
                        return Ok(Poll::Idle(ERROR_BACKOFF));
                    }
                }
            }
        };
        // Subscribe every readable shard that has no subscription yet.
        let todo: Vec<(Arc<str>, IteratorStart)> = self
            .shards
            .values()
            .filter(|s| !s.ended && !s.subscribed && self.readable(s))
            .map(|s| (Arc::clone(&s.id), self.start_of(s)))
            .collect();
        if let Some(efo) = self.efo.as_mut() {
            for (id, start) in todo {
                if let Some(s) = self.shards.get_mut(&id) {
                    s.subscribed = true;
                }
                tracing::info!(stream = %self.cfg.stream, shard = %id, ?start, "Subscribing to shard.");
                efo.tasks.spawn(subscription_task(SubscriptionTask {
                    api: Arc::clone(api),
                    consumer_arn: arn.clone(),
                    shard: id,
                    start,
                    stall_timeout: efo.cfg.stall_timeout.as_std(),
                    backoff: efo.backoff,
                    tx: efo.tx.clone(),
                    resubscriptions: self.metrics.resubscriptions.clone(),
                }));
            }
        }
        // Apply queued events until one has records to hand on.
        while let Some(msg) = self.efo.as_mut().and_then(|e| e.rx.try_recv().ok()) {
            self.apply_event(msg);
            let items = self.take(max);
            if !items.is_empty() {
                return Ok(Poll::Items(items));
            }
        }
        // Wait for the next event (cancel-safe: `recv` loses nothing when dropped), at most
        // until the next discovery.
        let now = Instant::now();
        let wait = self
            .next_discovery
            .saturating_duration_since(now)
            .clamp(StdDuration::from_millis(1), StdDuration::from_secs(1));
        let Some(efo) = self.efo.as_mut() else {
            return Ok(Poll::Idle(wait));
        };
        if let Ok(Some(msg)) = tokio::time::timeout(wait, efo.rx.recv()).await {
            self.apply_event(msg);
            let items = self.take(max);
            if !items.is_empty() {
                return Ok(Poll::Items(items));
            }
        }
        Ok(Poll::Idle(StdDuration::from_millis(1)))
    }

    fn apply_event(&mut self, msg: EfoMsg) {
        let EfoMsg { shard: id, event } = msg;
        self.buffer_records(&id, event.records, Some(event.millis_behind_latest));
        if event.continuation.is_none() {
            if let Some(s) = self.shards.get_mut(&id) {
                tracing::info!(shard = %id, children = ?event.child_shards, "Subscription reached the end of the shard.");
                s.ended = true;
                s.subscribed = false;
            }
            // The children: list them now rather than at the next discovery interval.
            if !event.child_shards.is_empty() {
                self.next_discovery = Instant::now();
            }
        }
    }
}

type FetchResult = (
    Arc<str>,
    Option<String>,
    std::result::Result<RecordsPage, ApiError>,
);

#[async_trait]
impl Source for KinesisSource {
    async fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let bad = |what: &str| Error::Source {
            component: "kinesis".into(),
            message: format!("bad checkpoint position ({what}): {position}"),
            retry: Retry::No,
        };
        if let Some(shards) = position.get("shards") {
            let map = shards.as_object().ok_or_else(|| bad("shards"))?;
            for (id, p) in map {
                let seq = p
                    .get("seq")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| bad("seq"))?;
                let sub = p.get("sub").and_then(serde_json::Value::as_u64);
                self.restored.insert(
                    id.clone(),
                    Pos {
                        seq: seq.to_string(),
                        sub,
                    },
                );
            }
        }
        if let Some(f) = position.get("finished") {
            let list = f.as_array().ok_or_else(|| bad("finished"))?;
            for id in list {
                self.finished
                    .insert(id.as_str().ok_or_else(|| bad("finished"))?.to_string());
            }
        }
        if let Some(ms) = position.get("start_ms").and_then(serde_json::Value::as_i64) {
            self.start_ms = Some(ms);
        } else if position.get("shards").is_some() {
            self.start_ms = None;
        }
        self.restored_any = true;
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Poll> {
        let api = self.api().await;
        if Instant::now() >= self.next_discovery {
            self.discover(&api).await?;
        }
        let items = self.take(max.max(1));
        if !items.is_empty() {
            return Ok(Poll::Items(items));
        }
        if self.efo.is_some() {
            return self.poll_efo(&api, max.max(1)).await;
        }
        let now = Instant::now();
        let due: Vec<(Arc<str>, Option<String>, IteratorStart)> = self
            .shards
            .values()
            .filter(|s| !s.ended && s.buffer.is_empty() && s.next_read <= now && self.readable(s))
            .map(|s| (Arc::clone(&s.id), s.iterator.clone(), self.start_of(s)))
            .collect();
        if !due.is_empty() {
            let mut set = tokio::task::JoinSet::new();
            for (id, iterator, start) in due {
                let api = Arc::clone(&api);
                let stream = self.cfg.stream.clone();
                let limit = self.cfg.records_per_read;
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
            // Cancel-safe: nothing is applied until every read has returned.
            let mut results: Vec<FetchResult> = Vec::new();
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(r) => results.push(r),
                    Err(e) => return Err(self.err(format!("read task failed: {e}"), Retry::No)),
                }
            }
            for (id, it, page) in results {
                if let Some(s) = self.shards.get_mut(&id) {
                    s.iterator = it;
                }
                match page {
                    Ok(p) => self.apply_page(&id, p),
                    Err(e) => self.apply_error(&id, e),
                }
            }
            let items = self.take(max.max(1));
            if !items.is_empty() {
                return Ok(Poll::Items(items));
            }
        }
        // Nothing to return: sleep until the next shard is due or the next discovery.
        let now = Instant::now();
        let next = self
            .shards
            .values()
            .filter(|s| !s.ended && self.readable(s))
            .map(|s| s.next_read)
            .chain(std::iter::once(self.next_discovery))
            .min()
            .unwrap_or(now);
        let wait = next
            .saturating_duration_since(now)
            .clamp(StdDuration::from_millis(1), StdDuration::from_secs(1));
        Ok(Poll::Idle(wait))
    }

    fn position(&self) -> serde_json::Value {
        let mut shards = serde_json::Map::new();
        for s in self.shards.values() {
            if let Some(p) = &s.delivered {
                let mut o = serde_json::Map::new();
                o.insert("seq".into(), p.seq.clone().into());
                if let Some(sub) = p.sub {
                    o.insert("sub".into(), sub.into());
                }
                shards.insert(s.id.to_string(), o.into());
            }
        }
        // Restored positions of shards not listed yet stay in the checkpoint.
        for (id, p) in &self.restored {
            let mut o = serde_json::Map::new();
            o.insert("seq".into(), p.seq.clone().into());
            if let Some(sub) = p.sub {
                o.insert("sub".into(), sub.into());
            }
            shards.insert(id.clone(), o.into());
        }
        let mut finished: Vec<&String> = self.finished.iter().collect();
        finished.sort();
        let mut pos = serde_json::json!({ "shards": shards, "finished": finished });
        if let Some(ms) = self.start_ms {
            pos["start_ms"] = ms.into();
        }
        pos
    }
}
