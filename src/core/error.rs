//! The crate's error type and the two questions a supervisor asks of every error:
//! whose fault is it ([`ErrorKind`]) and is it worth retrying ([`Retry`]).

use std::path::PathBuf;

/// Who caused an error; decides the exit code and the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The job description, the command line or the input the user pointed us at.
    User,
    /// A service or the file system outside osprey.
    External,
    /// A bug or a broken invariant in osprey.
    Internal,
}

/// Whether repeating the failed action can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Retrying cannot help.
    No,
    /// Retrying after a backoff may help.
    WithBackoff,
}

/// The crate's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job configuration is invalid; every problem is listed.
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<crate::core::ConfigError>),
    /// An I/O error, with the path it concerned.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What osprey was doing.
        context: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The state backend failed.
    #[error("state backend: {0}")]
    State(String),
    /// A checkpoint could not be read or does not fit this job.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A source failed.
    #[error("source {component}: {message}")]
    Source {
        /// The source's component name.
        component: String,
        /// What went wrong.
        message: String,
        /// Whether the failure is transient.
        retry: Retry,
    },
    /// A sink failed.
    #[error("sink {component}: {message}")]
    Sink {
        /// The sink's component name.
        component: String,
        /// What went wrong.
        message: String,
        /// Whether the failure is transient.
        retry: Retry,
    },
    /// An operator failed in a way that must stop the job.
    #[error("operator {operator}: {message}")]
    Operator {
        /// The operator's name.
        operator: String,
        /// What went wrong.
        message: String,
    },
    /// Another osprey process holds the data directory (see `state::lock`).
    #[error(
        "data directory {} is in use by {}: stop it, or give this job another state.dir",
        path.display(),
        holder.map_or_else(|| "another osprey process".to_string(), |p| format!("the osprey process with pid {p}"))
    )]
    InUse {
        /// The data directory.
        path: PathBuf,
        /// The pid written in its lock file, if readable.
        holder: Option<u32>,
    },
    /// A graceful stop did not write its final checkpoint in time.
    #[error(
        "the final checkpoint did not complete within runtime.shutdown_timeout ({:?}); stopped \
         without it: the newest complete checkpoint stays valid and the next start resumes from it",
        .0
    )]
    ShutdownTimeout(std::time::Duration),
    /// A task ended unexpectedly (a panic or a closed channel).
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Checkpoint`].
    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Who caused the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Checkpoint { .. } | Error::InUse { .. } => ErrorKind::User,
            Error::Io { .. }
            | Error::Source { .. }
            | Error::Sink { .. }
            | Error::ShutdownTimeout(_) => ErrorKind::External,
            Error::State(_) | Error::Operator { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Whether the failed action may succeed if repeated.
    pub fn retry(&self) -> Retry {
        match self {
            Error::Source { retry, .. } | Error::Sink { retry, .. } => *retry,
            Error::Io { .. } => Retry::WithBackoff,
            _ => Retry::No,
        }
    }
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::State(e.into_string())
    }
}
