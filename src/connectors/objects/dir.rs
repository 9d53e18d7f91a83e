//! `type = "dir"`: files dropped into a local folder (the quick start), one record per file
//! with its bytes. What is new and how the position is kept: see [`super`].

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use super::{Lister, ObjectMeta, ObjectOptions, ObjectSource};
use crate::connectors::{Source, SourceSpec};
use crate::core::ConfigError;
use crate::{Error, Result};

/// Lists a local folder (recursively); keys are `/`-separated relative paths.
pub struct DirLister {
    root: PathBuf,
    prefix: String,
    location: String,
}

impl DirLister {
    /// Lists files under `root` whose relative path starts with `prefix`.
    pub fn new(root: PathBuf, prefix: String) -> Self {
        let location = root.to_string_lossy().into_owned();
        DirLister {
            root,
            prefix,
            location,
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectMeta>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        // Hidden files are editors' and copy tools' temporaries (`.x.jpg.part`).
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let meta = entry.metadata()?;
        let path = entry.path();
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let key = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            out.push(ObjectMeta {
                etag: format!("{:x}-{:x}", meta.len(), modified.as_nanos()),
                key,
                size: meta.len(),
                last_modified_ms: modified.as_millis() as i64,
            });
        }
    }
    Ok(())
}

#[async_trait]
impl Lister for DirLister {
    async fn list(&mut self, start_after: Option<&str>) -> Result<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let mut all = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &mut out).map(|()| out)
        })
        .await
        .map_err(|e| Error::Internal(format!("listing task panicked: {e}")))?
        .map_err(|e| Error::io("listing", &self.root, e))?;
        all.retain(|o| {
            o.key.starts_with(&self.prefix) && start_after.is_none_or(|s| o.key.as_str() > s)
        });
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }

    async fn get(&mut self, key: &str) -> Result<Vec<u8>> {
        let path = self.root.join(key);
        tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io("reading", path, e))
    }

    fn location(&self) -> &str {
        &self.location
    }
}

/// `type = "dir"`: image files dropped into a local folder (the quick start).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSourceConfig {
    /// The folder to watch (subfolders included).
    pub path: PathBuf,
    /// Only relative paths starting with this. Default: all.
    #[serde(default)]
    pub prefix: String,
    /// Only names ending with one of these (case-insensitive), e.g. `[".jpg", ".png"]`.
    /// Default: all files.
    #[serde(default)]
    pub suffix: Vec<String>,
    /// Wait between listings that found nothing new. Default 10 s.
    #[serde(default = "super::default_poll_interval")]
    pub poll_interval: crate::core::Duration,
    /// How late (by modification time) a file whose name sorts before the last one read is
    /// still picked up. Default 1 h; `"0s"` reads only names after the last one.
    #[serde(default = "super::default_late_window")]
    pub late_window: crate::core::Duration,
    /// Files larger than this are not read but dead-lettered (`too_large`). Default 50 MiB.
    #[serde(default = "super::default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// End the job after a listing finds nothing new (a bounded run). Default false.
    #[serde(default)]
    pub stop_when_idle: bool,
    /// Bound on the recently-read names kept for late arrivals. Default 100,000.
    #[serde(default = "super::default_max_tracked_keys")]
    pub max_tracked_keys: usize,
}

impl SourceSpec for DirSourceConfig {
    fn type_name(&self) -> &'static str {
        "dir"
    }

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !self.path.is_dir() {
            errors.push(ConfigError::new(
                "source.path",
                format!("{} is not a directory", self.path.display()),
            ));
        }
        if self.poll_interval.as_std().is_zero() {
            errors.push(ConfigError::new(
                "source.poll_interval",
                "must be greater than zero",
            ));
        }
        errors
    }

    fn max_record_bytes(&self) -> usize {
        self.max_object_bytes.try_into().unwrap_or(usize::MAX)
    }

    fn build(&self) -> Result<Box<dyn Source>> {
        let opts = ObjectOptions::new(
            &self.suffix,
            self.poll_interval,
            self.late_window,
            self.max_object_bytes,
            self.stop_when_idle,
            self.max_tracked_keys,
        );
        Ok(Box::new(ObjectSource::new(
            DirLister::new(self.path.clone(), self.prefix.clone()),
            opts,
            "dir",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dir_lister_lists_recursively_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/x y.png"), b"1").unwrap();
        std::fs::write(dir.path().join("a.jpg"), b"22").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"3").unwrap();
        let mut l = DirLister::new(dir.path().to_path_buf(), String::new());
        let keys: Vec<String> = l
            .list(None)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["a.jpg", "sub/x y.png"]);
        assert_eq!(l.get("sub/x y.png").await.unwrap(), b"1");
        let after: Vec<String> = l
            .list(Some("a.jpg"))
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(after, ["sub/x y.png"]);
    }
}
