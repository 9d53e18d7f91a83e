//! JSON lines in rolling part files, published per checkpoint (exactly-once).
//!
//! Layout under `path`:
//! - `part-<job>-<run>-<component>-<epoch>-<seq>.jsonl`: published output (`<job>-<run>` is
//!   the job's output identity, see [`crate::connectors::output`]; a sink built outside a job
//!   writes `part-<component>-<epoch>-<seq>.jsonl`);
//! - `.inprogress/…`: files of the current epoch, invisible to readers;
//! - `.rolled-back/…`: output published after the checkpoint a run was restored from.
//!
//! A job's names sort by component, then epoch, then sequence, so concatenating its published
//! files in name order gives each component's output in the order it was produced. Recovery
//! touches only files carrying the job's own identity.
//!
//! Commits: a finished in-progress file is a [`Commit::Rename`] to its final name. A rename
//! names both paths, so any file sink can publish one (a restarted job whose sink moved
//! still publishes the output its last checkpoint sealed).

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;

use crate::connectors::{Sink, SinkSpec};
use crate::core::{ConfigError, Record};
use crate::state::checkpoint::{Commit, sync_dir};
use crate::{Error, Result};

const INPROGRESS: &str = ".inprogress";
const ROLLED_BACK: &str = ".rolled-back";

/// `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Output directory.
    pub path: PathBuf,
    /// Roll to a new part file after this many bytes within one epoch. Default 128 MiB.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// The job's output identity (`<job>-<run>`), set by [`crate::connectors::SinkConfig::for_job`];
    /// never read from the job file.
    #[serde(skip)]
    pub identity: Option<String>,
}

impl FileSinkConfig {
    /// A sink writing to `path`, with the default roll size and no job identity.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSinkConfig {
            path: path.into(),
            max_file_bytes: default_max_file_bytes(),
            identity: None,
        }
    }

    /// What this sink's file names start with: `part-<job>-<run>-`, or `part-` without an
    /// identity.
    fn own_prefix(&self) -> String {
        match &self.identity {
            Some(id) => format!("part-{id}-"),
            None => "part-".to_string(),
        }
    }

    /// The epoch of `name` if it is one of this sink's part files.
    fn own_epoch(&self, name: &str) -> Option<u64> {
        name.strip_prefix(&self.own_prefix())?;
        epoch_of_part(name)
    }
}

/// 128 MiB.
pub fn default_max_file_bytes() -> u64 {
    128 << 20
}

/// The epoch encoded in a part file name.
pub fn epoch_of_part(name: &str) -> Option<u64> {
    let stem = name.strip_prefix("part-")?.strip_suffix(".jsonl")?;
    let mut parts = stem.rsplitn(3, '-');
    let _seq = parts.next()?;
    parts.next()?.parse().ok()
}

#[async_trait]
impl SinkSpec for FileSinkConfig {
    fn type_name(&self) -> &'static str {
        "file"
    }

    fn validate(&self, at: &str) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.path.as_os_str().is_empty() {
            errors.push(ConfigError::new(
                format!("{at}.path"),
                "must name a directory",
            ));
        } else if self.path.is_file() {
            errors.push(ConfigError::new(
                format!("{at}.path"),
                format!("{} is a file, not a directory", self.path.display()),
            ));
        }
        if self.max_file_bytes == 0 {
            errors.push(ConfigError::new(
                format!("{at}.max_file_bytes"),
                "must be at least 1",
            ));
        }
        errors
    }

    fn recover(&self, epoch: Option<u64>) -> Result<()> {
        let inprogress = self.path.join(INPROGRESS);
        let prefix = self.own_prefix();
        if let Ok(entries) = std::fs::read_dir(&inprogress) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    std::fs::remove_file(entry.path())
                        .map_err(|e| Error::io("clearing", entry.path(), e))?;
                }
            }
        }
        let Some(epoch) = epoch else { return Ok(()) };
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if self.own_epoch(&name).is_some_and(|e| e > epoch) {
                let aside = self.path.join(ROLLED_BACK);
                std::fs::create_dir_all(&aside).map_err(|e| Error::io("creating", &aside, e))?;
                tracing::warn!(file = %name, epoch, "Moving output published after the restored checkpoint aside.");
                std::fs::rename(entry.path(), aside.join(&name))
                    .map_err(|e| Error::io("moving", entry.path(), e))?;
            }
        }
        Ok(())
    }

    fn build(&self, component: &str, first_epoch: u64) -> Result<Box<dyn Sink>> {
        let mut s = FileSink::new(self.clone(), component)?;
        s.set_epoch(first_epoch);
        Ok(Box::new(s))
    }

    fn owns(&self, commit: &Commit) -> bool {
        matches!(commit, Commit::Rename { .. })
    }

    async fn commit(&self, commits: &[&Commit]) -> Result<()> {
        let renames: Vec<(PathBuf, PathBuf)> = commits
            .iter()
            .filter_map(|c| match c {
                Commit::Rename { from, to } => Some((from.clone(), to.clone())),
                Commit::Upload { .. } => None,
            })
            .collect();
        tokio::task::spawn_blocking(move || publish(&renames))
            .await
            .map_err(|e| Error::Internal(format!("publishing task panicked: {e}")))?
    }

    fn dir(&self) -> Option<PathBuf> {
        Some(self.path.clone())
    }
}

