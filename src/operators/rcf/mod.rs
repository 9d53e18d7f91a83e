//! `type = "rcf"`: Random Cut Forest anomaly scores per key, with thresholded grades and
//! per-field attribution.
//!
//! One [`Forest`] and one [`Thresholder`] (both from [`crate::detectors::rcf`]) per key, in keyed state (versioned
//! binary encodings; a restored forest continues bit-identically, its RNG state included).
//! Each forest's seed mixes the configured seed with the key, so keys get independent forests.

pub mod config;

use std::sync::Arc;

use async_trait::async_trait;
pub use config::RcfConfig;

use super::{BuildContext, Context, Operator, TableRef, TableSpec};
use crate::Result;
use crate::core::codec::{DecodeError, Reader, Writer};
use crate::core::hash::fnv1a64;
use crate::core::{Batch, DeadLetter, Field};
use crate::detectors::rcf::{Forest, PointError, Thresholder};
use crate::state::StateValue;

/// Points scored by an rcf operator.
pub const POINTS_SCORED: &str = "osprey_rcf_points_scored_total";
/// Points flagged as anomalies.
pub const ANOMALIES: &str = "osprey_rcf_anomalies_total";
/// RCF scores.
pub const SCORE: &str = "osprey_rcf_score";
/// Records that got no score because their key's forest was still filling its sample (warm-up).
/// A rate that never falls is a detector stuck in warm-up.
pub const WARMUP_POINTS: &str = "osprey_rcf_warmup_points_total";

/// Per-key state.
pub struct RcfState {
    /// The forest.
    pub forest: Forest,
    /// Its thresholder.
    pub thresholder: Thresholder,
}

impl StateValue for RcfState {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        let mut buf = Vec::new();
        self.forest.encode(&mut buf);
        Writer::new(out).len_bytes(&buf);
        buf.clear();
        self.thresholder.encode(&mut buf);
        Writer::new(out).len_bytes(&buf);
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != 1 {
            return Err(DecodeError::invalid("unknown rcf state version"));
        }
        let forest = Forest::decode(r.len_bytes()?)?;
        let thresholder = Thresholder::decode(r.len_bytes()?)?;
        r.finish()?;
        Ok(RcfState {
            forest,
            thresholder,
        })
    }
}

/// See the module docs.
pub struct RcfOperator {
    cfg: RcfConfig,
    name: String,
    /// Indexes into `Record::values` of the configured fields.
    fields: Vec<usize>,
    field_names: Vec<String>,
    point: Vec<f64>,
    names: [Arc<str>; 5],
    m_points: prometheus::IntCounter,
    m_anomalies: prometheus::IntCounter,
    m_warmup: prometheus::IntCounter,
    m_score: prometheus::Histogram,
}

/// The forest and thresholder per key.
const FORESTS: TableRef<RcfState> = TableRef::new(0);

impl RcfOperator {
    /// Builds the operator for one partition.
    pub fn new(cfg: &RcfConfig, cx: &BuildContext) -> Self {
        let name = cfg.name().to_string();
        let field_names: Vec<String> = if cfg.inputs.is_empty() {
            cx.value_names.clone()
        } else {
            cfg.inputs.clone()
        };
        let fields = field_names
            .iter()
            .map(|f| {
                cx.value_names
                    .iter()
                    .position(|v| v == f)
                    .expect("validated: fields are record values")
            })
            .collect();
        let scope = cx.metrics(&name);
        let m = scope.registry();
        let p = &cfg.prefix;
        RcfOperator {
            m_points: scope.counter(
                &m.operator_counter(POINTS_SCORED, "Points scored by the Random Cut Forest"),
            ),
            m_anomalies: scope
                .counter(&m.operator_counter(ANOMALIES, "Points the Random Cut Forest flagged")),
            m_warmup: scope.counter(&m.operator_counter(
                WARMUP_POINTS,
                "Records the Random Cut Forest gave no score while warming up",
            )),
            m_score: m
                .operator_histogram(
                    SCORE,
                    "Random Cut Forest scores",
                    vec![0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0],
                )
                .with_label_values(&[&name]),
            names: ["score", "grade", "threshold", "is_anomaly", "attribution"]
                .map(|n| Arc::from(format!("{p}{n}"))),
            point: Vec::with_capacity(field_names.len()),
            field_names,
            fields,
            cfg: cfg.clone(),
            name,
        }
    }
}

