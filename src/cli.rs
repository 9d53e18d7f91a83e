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
        /// Set a field of the job, as `osprey run --set` does.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
    },
    /// Show the checkpoints a job keeps.
    Checkpoints {
        /// `list` or `inspect`.
        #[command(subcommand)]
        command: CheckpointCommand,
    },
    /// Offline evaluation of the detectors on datasets (accuracy, side-by-side comparisons).
    Eval {
        /// `discord` or `aws-sample`.
        #[command(subcommand)]
        command: EvalCommand,
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
    /// Set a field of the job after `${VAR}` interpolation, e.g. `--set checkpoint.interval=5s`
    /// or `--set operators[0].m=32` (repeatable). VALUE is read as TOML when it parses
    /// (`5`, `true`, `"text"`, `[1, 2]`), else as a string.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

/// `osprey checkpoints …`.
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// List checkpoints: epoch, status, age, size, source position.
    List {
        /// A checkpoint directory root, a job's data directory (`.osprey/<job>`), or an
        /// `s3://bucket/prefix/` checkpoint store.
        dir: PathBuf,
        /// Where S3 is.
        #[command(flatten)]
        s3: StoreArgs,
    },
    /// Show one checkpoint's manifest and state tables.
    Inspect {
        /// A `chk-<epoch>` directory or `s3://…/chk-<epoch>`, or a root (shows the newest).
        path: PathBuf,
        /// Where S3 is.
        #[command(flatten)]
        s3: StoreArgs,
    },
}

/// How `osprey checkpoints` reaches an `s3://` store (as `[checkpoint]` in a job file).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Endpoint override for S3-compatible servers (moto, MinIO).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Region. Default: the standard AWS SDK chain, else `us-east-1`.
    #[arg(long)]
    pub region: Option<String>,
}

/// `osprey eval …`.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Run the left-discord detector over a dataset folder and print its accuracy: top-1
    /// discords on DAMP's golden files and UCR-named files, window recall and false alarms on NAB.
    Discord(EvalDiscordArgs),
    /// The AWS left-discords sample's stream and method side by side with osprey's detector.
    AwsSample(EvalAwsArgs),
    /// Score a detector's per-record anomaly scores with NAB's scorer (standard,
    /// reward_low_FP_rate, reward_low_FN_rate), normalised as on NAB's scoreboard.
    Nab(EvalNabArgs),
}

/// How `osprey eval nab` chooses each profile's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NabOptimizerArg {
    /// NAB ≥ 1.0: the best of every distinct anomaly score of the corpus.
    Sweep,
    /// NAB before 2019: hill climbing from 0.5 (how the published thresholds were found).
    Twiddle,
    /// The detector's threshold in NAB's `config/thresholds.json`.
    Published,
}

/// Which of osprey's detectors `osprey eval nab --detector` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NabDetectorArg {
    /// The left-discord matrix profile.
    Discord,
    /// The Random Cut Forest.
    Rcf,
    /// Both, and their fused score.
    All,
}

/// `osprey eval nab`.
#[derive(Debug, clap::Args)]
pub struct EvalNabArgs {
    /// A folder of result files in NAB's layout (`<category>/<detector>_<file>.csv` with an
    /// `anomaly_score` column), or a detector's name under `<nab>/reference-results/`.
    #[arg(required_unless_present = "detector")]
    pub results: Option<String>,
    /// Instead of result files: run osprey's `discord` and `rcf` operators (one job, one key
    /// per NAB file) and score them, each alone and fused (`max`).
    #[arg(long, value_enum, conflicts_with = "results")]
    pub detector: Option<NabDetectorArg>,
    /// `discord`'s subsequence length (with `--detector`).
    #[arg(long, default_value_t = 32)]
    pub m: usize,
    /// `discord`'s history in points (with `--detector`).
    #[arg(long, default_value_t = 10_000)]
    pub history: usize,
    /// `rcf`'s shingle size (with `--detector`; the operator's default is 1).
    #[arg(long, default_value_t = 1)]
    pub shingle: usize,
    /// The NAB folder (`data/`, `labels/`, `config/`). Default: `$OSPREY_SHARED/datasets/nab`.
    #[arg(long)]
    pub nab: Option<PathBuf>,
    /// The result files' prefix. Default: the results folder's name.
    #[arg(long)]
    pub detector_name: Option<String>,
    /// How each profile's threshold is chosen.
    #[arg(long, value_enum, default_value_t = NabOptimizerArg::Sweep)]
    pub optimizer: NabOptimizerArg,
    /// One threshold for every profile instead of optimising.
    #[arg(long, conflicts_with = "optimizer")]
    pub threshold: Option<f64>,
    /// Also print every file's score and counts.
    #[arg(long)]
    pub per_file: bool,
}

/// `osprey eval discord`.
#[derive(Debug, clap::Args)]
pub struct EvalDiscordArgs {
    /// A datasets root (holding `damp/`, `nab/`, `ucr/`) or one of those folders.
    /// Default: `$OSPREY_SHARED/datasets`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Subsequence length, or `auto` (the period of a warm-up prefix). Default: DAMP's m for
    /// DAMP's files, `auto` for the others.
    #[arg(long)]
    pub m: Option<crate::eval::MChoice>,
    /// History in points. Default: all earlier points (the batch left matrix profile).
    #[arg(long)]
    pub history: Option<usize>,
    /// `exact` or `damp`.
    #[arg(long, default_value = "exact")]
    pub mode: crate::eval::Mode,
    /// Alarm rule: `gaussian|warmup|quantile|static[:key=value,…]` with the keys of the
    /// operator's `threshold` table. Default: the operator's (`gaussian`, k = 5).
    #[arg(long, value_parser = crate::eval::parse_threshold)]
    pub threshold: Option<crate::operators::matrix_profile::ThresholdSpec>,
}

/// `osprey eval aws-sample`.
#[derive(Debug, clap::Args)]
pub struct EvalAwsArgs {
    /// Datasets root holding `aws-leftdiscords/97.csv` (also run when present).
    /// Default: `$OSPREY_SHARED/datasets`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Points of the synthetic stream (10 per second).
    #[arg(long, default_value_t = 36_000)]
    pub points: usize,
    /// Seed of the anomaly generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// osprey's subsequence length, or `auto` (the period of the first 1,000 points).
    #[arg(long, default_value = "auto")]
    pub m: crate::eval::MChoice,
    /// osprey's history in points.
    #[arg(long, default_value_t = 10_000)]
    pub history: usize,
    /// osprey's mode: `exact` or `damp`.
    #[arg(long, default_value = "exact")]
    pub mode: crate::eval::Mode,
    /// osprey's alarm rule (as for `osprey eval discord`).
    #[arg(long, value_parser = crate::eval::parse_threshold)]
    pub threshold: Option<crate::operators::matrix_profile::ThresholdSpec>,
}
