//! `type = "filter"`: keeps only records where any of the named boolean fields is true
//! (for example the `is_anomaly` fields of the scoring operators before it). Stateless.

use async_trait::async_trait;
use serde::Deserialize;

use super::{BuildContext, Context, Operator};
use crate::Result;
use crate::core::ConfigError;
use crate::core::{Batch, Field};

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
}

impl Filter {
    /// Builds the operator for one partition.
    pub fn new(cfg: &FilterConfig, _cx: &BuildContext) -> Self {
        Filter {
            name: cfg.name().to_string(),
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
        out.extend(batch.into_iter().filter(|r| {
            self.fields
                .iter()
                .any(|f| matches!(r.field(f), Some(Field::Bool(true))))
        }));
        Ok(())
    }
}

impl super::OperatorSpec for FilterConfig {
    fn type_name(&self) -> &'static str {
        "filter"
    }
    fn name(&self) -> &str {
        FilterConfig::name(self)
    }
    fn validate(
        &self,
        _record: &crate::core::RecordConfig,
        _values: &[String],
    ) -> Vec<ConfigError> {
        FilterConfig::validate(self)
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Filter::new(self, cx)))
    }
}
