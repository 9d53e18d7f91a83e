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
    /// Publish a JSON-lines file or a built-in generator to a Kinesis stream.
    #[cfg(feature = "kinesis")]
    Produce(ProduceArgs),
}

/// `osprey produce`.
#[cfg(feature = "kinesis")]
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["file", "generator"])))]
pub struct ProduceArgs {
    /// Stream name or ARN.
    #[arg(long)]
    pub stream: String,
    /// Endpoint of a local Kinesis server (else AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// A JSON-lines file, one record per line.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A built-in generator (the same as the `generator` source).
    #[arg(long, value_enum)]
    pub generator: Option<GeneratorArg>,
    /// Records to send (generator: default unbounded; file: default all lines).
    #[arg(long)]
    pub count: Option<u64>,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Records per second (default: as fast as PutRecords takes them).
    #[arg(long)]
    pub rate: Option<f64>,
    /// JSON field holding the partition key (default: `sensor_id` for sensors, `series` for
    /// sine, the line number for files).
    #[arg(long)]
    pub partition_key_field: Option<String>,
    /// Pack records into KPL aggregated records.
    #[arg(long)]
    pub aggregate: bool,
}

/// Built-in generators for `osprey produce`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GeneratorArg {
    /// Sensor readings (`sensor_id`, `current_temperature`, `status`, `event_time`).
    Sensors,
    /// The sine wave with its drop.
    Sine,
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
