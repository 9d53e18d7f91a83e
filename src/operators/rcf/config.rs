//! Configuration of the `rcf` operator.

use serde::Deserialize;

use crate::core::ConfigError;
use crate::detectors::rcf::{ForestConfig, ThresholdConfig};

/// `type = "rcf"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RcfConfig {
    /// Instance name (metrics label, state-table prefix). Default `rcf`.
    pub name: Option<String>,
    /// The values read together as one point's dimensions: names from `record.values`, in
    /// order. Default: all of them. (Old spelling: `fields`.)
    #[serde(default, alias = "fields")]
    pub inputs: Vec<String>,
    /// Trees per forest. Default 50.
    #[serde(default = "trees")]
    pub trees: usize,
    /// Points sampled per tree. Default 256.
    #[serde(default = "sample_size")]
    pub sample_size: usize,
    /// Consecutive inputs per point. Default 1.
    #[serde(default = "one")]
    pub shingle_size: usize,
    /// Sampling decay per point. Default 0.1 / sample_size (the AWS library's).
    pub time_decay: Option<f64>,
    /// Points absorbed before scores are emitted. Default 1 + sample_size / 4.
    pub output_after: Option<usize>,
    /// Seed; each key's forest mixes in a hash of its key. Default 42.
    #[serde(default = "seed")]
    pub seed: u64,
    /// Threshold: standard deviations above the mean score. Default 3.
    #[serde(default = "z")]
    pub z_factor: f64,
    /// Lowest threshold (inliers score below 1). Default 1.1.
    #[serde(default = "floor")]
    pub threshold_floor: f64,
    /// Prefix for the output fields, to chain two scoring operators. Default none.
    #[serde(default)]
    pub prefix: String,
    /// `all` records (default) or only `anomalies`.
    #[serde(default)]
    pub emit: Emit,
    /// Forests kept decoded in memory per partition. Default 1,000.
    #[serde(default = "cache_keys")]
    pub cache_keys: usize,
    /// Forget a key's forest after this long without records (event time: needs
    /// `record.time`), so keys that stop sending do not keep state forever; expired entries
    /// are deleted from RocksDB by a sweep at checkpoints. Default: never.
    #[serde(default)]
    pub ttl: Option<crate::core::Duration>,
}

fn trees() -> usize {
    50
}
fn sample_size() -> usize {
    256
}
fn one() -> usize {
    1
}
fn seed() -> u64 {
    42
}
fn z() -> f64 {
    3.0
}
fn floor() -> f64 {
    1.1
}
fn cache_keys() -> usize {
    1_000
}

pub use crate::operators::kit::Emit;

impl RcfConfig {
    /// The instance name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("rcf")
    }

    /// The forest parameters for `dims` input fields and a key seed.
    pub fn forest_config(&self, dims: usize, seed: u64) -> ForestConfig {
        let mut c = ForestConfig::new(dims, self.shingle_size, self.trees, self.sample_size);
        if let Some(d) = self.time_decay {
            c.time_decay = d;
        }
        if let Some(o) = self.output_after {
            c.output_after = o;
        }
        c.seed = seed;
        c
    }

    /// The thresholder parameters.
    pub fn threshold_config(&self) -> ThresholdConfig {
        ThresholdConfig {
            z_factor: self.z_factor,
            floor: self.threshold_floor,
            ..ThresholdConfig::default()
        }
    }

    /// Output field names, for collision checks.
    pub fn output_fields(&self) -> Vec<String> {
        ["score", "grade", "threshold", "is_anomaly", "attribution"]
            .iter()
            .map(|f| format!("{}{f}", self.prefix))
            .collect()
    }

    /// Semantic checks; `values` are the job's value fields.
    pub fn validate(&self, values: &[String]) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for f in &self.inputs {
            if !values.contains(f) {
                errors.push(ConfigError::new(
                    "inputs",
                    format!("`{f}` is not one of record.values {values:?}"),
                ));
            }
        }
        if values.is_empty() {
            errors.push(ConfigError::new(
                "inputs",
                "the job has no value fields (set record.values)",
            ));
        }
        let dims = if self.inputs.is_empty() {
            values.len().max(1)
        } else {
            self.inputs.len()
        };
        if let Err(e) = self.forest_config(dims, 0).validate() {
            errors.push(ConfigError::new("trees", e.to_string()));
        }
        if let Err(e) = self.threshold_config().validate() {
            errors.push(ConfigError::new("z_factor", e.to_string()));
        }
        if self.cache_keys == 0 {
            errors.push(ConfigError::new("cache_keys", "must be at least 1"));
        }
        errors
    }
}
