//! `type = "stats"`: per-key running count, mean, standard deviation, min and max of the
//! first value field (Welford's algorithm), kept in keyed state.
//!
//! Appends `count`, `mean`, `stddev`, `min`, `max` (optionally under a prefix) to each record.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::{BuildContext, Context, Operator, TableRef, TableSpec};
use crate::Result;
use crate::core::{Batch, ConfigError, DeadLetter, Field, RecordConfig};
use crate::state::StateValue;
use crate::state::codec::{DecodeError, Reader, Writer};

/// `type = "stats"`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Instance name (metrics label, state-table prefix). Default `stats`.
    pub name: Option<String>,
    /// Prefix for the output fields (`"temp_"` gives `temp_count` …). Default none.
    #[serde(default)]
    pub prefix: String,
    /// The value to summarise: a name from `record.values`. Default: the first.
    pub input: Option<String>,
    /// Deprecated: the index of the value to summarise in `record.values`; use `input` with
    /// its name. Still read when `input` is absent.
    #[serde(default)]
    pub field: Option<usize>,
    /// Forget a key's statistics after this long without records (event time when the job
    /// has a time field, otherwise processing time is not used and state never expires).
    pub ttl: Option<crate::core::Duration>,
}

impl StatsConfig {
    /// Output field names, for collision checks.
    pub fn output_fields(&self) -> Vec<String> {
        ["count", "mean", "stddev", "min", "max"]
            .iter()
            .map(|f| format!("{}{f}", self.prefix))
            .collect()
    }

    /// Index of the value to summarise among the job's value fields `values`.
    pub fn input_index(&self, values: &[String]) -> usize {
        match &self.input {
            Some(name) => values.iter().position(|v| v == name).unwrap_or(0),
            None => self.field.unwrap_or(0),
        }
    }

    /// Semantic checks; `values` are the job's value fields.
    pub fn validate(&self, record: &RecordConfig, values: &[String]) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if let Some(name) = &self.input {
            if self.field.is_some() {
                errors.push(ConfigError::new(
                    "field",
                    "set `input` only (`field` is its deprecated form)",
                ));
            }
            if !values.contains(name) {
                errors.push(ConfigError::new(
                    "input",
                    format!("`{name}` is not one of record.values {values:?}"),
                ));
            }
        }
        if self.ttl.is_some() && record.time.is_none() {
            errors.push(ConfigError::new("ttl", "needs event time: set record.time"));
        }
        errors
    }
}

/// Running statistics of one key.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunningStats {
    /// Number of values.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Sum of squared deviations (Welford's M2).
    pub m2: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl RunningStats {
    /// Adds a value.
    pub fn push(&mut self, x: f64) {
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        let d = x - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (x - self.mean);
    }

    /// Population standard deviation.
    pub fn stddev(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.m2 / self.count as f64).max(0.0).sqrt()
        }
    }
}

impl StateValue for RunningStats {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        Writer::new(out).u64(self.count);
        for v in [self.mean, self.m2, self.min, self.max] {
            Writer::new(out).f64(v);
        }
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        match r.u8()? {
            1 => {
                let s = RunningStats {
                    count: r.u64()?,
                    mean: r.f64()?,
                    m2: r.f64()?,
                    min: r.f64()?,
                    max: r.f64()?,
                };
                r.finish()?;
                Ok(s)
            }
            v => Err(DecodeError::UnsupportedVersion(u16::from(v))),
        }
    }
}

/// The running statistics per key.
const STATS: TableRef<RunningStats> = TableRef::new(0);

/// See the module docs.
pub struct Stats {
    name: String,
    field: usize,
    ttl: Option<std::time::Duration>,
    names: [Arc<str>; 5],
}

impl Stats {
    /// Builds the operator for one partition.
    pub fn new(cfg: &StatsConfig, cx: &BuildContext) -> Self {
        let name = cfg.name.clone().unwrap_or_else(|| "stats".into());
        let p = &cfg.prefix;
        Stats {
            name,
            field: cfg.input_index(&cx.value_names),
            ttl: cfg.ttl.map(|d| d.as_std()),
            names: ["count", "mean", "stddev", "min", "max"].map(|n| Arc::from(format!("{p}{n}"))),
        }
    }
}

#[async_trait]
impl Operator for Stats {
    fn name(&self) -> &str {
        &self.name
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![STATS.spec("stats").ttl(self.ttl)]
    }

    async fn process(&mut self, batch: Batch, cx: &mut Context, out: &mut Batch) -> Result<()> {
        let state = cx.tables.get(STATS);
        for mut r in batch {
            let Some(&x) = r.values.get(self.field) else {
                cx.dead_letters.push(DeadLetter::of_record(
                    "missing_field",
                    format!("record has no value field #{}", self.field),
                    &r,
                ));
                continue;
            };
            let now = r.time_ms.unwrap_or(0);
            let s = state.get_or_insert_with(
                r.key_group,
                r.key.as_bytes(),
                now,
                RunningStats::default,
            )?;
            s.push(x);
            let s = *s;
            let [count, mean, stddev, min, max] = &self.names;
            r.fields.reserve(5);
            r.push_field(count, Field::U64(s.count));
            r.push_field(mean, Field::F64(s.mean));
            r.push_field(stddev, Field::F64(s.stddev()));
            r.push_field(min, Field::F64(s.min));
            r.push_field(max, Field::F64(s.max));
            out.push(r);
        }
        Ok(())
    }
}

impl super::OperatorSpec for StatsConfig {
    fn type_name(&self) -> &'static str {
        "stats"
    }
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("stats")
    }
    fn validate(&self, record: &RecordConfig, values: &[String]) -> Vec<ConfigError> {
        StatsConfig::validate(self, record, values)
    }
    fn output_fields(&self) -> Vec<String> {
        StatsConfig::output_fields(self)
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Stats::new(self, cx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn welford_matches_two_pass(xs in proptest::collection::vec(-1e6f64..1e6, 1..200)) {
            let mut s = RunningStats::default();
            xs.iter().for_each(|&x| s.push(x));
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
            prop_assert!((s.mean - mean).abs() <= 1e-6 * (1.0 + mean.abs()));
            prop_assert!((s.stddev() - var.sqrt()).abs() <= 1e-6 * (1.0 + var.sqrt()));
            let back = RunningStats::decode(&{ let mut b = vec![]; s.encode(&mut b); b }).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
