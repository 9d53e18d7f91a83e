//! The enrich operator's metric names and per-instance series.

use prometheus::{Gauge, Histogram, IntCounter};

use crate::operators::MetricsScope;

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

pub(super) struct Metrics {
    pub(super) lookups: prometheus::IntCounterVec,
    pub(super) labels: [String; 2],
    pub(super) retries: IntCounter,
    pub(super) fallbacks: IntCounter,
    pub(super) in_flight: Gauge,
    pub(super) redis_latency: Histogram,
    pub(super) origin_latency: Histogram,
    pub(super) batch_latency: Histogram,
    pub(super) table_entries: Gauge,
    pub(super) table_age: Gauge,
}

impl Metrics {
    pub(super) fn new(scope: &MetricsScope) -> Self {
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

    pub(super) fn count(&self, tier: &str, outcome: &str, n: u64) {
        if n > 0 {
            self.lookups
                .with_label_values(&[&self.labels[0], &self.labels[1], tier, outcome])
                .inc_by(n);
        }
    }
}