/// FNV-1a of the key: mixes the key into the forest seed (stable across versions).
fn key_seed(seed: u64, key: &str) -> u64 {
    seed ^ fnv1a64(key.as_bytes())
}

#[async_trait]
impl Operator for RcfOperator {
    fn name(&self) -> &str {
        &self.name
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![
            FORESTS
                .spec("rcf")
                .cache_keys(self.cfg.cache_keys)
                .ttl(self.cfg.ttl.map(|d| d.as_std())),
        ]
    }

    async fn process(&mut self, batch: Batch, cx: &mut Context, out: &mut Batch) -> Result<()> {
        let state = cx.tables.get(FORESTS);
        let emit_all = self.cfg.emit == config::Emit::All;
        for mut r in batch {
            self.point.clear();
            self.point.extend(
                self.fields
                    .iter()
                    .map(|&i| r.values.get(i).copied().unwrap_or(f64::NAN)),
            );
            let cfg = &self.cfg;
            let dims = self.fields.len();
            let now = r.time_ms.unwrap_or(0);
            let st = state.get_or_insert_with(r.key_group, r.key.as_bytes(), now, || RcfState {
                forest: Forest::new(cfg.forest_config(dims, key_seed(cfg.seed, &r.key)))
                    .expect("validated"),
                thresholder: Thresholder::new(cfg.threshold_config()).expect("validated"),
            })?;
            let scored = match st.forest.process(&self.point) {
                Ok(s) => s.map(|s| {
                    let attribution: serde_json::Map<String, serde_json::Value> = self
                        .field_names
                        .iter()
                        .zip(s.attribution)
                        .map(|(n, a)| {
                            (n.clone(), serde_json::json!({"high": a.high, "low": a.low}))
                        })
                        .collect();
                    (s.score, attribution)
                }),
                Err(PointError::NotFinite(_)) => {
                    cx.dead_letters.push(DeadLetter::of_record(
                        "non_finite",
                        "a Random Cut Forest field is missing or not finite",
                        &r,
                    ));
                    continue;
                }
                Err(e) => {
                    cx.dead_letters
                        .push(DeadLetter::of_record("wrong_type", e.to_string(), &r));
                    continue;
                }
            };
            let [score, grade, threshold, is_anomaly, attribution] = &self.names;
            let mut anomaly = false;
            match scored {
                Some((s, attr)) => {
                    let g = st.thresholder.grade(s);
                    anomaly = g.is_anomaly;
                    self.m_points.inc();
                    self.m_score.observe(s);
                    if anomaly {
                        self.m_anomalies.inc();
                    }
                    r.push_field(score, Field::F64(s));
                    r.push_field(grade, Field::F64(g.grade));
                    r.push_field(threshold, Field::F64(g.threshold));
                    r.push_field(is_anomaly, Field::Bool(anomaly));
                    r.push_field(attribution, Field::Json(serde_json::Value::Object(attr)));
                }
                None => {
                    self.m_warmup.inc();
                    r.push_field(grade, Field::F64(0.0));
                    r.push_field(is_anomaly, Field::Bool(false));
                }
            }
            if emit_all || anomaly {
                out.push(r);
            }
        }
        Ok(())
    }
}

impl super::OperatorSpec for RcfConfig {
    fn type_name(&self) -> &'static str {
        "rcf"
    }
    fn name(&self) -> &str {
        RcfConfig::name(self)
    }
    fn validate(
        &self,
        record: &crate::core::RecordConfig,
        values: &[String],
    ) -> Vec<crate::core::ConfigError> {
        let mut errors = RcfConfig::validate(self, values);
        if self.ttl.is_some() && record.time.is_none() {
            errors.push(crate::core::ConfigError::new(
                "ttl",
                "needs event time: set record.time",
            ));
        }
        errors
    }
    fn output_fields(&self) -> Vec<String> {
        RcfConfig::output_fields(self)
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(RcfOperator::new(self, cx)))
    }
}
