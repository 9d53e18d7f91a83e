//! Checkpoints in an object store (see the parent module for the layout and the write order).
//!
//! Under the store's prefix:
//!
//! ```text
//! files/<name>.<size>.<md5>              every file of every kept checkpoint, stored once
//! chk-<epoch>/MANIFEST.json              a checkpoint: the osprey manifest, listing its files
//! superseded/chk-<epoch>/MANIFEST.json   a checkpoint a --from-checkpoint rollback passed over
//! ```
//!
//! The object I/O is behind [`Objects`] (S3 implements it; tests can wrap it), so the rules
//! here (what to upload, when a checkpoint exists, what may be deleted) are in one place.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{CheckpointStore, FetchStats, Listed, Listing, SaveStats, Step, crash_point};
use crate::state::checkpoint::{MANIFEST, Manifest, StoredFile};
use crate::{Error, Result};

/// Files sent or fetched at once.
const PARALLEL: usize = 8;
const FILES: &str = "files/";
const SUPERSEDED: &str = "superseded/";

/// Why an object operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectError {
    /// No object of that key.
    #[error("no such object")]
    NotFound,
    /// Anything else: the service's code and message, or the transport error.
    #[error("{0}")]
    Other(String),
}

/// The object operations a [`RemoteStore`] needs. Keys are relative to the store's prefix.
#[async_trait]
pub trait Objects: Send + Sync + 'static {
    /// Uploads the local file `path` as `key` (one atomic PUT).
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), ObjectError>;
    /// Uploads `bytes` as `key` (one atomic PUT).
    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), ObjectError>;
    /// Reads a whole (small) object.
    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, ObjectError>;
    /// Downloads `key` into the new local file `path`; returns its length and MD5 (hex).
    async fn get_to_file(&self, key: &str, path: &Path) -> Result<(u64, String), ObjectError>;
    /// Every key starting with `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError>;
    /// Deletes one object (deleting a missing one is not an error).
    async fn delete(&self, key: &str) -> Result<(), ObjectError>;
}

/// See the module docs.
pub struct RemoteStore {
    objects: Arc<dyn Objects>,
    location: String,
    scratch: PathBuf,
    /// Files of the newest checkpoint this process saved or restored, by local path and size:
    /// SSTs among them are not hashed or sent again.
    known: Mutex<HashMap<(PathBuf, u64), StoredFile>>,
    /// A test's injected failure: the step returns an error, as if the process died there.
    fail_at: Mutex<Option<Step>>,
}

fn manifest_key(epoch: u64) -> String {
    format!("chk-{epoch:010}/{MANIFEST}")
}

fn epoch_of_key(key: &str) -> Option<u64> {
    key.strip_prefix("chk-")?
        .strip_suffix(MANIFEST)?
        .strip_suffix('/')?
        .parse()
        .ok()
}

/// Hashes a local file: its length and MD5.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    use md5::{Digest, Md5};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex(&h.finalize())))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Every file under `dir`, as (path relative to `dir`, absolute path).
fn walk(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let r = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            walk(&path, &r, out)?;
        } else {
            out.push((r, path));
        }
    }
    Ok(())
}

fn object_name(path: &Path, size: u64, md5: &str) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    format!("{FILES}{name}.{size}.{md5}")
}

impl RemoteStore {
    /// A store over `objects`, named `location` (`s3://bucket/prefix/`) in errors, staging
    /// snapshots and restores under the local directory `scratch`.
    pub fn new(objects: Arc<dyn Objects>, location: String, scratch: PathBuf) -> Self {
        RemoteStore {
            objects,
            location,
            scratch,
            known: Mutex::new(HashMap::new()),
            fail_at: Mutex::new(None),
        }
    }

    /// Makes `step` fail (once) with an error, as a crash there would stop the checkpoint.
    pub fn fail_at(&self, step: Option<Step>) {
        *self.fail_at.lock().unwrap_or_else(|p| p.into_inner()) = step;
    }

    fn step(&self, step: Step, epoch: u64) -> Result<()> {
        crash_point(step, epoch);
        let mut at = self.fail_at.lock().unwrap_or_else(|p| p.into_inner());
        if *at == Some(step) {
            *at = None;
            return Err(Error::Internal(format!(
                "injected failure at {step:?} of checkpoint {epoch}"
            )));
        }
        Ok(())
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::checkpoint(&self.location, format!("(checkpoint.dir) {what}: {e}"))
    }

