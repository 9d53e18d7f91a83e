//! Amazon Kinesis Data Streams: the `type = "kinesis"` source, which reads every shard of a
//! stream, the `type = "kinesis"` sink (PutRecords, [`sink`]) and `osprey produce`
//! ([`produce`]).
//!
//! Files: [`config`] (the job file's settings), [`client`] (the API slice, behind a trait),
//! [`kpl`] (aggregated records), [`producer`] (batched PutRecords), [`shards`] (pure shard bookkeeping), `polling` (GetRecords),
//! `efo` (SubscribeToShard tasks), [`source`] (the source, choosing between the two).
//!
//! # The source
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
pub mod config;
mod efo;
pub mod kpl;
mod polling;
pub mod produce;
pub mod producer;
pub mod shards;
pub mod sink;
pub mod source;

#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use client::{KinesisApi, SdkKinesis};
pub use config::{
    ConsumerConfig, EfoConfig, KinesisSinkConfig, KinesisSourceConfig, StartPosition,
};
pub use sink::{KinesisSink, Producer, Pushed};
pub use source::KinesisSource;

use crate::{Error, Retry};

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

/// The `component` label of the source's metrics.
const COMPONENT: &str = "kinesis";

/// The source's metrics, registered once per source.
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

    /// Counts what a GetRecords page or subscription event added to shard `id`'s buffer
    /// (`None`: the shard is gone).
    fn read(&self, id: &Arc<str>, buffered: Option<shards::Buffered>, behind: Option<i64>) {
        let Some(b) = buffered else { return };
        let labels = [COMPONENT, &**id];
        if let Some(ms) = behind {
            self.behind.with_label_values(&labels).set(ms as f64);
        }
        self.records.with_label_values(&labels).inc_by(b.records);
        self.bytes.with_label_values(&labels).inc_by(b.bytes);
    }
}

/// A source error naming the stream.
fn error(stream: &str, message: String, retry: Retry) -> Error {
    Error::Source {
        component: format!("kinesis {stream}"),
        message,
        retry,
    }
}
