//! Where checkpoints are kept: a local directory (the default) or an object store (S3).
//!
//! The live state (RocksDB) is always on local disk; a [`CheckpointStore`] keeps the durable
//! copies. Every store follows the same rule: a checkpoint exists once its manifest exists,
//! and the manifest is written last, so a crash at any point leaves the previous checkpoint
//! (or the new one), never half of one.
//!
//! - [`LocalStore`]: `chk-<epoch>/` directories (see [`super::checkpoint`]); the snapshot is
//!   taken straight into `chk-<epoch>.tmp` and renamed into place.
//! - [`RemoteStore`]: objects under a prefix. Files are content-addressed
//!   (`files/<name>.<size>.<md5>`) and uploaded once: RocksDB never rewrites an SST, so a
//!   checkpoint uploads only the SSTs created since the previous one, plus the small files
//!   (MANIFEST, OPTIONS, CURRENT) and copies of the sealed sink output. Then
//!   `chk-<epoch>/MANIFEST.json`, listing every file the checkpoint needs, is PUT: that PUT
//!   is the commit. Retention deletes the dropped manifests first and only then the files no
//!   kept manifest lists, so a crash in the middle of it never breaks a kept checkpoint.

mod local;
mod remote;
#[cfg(feature = "s3")]
mod s3;

pub use local::LocalStore;
pub use remote::{ObjectError, Objects, RemoteStore};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::checkpoint::Manifest;
use crate::{Error, Result};

/// Where a job keeps its checkpoints, as the job file says it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSpec {
    /// A directory, or `s3://bucket/prefix/`.
    pub dir: PathBuf,
    /// S3 endpoint override (moto, MinIO); path-style addressing when set.
    pub endpoint_url: Option<String>,
    /// S3 region. Default: the standard AWS chain, else `us-east-1`.
    pub region: Option<String>,
}

impl StoreSpec {
    /// `(bucket, prefix)` when the directory is an `s3://` URI; the prefix is empty or ends
    /// with `/`.
    pub fn s3_location(&self) -> Option<(String, String)> {
        parse_s3(&self.dir.to_string_lossy())
    }
}

/// Splits `s3://bucket/prefix` into the bucket and a prefix ending with `/` (or empty).
pub fn parse_s3(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let mut prefix = prefix.to_string();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    Some((bucket.to_string(), prefix))
}

/// `(parent ending with '/', epoch)` of a checkpoint's name `…/chk-<epoch>`.
pub fn split_checkpoint(path: &str) -> Option<(String, u64)> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    let epoch = super::checkpoint::epoch_of(Path::new(name))?;
    Some((format!("{parent}/"), epoch))
}

/// One checkpoint found in a store.
#[derive(Debug)]
pub struct Listed {
    /// Its epoch.
    pub epoch: u64,
    /// Its name in errors and listings (`<dir>/chk-<epoch>`).
    pub name: PathBuf,
    /// The verified manifest, or why it cannot be used.
    pub manifest: Result<Manifest>,
}

/// What a store holds.
#[derive(Debug, Default)]
pub struct Listing {
    /// Checkpoints, oldest first (rolled-back-over ones excluded).
    pub checkpoints: Vec<Listed>,
    /// The highest epoch ever written, superseded checkpoints included: new epochs are
    /// numbered after it so names never collide with an earlier run's.
    pub max_epoch: u64,
}

/// What saving one checkpoint did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SaveStats {
    /// Bytes sent to the store (0 for a local directory).
    pub bytes_uploaded: u64,
    /// Files sent.
    pub files_uploaded: u64,
    /// Files the checkpoint shares with earlier ones (not sent again).
    pub files_reused: u64,
}

/// What restoring one checkpoint fetched.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FetchStats {
    /// Bytes downloaded (0 for a local directory).
    pub bytes: u64,
    /// Files downloaded.
    pub files: u64,
}

/// Steps of an object-store checkpoint where a test can make the process die
/// (`OSPREY_CHECKPOINT_CRASH_AT=<step>` aborts there; tests of the store itself make the
/// step fail instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Some, not all, of the new files are uploaded.
    SomeFiles,
    /// Every file is uploaded, the manifest is not.
    AllFiles,
    /// The manifest is uploaded, retention has not run.
    Manifest,
    /// Retention deleted the dropped manifests, not yet the files.
    MidGc,
}

impl Step {
    /// The step's name in `OSPREY_CHECKPOINT_CRASH_AT`.
    pub fn parse(s: &str) -> Option<Step> {
        Some(match s {
            "some_files" => Step::SomeFiles,
            "all_files" => Step::AllFiles,
            "manifest" => Step::Manifest,
            "mid_gc" => Step::MidGc,
            _ => return None,
        })
    }
}

