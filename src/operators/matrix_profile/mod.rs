//! `type = "discord"`: left-discord anomaly detection with a streaming left matrix profile.
//!
//! Per key: a [`LeftMatrixProfile`] (exact, SIMD) or a [`Damp`] (pruned) over the last
//! `history` points, and an online [`Threshold`]. Each record gets the distance from its
//! newest subsequence of length `m` to the nearest non-overlapping earlier one, and whether
//! that distance is an alarm. The algorithms are pure and synchronous
//! ([`crate::detectors::matrix_profile`]); this file adapts them to keyed state, checkpoints
//! and metrics.

pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
pub use config::DiscordConfig;

use super::{BuildContext, Context, Operator, TableRef, TableSpec};
use crate::Result;
use crate::core::codec::{DecodeError, Reader, Writer};
use crate::core::{Batch, DeadLetter, Field};
use crate::detectors::matrix_profile::{Damp, Discord, LeftMatrixProfile, Threshold};
// Re-exported because the `discord` configuration and the CLI's `--threshold` name it here.
pub use crate::detectors::matrix_profile::ThresholdSpec;
use crate::state::StateValue;

/// Points scored by a discord operator.
pub const POINTS_SCORED: &str = "osprey_discord_points_scored_total";
/// Alarms raised by a discord operator.
pub const ANOMALIES: &str = "osprey_discord_anomalies_total";
/// Scores that are upper bounds (DAMP pruning) rather than exact.
pub const POINTS_PRUNED: &str = "osprey_discord_points_pruned_total";
/// Normalised scores (score / 2√m, in [0, 1]).
pub const SCORE: &str = "osprey_discord_score";
/// Records whose value was missing or not finite, handled by `nan_policy`.
pub const MISSING: &str = "osprey_discord_missing_values_total";
/// Records that got no verdict because their key's detector or threshold was still warming
/// up (`state = "warming_up"`). A rate that never falls is a detector stuck in warm-up.
pub const WARMUP_POINTS: &str = "osprey_discord_warmup_points_total";

/// The detector of one key.
pub enum Detector {
    /// Exact streaming left matrix profile.
    Exact(LeftMatrixProfile),
    /// DAMP with pruning (values may be upper bounds).
    Damp(Damp),
}

/// Per-key state: detector and threshold.
pub struct DiscordState {
    /// The detector.
    pub detector: Detector,
    /// The alarm threshold.
    pub threshold: Threshold,
}

impl StateValue for DiscordState {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        let mut buf = Vec::new();
        match &self.detector {
            Detector::Exact(mp) => {
                out.push(0);
                mp.encode(&mut buf);
            }
            Detector::Damp(d) => {
                out.push(1);
                d.encode(&mut buf);
            }
        }
        Writer::new(out).len_bytes(&buf);
        buf.clear();
        self.threshold.encode(&mut buf);
        Writer::new(out).len_bytes(&buf);
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != 1 {
            return Err(DecodeError::invalid("unknown discord state version"));
        }
        let kind = r.u8()?;
        let det = r.len_bytes()?;
        let detector = match kind {
            0 => Detector::Exact(LeftMatrixProfile::decode(det)?),
            1 => Detector::Damp(Damp::decode(det)?),
            k => {
                return Err(DecodeError::invalid(format!("unknown detector kind {k}")));
            }
        };
        let threshold = Threshold::decode(r.len_bytes()?)?;
        r.finish()?;
        Ok(DiscordState {
            detector,
            threshold,
        })
    }
}

/// See the module docs.
pub struct DiscordOperator {
    cfg: DiscordConfig,
    name: String,
    field: usize,
    names: Names,
    m_points: prometheus::IntCounter,
    m_anomalies: prometheus::IntCounter,
    m_pruned: prometheus::IntCounter,
    m_missing: prometheus::IntCounter,
    m_warmup: prometheus::IntCounter,
    m_score: prometheus::Histogram,
}

/// The detector and threshold per key.
const DETECTORS: TableRef<DiscordState> = TableRef::new(0);

