//! What the binary does: load the job, start the metrics endpoint, run, report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{CheckpointCommand, Cli, Command, EvalCommand, NabOptimizerArg, RunArgs};
use crate::config::{JobConfig, LoadOptions, Loaded};
use crate::metrics::Health;
use crate::state::checkpoint::{self, Manifest};
use crate::topology::{self, RunOptions};
use crate::{Error, ErrorKind};

/// The built-in demo job, run by `osprey run` without a job file.
pub const QUICKSTART_JOB: &str = include_str!("../examples/quickstart.toml");

/// Exit code for invalid input (config, arguments, unusable checkpoints).
pub const EXIT_INVALID: u8 = 2;

/// Runs a parsed command line.
pub async fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run_command(args).await,
        Command::Validate { job, set } => return validate(&job, set),
        Command::Checkpoints { command } => checkpoints(command).await,
        Command::Eval {
            command: EvalCommand::Nab(a),
        } if a.detector.is_some() => eval_nab_detectors(a).await,
        Command::Eval { command } => return eval(command),
        #[cfg(feature = "kinesis")]
        Command::Produce(args) => crate::connectors::kinesis::produce::run(args)
            .await
            .map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e.kind() {
                ErrorKind::User => ExitCode::from(EXIT_INVALID),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// `osprey eval …`: synchronous, prints its report on stdout. Exit 2 when the arguments or
/// the data folder are unusable.
fn eval(command: EvalCommand) -> ExitCode {
    use crate::eval::{self, AwsOptions, EvalError, EvalOptions};
    let shared = || std::env::var_os("OSPREY_SHARED").map(|s| PathBuf::from(s).join("datasets"));
    let report = match command {
        EvalCommand::Discord(a) => match a.data.or_else(shared) {
            Some(dir) => eval::run_discord_eval(
                &dir,
                &EvalOptions {
                    m: a.m,
                    history: a.history,
                    mode: a.mode,
                    threshold: a.threshold.unwrap_or_default(),
                },
            ),
            None => Err(EvalError::Invalid(
                "no data folder: pass --data or set OSPREY_SHARED".into(),
            )),
        },
        EvalCommand::AwsSample(a) => {
            let data = a.data.or_else(shared);
            eval::run_aws_eval(
                data.as_deref(),
                &AwsOptions {
                    points: a.points,
                    seed: a.seed,
                    m: a.m,
                    history: a.history,
                    mode: a.mode,
                    threshold: a.threshold.unwrap_or_default(),
                },
            )
        }
        EvalCommand::Nab(a) => match a.nab.or_else(|| shared().map(|d| d.join("nab"))) {
            Some(nab) => eval::nab::run_nab_eval(&eval::nab::NabArgs {
                nab,
                results: a.results.unwrap_or_default(),
                detector: a.detector_name,
                optimizer: match (a.threshold, a.optimizer) {
                    (Some(t), _) => eval::nab::Optimizer::Fixed(t),
                    (None, NabOptimizerArg::Sweep) => eval::nab::Optimizer::Sweep,
                    (None, NabOptimizerArg::Twiddle) => eval::nab::Optimizer::Twiddle,
                    (None, NabOptimizerArg::Published) => eval::nab::Optimizer::Published,
                },
                per_file: a.per_file,
            }),
            None => Err(EvalError::Invalid(
                "no NAB folder: pass --nab or set OSPREY_SHARED".into(),
            )),
        },
    };
    match report {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                EvalError::Io { .. } => ExitCode::FAILURE,
                _ => ExitCode::from(EXIT_INVALID),
            }
        }
    }
}

