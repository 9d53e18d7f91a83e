//! `type = "filter"`: keeps only records where any of the named boolean fields is true
//! (for example the `is_anomaly` fields of the scoring operators before it). Stateless.

use async_trait::async_trait;
use serde::Deserialize;

use super::{BuildContext, Context, Operator};
use crate::Result;
use crate::config::ConfigError;
use crate::event::{Batch, Field};

/// `type = "filter"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Instance name. Default `filter`.
    pub name: Option<String>,
    /// Keep a record when any of these operator fields is `true`.
    pub any_true: Vec<String>,
}

impl FilterConfig {
    /// The instance name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("filter")
    }

    /// Semantic checks.
    pub fn validate(&self) -> Vec<ConfigError> {
        if self.any_true.is_empty() {
            vec![ConfigError::new(
                "any_true",
                "name at least one boolean field",
            )]
        } else {
            vec![]
        }
    }
}

/// See the module docs.
pub struct Filter {
    name: String,
    fields: Vec<String>,
    m_in: prometheus::IntCounter,
    m_out: prometheus::IntCounter,
}

impl Filter {
    /// Builds the operator for one partition.
    pub fn new(cfg: &FilterConfig, cx: &BuildContext) -> Self {
        let name = cfg.name().to_string();
        let partition = format!("p{:03}", cx.partition);
        let m = crate::metrics::get();
        Filter {
            m_in: m.operator_in.with_label_values(&[&name, &partition]),
            m_out: m.operator_out.with_label_values(&[&name, &partition]),
            name,
            fields: cfg.any_true.clone(),
        }
    }
}

#[async_trait]
impl Operator for Filter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn process(&mut self, batch: Batch, _cx: &mut Context, out: &mut Batch) -> Result<()> {
        self.m_in.inc_by(batch.len() as u64);
        let before = out.len();
        out.extend(batch.into_iter().filter(|r| {
            self.fields
                .iter()
                .any(|f| matches!(r.field(f), Some(Field::Bool(true))))
        }));
        self.m_out.inc_by((out.len() - before) as u64);
        Ok(())
    }
}