/// Keeps a job's checkpoints. Called by one task at a time: the start-up code, then the
/// checkpoint coordinator (one checkpoint in flight).
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// The store as the job file names it (`s3://bucket/prefix/` or the directory).
    fn location(&self) -> String;

    /// The name of checkpoint `epoch` (`<location>/chk-<epoch>`), for errors and listings.
    fn name_of(&self, epoch: u64) -> PathBuf;

    /// Every checkpoint, oldest first, with its verified manifest or why it is unusable.
    /// Fails when the store cannot be read at all (a missing bucket, no network).
    async fn list(&self) -> Result<Listing>;

    /// Reads and verifies one checkpoint's manifest.
    async fn read(&self, epoch: u64) -> Result<Manifest>;

    /// An empty local directory for the backend to write the snapshot of `epoch` into.
    async fn prepare(&self, epoch: u64) -> Result<PathBuf>;

    /// Makes the snapshot in `dir` (from [`CheckpointStore::prepare`]) durable as checkpoint
    /// `manifest.epoch`, manifest last. The checkpoint exists once this returns `Ok`; on `Err`
    /// the store holds what it held before (plus unreferenced files retention removes).
    async fn save(&self, dir: &Path, manifest: Manifest) -> Result<SaveStats>;

    /// Makes checkpoint `epoch` available locally: returns a directory holding its snapshot,
    /// and puts back the sealed output files its commits publish where they are missing.
    /// `scratch` is a local directory the store may clear and use.
    async fn fetch(&self, epoch: u64, scratch: &Path) -> Result<(PathBuf, Manifest, FetchStats)>;

    /// Keeps the newest `keep` checkpoints and deletes the rest, and every file no kept
    /// checkpoint needs. Returns the number of objects (or directories) deleted.
    async fn retain(&self, keep: usize) -> Result<u64>;

    /// Marks every checkpoint newer than `epoch` superseded (durably, before the job
    /// restored from `epoch` starts), so a later plain start never picks one of them.
    /// Returns their epochs.
    async fn supersede_after(&self, epoch: u64) -> Result<Vec<u64>>;
}

/// Opens the store `spec` names. `scratch` is a local directory (under the data directory)
/// an object store stages snapshots in.
pub async fn open(spec: &StoreSpec, scratch: &Path) -> Result<Arc<dyn CheckpointStore>> {
    if spec.s3_location().is_some() {
        #[cfg(feature = "s3")]
        return Ok(Arc::new(s3_store(spec, scratch).await?));
        #[cfg(not(feature = "s3"))]
        return Err(Error::checkpoint(
            &spec.dir,
            "is an s3:// location but this osprey was built without the s3 feature",
        ));
    }
    let _ = scratch;
    std::fs::create_dir_all(&spec.dir).map_err(|e| Error::io("creating", &spec.dir, e))?;
    Ok(Arc::new(LocalStore::new(spec.dir.clone())))
}

/// The S3 store `spec` names (`s3://bucket/prefix/`), as [`open`] builds it; tests use it to
/// inject failures ([`RemoteStore::fail_at`]).
#[cfg(feature = "s3")]
pub async fn s3_store(spec: &StoreSpec, scratch: &Path) -> Result<RemoteStore> {
    let (bucket, prefix) = spec
        .s3_location()
        .ok_or_else(|| Error::checkpoint(&spec.dir, "is not an s3:// location"))?;
    let objects = s3::S3Objects::new(spec, bucket, prefix).await;
    Ok(RemoteStore::new(
        Arc::new(objects),
        spec.dir.to_string_lossy().to_string(),
        scratch.to_path_buf(),
    ))
}

/// Aborts the process at `step` of checkpoint `epoch` when `OSPREY_CHECKPOINT_CRASH_AT` is
/// `<step>` (any epoch) or `<step>:<epoch>`: a test hook for crashes between two steps.
pub(crate) fn crash_point(step: Step, epoch: u64) {
    static AT: std::sync::OnceLock<Option<(Step, Option<u64>)>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| {
        let v = std::env::var("OSPREY_CHECKPOINT_CRASH_AT").ok()?;
        let (name, at_epoch) = match v.split_once(':') {
            Some((n, e)) => (n.to_string(), Some(e.parse().ok()?)),
            None => (v, None),
        };
        Some((Step::parse(&name)?, at_epoch))
    });
    if let Some((s, e)) = at
        && *s == step
        && e.is_none_or(|e| e == epoch)
    {
        eprintln!("OSPREY_CHECKPOINT_CRASH_AT: aborting at {step:?} of checkpoint {epoch}.");
        std::process::abort();
    }
}