/// `osprey eval nab --detector …`: one job runs osprey's operators over the whole corpus
/// (key = NAB file), in a scratch folder that is removed afterwards; its output is scored.
async fn eval_nab_detectors(a: crate::cli::EvalNabArgs) -> crate::Result<()> {
    use crate::eval;
    use crate::eval::nab::{self, DetectorJob, NabCorpus, Optimizer};
    let invalid = |msg: String| Error::Config(vec![crate::core::ConfigError::new("eval", msg)]);
    let dir = a
        .nab
        .or_else(|| {
            std::env::var_os("OSPREY_SHARED").map(|s| PathBuf::from(s).join("datasets/nab"))
        })
        .ok_or_else(|| invalid("no NAB folder: pass --nab or set OSPREY_SHARED".into()))?;
    // A file that cannot be read is an I/O error (exit 1); anything else is the input's fault.
    let eval_err = |e: eval::EvalError| match e {
        eval::EvalError::Io { path, source } => Error::io("reading", path, source),
        other => invalid(other.to_string()),
    };
    let corpus = NabCorpus::load(&dir).map_err(eval_err)?;
    let work = std::env::temp_dir().join(format!("osprey-eval-nab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| Error::io("creating", &work, e))?;
    let input = work.join("nab.jsonl");
    nab::write_input(&corpus, &input).map_err(eval_err)?;
    let job = DetectorJob {
        m: a.m,
        history: a.history,
        rcf_extra: format!("shingle_size = {}", a.shingle),
        ..DetectorJob::default()
    };
    let text = nab::job_text(&job, &input, &work.join("out"), &work.join("state"));
    let cfg = JobConfig::parse(&text).map_err(Error::Config)?.job;
    let started = std::time::Instant::now();
    let opts = RunOptions {
        from_checkpoint: None,
        fresh: true,
        lock: None,
    };
    let result = run_job(cfg, opts, std::future::pending()).await;
    let seconds = started.elapsed().as_secs_f64();
    let scores =
        result.and_then(|_| nab::read_output(&corpus, &work.join("out")).map_err(eval_err));
    let _ = std::fs::remove_dir_all(&work);
    let scores = scores?;
    let (fused, any_true) = (scores.max(), scores.any_true());
    // Scores take NAB's threshold (or --threshold); the operators' own 0/1 verdicts are scored
    // as they are.
    let swept = a.threshold.map_or(Optimizer::Sweep, Optimizer::Fixed);
    let verdict = Optimizer::Fixed(1.0);
    let mut runs: Vec<(&str, Vec<Vec<f64>>, Optimizer)> = Vec::new();
    let which = a.detector.expect("checked by the caller");
    if which != crate::cli::NabDetectorArg::Rcf {
        runs.push(("discord", scores.discord, swept));
        runs.push(("discord alarms", scores.discord_alarms, verdict));
    }
    if which != crate::cli::NabDetectorArg::Discord {
        runs.push(("rcf", scores.rcf, swept));
        runs.push(("rcf alarms", scores.rcf_alarms, verdict));
    }
    if which == crate::cli::NabDetectorArg::All {
        runs.push(("max(discord, rcf)", fused, swept));
        runs.push(("any_true(alarms)", any_true, verdict));
    }
    print!("{}", nab::detectors_report(&corpus, &runs));
    println!(
        "\ndiscord: m = {}, history = {}; rcf: shingle {}, other settings the operator's \
         defaults; job time {seconds:.1} s.",
        a.m, a.history, a.shingle
    );
    Ok(())
}

fn validate(job: &Path, overrides: Vec<String>) -> ExitCode {
    let opts = LoadOptions {
        overrides,
        vars: None,
    };
    match JobConfig::read_with(job, &opts) {
        Ok(Loaded { job: cfg, warnings }) => {
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: valid ({} source, {} operator(s), {} sink)",
                job.display(),
                cfg.source.type_name(),
                cfg.operators.len(),
                cfg.sink.type_name()
            );
            ExitCode::SUCCESS
        }
        Err(Error::Config(errors)) => {
            eprintln!("{}: {} error(s)", job.display(), errors.len());
            for e in errors {
                eprintln!("  {e}");
            }
            ExitCode::from(EXIT_INVALID)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

async fn run_command(args: RunArgs) -> crate::Result<()> {
    let Loaded {
        job: mut cfg,
        warnings,
    } = {
        let opts = LoadOptions {
            overrides: args.set.clone(),
            vars: None,
        };
        match &args.job {
            Some(path) => JobConfig::read_with(path, &opts)?,
            None => {
                tracing::info!(
                    "No job file given: running the built-in demo job (examples/quickstart.toml)."
                );
                JobConfig::parse_with(QUICKSTART_JOB, &opts).map_err(Error::Config)?
            }
        }
    };
    for w in &warnings {
        tracing::warn!(
            field = %w.field,
            line = w.line,
            column = w.column,
            warning = %w.message,
            "Job-file warning."
        );
    }
    if let Some(addr) = args.metrics_address {
        cfg.metrics.address = addr;
        cfg.metrics.enabled = true;
    }
    if args.no_metrics {
        cfg.metrics.enabled = false;
    }
    // The built-in demo starts over each time, so the quick start always prints its output.
    let fresh = args.fresh || (args.job.is_none() && args.from_checkpoint.is_none());
    let opts = RunOptions {
        from_checkpoint: args.from_checkpoint,
        fresh,
        lock: None,
    };
    run_job(cfg, opts, crate::shutdown::signal())
        .await
        .map(|_| ())
}

/// Runs a job with its metrics endpoint until input ends or `shutdown` resolves.
pub async fn run_job(
    cfg: JobConfig,
    mut opts: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> crate::Result<topology::RunSummary> {
    // First of all: a second process on the same data directory stops here (exit 2, naming
    // the first), before it binds the metrics port or touches a file.
    if opts.lock.is_none() {
        opts.lock = Some(Arc::new(crate::state::DataDirLock::acquire(
            &cfg.data_dir(),
        )?));
    }
    let health = Arc::new(Health::default());
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    let mut server = None;
    if cfg.metrics.enabled {
        let listener = tokio::net::TcpListener::bind(&cfg.metrics.address)
            .await
            .map_err(|e| {
                Error::io(
                    "binding the metrics endpoint (set metrics.address or --metrics-address) at",
                    &cfg.metrics.address,
                    e,
                )
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("binding", &cfg.metrics.address, e))?;
        tracing::info!(%addr, "Serving /metrics, /healthz and /readyz.");
        server = Some(tokio::spawn(crate::metrics::serve(
            listener,
            Arc::clone(&health),
            stop_metrics.clone(),
        )));
    }
    let started = std::time::Instant::now();
    let result = topology::run(cfg, opts, shutdown, health).await;
    stop_metrics.cancel();
    if let Some(s) = server {
        let _ = s.await;
    }
    if let Ok(summary) = &result {
        tracing::info!(
            records = summary.records_in,
            epoch = summary.final_epoch,
            seconds = started.elapsed().as_secs_f64(),
            "Job finished."
        );
    }
    result
}

fn checkpoint_root(dir: &Path) -> PathBuf {
    let nested = dir.join("checkpoints");
    if nested.is_dir() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// The store `dir` names for `osprey checkpoints`: `s3://…`, or a local directory.
async fn store_at(
    dir: &Path,
    s3: &crate::cli::StoreArgs,
) -> crate::Result<Arc<dyn crate::state::store::CheckpointStore>> {
    let local = !dir.to_string_lossy().starts_with("s3://");
    let spec = crate::state::store::StoreSpec {
        dir: if local {
            checkpoint_root(dir)
        } else {
            dir.to_path_buf()
        },
        endpoint_url: s3.endpoint_url.clone(),
        region: s3.region.clone(),
    };
    if local {
        return Ok(Arc::new(crate::state::store::LocalStore::new(spec.dir)));
    }
    crate::state::store::open(&spec, &std::env::temp_dir()).await
}

async fn checkpoints(command: CheckpointCommand) -> crate::Result<()> {
    match command {
        CheckpointCommand::List { dir, s3 } => {
            let store = store_at(&dir, &s3).await?;
            let found = store.list().await?.checkpoints;
            if found.is_empty() {
                println!("no checkpoints in {}", store.location());
                return Ok(());
            }
            println!(
                "{:<12} {:<10} {:>10} {:>12} {:>12}  SOURCE POSITION",
                "EPOCH", "STATUS", "AGE", "SIZE", "RECORDS"
            );
            let now_ms = (crate::metrics::now_secs() * 1000.0) as i64;
            for f in found {
                match f.manifest {
                    Ok(m) => println!(
                        "{:<12} {:<10} {:>10} {:>12} {:>12}  {}",
                        m.epoch,
                        "complete",
                        human_age((now_ms - m.created_ms).max(0) as u64 / 1000),
                        human_bytes(m.state_bytes),
                        m.records_in,
                        m.source
                    ),
                    Err(e) => println!("{:<12} {:<10} {e}", f.epoch, "unusable"),
                }
            }
            Ok(())
        }
        CheckpointCommand::Inspect { path, s3 } => {
            let text = path.to_string_lossy().to_string();
            if text.starts_with("s3://") {
                let (store, epoch) = match crate::state::store::split_checkpoint(&text) {
                    Some((parent, epoch)) => (store_at(Path::new(&parent), &s3).await?, epoch),
                    None => {
                        let store = store_at(&path, &s3).await?;
                        let newest = store.list().await?.checkpoints.into_iter().next_back();
                        let epoch = newest
                            .map(|f| f.epoch)
                            .ok_or_else(|| Error::checkpoint(&path, "holds no checkpoints"))?;
                        (store, epoch)
                    }
                };
                let m = store.read(epoch).await?;
                println!("checkpoint {}", store.name_of(epoch).display());
                println!(
                    "{}",
                    serde_json::to_string_pretty(&m).expect("manifest serialises")
                );
                let bytes: u64 = m.files.iter().map(|f| f.size).sum();
                println!(
                    "state files: {} ({}); sealed output files: {}",
                    m.files.len(),
                    human_bytes(bytes),
                    m.outputs.len()
                );
                return Ok(());
            }
            let dir = if checkpoint::epoch_of(&path).is_some() {
                path
            } else {
                let root = checkpoint_root(&path);
                checkpoint::list(&root)?
                    .into_iter()
                    .next_back()
                    .map(|f| f.path)
                    .ok_or_else(|| Error::checkpoint(&root, "holds no checkpoints"))?
            };
            let m = Manifest::read(&dir)?;
            println!("checkpoint {}", dir.display());
            println!(
                "{}",
                serde_json::to_string_pretty(&m).expect("manifest serialises")
            );
            let db = dir.join("db");
            if db.is_dir() {
                let opts = rocksdb::Options::default();
                let cfs = rocksdb::DB::list_cf(&opts, &db)?;
                let ro = rocksdb::DB::open_cf_for_read_only(&opts, &db, &cfs, false)?;
                println!("state tables (RocksDB column families):");
                for name in cfs.iter().filter(|c| *c != "default") {
                    let keys = ro
                        .cf_handle(name)
                        .and_then(|cf| {
                            ro.property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                                .ok()
                                .flatten()
                        })
                        .unwrap_or(0);
                    println!("  {name:<40} ~{keys} keys");
                }
            }
            Ok(())
        }
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}

fn human_age(s: u64) -> String {
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}
