//! One process per data directory: an OS file lock on `<data dir>/osprey.lock`, held for as
//! long as the job runs.
//!
//! Two processes on one data directory would delete each other's live RocksDB, in-progress
//! checkpoint and staged output, so the lock is taken before anything in the directory is
//! read or written. It is an advisory `flock`-style lock (std's `File::try_lock`): the kernel
//! drops it when the process dies, SIGKILL included, so a crash never leaves a stale lock to
//! clean up. The file itself stays; it holds the pid of the process that has it, for the
//! message the next one prints.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "osprey.lock";

/// The held lock on a data directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates `dir` if needed and locks it, or fails with [`Error::InUse`] naming the
    /// process that holds it. Touches nothing else in `dir`.
    pub fn acquire(dir: &Path) -> Result<DataDirLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let path = dir.join(LOCK_FILE);
        // No truncation on open: the pid in the file belongs to the holder until we have it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("opening the lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(Error::InUse {
                    path: dir.to_path_buf(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("locking", &path, e));
            }
        }
        let pid = std::process::id();
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid}"))
            .and_then(|()| file.sync_all());
        written.map_err(|e| Error::io("writing the lock file", &path, e))?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_held_directory_names_the_holder_and_a_dropped_lock_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        // flock locks belong to the open file, so a second open in this process conflicts
        // exactly as another process's would.
        match DataDirLock::acquire(dir.path()) {
            Err(Error::InUse { path, holder }) => {
                assert_eq!(path, dir.path());
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        let again = DataDirLock::acquire(dir.path()).unwrap();
        drop(again);
    }
}
