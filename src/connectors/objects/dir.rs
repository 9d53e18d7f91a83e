//! `type = "dir"`: files dropped into a local folder (the quick start), one record per file
//! with its bytes. What is new and how the position is kept: see [`super`].

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use super::{GetError, Lister, ObjectMeta, ObjectOptions, ObjectSource, PAGE_SIZE, Page};
use crate::Result;
use crate::connectors::{
    FAILURE_ACCESS_DENIED, FAILURE_NOT_FOUND, FAILURE_UNAVAILABLE, Source, SourceFailure,
    SourceSpec,
};
use crate::core::ConfigError;

/// Lists a local folder (recursively); keys are `/`-separated relative paths.
pub struct DirLister {
    root: PathBuf,
    prefix: String,
    location: String,
    /// The walk of the scan in progress, sorted by key: later pages of a scan are served from
    /// it rather than walking the folder again.
    walked: Vec<ObjectMeta>,
}

impl DirLister {
    /// Lists files under `root` whose relative path starts with `prefix`.
    pub fn new(root: PathBuf, prefix: String) -> Self {
        let location = root.to_string_lossy().into_owned();
        DirLister {
            root,
            prefix,
            location,
            walked: Vec::new(),
        }
    }
}

/// The key of `path` under `root`, and whether every part of it is UTF-8.
fn key_of(root: &Path, path: &Path) -> (String, bool) {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let utf8 = rel.to_str().is_some();
    let key = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    (key, utf8)
}

/// An entry the walk found but cannot read: dead-lettered in its turn (see [`super`]).
fn unreadable(key: String, reason: &'static str, why: String) -> ObjectMeta {
    let mut o = ObjectMeta::new(key, 0, String::new(), 0);
    o.unreadable = Some((reason, why));
    o
}

/// Walks `dir`. Entries that cannot be read (a subfolder it may not list, a broken link, a
/// name that is not UTF-8) are listed as unreadable; an entry that vanished during the walk
/// is skipped; only failing to list `root` itself is an error.
fn walk(root: &Path, dir: &Path, out: &mut Vec<ObjectMeta>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if dir != root => {
            let (key, _) = key_of(root, dir);
            out.push(unreadable(
                format!("{key}/"),
                "unreadable",
                format!("cannot list folder {}: {e}", dir.display()),
            ));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        // Hidden files are editors' and copy tools' temporaries (`.x.jpg.part`).
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let (key, utf8) = key_of(root, &path);
        // Follows links: a link to a file is read as that file.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.is_symlink() => {
                let why = format!("{} is a broken link", path.display());
                out.push(unreadable(key, "unreadable", why));
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.push(unreadable(
                    key,
                    "unreadable",
                    format!("{}: {e}", path.display()),
                ));
                continue;
            }
        };
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            if !utf8 {
                let why = format!("file name is not UTF-8: {}", path.display());
                out.push(unreadable(key, "bad_name", why));
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            out.push(ObjectMeta::new(
                key,
                meta.len(),
                format!("{:x}-{:x}", meta.len(), modified.as_nanos()),
                modified.as_millis() as i64,
            ));
        }
    }
    Ok(())
}

/// The kind of a failure to list the folder itself.
fn failure_of(root: &Path, e: &std::io::Error) -> SourceFailure {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => FAILURE_NOT_FOUND,
        std::io::ErrorKind::PermissionDenied => FAILURE_ACCESS_DENIED,
        _ => FAILURE_UNAVAILABLE,
    };
    SourceFailure {
        kind,
        message: format!("listing {}: {e}", root.display()),
    }
}

/// Why reading one listed file failed: always this file's problem, never the source's.
fn get_error(path: &Path, e: &std::io::Error) -> GetError {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{} was deleted after it was listed", path.display())
        }
        _ => format!("reading {}: {e}", path.display()),
    };
    GetError::Unreadable("unreadable", why)
}