/// See the module docs.
pub struct FileSink {
    cfg: FileSinkConfig,
    component: String,
    inprogress: PathBuf,
    current: Option<(std::io::BufWriter<std::fs::File>, PathBuf, u64)>,
    /// Files finished in this epoch: (in-progress path, final path).
    finished: Vec<(PathBuf, PathBuf)>,
    epoch: u64,
    seq: u32,
    buf: String,
}

impl FileSink {
    /// A sink instance writing files named after `component`.
    pub fn new(cfg: FileSinkConfig, component: &str) -> Result<Self> {
        let inprogress = cfg.path.join(INPROGRESS);
        std::fs::create_dir_all(&inprogress).map_err(|e| Error::io("creating", &inprogress, e))?;
        Ok(FileSink {
            cfg,
            component: component.to_string(),
            inprogress,
            current: None,
            finished: Vec::new(),
            epoch: 0,
            seq: 0,
            buf: String::with_capacity(64 * 1024),
        })
    }

    /// Sets the epoch the next output belongs to (the restored checkpoint's epoch + 1).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    fn name(&self) -> String {
        format!(
            "{}{}-{:010}-{:04}.jsonl",
            self.cfg.own_prefix(),
            self.component,
            self.epoch,
            self.seq
        )
    }

    fn roll(&mut self) -> Result<()> {
        if let Some((mut w, path, _)) = self.current.take() {
            w.flush().map_err(|e| Error::io("writing", &path, e))?;
            let f = w
                .into_inner()
                .map_err(|e| Error::io("writing", &path, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io("syncing", &path, e))?;
            let name = path.file_name().expect("part files have names").to_owned();
            self.finished.push((path, self.cfg.path.join(name)));
            self.seq += 1;
        }
        Ok(())
    }

    fn open(&mut self) -> Result<()> {
        let path = self.inprogress.join(self.name());
        let f = std::fs::File::create(&path).map_err(|e| Error::io("creating", &path, e))?;
        self.current = Some((std::io::BufWriter::with_capacity(256 * 1024, f), path, 0));
        Ok(())
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn write(&mut self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        crate::connectors::render_json_lines(records, &mut self.buf);
        if self
            .current
            .as_ref()
            .is_some_and(|(_, _, n)| *n >= self.cfg.max_file_bytes)
        {
            self.roll()?;
        }
        if self.current.is_none() {
            self.open()?;
        }
        let (w, path, n) = self.current.as_mut().expect("opened above");
        w.write_all(self.buf.as_bytes())
            .map_err(|e| Error::io("writing", &*path, e))?;
        *n += self.buf.len() as u64;
        crate::connectors::count_written(&self.component, records.len());
        Ok(())
    }

    async fn precommit(&mut self, epoch: u64) -> Result<Vec<Commit>> {
        debug_assert!(epoch >= self.epoch, "epochs only grow");
        self.roll()?;
        if !self.finished.is_empty() {
            sync_dir(&self.inprogress)?;
        }
        let commits = self
            .finished
            .drain(..)
            .map(|(from, to)| Commit::Rename { from, to })
            .collect();
        self.epoch = epoch + 1;
        self.seq = 0;
        Ok(commits)
    }
}

/// Renames each finished file `from` to `to`, then fsyncs the directories it renamed into.
/// Idempotent: a commit whose in-progress file is gone was published already, whether or not
/// its published file is still there (a downstream consumer may have moved or deleted it, and
/// the checkpoint that sealed it stays complete). Any other failure (permissions, a full disk)
/// is an error.
fn publish(renames: &[(PathBuf, PathBuf)]) -> Result<()> {
    let mut dirs: Vec<&Path> = Vec::new();
    for (from, to) in renames {
        match std::fs::rename(from, to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && is_gone(from)? => continue,
            Err(e) => return Err(Error::io("publishing", from, e)),
        }
        if let Some(d) = to.parent()
            && !dirs.contains(&d)
        {
            dirs.push(d);
        }
    }
    for d in dirs {
        sync_dir(d)?;
    }
    Ok(())
}

/// Whether `path` does not exist; an error when that cannot be known (a folder on the way is
/// unreadable).
fn is_gone(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io("publishing", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epochs_from_names() {
        assert_eq!(epoch_of_part("part-p001-0000000012-0003.jsonl"), Some(12));
        assert_eq!(epoch_of_part("part-source-0000000002-0000.jsonl"), Some(2));
        assert_eq!(epoch_of_part("other.jsonl"), None);
    }

    #[tokio::test]
    async fn output_is_invisible_until_published() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig {
            max_file_bytes: 10,
            ..FileSinkConfig::new(dir.path())
        };
        let mut sink = FileSink::new(cfg.clone(), "p000").unwrap();
        sink.set_epoch(1);
        let recs: Vec<Record> = (0..3)
            .map(|i| Record::new(format!("k{i}"), vec![i as f64]))
            .collect();
        sink.write(&recs[..1]).await.unwrap();
        sink.write(&recs[1..]).await.unwrap();
        let visible = |d: &Path| {
            std::fs::read_dir(d)
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_file())
                .count()
        };
        assert_eq!(visible(dir.path()), 0);
        let commits = sink.precommit(1).await.unwrap();
        assert_eq!(commits.len(), 2, "rolled after 10 bytes");
        let owned: Vec<&Commit> = commits.iter().collect();
        assert!(owned.iter().all(|c| cfg.owns(c)));
        cfg.commit(&owned).await.unwrap();
        cfg.commit(&owned).await.unwrap(); // idempotent
        assert_eq!(visible(dir.path()), 2);
        // A later epoch that never completes is cleared by recovery.
        sink.write(&recs).await.unwrap();
        let _ = sink.precommit(2).await.unwrap();
        cfg.recover(Some(1)).unwrap();
        assert_eq!(visible(dir.path()), 2);
        assert_eq!(visible(&dir.path().join(INPROGRESS)), 0);
    }

    #[tokio::test]
    async fn a_commit_whose_output_was_consumed_counts_as_done() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig::new(dir.path());
        let mut sink = FileSink::new(cfg.clone(), "p000").unwrap();
        sink.set_epoch(1);
        sink.write(&[Record::new("k", vec![1.0])]).await.unwrap();
        let commits = sink.precommit(1).await.unwrap();
        let owned: Vec<&Commit> = commits.iter().collect();
        cfg.commit(&owned).await.unwrap();
        let Commit::Rename { to, .. } = &commits[0] else {
            panic!("{commits:?}")
        };
        // A downstream consumer moved the published file away, then the worker restarted and
        // publishes the checkpoint's commits again.
        std::fs::rename(to, dir.path().join("consumed.jsonl")).unwrap();
        cfg.commit(&owned).await.unwrap();
        assert!(!to.exists(), "nothing is recreated");
        // Its folder gone too: still done.
        std::fs::remove_dir_all(dir.path()).unwrap();
        cfg.commit(&owned).await.unwrap();
    }

    #[tokio::test]
    async fn a_commit_that_cannot_be_renamed_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig::new(dir.path());
        let mut sink = FileSink::new(cfg.clone(), "p000").unwrap();
        sink.set_epoch(1);
        sink.write(&[Record::new("k", vec![1.0])]).await.unwrap();
        let commits = sink.precommit(1).await.unwrap();
        let Commit::Rename { to, .. } = &commits[0] else {
            panic!("{commits:?}")
        };
        // Something else sits where the file must go: a real error, not "already done".
        std::fs::create_dir_all(to.join("x")).unwrap();
        let owned: Vec<&Commit> = commits.iter().collect();
        let err = cfg.commit(&owned).await.unwrap_err().to_string();
        assert!(err.contains("publishing"), "{err}");
    }

    #[test]
    fn recovery_touches_only_the_jobs_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let mine = FileSinkConfig {
            identity: Some("j-aaa".into()),
            ..FileSinkConfig::new(dir.path())
        };
        let names = [
            "part-j-aaa-p000-0000000003-0000.jsonl",
            "part-j-bbb-p000-0000000003-0000.jsonl",
            "part-p000-0000000003-0000.jsonl",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), "x\n").unwrap();
        }
        std::fs::create_dir_all(dir.path().join(INPROGRESS)).unwrap();
        std::fs::write(dir.path().join(INPROGRESS).join(names[0]), "").unwrap();
        std::fs::write(dir.path().join(INPROGRESS).join(names[1]), "").unwrap();
        mine.recover(Some(2)).unwrap();
        assert!(dir.path().join(ROLLED_BACK).join(names[0]).exists());
        assert!(
            dir.path().join(names[1]).exists(),
            "another run's output stays"
        );
        assert!(dir.path().join(names[2]).exists(), "unnamed output stays");
        assert!(!dir.path().join(INPROGRESS).join(names[0]).exists());
        assert!(dir.path().join(INPROGRESS).join(names[1]).exists());
    }
}
