//! Configuration of the `discord` operator.

use serde::Deserialize;

use crate::core::{ConfigError, RecordConfig};
use crate::detectors::matrix_profile::{DampConfig, MassMode, NanPolicy, ThresholdSpec};

/// `type = "discord"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// Instance name (metrics label, state-table prefix). Default `discord`.
    pub name: Option<String>,
    /// The value to score: a name from `record.values`. Default: the first. (Old spelling:
    /// `value`.)
    #[serde(alias = "value")]
    pub input: Option<String>,
    /// Subsequence length in points.
    pub m: usize,
    /// Points of history searched for the nearest neighbour. Default 10,000.
    #[serde(default = "default_history")]
    pub history: usize,
    /// `exact` (every score exact) or `damp` (pruned: scores below the alarm threshold may be
    /// upper bounds, marked `exact = false`). Default `exact`.
    #[serde(default)]
    pub mode: Mode,
    /// DAMP only: scoring delay in points for forward pruning (0 = pure online).
    #[serde(default)]
    pub lookahead: usize,
    /// The alarm threshold rule. Default `gaussian` (k = 5, half-life 10,000, warm-up 500).
    #[serde(default)]
    pub threshold: ThresholdConfig,
    /// What a missing or non-finite value does (with `record.missing = "pass"`): `gap`
    /// (default: the point takes an index, windows containing it are not scored), `skip` (as if
    /// it never arrived) or `reset` (the key's history starts over).
    #[serde(default)]
    pub nan_policy: NanPolicyConfig,
    /// Prefix for the output fields, to chain two scoring operators. Default none.
    #[serde(default)]
    pub prefix: String,
    /// `all` records (default) or only `anomalies`.
    #[serde(default)]
    pub emit: Emit,
    /// Keys kept decoded in memory per partition. Default 1,000.
    #[serde(default = "default_cache_keys")]
    pub cache_keys: usize,
    /// Forget a key's detector after this long without records (event time: needs
    /// `record.time`), so keys that stop sending do not keep state forever; expired entries
    /// are deleted from RocksDB by a sweep at checkpoints. Default: never.
    #[serde(default)]
    pub ttl: Option<crate::core::Duration>,
}

fn default_history() -> usize {
    10_000
}
fn default_cache_keys() -> usize {
    1_000
}

/// Detection mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Exact left matrix profile.
    #[default]
    Exact,
    /// DAMP pruning.
    Damp,
}

pub use crate::operators::kit::Emit;

/// See [`NanPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NanPolicyConfig {
    /// [`NanPolicy::Gap`].
    #[default]
    Gap,
    /// [`NanPolicy::Skip`].
    Skip,
    /// [`NanPolicy::Reset`].
    Reset,
}

impl From<NanPolicyConfig> for NanPolicy {
    fn from(p: NanPolicyConfig) -> Self {
        match p {
            NanPolicyConfig::Gap => NanPolicy::Gap,
            NanPolicyConfig::Skip => NanPolicy::Skip,
            NanPolicyConfig::Reset => NanPolicy::Reset,
        }
    }
}

/// The threshold rule (`rule = "gaussian" | "warmup" | "quantile" | "static"`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(remote = "Self", rename_all = "snake_case", deny_unknown_fields)]
pub enum ThresholdConfig {
    /// Exponentially weighted mean + k·σ of exact, non-alarming scores.
    Gaussian {
        /// Width in standard deviations. Default 5.
        #[serde(default = "k5")]
        k: f64,
        /// Half-life of the weights, in scores. Default 10,000.
        #[serde(default = "half_life")]
        half_life: f64,
        /// Scores learnt before the first alarm. Default 500.
        #[serde(default = "warmup")]
        warmup: u64,
        /// Lowest threshold as a normalised score. Default 0.05.
        #[serde(default = "floor")]
        floor: f64,
    },
    /// Mean + k·σ of a training prefix of `train` exact scores (DAMP's rule).
    Warmup {
        /// Width in standard deviations. Default 5.
        #[serde(default = "k5")]
        k: f64,
        /// Training prefix in scores. Default 500.
        #[serde(default = "warmup")]
        train: u64,
    },
    /// `factor` × a streaming (P²) quantile `q` of the exact scores.
    Quantile {
        /// The quantile. Default 0.999.
        #[serde(default = "q")]
        q: f64,
        /// Multiplier. Default 1.
        #[serde(default = "one")]
        factor: f64,
        /// Scores learnt before the first alarm. Default 500.
        #[serde(default = "warmup")]
        warmup: u64,
    },
    /// A fixed threshold in score units.
    Static {
        /// The threshold.
        value: f64,
    },
}
crate::core::config::tagged!(ThresholdConfig, "rule");

