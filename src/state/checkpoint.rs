//! Checkpoint files: the manifest, where checkpoints live, how they are found and pruned.
//!
//! A checkpoint is a directory `chk-<epoch>` holding the state snapshot and `MANIFEST.json`.
//! It is built as `chk-<epoch>.tmp`, the manifest written to a temp file, fsynced and renamed,
//! then the directory renamed into place and its parent fsynced. Only a directory named
//! `chk-<epoch>` with a manifest whose checksum verifies counts as complete; a crash at any
//! point leaves either the previous checkpoint or the new one, never half of one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Version of the checkpoint format; bumped when an old osprey could misread a new one.
pub const FORMAT_VERSION: u32 = 1;
/// Manifest file name.
pub const MANIFEST: &str = "MANIFEST.json";

/// Sealed sink output, waiting for the checkpoint covering it to complete: what
/// `Sink::precommit` returns and the manifest keeps, in this serialized form (`kind` tag), so
/// manifests written by earlier versions restore. What a commit means, and how it is
/// published, is the business of the sink that sealed it (`connectors::SinkSpec::commit`);
/// publishing one twice is harmless, so recovery simply publishes a manifest's commits again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Commit {
    /// A file sink's finished in-progress file, to be renamed into the visible output.
    Rename {
        /// In-progress file.
        from: PathBuf,
        /// Final name.
        to: PathBuf,
    },
    /// An object-store sink's staged local file, to be uploaded, then deleted.
    Upload {
        /// The sink that sealed it (its bucket and prefix, `s3://bucket/prefix`).
        sink: String,
        /// Staged local file.
        from: PathBuf,
        /// Object key.
        key: String,
    },
}

impl Commit {
    /// A short description for errors.
    pub fn describe(&self) -> String {
        match self {
            Commit::Rename { from, to } => {
                format!("the rename of {} to {}", from.display(), to.display())
            }
            Commit::Upload { sink, key, .. } => format!("the upload of {key} for {sink}"),
        }
    }

    /// The local file holding the sealed output.
    pub fn source(&self) -> &Path {
        match self {
            Commit::Rename { from, .. } | Commit::Upload { from, .. } => from,
        }
    }
}

/// A file of an object-store checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Where it goes locally: relative to the snapshot directory (`db/000012.sst`) for state
    /// files, the sealed file's own path for outputs.
    pub path: PathBuf,
    /// Its object key under the store's prefix (`files/<name>.<size>.<md5>`).
    pub object: String,
    /// Its length in bytes.
    pub size: u64,
    /// MD5 of its contents, lowercase hex.
    pub md5: String,
}

/// Everything needed to resume a job exactly where the checkpoint was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// osprey version that wrote it.
    pub osprey_version: String,
    /// Job name.
    pub job: String,
    /// State-layout fingerprint of the job (see `JobConfig::state_fingerprint`).
    pub fingerprint: String,
    /// Checkpoint epoch (1, 2, …).
    pub epoch: u64,
    /// Wall-clock time the checkpoint completed, epoch milliseconds.
    pub created_ms: i64,
    /// State backend kind (`rocksdb` or `memory`).
    pub backend: String,
    /// Source position to resume from.
    pub source: serde_json::Value,
    /// Output to publish (already published unless the worker died right after the manifest).
    pub commits: Vec<Commit>,
    /// Records read by the source up to this checkpoint.
    pub records_in: u64,
    /// Bytes of the state snapshot.
    pub state_bytes: u64,
    /// Time taken to write the checkpoint, milliseconds.
    pub duration_ms: u64,
    /// Object-store checkpoints: the snapshot's files, each stored once under a
    /// content-addressed name and shared by every checkpoint that lists it. Empty for
    /// checkpoints in a local directory (the snapshot is the directory itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<StoredFile>,
    /// Object-store checkpoints: copies of the sealed output the commits publish (their
    /// local files do not survive the machine), fetched back on restore when missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<StoredFile>,
    /// The run id the job's output names carry (`connectors::output`), so a restore on a
    /// fresh machine names its output as the checkpointed run did. Empty in manifests
    /// written before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    /// Checksum of the other fields (MD5 hex of the manifest with this field empty).
    #[serde(default)]
    pub checksum: String,
}

impl Manifest {
    fn compute_checksum(&self) -> String {
        let mut copy = self.clone();
        copy.checksum = String::new();
        let body = serde_json::to_vec(&copy).expect("manifest serialises");
        crate::core::hash::md5_hex(&body)
    }