struct Names {
    index: Arc<str>,
    score: Arc<str>,
    normalized: Arc<str>,
    nn_index: Arc<str>,
    exact: Arc<str>,
    threshold: Arc<str>,
    is_anomaly: Arc<str>,
    state: Arc<str>,
}

impl DiscordOperator {
    /// Builds the operator for one partition.
    pub fn new(cfg: &DiscordConfig, cx: &BuildContext) -> Self {
        let name = cfg.name().to_string();
        let field = cfg
            .input
            .as_ref()
            .and_then(|v| cx.value_names.iter().position(|n| n == v))
            .unwrap_or(0);
        let p = &cfg.prefix;
        let n = |s: &str| Arc::from(format!("{p}{s}"));
        let scope = cx.metrics(&name);
        let m = scope.registry();
        let counter =
            |metric: &'static str, help: &str| scope.counter(&m.operator_counter(metric, help));
        DiscordOperator {
            m_points: counter(POINTS_SCORED, "Points scored by the discord detector"),
            m_anomalies: counter(ANOMALIES, "Alarms raised by the discord detector"),
            m_pruned: counter(POINTS_PRUNED, "Discord scores that are DAMP upper bounds"),
            m_missing: counter(
                MISSING,
                "Missing or non-finite values seen by the discord detector",
            ),
            m_warmup: counter(
                WARMUP_POINTS,
                "Records the discord detector gave no verdict while warming up",
            ),
            m_score: m
                .operator_histogram(
                    SCORE,
                    "Normalised discord scores (score / 2 sqrt m)",
                    (1..=20).map(|i| f64::from(i) * 0.05).collect(),
                )
                .with_label_values(&[&name]),
            names: Names {
                index: n("index"),
                score: n("score"),
                normalized: n("normalized_score"),
                nn_index: n("nn_index"),
                exact: n("exact"),
                threshold: n("threshold"),
                is_anomaly: n("is_anomaly"),
                state: n("state"),
            },
            cfg: cfg.clone(),
            name,
            field,
        }
    }
}

/// A key's state before its first point.
fn fresh_state(cfg: &DiscordConfig) -> DiscordState {
    let detector = match cfg.mode {
        config::Mode::Exact => Detector::Exact(
            LeftMatrixProfile::try_new(cfg.m, cfg.history)
                .expect("validated")
                .with_nan_policy(cfg.nan_policy.into()),
        ),
        config::Mode::Damp => Detector::Damp(Damp::new(cfg.damp_config()).expect("validated")),
    };
    DiscordState {
        detector,
        threshold: Threshold::new(cfg.threshold.spec(), cfg.m).expect("validated"),
    }
}

#[async_trait]
impl Operator for DiscordOperator {
    fn name(&self) -> &str {
        &self.name
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![
            DETECTORS
                .spec("discord")
                .cache_keys(self.cfg.cache_keys)
                .ttl(self.cfg.ttl.map(|d| d.as_std())),
        ]
    }