fn k5() -> f64 {
    5.0
}
fn half_life() -> f64 {
    10_000.0
}
fn warmup() -> u64 {
    500
}
fn floor() -> f64 {
    0.05
}
fn q() -> f64 {
    0.999
}
fn one() -> f64 {
    1.0
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        ThresholdConfig::Gaussian {
            k: k5(),
            half_life: half_life(),
            warmup: warmup(),
            floor: floor(),
        }
    }
}

impl ThresholdConfig {
    /// The algorithm's threshold rule.
    pub fn spec(&self) -> ThresholdSpec {
        match *self {
            ThresholdConfig::Gaussian {
                k,
                half_life,
                warmup,
                floor,
            } => ThresholdSpec::Gaussian {
                k,
                half_life,
                warmup,
                floor,
            },
            ThresholdConfig::Warmup { k, train } => ThresholdSpec::Warmup { k, train },
            ThresholdConfig::Quantile { q, factor, warmup } => {
                ThresholdSpec::Quantile { q, factor, warmup }
            }
            ThresholdConfig::Static { value } => ThresholdSpec::Static { value },
        }
    }
}

impl DiscordConfig {
    /// The instance name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("discord")
    }

    /// DAMP parameters.
    pub fn damp_config(&self) -> DampConfig {
        DampConfig {
            m: self.m,
            history: self.history,
            lookahead: self.lookahead,
            nan_policy: self.nan_policy.into(),
            mass: MassMode::Auto,
        }
    }

    /// Output field names, for collision checks.
    pub fn output_fields(&self) -> Vec<String> {
        [
            "index",
            "score",
            "normalized_score",
            "nn_index",
            "exact",
            "threshold",
            "is_anomaly",
            "state",
        ]
        .iter()
        .map(|f| format!("{}{f}", self.prefix))
        .collect()
    }

    /// Semantic checks.
    pub fn validate(&self, record: &RecordConfig, values: &[String]) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.ttl.is_some() && record.time.is_none() {
            errors.push(ConfigError::new("ttl", "needs event time: set record.time"));
        }
        if self.m < 2 {
            errors.push(ConfigError::new("m", "must be at least 2"));
        }
        if self.history < 2 * self.m {
            errors.push(ConfigError::new(
                "history",
                format!("must be at least 2·m = {}", 2 * self.m),
            ));
        }
        if self.mode == Mode::Damp {
            if let Err(e) = self.damp_config().validate() {
                errors.push(ConfigError::new("lookahead", e.to_string()));
            }
        } else if self.lookahead != 0 {
            errors.push(ConfigError::new(
                "lookahead",
                "only used with mode = \"damp\"",
            ));
        }
        if self.threshold.spec().validate().is_err() {
            errors.push(ConfigError::new(
                "threshold",
                "a threshold parameter is out of range",
            ));
        }
        if let Some(v) = &self.input {
            if !values.iter().any(|n| n == v) {
                errors.push(ConfigError::new(
                    "input",
                    format!("`{v}` is not one of record.values {values:?}"),
                ));
            }
        } else if values.is_empty() && record.values.is_empty() {
            errors.push(ConfigError::new(
                "input",
                "the job has no value field (set record.values)",
            ));
        }
        if self.cache_keys == 0 {
            errors.push(ConfigError::new("cache_keys", "must be at least 1"));
        }
        errors
    }
}