    fn remember(&self, m: &Manifest) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.clear();
        for f in &m.files {
            known.insert((f.path.clone(), f.size), f.clone());
        }
    }

    /// Reads every manifest. The flag is true when some manifest could not be fetched at all
    /// (as opposed to fetched and found corrupt): retention must then delete nothing.
    async fn scan(&self) -> Result<(Listing, Vec<u64>, bool)> {
        let keys = self
            .objects
            .list("")
            .await
            .map_err(|e| self.err("cannot be listed", e))?;
        let mut epochs: Vec<u64> = keys.iter().filter_map(|k| epoch_of_key(k)).collect();
        epochs.sort_unstable();
        let superseded: Vec<u64> = keys
            .iter()
            .filter_map(|k| epoch_of_key(k.strip_prefix(SUPERSEDED)?))
            .collect();
        let mut unreadable = false;
        let mut checkpoints = Vec::new();
        for &epoch in &epochs {
            let manifest = match self.objects.get_bytes(&manifest_key(epoch)).await {
                Ok(bytes) => Manifest::from_bytes(&self.name_of(epoch), &bytes),
                Err(e) => {
                    unreadable = true;
                    Err(Error::checkpoint(
                        self.name_of(epoch),
                        format!("manifest cannot be read: {e}"),
                    ))
                }
            };
            checkpoints.push(Listed {
                epoch,
                name: self.name_of(epoch),
                manifest,
            });
        }
        let max_epoch = epochs.iter().chain(&superseded).copied().max().unwrap_or(0);
        Ok((
            Listing {
                checkpoints,
                max_epoch,
            },
            superseded,
            unreadable,
        ))
    }

    /// Sends `files` (local path, object) at most [`PARALLEL`] at a time.
    async fn upload(&self, files: Vec<(PathBuf, String)>) -> Result<()> {
        let mut set = tokio::task::JoinSet::new();
        let mut pending = files.into_iter();
        let mut first_err = None;
        loop {
            while set.len() < PARALLEL {
                let Some((path, key)) = pending.next() else {
                    break;
                };
                let objects = Arc::clone(&self.objects);
                set.spawn(async move {
                    objects
                        .put_file(&key, &path)
                        .await
                        .map_err(|e| format!("uploading {} as {key}: {e}", path.display()))
                });
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                    pending = Vec::new().into_iter();
                }
                Err(e) => {
                    first_err.get_or_insert(format!("upload task panicked: {e}"));
                }
            }
        }
        match first_err {
            None => Ok(()),
            Some(e) => Err(self.err("checkpoint upload failed", e)),
        }
    }

    /// Fetches `files` (object, local path, size, md5) at most [`PARALLEL`] at a time,
    /// checking each one's length and MD5.
    async fn download(&self, name: &Path, files: Vec<StoredFile>) -> Result<u64> {
        let mut set = tokio::task::JoinSet::new();
        let mut pending = files.into_iter();
        let mut bytes = 0;
        let mut first_err: Option<Error> = None;
        loop {
            while set.len() < PARALLEL && first_err.is_none() {
                let Some(f) = pending.next() else { break };
                let objects = Arc::clone(&self.objects);
                set.spawn(async move {
                    if let Some(parent) = f.path.parent() {
                        tokio::fs::create_dir_all(parent)
                            .await
                            .map_err(|e| (f.clone(), ObjectError::Other(e.to_string())))?;
                    }
                    let got = objects.get_to_file(&f.object, &f.path).await;
                    got.map(|(size, md5)| (f.clone(), size, md5))
                        .map_err(|e| (f, e))
                });
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            let e = match done {
                Ok(Ok((f, size, md5))) if size == f.size && md5 == f.md5 => {
                    bytes += size;
                    continue;
                }
                Ok(Ok((f, size, md5))) => Error::checkpoint(
                    name,
                    format!(
                        "file {} ({}) is corrupt: {size} bytes with MD5 {md5}, the manifest says {} bytes with MD5 {}",
                        f.object,
                        f.path.display(),
                        f.size,
                        f.md5
                    ),
                ),
                Ok(Err((f, ObjectError::NotFound))) => Error::checkpoint(
                    name,
                    format!(
                        "is missing its file {} ({}); it cannot be restored",
                        f.object,
                        f.path.display()
                    ),
                ),
                Ok(Err((f, e))) => self.err(&format!("downloading {}", f.object), e),
                Err(e) => Error::Internal(format!("download task panicked: {e}")),
            };
            first_err.get_or_insert(e);
        }
        match first_err {
            None => Ok(bytes),
            Some(e) => Err(e),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(format!("task panicked: {e}"))))
}