#[async_trait]
impl Lister for DirLister {
    async fn list_page(
        &mut self,
        start_after: Option<&str>,
        token: Option<&str>,
    ) -> std::result::Result<Page, SourceFailure> {
        if token.is_none() {
            let root = self.root.clone();
            let walked = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                walk(&root, &root, &mut out).map(|()| out)
            })
            .await
            .map_err(|e| SourceFailure {
                kind: FAILURE_UNAVAILABLE,
                message: format!("listing task failed: {e}"),
            })?;
            let mut all = walked.map_err(|e| failure_of(&self.root, &e))?;
            all.retain(|o| o.key.starts_with(&self.prefix));
            all.sort_by(|a, b| a.key.cmp(&b.key));
            self.walked = all;
        }
        // The page starts after both the scan's start and the previous page's last key.
        let after = match (start_after, token) {
            (Some(a), Some(t)) => Some(a.max(t)),
            (a, t) => a.or(t),
        };
        let from = after.map_or(0, |a| self.walked.partition_point(|o| o.key.as_str() <= a));
        let to = (from + PAGE_SIZE).min(self.walked.len());
        let objects = self.walked[from..to].to_vec();
        let next = (to < self.walked.len()).then(|| objects[objects.len() - 1].key.clone());
        Ok(Page { objects, next })
    }

    async fn get(&mut self, key: &str) -> std::result::Result<Vec<u8>, GetError> {
        let path = self.root.join(key);
        tokio::fs::read(&path)
            .await
            .map_err(|e| get_error(&path, &e))
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
    use crate::connectors::Poll;

    async fn keys(l: &mut DirLister, after: Option<&str>) -> Vec<String> {
        let page = l.list_page(after, None).await.unwrap();
        assert_eq!(page.next, None);
        page.objects.into_iter().map(|o| o.key).collect()
    }

    #[tokio::test]
    async fn dir_lister_lists_recursively_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/x y.png"), b"1").unwrap();
        std::fs::write(dir.path().join("a.jpg"), b"22").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"3").unwrap();
        let mut l = DirLister::new(dir.path().to_path_buf(), String::new());
        assert_eq!(keys(&mut l, None).await, ["a.jpg", "sub/x y.png"]);
        assert_eq!(l.get("sub/x y.png").await.unwrap(), b"1");
        assert_eq!(keys(&mut l, Some("a.jpg")).await, ["sub/x y.png"]);
    }

    /// Issue 14.5: a listing is served in pages of [`PAGE_SIZE`], each after the last.
    #[tokio::test]
    async fn dir_lister_pages() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..2500 {
            std::fs::write(dir.path().join(format!("{i:05}.bin")), b"x").unwrap();
        }
        let mut l = DirLister::new(dir.path().to_path_buf(), String::new());
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = l
                .list_page(Some("00100.bin"), token.as_deref())
                .await
                .unwrap();
            pages += 1;
            assert!(page.objects.len() <= PAGE_SIZE);
            all.extend(page.objects.into_iter().map(|o| o.key));
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let want: Vec<String> = (101..2500).map(|i| format!("{i:05}.bin")).collect();
        assert_eq!(all, want);
    }

    /// Issue 14.9: a file name that is not UTF-8, a broken link and a file deleted after the
    /// listing are dead letters with a reason; a link to a file is read; the job goes on.
    #[cfg(unix)]
    #[tokio::test]
    async fn r14_9_unreadable_files_are_dead_letters() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("a.jpg"), b"a").unwrap();
        let bad = std::ffi::OsStr::from_bytes(b"b-\xff\xfe.jpg");
        std::fs::write(p.join(bad), b"b").unwrap();
        std::os::unix::fs::symlink(p.join("missing.jpg"), p.join("c-broken.jpg")).unwrap();
        std::os::unix::fs::symlink(p.join("a.jpg"), p.join("d-link.jpg")).unwrap();
        std::fs::write(p.join("e-gone.jpg"), b"e").unwrap();
        std::fs::write(p.join("f.jpg"), b"f").unwrap();
        let opts = ObjectOptions::new(
            &[],
            crate::core::Duration::from_secs(1),
            crate::core::Duration::from_secs(3600),
            1 << 20,
            true,
            100,
        );
        let mut src =
            ObjectSource::new(DirLister::new(p.to_path_buf(), String::new()), opts, "dir");
        let mut good = Vec::new();
        let mut dead = Vec::new();
        for round in 0..20 {
            let polled = src.poll(2).await.unwrap();
            if round == 0 {
                // Listed, not yet fetched.
                std::fs::remove_file(p.join("e-gone.jpg")).unwrap();
            }
            dead.extend(src.take_dead_letters());
            match polled {
                Poll::Items(items) => good.extend(items.into_iter().map(|i| {
                    let r = i.record.unwrap();
                    (r.key.to_string(), r.blob.unwrap().to_vec())
                })),
                Poll::Idle(_) => {}
                Poll::End => break,
            }
        }
        assert_eq!(
            good,
            [
                ("a.jpg".into(), b"a".to_vec()),
                ("d-link.jpg".into(), b"a".to_vec()),
                ("f.jpg".into(), b"f".to_vec())
            ]
        );
        let reasons: Vec<(&str, &str)> = dead.iter().map(|d| (d.reason, d.data.as_str())).collect();
        assert_eq!(
            reasons,
            [
                ("bad_name", "b-\u{fffd}\u{fffd}.jpg"),
                ("unreadable", "c-broken.jpg"),
                ("unreadable", "e-gone.jpg")
            ]
        );
        assert!(dead[0].message.contains("not UTF-8"), "{}", dead[0].message);
        assert!(
            dead[1].message.contains("broken link"),
            "{}",
            dead[1].message
        );
        assert!(
            dead[2].message.contains("deleted after it was listed"),
            "{}",
            dead[2].message
        );
        assert_eq!(src.failure(), None);
    }

    /// Issue 14.10: a folder that is missing is a source failure (retried, reported), not an
    /// error that stops the job at once; it clears when the folder appears.
    #[tokio::test]
    async fn r14_10_missing_folder_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("later");
        let opts = ObjectOptions::new(
            &[],
            crate::core::Duration::from_secs(1),
            crate::core::Duration::from_secs(0),
            1 << 20,
            true,
            100,
        );
        let mut src = ObjectSource::new(DirLister::new(root.clone(), String::new()), opts, "dir");
        assert!(matches!(src.poll(4).await.unwrap(), Poll::Idle(_)));
        let f = src.failure().expect("a failure");
        assert_eq!(f.kind, FAILURE_NOT_FOUND);
        assert!(f.message.contains("later"), "{}", f.message);
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("x"), b"1").unwrap();
        assert!(matches!(src.poll(4).await.unwrap(), Poll::Items(i) if i.len() == 1));
        assert_eq!(src.failure(), None);
    }
}