    async fn process(&mut self, batch: Batch, cx: &mut Context, out: &mut Batch) -> Result<()> {
        let state = cx.tables.get(DETECTORS);
        let m = self.cfg.m;
        let emit_all = self.cfg.emit == config::Emit::All;
        // Exact mode scores all of a key's values in this batch with one `push_slice`, which
        // makes several points per pass over the history (bit-identical to `push` per point);
        // the verdicts below are still taken record by record, in order.
        let mut scored: Vec<Option<Option<Discord>>> = vec![None; batch.len()];
        // The time a key's state is read at (for `ttl`): each record's own, except in exact
        // mode, where a key's records in one batch are scored together at their latest time.
        let mut now_of: Vec<i64> = batch.iter().map(|r| r.time_ms.unwrap_or(0)).collect();
        if self.cfg.mode == config::Mode::Exact {
            let mut groups: std::collections::HashMap<&str, (u16, Vec<usize>)> = Default::default();
            let mut order: Vec<&str> = Vec::new();
            for (i, r) in batch.iter().enumerate() {
                if r.values.get(self.field).is_some() {
                    let g = groups.entry(&r.key).or_insert_with(|| {
                        order.push(&r.key);
                        (r.key_group, Vec::new())
                    });
                    g.1.push(i);
                }
            }
            let cfg = &self.cfg;
            let mut xs = Vec::new();
            let mut outs = Vec::new();
            for key in order {
                let (kg, idxs) = &groups[key];
                let now = idxs.iter().map(|&i| now_of[i]).max().unwrap_or(0);
                for &i in idxs {
                    now_of[i] = now;
                }
                let st = state.get_or_insert_with(*kg, key.as_bytes(), now, || fresh_state(cfg))?;
                if let Detector::Exact(mp) = &mut st.detector {
                    xs.clear();
                    xs.extend(idxs.iter().map(|&i| batch[i].values[self.field]));
                    outs.clear();
                    mp.push_slice(&xs, &mut outs);
                    for (&i, d) in idxs.iter().zip(outs.drain(..)) {
                        scored[i] = Some(d);
                    }
                }
            }
        }
        for (i, mut r) in batch.into_iter().enumerate() {
            let Some(&x) = r.values.get(self.field) else {
                cx.dead_letters.push(DeadLetter::of_record(
                    "missing_field",
                    "record has no value for the discord detector",
                    &r,
                ));
                continue;
            };
            if !x.is_finite() {
                self.m_missing.inc();
            }
            let cfg = &self.cfg;
            let st = state.get_or_insert_with(r.key_group, r.key.as_bytes(), now_of[i], || {
                fresh_state(cfg)
            })?;
            let warm = !st.threshold.is_warming_up();
            let discord = match (scored[i].take(), &mut st.detector) {
                (Some(d), _) => d,
                (None, Detector::Exact(mp)) => mp.push(x),
                (None, Detector::Damp(d)) if warm => d.push(x, st.threshold.current()),
                (None, Detector::Damp(d)) => d.push_exact(x),
            };
            let names = &self.names;
            let mut anomaly = false;
            match discord {
                Some(d) => {
                    let j = st.threshold.judge(d.index, d.score, d.exact);
                    anomaly = j.is_anomaly;
                    self.m_points.inc();
                    if !d.exact {
                        self.m_pruned.inc();
                    }
                    if anomaly {
                        self.m_anomalies.inc();
                    }
                    self.m_score.observe(d.normalized(m));
                    r.push_field(&names.index, Field::U64(d.index));
                    r.push_field(&names.score, Field::F64(d.score));
                    r.push_field(&names.normalized, Field::F64(d.normalized(m)));
                    r.push_field(&names.nn_index, Field::U64(d.nn_index));
                    r.push_field(&names.exact, Field::Bool(d.exact));
                    r.push_field(
                        &names.threshold,
                        j.threshold
                            .map_or(Field::Json(serde_json::Value::Null), Field::F64),
                    );
                    r.push_field(&names.is_anomaly, Field::Bool(anomaly));
                    let s = if j.warming_up {
                        self.m_warmup.inc();
                        "warming_up"
                    } else {
                        "scoring"
                    };
                    r.push_field(&names.state, Field::Str(Arc::from(s)));
                }
                None => {
                    self.m_warmup.inc();
                    r.push_field(&names.is_anomaly, Field::Bool(false));
                    r.push_field(&names.state, Field::Str(Arc::from("warming_up")));
                }
            }
            if emit_all || anomaly {
                out.push(r);
            }
        }
        Ok(())
    }
}

impl super::OperatorSpec for DiscordConfig {
    fn type_name(&self) -> &'static str {
        "discord"
    }
    fn name(&self) -> &str {
        DiscordConfig::name(self)
    }
    fn validate(
        &self,
        record: &crate::core::RecordConfig,
        values: &[String],
    ) -> Vec<crate::core::ConfigError> {
        DiscordConfig::validate(self, record, values)
    }
    fn output_fields(&self) -> Vec<String> {
        DiscordConfig::output_fields(self)
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(DiscordOperator::new(self, cx)))
    }
}