#[async_trait]
impl CheckpointStore for RemoteStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn name_of(&self, epoch: u64) -> PathBuf {
        PathBuf::from(format!("{}chk-{epoch:010}", self.location))
    }

    async fn list(&self) -> Result<Listing> {
        Ok(self.scan().await?.0)
    }

    async fn read(&self, epoch: u64) -> Result<Manifest> {
        let name = self.name_of(epoch);
        match self.objects.get_bytes(&manifest_key(epoch)).await {
            Ok(bytes) => Manifest::from_bytes(&name, &bytes),
            Err(ObjectError::NotFound) => Err(Error::checkpoint(
                name,
                format!("does not exist (no {MANIFEST}); it is incomplete or not a checkpoint"),
            )),
            Err(e) => Err(self.err(&format!("reading the manifest of chk-{epoch:010}"), e)),
        }
    }

    async fn prepare(&self, epoch: u64) -> Result<PathBuf> {
        let dir = self.scratch.join("upload").join(format!("chk-{epoch:010}"));
        let d = dir.clone();
        blocking(move || {
            if d.exists() {
                std::fs::remove_dir_all(&d)?;
            }
            if let Some(p) = d.parent() {
                std::fs::create_dir_all(p)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::io("preparing", &dir, e))?;
        Ok(dir)
    }

    async fn save(&self, dir: &Path, mut manifest: Manifest) -> Result<SaveStats> {
        let epoch = manifest.epoch;
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let known_objects: HashSet<String> = known.values().map(|f| f.object.clone()).collect();
        // Which files the checkpoint needs: the snapshot's, then the sealed output's.
        let d = dir.to_path_buf();
        let sources: Vec<PathBuf> = manifest
            .commits
            .iter()
            .map(|c| c.source().to_path_buf())
            .collect();
        let (files, outputs) = blocking(move || {
            let mut found = Vec::new();
            walk(&d, Path::new(""), &mut found)?;
            found.sort();
            let mut files = Vec::new();
            for (rel, abs) in found {
                let size = std::fs::metadata(&abs)?.len();
                let is_sst = rel.extension().is_some_and(|e| e == "sst");
                let stored = match known.get(&(rel.clone(), size)) {
                    Some(f) if is_sst => f.clone(),
                    _ => {
                        let (size, md5) = hash_file(&abs)?;
                        StoredFile {
                            object: object_name(&rel, size, &md5),
                            path: rel,
                            size,
                            md5,
                        }
                    }
                };
                files.push((stored, abs));
            }
            let mut outputs = Vec::new();
            for src in sources {
                // A commit whose file is gone was published already (carried over from a
                // failed checkpoint and published by a restore): nothing to keep.
                if !src.exists() {
                    continue;
                }
                let (size, md5) = hash_file(&src)?;
                outputs.push((
                    StoredFile {
                        object: object_name(&src, size, &md5),
                        path: src.clone(),
                        size,
                        md5,
                    },
                    src,
                ));
            }
            Ok((files, outputs))
        })
        .await
        .map_err(|e| Error::io("hashing the snapshot in", dir, e))?;

        let mut stats = SaveStats::default();
        let mut to_send: Vec<(PathBuf, String)> = Vec::new();
        let mut sending: HashSet<String> = HashSet::new();
        for (f, abs) in files.iter().chain(&outputs) {
            if known_objects.contains(&f.object) || !sending.insert(f.object.clone()) {
                stats.files_reused += 1;
            } else {
                stats.files_uploaded += 1;
                stats.bytes_uploaded += f.size;
                to_send.push((abs.clone(), f.object.clone()));
            }
        }
        // Half, then the rest: a test can stop the checkpoint in between.
        let rest = to_send.split_off(to_send.len() / 2);
        self.upload(to_send).await?;
        self.step(Step::SomeFiles, epoch)?;
        self.upload(rest).await?;
        self.step(Step::AllFiles, epoch)?;

        manifest.files = files.into_iter().map(|(f, _)| f).collect();
        manifest.outputs = outputs.into_iter().map(|(f, _)| f).collect();
        // The commit point: the checkpoint exists once this PUT succeeds.
        self.objects
            .put_bytes(&manifest_key(epoch), manifest.to_bytes())
            .await
            .map_err(|e| self.err(&format!("writing the manifest of chk-{epoch:010}"), e))?;
        self.remember(&manifest);
        self.step(Step::Manifest, epoch)?;
        let d = dir.to_path_buf();
        blocking(move || std::fs::remove_dir_all(&d))
            .await
            .map_err(|e| Error::io("removing the uploaded snapshot", dir, e))?;
        Ok(stats)
    }

    async fn fetch(&self, epoch: u64, scratch: &Path) -> Result<(PathBuf, Manifest, FetchStats)> {
        let manifest = self.read(epoch).await?;
        let name = self.name_of(epoch);
        let target = scratch.join(format!("chk-{epoch:010}"));
        let t = target.clone();
        blocking(move || {
            if t.exists() {
                std::fs::remove_dir_all(&t)?;
            }
            std::fs::create_dir_all(&t)
        })
        .await
        .map_err(|e| Error::io("preparing", &target, e))?;
        let mut files: Vec<StoredFile> = manifest
            .files
            .iter()
            .map(|f| StoredFile {
                path: target.join(&f.path),
                ..f.clone()
            })
            .collect();
        // Sealed output whose local file is gone (a new machine): put it back for the
        // restored checkpoint's commits to publish.
        files.extend(
            manifest
                .outputs
                .iter()
                .filter(|f| !f.path.exists())
                .cloned(),
        );
        let count = files.len() as u64;
        let bytes = self.download(&name, files).await?;
        self.remember(&manifest);
        Ok((
            target,
            manifest,
            FetchStats {
                bytes,
                files: count,
            },
        ))
    }

    async fn retain(&self, keep: usize) -> Result<u64> {
        let (listing, superseded, unreadable) = self.scan().await?;
        if unreadable {
            tracing::warn!(store = %self.location, "A manifest could not be read; deleting nothing this time.");
            return Ok(0);
        }
        let complete: Vec<&Listed> = listing
            .checkpoints
            .iter()
            .filter(|l| l.manifest.is_ok())
            .collect();
        let kept = &complete[complete.len().saturating_sub(keep)..];
        let oldest_kept = kept.first().map_or(u64::MAX, |l| l.epoch);
        let mut referenced: HashSet<&str> = HashSet::new();
        for l in kept {
            let m = l.manifest.as_ref().expect("complete");
            referenced.extend(m.files.iter().chain(&m.outputs).map(|f| f.object.as_str()));
        }
        // 1. Drop the checkpoints: their manifests go first, so a crash from here on leaves
        //    only checkpoints whose files are all still there.
        let mut deleted = 0;
        let mut dropped: Vec<String> = listing
            .checkpoints
            .iter()
            .filter(|l| l.epoch < oldest_kept)
            .map(|l| manifest_key(l.epoch))
            .collect();
        dropped.extend(
            superseded
                .iter()
                .map(|e| format!("{SUPERSEDED}{}", manifest_key(*e))),
        );
        for key in &dropped {
            self.objects
                .delete(key)
                .await
                .map_err(|e| self.err(&format!("deleting {key}"), e))?;
            deleted += 1;
        }
        self.step(Step::MidGc, listing.max_epoch)?;
        // 2. Files no kept checkpoint lists (dropped ones, and leftovers of checkpoints that
        //    never got their manifest).
        let files = self
            .objects
            .list(FILES)
            .await
            .map_err(|e| self.err("cannot be listed", e))?;
        for key in files.iter().filter(|k| !referenced.contains(k.as_str())) {
            self.objects
                .delete(key)
                .await
                .map_err(|e| self.err(&format!("deleting {key}"), e))?;
            deleted += 1;
        }
        Ok(deleted)
    }

    async fn supersede_after(&self, epoch: u64) -> Result<Vec<u64>> {
        let (listing, _, _) = self.scan().await?;
        let mut out = Vec::new();
        for l in listing.checkpoints.iter().rev().filter(|l| l.epoch > epoch) {
            let key = manifest_key(l.epoch);
            let bytes = match self.objects.get_bytes(&key).await {
                Ok(b) => b,
                Err(ObjectError::NotFound) => continue,
                Err(e) => return Err(self.err(&format!("reading {key}"), e)),
            };
            self.objects
                .put_bytes(&format!("{SUPERSEDED}{key}"), bytes)
                .await
                .map_err(|e| self.err(&format!("superseding {key}"), e))?;
            self.objects
                .delete(&key)
                .await
                .map_err(|e| self.err(&format!("superseding {key}"), e))?;
            out.push(l.epoch);
        }
        Ok(out)
    }
}