    /// Writes the manifest into `dir` atomically (temp file, fsync, rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(MANIFEST), &self.to_bytes())
    }

    /// The manifest as written: checksummed, pretty JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut m = self.clone();
        m.checksum = m.compute_checksum();
        serde_json::to_vec_pretty(&m).expect("manifest serialises")
    }

    /// Reads and verifies the manifest of checkpoint directory `dir`.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read(&path).map_err(|e| {
            Error::checkpoint(
                dir,
                format!("has no readable {MANIFEST} ({e}); it is incomplete or not a checkpoint"),
            )
        })?;
        Self::from_bytes(dir, &text)
    }

    /// Parses and verifies a manifest; `dir` names the checkpoint in errors.
    pub fn from_bytes(dir: &Path, text: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(text)
            .map_err(|e| Error::checkpoint(dir, format!("{MANIFEST} is corrupt: {e}")))?;
        if m.format != FORMAT_VERSION {
            return Err(Error::checkpoint(
                dir,
                format!(
                    "was written in checkpoint format {} by osprey {}; this osprey {} reads format {FORMAT_VERSION}",
                    m.format,
                    m.osprey_version,
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        if m.checksum != m.compute_checksum() {
            return Err(Error::checkpoint(
                dir,
                format!("{MANIFEST} checksum does not match its contents"),
            ));
        }
        Ok(m)
    }
}

/// Writes `bytes` to `path` via a temp file, fsync and rename, then fsyncs the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming", &tmp, e))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsyncs a directory so that renames inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("syncing", dir, e))
}

/// The directory of checkpoint `epoch`.
pub fn checkpoint_path(root: &Path, epoch: u64) -> PathBuf {
    root.join(format!("chk-{epoch:010}"))
}

/// Parses the epoch out of a `chk-<epoch>` directory name.
pub fn epoch_of(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("chk-")?
        .parse()
        .ok()
}

/// A checkpoint directory found on disk.
#[derive(Debug)]
pub struct Found {
    /// Its directory.
    pub path: PathBuf,
    /// Its epoch.
    pub epoch: u64,
    /// The verified manifest, or why it could not be read.
    pub manifest: Result<Manifest>,
}

/// Every `chk-<epoch>` directory under `root`, oldest first. Leftover `.tmp` directories are
/// ignored (and removed by [`remove_leftovers`]).
pub fn list(root: &Path) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("listing checkpoints in", root, e)),
    };
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io("listing checkpoints in", root, e))?
            .path();
        if let Some(epoch) = epoch_of(&path) {
            out.push(Found {
                manifest: Manifest::read(&path),
                path,
                epoch,
            });
        }
    }
    out.sort_by_key(|f| f.epoch);
    Ok(out)
}

/// Removes half-written checkpoint directories (`chk-*.tmp`) left by a crash.
pub fn remove_leftovers(root: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("chk-") && name.ends_with(".tmp") {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io("removing", &path, e))?;
        }
    }
    Ok(())
}

/// Deletes all but the newest `keep` complete checkpoints.
pub fn prune(root: &Path, keep: usize) -> Result<()> {
    let found = list(root)?;
    let complete: Vec<&Found> = found.iter().filter(|f| f.manifest.is_ok()).collect();
    if complete.len() <= keep {
        return Ok(());
    }
    for f in &complete[..complete.len() - keep] {
        std::fs::remove_dir_all(&f.path)
            .map_err(|e| Error::io("pruning checkpoint", &f.path, e))?;
    }
    Ok(())
}

/// Total bytes of the files under `dir` (hard-linked files counted in full).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(epoch: u64) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            osprey_version: "0".into(),
            job: "j".into(),
            fingerprint: "f".into(),
            epoch,
            created_ms: 1,
            backend: "memory".into(),
            source: serde_json::json!({"offset": 5}),
            commits: vec![],
            records_in: 3,
            state_bytes: 0,
            duration_ms: 0,
            files: vec![],
            outputs: vec![],
            run_id: String::new(),
            checksum: String::new(),
        }
    }

    #[test]
    fn manifest_round_trips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(4);
        m.write(dir.path()).unwrap();
        let back = Manifest::read(dir.path()).unwrap();
        assert_eq!(back.epoch, 4);
        let path = dir.path().join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"records_in\": 3", "\"records_in\": 4");
        std::fs::write(&path, text).unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        std::fs::write(&path, "{not json").unwrap();
        assert!(
            Manifest::read(dir.path())
                .unwrap_err()
                .to_string()
                .contains("corrupt")
        );
    }

    #[test]
    fn commits_keep_their_serialized_form() {
        // What manifests written before the per-sink commit hold: they must still parse.
        let old = r#"[{"kind":"rename","from":"out/.inprogress/p","to":"out/p"},{"kind":"upload","sink":"s3://b/r/","from":"st/x","key":"r/x"}]"#;
        let commits: Vec<Commit> = serde_json::from_str(old).unwrap();
        assert_eq!(
            commits,
            [
                Commit::Rename {
                    from: "out/.inprogress/p".into(),
                    to: "out/p".into(),
                },
                Commit::Upload {
                    sink: "s3://b/r/".into(),
                    from: "st/x".into(),
                    key: "r/x".into(),
                },
            ]
        );
        assert_eq!(serde_json::to_string(&commits).unwrap(), old);
    }

    #[test]
    fn checksum_is_lowercase_hex_md5() {
        use md5::{Digest, Md5};
        let m = manifest(1);
        let mut copy = m.clone();
        copy.checksum = String::new();
        let body = serde_json::to_vec(&copy).unwrap();
        let want: String = Md5::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(m.compute_checksum(), want);
        assert_eq!(want.len(), 32);
    }

    #[test]
    fn rejects_other_formats() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = manifest(1);
        m.format = 99;
        m.write(dir.path()).unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format 99"), "{err}");
    }

    #[test]
    fn prunes_oldest() {
        let dir = tempfile::tempdir().unwrap();
        for e in 1..=5 {
            let p = checkpoint_path(dir.path(), e);
            std::fs::create_dir_all(&p).unwrap();
            manifest(e).write(&p).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("chk-0000000006.tmp")).unwrap();
        remove_leftovers(dir.path()).unwrap();
        prune(dir.path(), 2).unwrap();
        let left: Vec<u64> = list(dir.path()).unwrap().iter().map(|f| f.epoch).collect();
        assert_eq!(left, vec![4, 5]);
    }
}
