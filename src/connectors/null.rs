//! `type = "null"` sink: counts and discards everything (benchmarks).

use async_trait::async_trait;
use serde::Deserialize;

use crate::Result;
use crate::connectors::{Sink, SinkSpec};
use crate::core::Record;
use crate::state::checkpoint::Commit;

/// `type = "null"`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NullSinkConfig {}

impl SinkSpec for NullSinkConfig {
    fn type_name(&self) -> &'static str {
        "null"
    }

    fn build(&self, component: &str, _first_epoch: u64) -> Result<Box<dyn Sink>> {
        Ok(Box::new(NullSink {
            component: component.to_string(),
        }))
    }
}

/// See the module docs.
pub struct NullSink {
    component: String,
}

#[async_trait]
impl Sink for NullSink {
    async fn write(&mut self, records: &[Record]) -> Result<()> {
        crate::connectors::count_written(&self.component, records.len());
        Ok(())
    }

    async fn precommit(&mut self, _epoch: u64) -> Result<Vec<Commit>> {
        Ok(vec![])
    }
}
