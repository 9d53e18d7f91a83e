//! Whose output is it: the identity a job writes into every part file and object key, and the
//! checks that keep a job's sink and dead-letter sink from writing the same place.
//!
//! # The identity
//!
//! Transactional sinks name their output `part-<job>-<run>-<component>-<epoch>-…`. `<job>` is
//! the job's name; `<run>` is a random id (12 hex digits) made the first time a job starts
//! with an empty checkpoint directory and kept there, in the file `RUN_ID`, beside the
//! checkpoints. So:
//!
//! - every restart that finds the checkpoints (a crash, SIGTERM, `--fresh`,
//!   `--from-checkpoint`) reuses the id, and a restored run produces the same names for the
//!   same epochs: replay is byte-for-byte and renames or uploads repeat idempotently;
//! - a job whose data directory (and with it its checkpoints) was lost gets a new id, so its
//!   epochs, which start again at 1, cannot overwrite the output published before the loss;
//! - recovery (clearing in-progress output, moving output published after the restored
//!   checkpoint aside) only touches names carrying the job's own identity, never the output
//!   of an earlier run or of another job sharing the folder or prefix.
//!
//! The run id lives with the checkpoints, not elsewhere in the data directory, because it
//! must follow the epoch numbering, which the checkpoint directory decides. Every manifest
//! also records it, and a restored checkpoint's run id wins: with an object-store checkpoint
//! directory (whose local copy of `RUN_ID` sits in the data directory) a job restored on a
//! fresh machine keeps naming its output as before.

use std::path::{Component, Path, PathBuf};

use crate::core::ConfigError;
use crate::{Error, Result};

use super::SinkConfig;

/// The file in the checkpoint directory that holds the run id.
pub const RUN_ID_FILE: &str = "RUN_ID";

/// The identity a job's output carries (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputIdentity {
    tag: String,
    run: String,
}

fn valid_run_id(run: &str) -> bool {
    !run.is_empty() && run.len() <= 32 && run.chars().all(|c| c.is_ascii_alphanumeric())
}

impl OutputIdentity {
    /// The identity of job `job` whose run id is `run`.
    pub fn new(job: &str, run: &str) -> Self {
        OutputIdentity {
            tag: format!("{job}-{run}"),
            run: run.to_string(),
        }
    }

