//! Prometheus metrics: names, the registry and the HTTP endpoint (`/metrics`, `/healthz`,
//! `/readyz`).
//!
//! Every name is a constant here; call sites use the handles in [`Metrics`], never raw names.
//! Labels are limited to `component`, `operator`, `partition` and a bounded `reason`, never a
//! record key: a per-key label would grow without bound.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

mod server;

pub use server::{Health, serve};

/// Records read by a source.
pub const SOURCE_RECORDS: &str = "osprey_source_records_total";
/// Bytes read by a source.
pub const SOURCE_BYTES: &str = "osprey_source_bytes_total";
/// Polls that found the source failing, by `component` and `kind` (`access_denied`,
/// `not_found`, `unavailable`); `/readyz` answers 503 meanwhile (see `connectors::Source`).
pub const SOURCE_ERRORS: &str = "osprey_source_errors_total";
/// Keyed-state entries deleted because their TTL passed, by `partition`.
pub const STATE_EXPIRED: &str = "osprey_state_expired_total";
/// Records entering an operator.
pub const OPERATOR_RECORDS_IN: &str = "osprey_operator_records_in_total";
/// Records leaving an operator.
pub const OPERATOR_RECORDS_OUT: &str = "osprey_operator_records_out_total";
/// Records written by a sink.
pub const SINK_RECORDS: &str = "osprey_sink_records_total";
/// Records sent to the dead-letter sink, by component and reason.
pub const DEAD_LETTER_RECORDS: &str = "osprey_dead_letter_records_total";
/// Errors while processing records (each also dead-lettered or counted elsewhere).
pub const PROCESSING_ERRORS: &str = "osprey_processing_errors_total";
/// Completed checkpoints.
pub const CHECKPOINTS: &str = "osprey_checkpoints_total";
/// Failed checkpoints.
pub const CHECKPOINT_FAILURES: &str = "osprey_checkpoint_failures_total";
/// Checkpoint duration, from barrier injection to publication.
pub const CHECKPOINT_DURATION: &str = "osprey_checkpoint_duration_seconds";
/// Size of the newest checkpoint.
pub const CHECKPOINT_SIZE: &str = "osprey_checkpoint_size_bytes";
/// Unix time of the newest completed checkpoint.
pub const CHECKPOINT_LAST_SUCCESS: &str = "osprey_checkpoint_last_success_timestamp_seconds";
/// Seconds since the newest completed checkpoint (computed at scrape time).
pub const CHECKPOINT_AGE: &str = "osprey_checkpoint_age_seconds";
/// Configured checkpoint interval.
pub const CHECKPOINT_INTERVAL: &str = "osprey_checkpoint_interval_seconds";
/// Epoch of the newest completed checkpoint.
pub const CHECKPOINT_EPOCH: &str = "osprey_checkpoint_epoch";
/// Approximate live state size.
pub const STATE_SIZE: &str = "osprey_state_size_bytes";
/// Records waiting in a partition's input channel.
pub const CHANNEL_FILL: &str = "osprey_channel_fill_records";
/// Capacity of a partition's input channel.
pub const CHANNEL_CAPACITY: &str = "osprey_channel_capacity_records";
/// 1 once the job has restored its state and started reading.
pub const READY: &str = "osprey_ready";
/// Build information (always 1).
pub const BUILD_INFO: &str = "osprey_build_info";

