//! Local files: a path or glob, read in sorted order to the end.
//!
//! Position: the file being read and the byte offset after the last line returned. Files
//! sorted before it are done. On restore the glob is expanded again; a file that is gone or
//! shorter than its checkpointed offset is an error, not a silent restart.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::lines::LineSplitter;
use crate::connectors::{Poll, RawItem, Source, SourceSpec};
use crate::core::{ConfigError, Origin};
use crate::parse::Format;
use crate::{Error, Result};

const CHUNK: usize = 256 * 1024;

/// `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A path or a glob (`data/*.jsonl`); files are read in sorted order.
    pub path: String,
    /// `json` (default), `csv` or `lines` (one bare number per line).
    #[serde(default)]
    pub format: Format,
    /// Longest accepted line in bytes; longer lines are dead-lettered. Default 1 MiB.
    #[serde(default = "crate::connectors::default_max_record_bytes")]
    pub max_record_bytes: usize,
}

impl SourceSpec for FileSourceConfig {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.path.is_empty() {
            errors.push(ConfigError::new(
                "source.path",
                "must name a file or a glob",
            ));
        } else if let Err(e) = glob::Pattern::new(&self.path) {
            errors.push(ConfigError::new("source.path", format!("bad glob: {e}")));
        }
        if self.max_record_bytes == 0 {
            errors.push(ConfigError::new(
                "source.max_record_bytes",
                "must be at least 1",
            ));
        }
        errors
    }

    fn format(&self) -> Format {
        self.format
    }

    fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(FileSource::new(self.clone())?))
    }
}

/// See the module docs.
pub struct FileSource {
    cfg: FileSourceConfig,
    files: Vec<PathBuf>,
    index: usize,
    file: Option<std::fs::File>,
    stream: Arc<str>,
    path_text: Arc<str>,
    splitter: LineSplitter,
    /// Offset after the last returned line of the current file.
    offset: u64,
    /// A CSV header to hand out before the next data line (after a restore mid-file).
    pending_header: Option<Vec<u8>>,
    eof: bool,
    /// Each file's size when the glob was expanded (for [`Source::progress`]).
    sizes: Vec<u64>,
}

impl FileSource {
    /// Expands the glob.
    pub fn new(cfg: FileSourceConfig) -> Result<Self> {
        let files = expand(&cfg.path)?;
        let max = cfg.max_record_bytes;
        let sizes = files
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .collect();
        Ok(FileSource {
            cfg,
            files,
            index: 0,
            file: None,
            stream: Arc::from(""),
            path_text: Arc::from(""),
            splitter: LineSplitter::new(max, 0),
            offset: 0,
            pending_header: None,
            eof: false,
            sizes,
        })
    }

    fn open_current(&mut self, offset: u64) -> Result<()> {
        let path = &self.files[self.index];
        let mut f = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let len = f
            .metadata()
            .map_err(|e| Error::io("reading", path, e))?
            .len();
        if offset > len {
            return Err(Error::Source {
                component: "file".into(),
                message: format!(
                    "{} is {len} bytes but the checkpoint resumes at byte {offset}: the file changed",
                    path.display()
                ),
                retry: crate::Retry::No,
            });
        }
        if offset > 0 && self.cfg.format == Format::Csv {
            let mut head = LineSplitter::new(self.cfg.max_record_bytes, 0);
            let mut buf = vec![0u8; CHUNK];
            let stream: Arc<str> = Arc::from("");
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(|e| Error::io("reading", path, e))?;
                head.feed(&buf[..n]);
                if let Some(line) = head
                    .next_line(&stream)
                    .or_else(|| if n == 0 { head.finish(&stream) } else { None })
                {
                    self.pending_header = Some(line.item.data);
                    break;
                }
                if n == 0 {
                    break;
                }
            }
        }
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seeking", path, e))?;
        self.stream = Arc::from(
            path.file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().to_string()),
        );
        self.path_text = Arc::from(path.to_string_lossy().as_ref());
        self.splitter = LineSplitter::new(self.cfg.max_record_bytes, offset);
        self.offset = offset;
        self.file = Some(f);
        self.eof = false;
        Ok(())
    }

    fn item(&self, mut item: RawItem, start: u64) -> RawItem {
        item.origin = Origin {
            stream: Some(Arc::clone(&self.path_text)),
            position: Some(start.to_string().into()),
        };
        if start == 0 && self.cfg.format == Format::Csv {
            item.header = true;
        }
        item
    }
}

fn expand(pattern: &str) -> Result<Vec<PathBuf>> {
    let paths = glob::glob(pattern).map_err(|e| Error::Source {
        component: "file".into(),
        message: format!("bad glob `{pattern}`: {e}"),
        retry: crate::Retry::No,
    })?;
    let mut files: Vec<PathBuf> = paths
        .filter_map(|p| p.ok())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Source {
            component: "file".into(),
            message: format!("no file matches `{pattern}`"),
            retry: crate::Retry::No,
        });
    }
    Ok(files)
}