    /// Reads the run id kept in `checkpoint_root`, or makes one and keeps it there (atomically,
    /// before any output is written).
    pub fn load_or_create(checkpoint_root: &Path, job: &str) -> Result<Self> {
        let path = checkpoint_root.join(RUN_ID_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let run = text.trim();
                if !valid_run_id(run) {
                    return Err(Error::checkpoint(
                        &path,
                        "holds no valid run id (letters and digits); restore it from a backup, \
                         or delete it to give the job's output a new identity",
                    ));
                }
                Ok(Self::new(job, run))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(checkpoint_root)
                    .map_err(|e| Error::io("creating", checkpoint_root, e))?;
                let run = new_run_id();
                crate::state::checkpoint::write_atomic(&path, format!("{run}\n").as_bytes())?;
                tracing::info!(run = %run, "New run id for the job's output.");
                Ok(Self::new(job, &run))
            }
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    /// Like [`Self::load_or_create`], but a run id carried by the restored checkpoint wins
    /// (and is kept in `dir` from now on): a job restored on a fresh machine names its output
    /// as the checkpointed run did.
    pub fn load_or_adopt(dir: &Path, job: &str, restored: Option<&str>) -> Result<Self> {
        let Some(run) = restored else {
            return Self::load_or_create(dir, job);
        };
        if !valid_run_id(run) {
            return Err(Error::Internal(format!(
                "the checkpoint's run id {run:?} is not letters and digits"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let path = dir.join(RUN_ID_FILE);
        if std::fs::read_to_string(&path)
            .ok()
            .as_deref()
            .map(str::trim)
            != Some(run)
        {
            crate::state::checkpoint::write_atomic(&path, format!("{run}\n").as_bytes())?;
        }
        Ok(Self::new(job, run))
    }

    /// The run id alone.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// `<job>-<run>`: what part names and object keys carry.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

/// 12 hex digits from the process's random hash keys, the time and the pid.
fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// What a sink needs to know about the job it writes for (see [`SinkConfig::for_job`]).
#[derive(Debug, Clone, Copy)]
pub struct SinkRole<'a> {
    /// The job's output identity.
    pub identity: &'a OutputIdentity,
    /// `sink` or `dead_letter`: keeps the two sinks' local files apart.
    pub role: &'a str,
    /// The job's data directory (the default home of local staging files).
    pub data_dir: &'a Path,
}

/// Checks that the job's sink and dead-letter sink write different places: the same folder
/// (file sinks) or the same bucket and prefix (S3 sinks) would mix and overwrite each other's
/// part files. `explicit` says whether the job file configures the dead-letter sink (the
/// error then names `dead_letter`, else `sink`).
pub fn check_outputs(
    sink: &SinkConfig,
    dead_letter: &SinkConfig,
    explicit: bool,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    match (sink, dead_letter) {
        (SinkConfig::File(s), SinkConfig::File(d)) if same_path(&s.path, &d.path) => {
            let (field, other) = if explicit {
                ("dead_letter.path", "sink.path")
            } else {
                ("sink.path", "the default dead-letter folder")
            };
            errors.push(ConfigError::new(
                field,
                format!(
                    "{} is also {other}: the sink and the dead-letter sink need folders of their own",
                    d.path.display()
                ),
            ));
        }
        #[cfg(feature = "s3")]
        (SinkConfig::S3(s), SinkConfig::S3(d)) if s.bucket == d.bucket && s.prefix == d.prefix => {
            errors.push(ConfigError::new(
                "dead_letter.prefix",
                format!(
                    "s3://{}/{} is also sink's bucket and prefix: give the dead letters a prefix of their own",
                    d.bucket, d.prefix
                ),
            ));
        }
        _ => {}
    }
    errors
}

/// Whether two paths name the same folder: the same once `.` components and trailing
/// separators are dropped, or the same after resolving links when both exist.
fn same_path(a: &Path, b: &Path) -> bool {
    fn lexical(p: &Path) -> PathBuf {
        p.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect()
    }
    if lexical(a) == lexical(b) {
        return true;
    }
    matches!(
        (std::fs::canonicalize(a), std::fs::canonicalize(b)),
        (Ok(x), Ok(y)) if x == y
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_id_is_kept_and_a_lost_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("checkpoints");
        let first = OutputIdentity::load_or_create(&root, "j").unwrap();
        assert!(first.tag().starts_with("j-"), "{first:?}");
        assert_eq!(first.tag().len(), "j-".len() + 12);
        assert_eq!(OutputIdentity::load_or_create(&root, "j").unwrap(), first);
        std::fs::remove_dir_all(&root).unwrap();
        let second = OutputIdentity::load_or_create(&root, "j").unwrap();
        assert_ne!(
            second, first,
            "a lost checkpoint directory means a new identity"
        );
        std::fs::write(root.join(RUN_ID_FILE), "../x\n").unwrap();
        let err = OutputIdentity::load_or_create(&root, "j").unwrap_err();
        assert!(err.to_string().contains(RUN_ID_FILE), "{err}");
    }

    #[test]
    fn same_folder_for_sink_and_dead_letters_is_refused() {
        let file = |p: &str| SinkConfig::File(super::super::file::FileSinkConfig::new(p));
        let errors = check_outputs(&file("out"), &file("./out/"), true);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "dead_letter.path");
        assert!(check_outputs(&file("out"), &file("out/dlq"), true).is_empty());
        let errors = check_outputs(&file("d/dead-letter"), &file("d/dead-letter"), false);
        assert_eq!(errors[0].field, "sink.path");
    }
}