/// Every metric handle.
pub struct Metrics {
    /// The registry served at `/metrics`.
    pub registry: Registry,
    /// See [`SOURCE_RECORDS`].
    pub source_records: IntCounterVec,
    /// See [`SOURCE_BYTES`].
    pub source_bytes: IntCounterVec,
    /// See [`OPERATOR_RECORDS_IN`].
    pub operator_in: IntCounterVec,
    /// See [`OPERATOR_RECORDS_OUT`].
    pub operator_out: IntCounterVec,
    /// See [`SINK_RECORDS`].
    pub sink_records: IntCounterVec,
    /// See [`DEAD_LETTER_RECORDS`].
    pub dead_letter: IntCounterVec,
    /// See [`PROCESSING_ERRORS`].
    pub processing_errors: IntCounterVec,
    /// See [`CHECKPOINTS`].
    pub checkpoints: IntCounter,
    /// See [`CHECKPOINT_FAILURES`].
    pub checkpoint_failures: IntCounter,
    /// See [`CHECKPOINT_DURATION`].
    pub checkpoint_duration: Histogram,
    /// See [`CHECKPOINT_SIZE`].
    pub checkpoint_size: IntGauge,
    /// See [`CHECKPOINT_LAST_SUCCESS`].
    pub checkpoint_last_success: Gauge,
    /// See [`CHECKPOINT_AGE`].
    pub checkpoint_age: Gauge,
    /// See [`CHECKPOINT_INTERVAL`].
    pub checkpoint_interval: Gauge,
    /// See [`CHECKPOINT_EPOCH`].
    pub checkpoint_epoch: IntGauge,
    /// See [`STATE_SIZE`].
    pub state_size: IntGauge,
    /// See [`CHANNEL_FILL`].
    pub channel_fill: IntGaugeVec,
    /// See [`CHANNEL_CAPACITY`].
    pub channel_capacity: IntGaugeVec,
    /// See [`READY`].
    pub ready: IntGauge,
    /// Generic per-operator counters registered by operators (anomalies, points scored …).
    pub operator_counters: std::sync::Mutex<std::collections::HashMap<String, IntCounterVec>>,
    /// Generic per-operator histograms registered by operators (scores, latencies …).
    pub operator_histograms: std::sync::Mutex<std::collections::HashMap<String, HistogramVec>>,
    /// Generic per-operator gauges registered by operators.
    pub operator_gauges: std::sync::Mutex<std::collections::HashMap<String, GaugeVec>>,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registered once");
        let build = IntGaugeVec::new(
            Opts::new(BUILD_INFO, "osprey build information"),
            &["version"],
        )
        .expect("valid metric");
        r.register(Box::new(build.clone()))
            .expect("metric registered once");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let fgauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let gauge_vec = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["partition"]).expect("valid metric");
            r.register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let checkpoint_duration = Histogram::with_opts(
            HistogramOpts::new(
                CHECKPOINT_DURATION,
                "Time from barrier injection to a published checkpoint",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(checkpoint_duration.clone()))
            .expect("metric registered once");
        let checkpoints =
            IntCounter::new(CHECKPOINTS, "Completed checkpoints").expect("valid metric");
        r.register(Box::new(checkpoints.clone()))
            .expect("metric registered once");
        let checkpoint_failures =
            IntCounter::new(CHECKPOINT_FAILURES, "Failed checkpoints").expect("valid metric");
        r.register(Box::new(checkpoint_failures.clone()))
            .expect("metric registered once");
        Metrics {
            source_records: counter(
                &r,
                SOURCE_RECORDS,
                "Records read by the source",
                &["component"],
            ),
            source_bytes: counter(&r, SOURCE_BYTES, "Bytes read by the source", &["component"]),
            operator_in: counter(
                &r,
                OPERATOR_RECORDS_IN,
                "Records entering an operator",
                &["operator", "partition"],
            ),
            operator_out: counter(
                &r,
                OPERATOR_RECORDS_OUT,
                "Records leaving an operator",
                &["operator", "partition"],
            ),
            sink_records: counter(
                &r,
                SINK_RECORDS,
                "Records written by a sink",
                &["component"],
            ),
            dead_letter: counter(
                &r,
                DEAD_LETTER_RECORDS,
                "Records sent to the dead-letter sink",
                &["component", "reason"],
            ),
            processing_errors: counter(
                &r,
                PROCESSING_ERRORS,
                "Errors while processing records",
                &["component", "reason"],
            ),
            checkpoints,
            checkpoint_failures,
            checkpoint_duration,
            checkpoint_size: gauge(CHECKPOINT_SIZE, "Bytes of the newest checkpoint"),
            checkpoint_last_success: fgauge(
                CHECKPOINT_LAST_SUCCESS,
                "Unix time of the newest completed checkpoint",
            ),
            checkpoint_age: fgauge(
                CHECKPOINT_AGE,
                "Seconds since the newest completed checkpoint",
            ),
            checkpoint_interval: fgauge(CHECKPOINT_INTERVAL, "Configured checkpoint interval"),
            checkpoint_epoch: gauge(CHECKPOINT_EPOCH, "Epoch of the newest completed checkpoint"),
            state_size: gauge(STATE_SIZE, "Approximate live keyed-state size"),
            channel_fill: gauge_vec(
                CHANNEL_FILL,
                "Records waiting in a partition's input channel",
            ),
            channel_capacity: gauge_vec(
                CHANNEL_CAPACITY,
                "Capacity of a partition's input channel",
            ),
            ready: gauge(READY, "1 once state is restored and the source is reading"),
            operator_counters: Default::default(),
            operator_histograms: Default::default(),
            operator_gauges: Default::default(),
            registry: r,
        }
    }

    /// A per-operator counter named `name` with labels `operator` and `partition`, registered
    /// on first use. Operators call this once at build time and keep the handle.
    pub fn operator_counter(&self, name: &'static str, help: &str) -> IntCounterVec {
        let mut map = self
            .operator_counters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| counter(&self.registry, name, help, &["operator", "partition"]))
            .clone()
    }

    /// A per-operator counter with labels `operator`, `partition` and `extra` (each with a
    /// small fixed set of values, such as a lookup tier and outcome), registered on first use.
    pub fn operator_counter_with(
        &self,
        name: &'static str,
        help: &str,
        extra: &[&str],
    ) -> IntCounterVec {
        let mut labels = vec!["operator", "partition"];
        labels.extend_from_slice(extra);
        self.labeled_counter(name, help, &labels)
    }

    /// A per-operator counter with a bounded `reason` label (failures by reason), registered
    /// on first use. Labels: `operator`, `partition`, `reason`.
    pub fn operator_reason_counter(&self, name: &'static str, help: &str) -> IntCounterVec {
        self.operator_counter_with(name, help, &["reason"])
    }

    /// A counter with the given labels (bounded ones only), registered on first use. For
    /// components whose natural label is not a partition, such as a Kinesis shard.
    pub fn labeled_counter(
        &self,
        name: &'static str,
        help: &str,
        labels: &[&str],
    ) -> IntCounterVec {
        let mut map = self
            .operator_counters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| counter(&self.registry, name, help, labels))
            .clone()
    }

    /// A per-operator histogram, registered on first use.
    pub fn operator_histogram(
        &self,
        name: &'static str,
        help: &str,
        buckets: Vec<f64>,
    ) -> HistogramVec {
        let mut map = self
            .operator_histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets),
                    &["operator"],
                )
                .expect("valid metric");
                self.registry
                    .register(Box::new(h.clone()))
                    .expect("metric registered once");
                h
            })
            .clone()
    }

    /// A per-operator gauge, registered on first use.
    pub fn operator_gauge(&self, name: &'static str, help: &str, labels: &[&str]) -> GaugeVec {
        let mut map = self
            .operator_gauges
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(name.to_string())
            .or_insert_with(|| {
                let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
                self.registry
                    .register(Box::new(g.clone()))
                    .expect("metric registered once");
                g
            })
            .clone()
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let last = self.checkpoint_last_success.get();
        if last > 0.0 {
            self.checkpoint_age.set((now_secs() - last).max(0.0));
        }
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

/// Unix time in seconds.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Bytes the newest checkpoint sent to its store (0 for a local directory).
pub const CHECKPOINT_UPLOADED_BYTES: &str = "osprey_checkpoint_uploaded_bytes";
/// Bytes sent to the checkpoint store over the process's life.
pub const CHECKPOINT_UPLOADED_BYTES_TOTAL: &str = "osprey_checkpoint_uploaded_bytes_total";
/// Files sent to the checkpoint store.
pub const CHECKPOINT_FILES_UPLOADED: &str = "osprey_checkpoint_files_uploaded_total";
/// Files a checkpoint shares with an earlier one (not sent again).
pub const CHECKPOINT_FILES_REUSED: &str = "osprey_checkpoint_files_reused_total";
/// Time to save a snapshot to the checkpoint store (upload, manifest).
pub const CHECKPOINT_UPLOAD_DURATION: &str = "osprey_checkpoint_upload_duration_seconds";
/// Objects (or directories) retention deleted from the checkpoint store.
pub const CHECKPOINT_GC_DELETED: &str = "osprey_checkpoint_gc_deleted_total";
/// Time the start-up restore took to fetch its checkpoint.
pub const RESTORE_DURATION: &str = "osprey_restore_duration_seconds";
/// Bytes the start-up restore downloaded.
pub const RESTORE_BYTES: &str = "osprey_restore_bytes";

/// The checkpoint store's metrics (registered in [`get`]'s registry on first use).
pub struct StoreMetrics {
    /// See [`CHECKPOINT_UPLOADED_BYTES`].
    pub uploaded_bytes: IntGauge,
    /// See [`CHECKPOINT_UPLOADED_BYTES_TOTAL`].
    pub uploaded_bytes_total: IntCounter,
    /// See [`CHECKPOINT_FILES_UPLOADED`].
    pub files_uploaded: IntCounter,
    /// See [`CHECKPOINT_FILES_REUSED`].
    pub files_reused: IntCounter,
    /// See [`CHECKPOINT_UPLOAD_DURATION`].
    pub upload_duration: Histogram,
    /// See [`CHECKPOINT_GC_DELETED`].
    pub gc_deleted: IntCounter,
    /// See [`RESTORE_DURATION`].
    pub restore_duration: Gauge,
    /// See [`RESTORE_BYTES`].
    pub restore_bytes: IntGauge,
}

/// The process-wide checkpoint-store metrics.
pub fn store() -> &'static StoreMetrics {
    static STORE: LazyLock<StoreMetrics> = LazyLock::new(|| {
        let r = &get().registry;
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            r.register(c).expect("metric registered once");
        };
        let int_counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let upload_duration = Histogram::with_opts(
            HistogramOpts::new(
                CHECKPOINT_UPLOAD_DURATION,
                "Time to save a snapshot to the checkpoint store",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
            ]),
        )
        .expect("valid metric");
        reg(Box::new(upload_duration.clone()));
        let restore_duration = Gauge::new(
            RESTORE_DURATION,
            "Time the restore took to fetch its checkpoint",
        )
        .expect("valid metric");
        reg(Box::new(restore_duration.clone()));
        StoreMetrics {
            uploaded_bytes: int_gauge(
                CHECKPOINT_UPLOADED_BYTES,
                "Bytes the newest checkpoint sent to its store",
            ),
            uploaded_bytes_total: int_counter(
                CHECKPOINT_UPLOADED_BYTES_TOTAL,
                "Bytes sent to the checkpoint store",
            ),
            files_uploaded: int_counter(
                CHECKPOINT_FILES_UPLOADED,
                "Files sent to the checkpoint store",
            ),
            files_reused: int_counter(
                CHECKPOINT_FILES_REUSED,
                "Files a checkpoint shares with an earlier one",
            ),
            upload_duration,
            gc_deleted: int_counter(
                CHECKPOINT_GC_DELETED,
                "Objects retention deleted from the checkpoint store",
            ),
            restore_duration,
            restore_bytes: int_gauge(RESTORE_BYTES, "Bytes the restore downloaded"),
        }
    });
    &STORE
}