#[async_trait]
impl Source for FileSource {
    async fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let bad = |m: String| Error::Source {
            component: "file".into(),
            message: m,
            retry: crate::Retry::No,
        };
        let path = position
            .get("path")
            .and_then(|p| p.as_str())
            .ok_or_else(|| bad(format!("bad checkpoint position {position}")))?;
        let offset = position
            .get("offset")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad(format!("bad checkpoint position {position}")))?;
        let index = self
            .files
            .iter()
            .position(|f| f.to_string_lossy() == path)
            .ok_or_else(|| {
                bad(format!(
                    "checkpointed file {path} no longer matches `{}`",
                    self.cfg.path
                ))
            })?;
        self.index = index;
        self.open_current(offset)
    }

    async fn poll(&mut self, max: usize) -> Result<Poll> {
        let mut items = Vec::with_capacity(max.min(4096));
        let mut buf = vec![0u8; CHUNK];
        while items.len() < max {
            if self.file.is_none() {
                if self.index >= self.files.len() {
                    break;
                }
                self.open_current(0)?;
            }
            if let Some(h) = self.pending_header.take() {
                let mut item = RawItem::new(h, Arc::clone(&self.stream));
                item.header = true;
                items.push(item);
                continue;
            }
            let start = self.offset;
            if let Some(line) = self.splitter.next_line(&self.stream) {
                self.offset = line.end;
                items.push(self.item(line.item, start));
                continue;
            }
            if self.eof {
                if let Some(line) = self.splitter.finish(&self.stream) {
                    self.offset = line.end;
                    items.push(self.item(line.item, start));
                }
                self.file = None;
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let f = self.file.as_mut().expect("file opened above");
            // Plain blocking reads: a 256 KiB read from the page cache takes microseconds,
            // less than a hop to the blocking pool would.
            let n = f
                .read(&mut buf)
                .map_err(|e| Error::io("reading", &self.files[self.index], e))?;
            if n == 0 {
                self.eof = true;
            } else {
                self.splitter.feed(&buf[..n]);
            }
        }
        if items.is_empty() && self.index >= self.files.len() {
            return Ok(Poll::End);
        }
        Ok(Poll::Items(items))
    }

    fn position(&self) -> serde_json::Value {
        match self.files.get(self.index) {
            Some(p) => serde_json::json!({"path": p.to_string_lossy(), "offset": self.offset}),
            None => {
                let last = self
                    .files
                    .last()
                    .map(|p| p.to_string_lossy().to_string())
                    .unwrap_or_default();
                let len = self
                    .files
                    .last()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map_or(0, |m| m.len());
                serde_json::json!({"path": last, "offset": len, "done": true})
            }
        }
    }

    /// Bytes: the sizes of the files before the current one plus its offset, of all sizes.
    fn progress(&self) -> Option<(u64, u64)> {
        let total: u64 = self.sizes.iter().sum();
        let before: u64 = self.sizes.iter().take(self.index).sum();
        let done = if self.index >= self.files.len() {
            total
        } else {
            before + self.offset
        };
        Some((done.min(total), total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain(src: &mut FileSource) -> Vec<(String, serde_json::Value)> {
        let mut out = Vec::new();
        loop {
            match src.poll(2).await.unwrap() {
                Poll::Items(items) => {
                    for i in items {
                        out.push((String::from_utf8(i.data).unwrap(), src.position()));
                    }
                }
                Poll::End => return out,
                Poll::Idle(_) => unreachable!(),
            }
        }
    }

    #[tokio::test]
    async fn reads_all_files_and_resumes_from_every_position() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "1\n2\n3\n").unwrap();
        std::fs::write(dir.path().join("b.txt"), "4\n5").unwrap();
        let cfg = FileSourceConfig {
            path: format!("{}/*.txt", dir.path().display()),
            format: Format::Lines,
            max_record_bytes: 100,
        };
        let mut src = FileSource::new(cfg.clone()).unwrap();
        let all: Vec<String> = drain(&mut src).await.into_iter().map(|(l, _)| l).collect();
        assert_eq!(all, ["1", "2", "3", "4", "5"]);
        // Restoring after each item must yield exactly the remaining items.
        let mut src = FileSource::new(cfg.clone()).unwrap();
        let mut seen = Vec::new();
        loop {
            match src.poll(1).await.unwrap() {
                Poll::Items(items) if !items.is_empty() => {
                    seen.push(String::from_utf8(items[0].data.clone()).unwrap());
                    let pos = src.position();
                    let mut resumed = FileSource::new(cfg.clone()).unwrap();
                    resumed.restore(&pos).await.unwrap();
                    let rest: Vec<String> = drain(&mut resumed)
                        .await
                        .into_iter()
                        .map(|(l, _)| l)
                        .collect();
                    let mut whole = seen.clone();
                    whole.extend(rest);
                    assert_eq!(whole, all, "resumed at {pos}");
                }
                Poll::End => break,
                _ => {}
            }
        }
    }
}
