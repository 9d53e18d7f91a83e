//! `type = "stdout"` sink: JSON lines on standard output (not transactional: at-least-once
//! across crashes).

use std::io::Write;

use async_trait::async_trait;
use serde::Deserialize;

use crate::connectors::{Sink, SinkSpec};
use crate::core::Record;
use crate::state::checkpoint::Commit;
use crate::{Error, Result};

/// `type = "stdout"`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

impl SinkSpec for StdoutSinkConfig {
    fn type_name(&self) -> &'static str {
        "stdout"
    }

    fn build(&self, component: &str, _first_epoch: u64) -> Result<Box<dyn Sink>> {
        Ok(Box::new(StdoutSink {
            component: component.to_string(),
            buf: String::new(),
        }))
    }
}

/// See the module docs.
pub struct StdoutSink {
    component: String,
    buf: String,
}

#[async_trait]
impl Sink for StdoutSink {
    async fn write(&mut self, records: &[Record]) -> Result<()> {
        crate::connectors::render_json_lines(records, &mut self.buf);
        // One locked write per batch keeps lines from different partitions whole.
        let mut out = std::io::stdout().lock();
        match out.write_all(self.buf.as_bytes()) {
            Ok(()) => {}
            // A closed pipe (`osprey run … | head`) is the reader's choice, not our failure.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(Error::io("writing", "stdout", e)),
        }
        crate::connectors::count_written(&self.component, records.len());
        Ok(())
    }

    async fn precommit(&mut self, _epoch: u64) -> Result<Vec<Commit>> {
        let _ = std::io::stdout().lock().flush();
        Ok(vec![])
    }
}
