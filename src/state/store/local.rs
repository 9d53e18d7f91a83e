//! Checkpoints in a local directory: `chk-<epoch>/` per checkpoint (see
//! [`crate::state::checkpoint`] for the write order). Rolled-back-over checkpoints are
//! renamed `superseded-chk-<epoch>/` until retention removes them.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{CheckpointStore, FetchStats, Listed, Listing, SaveStats};
use crate::state::checkpoint::{self, Manifest};
use crate::{Error, Result};

const SUPERSEDED: &str = "superseded-";

/// See the module docs.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// The store at `root` (created by [`super::open`]).
    pub fn new(root: PathBuf) -> Self {
        LocalStore { root }
    }

    fn superseded(&self) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let epoch = name
                    .strip_prefix(SUPERSEDED)?
                    .strip_prefix("chk-")?
                    .parse()
                    .ok()?;
                Some((epoch, e.path()))
            })
            .collect()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("checkpoint store task panicked: {e}")))?
}

#[async_trait]
impl CheckpointStore for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn name_of(&self, epoch: u64) -> PathBuf {
        checkpoint::checkpoint_path(&self.root, epoch)
    }

    async fn list(&self) -> Result<Listing> {
        let root = self.root.clone();
        let superseded_max = self.superseded().iter().map(|(e, _)| *e).max();
        blocking(move || {
            checkpoint::remove_leftovers(&root)?;
            let found = checkpoint::list(&root)?;
            let max_epoch = found
                .iter()
                .map(|f| f.epoch)
                .chain(superseded_max)
                .max()
                .unwrap_or(0);
            let checkpoints = found
                .into_iter()
                .map(|f| Listed {
                    epoch: f.epoch,
                    name: f.path,
                    manifest: f.manifest,
                })
                .collect();
            Ok(Listing {
                checkpoints,
                max_epoch,
            })
        })
        .await
    }

    async fn read(&self, epoch: u64) -> Result<Manifest> {
        let dir = self.name_of(epoch);
        blocking(move || Manifest::read(&dir)).await
    }

    async fn prepare(&self, epoch: u64) -> Result<PathBuf> {
        let tmp = self.name_of(epoch).with_extension("tmp");
        let t = tmp.clone();
        blocking(move || {
            if t.exists() {
                std::fs::remove_dir_all(&t).map_err(|e| Error::io("clearing", &t, e))?;
            }
            Ok(())
        })
        .await?;
        Ok(tmp)
    }

    async fn save(&self, dir: &Path, manifest: Manifest) -> Result<SaveStats> {
        let tmp = dir.to_path_buf();
        let final_dir = self.name_of(manifest.epoch);
        let root = self.root.clone();
        super::crash_point(super::Step::AllFiles, manifest.epoch);
        blocking(move || {
            manifest.write(&tmp)?;
            std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io("renaming", &tmp, e))?;
            checkpoint::sync_dir(&root)?;
            Ok(SaveStats::default())
        })
        .await
    }

    async fn fetch(&self, epoch: u64, _scratch: &Path) -> Result<(PathBuf, Manifest, FetchStats)> {
        let dir = self.name_of(epoch);
        let manifest = self.read(epoch).await?;
        Ok((dir, manifest, FetchStats::default()))
    }

    async fn retain(&self, keep: usize) -> Result<u64> {
        let root = self.root.clone();
        let superseded = self.superseded();
        blocking(move || {
            let before = checkpoint::list(&root)?.len() as u64;
            checkpoint::prune(&root, keep)?;
            let after = checkpoint::list(&root)?.len() as u64;
            for (_, path) in &superseded {
                std::fs::remove_dir_all(path).map_err(|e| Error::io("removing", path, e))?;
            }
            Ok(before - after + superseded.len() as u64)
        })
        .await
    }

    async fn supersede_after(&self, epoch: u64) -> Result<Vec<u64>> {
        let root = self.root.clone();
        blocking(move || {
            let mut newer: Vec<checkpoint::Found> = checkpoint::list(&root)?
                .into_iter()
                .filter(|f| f.epoch > epoch)
                .collect();
            // Newest first: if this is interrupted, what is left visible is still a prefix
            // of the history.
            newer.reverse();
            let mut out = Vec::new();
            for f in newer {
                let name = f.path.file_name().expect("checkpoint dirs have names");
                let to = root.join(format!("{SUPERSEDED}{}", name.to_string_lossy()));
                std::fs::rename(&f.path, &to).map_err(|e| Error::io("superseding", &f.path, e))?;
                out.push(f.epoch);
            }
            checkpoint::sync_dir(&root)?;
            Ok(out)
        })
        .await
    }
}
