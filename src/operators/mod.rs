//! Operators: the per-partition processing chain.
//!
//! One instance per (operator, partition), driven by that partition's task: never called
//! concurrently. The operators of a partition are chained in the task, so a record crosses
//! no channel between operators (Flink's operator chaining).

#[cfg(feature = "onnx")]
pub mod classify;
pub mod enrich;
pub mod filter;
pub mod kit;
pub mod matrix_profile;
pub mod rcf;
pub mod stats;

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::Result;
use crate::core::{Batch, ConfigError, RecordConfig};

pub use crate::core::{Barrier, DeadLetter};
pub use kit::{BuildContext, Context, MetricsScope, Resources, TableRef, TableSpec, Tables};

/// See the module docs.
#[async_trait]
pub trait Operator: Send + 'static {
    /// Stable snake_case name: metrics label and state-table prefix. Never rename.
    fn name(&self) -> &str;

    /// The state tables this instance keeps, in [`TableRef`] order (`TableRef::new(0)` is the
    /// first). The runtime opens them before [`Operator::on_start`], swaps them into
    /// [`Context::tables`] for every call, and flushes their dirty entries after
    /// [`Operator::on_checkpoint`]. Called once, after `build`.
    fn tables(&self) -> Vec<TableSpec> {
        Vec::new()
    }

    /// Timer for window flushes and TTL sweeps. `None`: no `on_tick` calls.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Called once, after state is restored and its tables are open, before the first batch.
    async fn on_start(&mut self, _cx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// Required. Consumes a batch and pushes results to `out`, in order. A bad record is
    /// dead-lettered through `cx`, never an `Err`; `Err` stops the job. The runtime counts the
    /// records in and out.
    async fn process(&mut self, batch: Batch, cx: &mut Context, out: &mut Batch) -> Result<()>;

    /// Called every `tick_interval`.
    async fn on_tick(&mut self, _cx: &mut Context, _out: &mut Batch) -> Result<()> {
        Ok(())
    }

    /// A barrier arrived, before [`Operator::on_checkpoint`]: emit what must not stay in
    /// flight across the checkpoint (a batching operator classifies its pending images here,
    /// so it needs no state for them). The output goes downstream before the barrier.
    async fn on_barrier(
        &mut self,
        _barrier: Barrier,
        _cx: &mut Context,
        _out: &mut Batch,
    ) -> Result<()> {
        Ok(())
    }

    /// A barrier: put everything needed to resume into `cx.writes` beyond the declared tables,
    /// which the runtime flushes itself (RNG state, in-flight work). Called after every record
    /// before the barrier was processed.
    async fn on_checkpoint(&mut self, _barrier: Barrier, _cx: &mut Context) -> Result<()> {
        Ok(())
    }

    /// Graceful stop or end of input: drain in-flight work and flush partial windows.
    async fn on_close(&mut self, _cx: &mut Context, _out: &mut Batch) -> Result<()> {
        Ok(())
    }
}

/// The configured operator (closed set; `type` selects the variant).
#[derive(Debug, Clone, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case")]
pub enum OperatorConfig {
    /// Per-key running count, mean, standard deviation, min and max.
    Stats(stats::StatsConfig),
    /// Left-discord anomaly detection (streaming left matrix profile).
    Discord(matrix_profile::DiscordConfig),
    /// Random Cut Forest anomaly scores.
    Rcf(rcf::RcfConfig),
    /// Keeps records where a boolean field is true.
    Filter(filter::FilterConfig),
    /// Reference data merged into each record through cache tiers (Redis, HTTP, files).
    Enrich(Box<enrich::config::EnrichConfig>),
    /// Image classification with an ONNX model, in processing-time windows.
    #[cfg(feature = "onnx")]
    ClassifyImage(classify::config::ClassifyConfig),
}
crate::core::config::tagged!(OperatorConfig, "type");

impl OperatorConfig {
    /// The variant's [`OperatorSpec`]: the one `match` over operator types.
    pub fn spec(&self) -> &dyn OperatorSpec {
        match self {
            OperatorConfig::Stats(c) => c,
            OperatorConfig::Discord(c) => c,
            OperatorConfig::Rcf(c) => c,
            OperatorConfig::Filter(c) => c,
            OperatorConfig::Enrich(c) => c.as_ref(),
            #[cfg(feature = "onnx")]
            OperatorConfig::ClassifyImage(c) => c,
        }
    }

    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        self.spec().type_name()
    }

    /// The instance name (its `name` field, or the type).
    pub fn name(&self) -> &str {
        self.spec().name()
    }

    /// Semantic checks (field paths relative to this operator). `values` are the job's
    /// effective value fields (generator defaults included).
    pub fn validate(&self, record: &RecordConfig, values: &[String]) -> Vec<ConfigError> {
        self.spec().validate(record, values)
    }

    /// Names of the fields this operator appends to records.
    pub fn output_fields(&self) -> Vec<String> {
        self.spec().output_fields()
    }

    /// Builds the instance for one partition.
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Operator>> {
        self.spec().build(cx)
    }
}

/// What every operator's configuration answers; [`OperatorConfig::spec`] picks the variant's.
/// Adding an operator is a folder (or file) implementing this and [`Operator`], plus its
/// variant in [`OperatorConfig`] and one arm in `spec`.
pub trait OperatorSpec: Send + Sync {
    /// The `type` tag.
    fn type_name(&self) -> &'static str;
    /// The instance name: its `name` field, or the type.
    fn name(&self) -> &str;
    /// Semantic checks, field paths relative to the operator. `values` are the job's
    /// effective value fields.
    fn validate(&self, record: &RecordConfig, values: &[String]) -> Vec<ConfigError>;
    /// Names of the fields the operator appends to records (for collision checks).
    fn output_fields(&self) -> Vec<String> {
        Vec::new()
    }
    /// Builds the instance for one partition.
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Operator>>;
}
