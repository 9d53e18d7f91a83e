//! Command-line arguments. The pipeline's shape lives in the job file; flags only change how
//! this process runs it.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// osprey: real-time anomaly detection and ML inference on streams.
#[derive(Debug, Parser)]
#[command(name = "osprey", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (`info`, `debug`, `osprey=debug,warn` …). Also read from OSPREY_LOG.
    #[arg(long, global = true, env = "OSPREY_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job until its input ends or SIGINT/SIGTERM; then checkpoint, flush and exit 0.
    Run(RunArgs),
    /// Check a job file and report every error at once (exit code 2 when invalid).
    Validate {
        /// The job file.
        job: PathBuf,
    },
    /// Show the checkpoints a job keeps.
    Checkpoints {
        /// `list` or `inspect`.
        #[command(subcommand)]
        command: CheckpointCommand,
    },
}

/// `osprey run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file. Without one, runs the built-in demo job (examples/quickstart.toml), fresh.
    pub job: Option<PathBuf>,
    /// Restore this checkpoint directory instead of the latest.
    #[arg(long, conflicts_with = "fresh")]
    pub from_checkpoint: Option<PathBuf>,
    /// Ignore existing checkpoints and start from the beginning of the input.
    #[arg(long)]
    pub fresh: bool,
    /// Serve /metrics, /healthz and /readyz here instead of the job's `metrics.address`.
    #[arg(long)]
    pub metrics_address: Option<String>,
    /// Do not serve the metrics endpoint.
    #[arg(long)]
    pub no_metrics: bool,
}

/// `osprey checkpoints …`.
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// List checkpoints: epoch, status, age, size, source position.
    List {
        /// A checkpoint directory root, or a job's data directory (`.osprey/<job>`).
        dir: PathBuf,
    },
    /// Show one checkpoint's manifest and state tables.
    Inspect {
        /// A `chk-<epoch>` directory, or a root (shows the newest).
        path: PathBuf,
    },
}
