//! Standard input, line by line.
//!
//! stdin cannot be rewound. Position is the byte offset read so far; on restore osprey skips
//! that many bytes, which is exact when the same input is piped in again (`osprey run job.toml
//! < data.jsonl` after a crash) and documented as such.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::connectors::file::lines::LineSplitter;
use crate::connectors::{Poll, Source, SourceSpec};
use crate::core::ConfigError;
use crate::parse::Format;
use crate::{Error, Result};

/// `type = "stdin"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceConfig {
    /// `json` (default), `csv` or `lines`.
    #[serde(default)]
    pub format: Format,
    /// Longest accepted line in bytes. Default 1 MiB.
    #[serde(default = "crate::connectors::default_max_record_bytes")]
    pub max_record_bytes: usize,
}

impl SourceSpec for StdinSourceConfig {
    fn type_name(&self) -> &'static str {
        "stdin"
    }

    fn validate(&self) -> Vec<ConfigError> {
        if self.max_record_bytes == 0 {
            vec![ConfigError::new(
                "source.max_record_bytes",
                "must be at least 1",
            )]
        } else {
            vec![]
        }
    }

    fn format(&self) -> Format {
        self.format
    }

    fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(StdinSource::new(self.clone())))
    }
}

/// See the module docs.
pub struct StdinSource {
    cfg: StdinSourceConfig,
    stdin: tokio::io::Stdin,
    splitter: LineSplitter,
    offset: u64,
    skip: u64,
    /// Bytes still to discard after a restore.
    to_skip: u64,
    stream: Arc<str>,
    eof: bool,
    first: bool,
    buf: Vec<u8>,
}

impl StdinSource {
    /// Reads the process's stdin.
    pub fn new(cfg: StdinSourceConfig) -> Self {
        let max = cfg.max_record_bytes;
        StdinSource {
            cfg,
            stdin: tokio::io::stdin(),
            splitter: LineSplitter::new(max, 0),
            offset: 0,
            skip: 0,
            to_skip: 0,
            stream: Arc::from("stdin"),
            eof: false,
            first: true,
            buf: vec![0u8; 64 * 1024],
        }
    }
}

#[async_trait]
impl Source for StdinSource {
    async fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        self.skip = position
            .get("offset")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        self.offset = self.skip;
        self.to_skip = self.skip;
        if self.skip > 0 && self.cfg.format == Format::Csv {
            return Err(Error::Source {
                component: "stdin".into(),
                message: "a CSV stream on stdin cannot resume mid-stream (its header is gone); use a file source or --fresh".into(),
                retry: crate::Retry::No,
            });
        }
        tracing::warn!(
            skip = self.skip,
            "Resuming stdin: skipping the bytes the checkpoint already covers."
        );
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Poll> {
        let mut items = Vec::new();
        loop {
            while items.len() < max {
                let Some(line) = self.splitter.next_line(&self.stream) else {
                    break;
                };
                self.offset = self.skip + line.end;
                let mut item = line.item;
                item.header = self.first && self.cfg.format == Format::Csv;
                self.first = false;
                items.push(item);
            }
            if !items.is_empty() {
                return Ok(Poll::Items(items));
            }
            if self.eof {
                if let Some(line) = self.splitter.finish(&self.stream) {
                    self.offset = self.skip + line.end;
                    return Ok(Poll::Items(vec![line.item]));
                }
                return Ok(Poll::End);
            }
            // Cancel-safe: a dropped read loses nothing (tokio's read into our buffer either
            // completed, and we fed it, or did not happen).
            let n = self
                .stdin
                .read(&mut self.buf)
                .await
                .map_err(|e| Error::io("reading", "stdin", e))?;
            if n == 0 {
                self.eof = true;
                continue;
            }
            let k = usize::try_from(self.to_skip).unwrap_or(usize::MAX).min(n);
            self.to_skip -= k as u64;
            self.splitter.feed(&self.buf[k..n]);
        }
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({"offset": self.offset})
    }
}
