//! `osprey eval`: offline accuracy of the left-discord detector, and the side-by-side with the
//! AWS left-discords sample. Pure and synchronous: no runtime, no state backend; the detector
//! is the algorithm code the `discord` operator runs per key ([`LeftMatrixProfile`] or
//! [`Damp`] plus a [`Threshold`]), driven over whole files.
//!
//! # What is scored
//!
//! - **Series with one known location** (top-1 sets). DAMP's golden files (`damp/*.in`, the
//!   table in `$OSPREY_SHARED/datasets/README.md`, see [`DAMP_SETS`]): the top-1 discord among
//!   the subsequences starting at or after DAMP's split point is compared with DAMP's own top-1
//!   (position and score). UCR Anomaly Archive files (`ucr/*_<train>_<begin>_<end>.txt`):
//!   the top-1 discord start `p` (0-based) is correct iff `begin − 100 ≤ p + 1 ≤ end + 100`
//!   (1-based region, the KDD Cup 2021 rule, [`ucr_correct`]). The DAMP files carry no labelled
//!   region; the same rule is reported with DAMP's top-1 subsequence as the region.
//! - **NAB** (`nab/data/**.csv`, `nab/labels/combined_windows.json`): the detector streams
//!   each file with its online threshold; an alarm is placed at the point that completed the
//!   alarming subsequence (`index + m − 1`, when a streaming detector would raise it). *Window
//!   recall* counts the windows holding at least one alarm; *false alarms* are the alarms
//!   outside every window, per 10,000 points outside every window.
//!
//! # Choosing m
//!
//! `--m N` fixes it for every series. Without `--m`, DAMP's files use the `m` of DAMP's table
//! (the golden values depend on it) and every other series uses `--m auto`: the dominant
//! period of a warm-up prefix ([`estimate_period`] over lags [`AUTO_MIN_M`]..=[`AUTO_MAX_M`]),
//! where the prefix is the training part of a UCR/DAMP file, or NAB's probationary first 15%
//! (at least [`AUTO_MIN_PREFIX`] points). A series with no clear period gets [`FALLBACK_M`].
//!
//! # History
//!
//! Without `--history` the candidates are all earlier points (the batch left matrix profile,
//! as DAMP's and UCR's published results use); `--history H` bounds them as the operator does.

//!
//! # Files
//!
//! `datasets.rs` reads the data, `scoring.rs` runs the detector and scores it, `report.rs`
//! writes the `osprey eval discord` report and `aws_sample.rs` reproduces the AWS sample.
//! [`nab`] is NAB's own score (`osprey eval nab`).

mod aws_sample;
mod datasets;
pub mod nab;
mod report;
mod scoring;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::detectors::matrix_profile::{ParamError, ThresholdSpec, estimate_period};
// The `--threshold` flag is parsed as the `discord` operator's `threshold` table.
use crate::operators::matrix_profile::config::ThresholdConfig;

pub use aws_sample::{
    AWS_SPIKE_EVERY, AwsOptions, AwsSampleDetector, AwsStream, SideBySide, SplitMix64, Tally,
    aws_sample_alarms, aws_sample_stream, compare_on, run_aws_eval, tally,
};
pub use datasets::{
    DAMP_SETS, DampSet, Found, discover, parse_timestamp, parse_ucr_name, read_series,
};
pub use report::run_discord_eval;
pub use scoring::{
    Detection, NabResult, Top1Result, detect, eval_damp, eval_nab, eval_ucr, score_windows,
    ucr_correct, windows_to_points,
};

/// Smallest `m` that `--m auto` picks.
pub const AUTO_MIN_M: usize = 8;
/// Largest `m` that `--m auto` picks.
pub const AUTO_MAX_M: usize = 512;
/// `m` for a series whose warm-up prefix shows no clear period.
pub const FALLBACK_M: usize = 32;
/// Shortest warm-up prefix for `--m auto` on NAB (when the series is that long).
pub const AUTO_MIN_PREFIX: usize = 1_200;
/// Slack of the UCR rule, in points on each side of the labelled region.
pub const UCR_SLACK: u64 = 100;

/// Why an evaluation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file or directory could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A data or label file has content that is not what its format says.
    #[error("{}: line {line}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 for the whole file).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Detector parameters that the algorithm refuses.
    #[error("detector parameters: {0}")]
    Params(#[from] ParamError),
    /// Nothing to evaluate under the given folder.
    #[error(
        "{}: no dataset found (expected damp/*.in, nab/data + nab/labels, or ucr/*.txt, \
         or one of those folders itself)",
        .0.display()
    )]
    NoData(PathBuf),
    /// A command-line value that does not parse.
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters.

/// How `m` is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MChoice {
    /// The same `m` for every series.
    Fixed(usize),
    /// The period of the warm-up prefix (see the module docs).
    Auto,
}

impl FromStr for MChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(MChoice::Auto);
        }
        match s.parse::<usize>() {
            Ok(m) if m >= 2 => Ok(MChoice::Fixed(m)),
            _ => Err(format!("`{s}` is not `auto` or a subsequence length ≥ 2")),
        }
    }
}

/// Detector mode, as the operator's `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every score exact.
    #[default]
    Exact,
    /// DAMP pruning: scores below the bound are upper bounds.
    Damp,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Mode::Exact),
            "damp" => Ok(Mode::Damp),
            _ => Err(format!("`{s}` is not `exact` or `damp`")),
        }
    }
}

/// Parses `--threshold`: `rule[:key=value,…]` with the rules and keys of the operator's
/// `threshold` table (`gaussian:k=4,warmup=200`, `warmup:train=1000`, `quantile:q=0.999`,
/// `static:value=3.5`); omitted keys take the operator's defaults.
pub fn parse_threshold(s: &str) -> Result<ThresholdSpec, String> {
    let (rule, rest) = s.split_once(':').unwrap_or((s, ""));
    // The tagged enum does not reject unknown keys (serde-rs/serde#2123), so check them here.
    let keys: &[&str] = match rule {
        "gaussian" => &["k", "half_life", "warmup", "floor"],
        "warmup" => &["k", "train"],
        "quantile" => &["q", "factor", "warmup"],
        "static" => &["value"],
        _ => {
            return Err(format!(
                "threshold rule `{rule}` is not gaussian, warmup, quantile or static"
            ));
        }
    };
    // Build the operator's TOML table, so keys, defaults and types are the job file's.
    let mut toml_text = format!("rule = \"{rule}\"\n");
    for pair in rest.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not key=value"))?;
        let (k, v) = (k.trim(), v.trim());
        if !keys.contains(&k) {
            return Err(format!(
                "`{k}` is not a parameter of `{rule}` (one of {})",
                keys.join(", ")
            ));
        }
        // Re-printed from the parsed number, so nothing but a number reaches the TOML text.
        let value = match (v.parse::<u64>(), v.parse::<f64>()) {
            (Ok(n), _) => n.to_string(),
            (_, Ok(x)) if x.is_finite() => format!("{x:?}"),
            _ => return Err(format!("`{v}` is not a number")),
        };
        toml_text.push_str(&format!("{k} = {value}\n"));
    }
    let cfg: ThresholdConfig = toml::from_str(&toml_text).map_err(|e| {
        format!(
            "threshold `{s}`: {}",
            e.message().lines().next().unwrap_or("invalid")
        )
    })?;
    let spec = cfg.spec();
    spec.validate()
        .map_err(|e| format!("threshold `{s}`: {e}"))?;
    Ok(spec)
}

/// What `osprey eval discord` was asked to use.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalOptions {
    /// `None`: DAMP's `m` for DAMP's files, `auto` for the rest.
    pub m: Option<MChoice>,
    /// `None`: all earlier points are candidates.
    pub history: Option<usize>,
    /// Exact or DAMP.
    pub mode: Mode,
    /// The alarm rule (NAB).
    pub threshold: ThresholdSpec,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            m: None,
            history: None,
            mode: Mode::Exact,
            threshold: ThresholdSpec::DEFAULT,
        }
    }
}

/// One detector run's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectorSpec {
    /// Subsequence length.
    pub m: usize,
    /// History in points; `None` = the whole series.
    pub history: Option<usize>,
    /// Exact or DAMP.
    pub mode: Mode,
    /// The alarm rule.
    pub threshold: ThresholdSpec,
}

/// `m` for a series: `choice`, or the period of `prefix` for [`MChoice::Auto`] (with
/// [`FALLBACK_M`] when it has none). The flag says whether a period was found.
pub fn choose_m(choice: MChoice, prefix: &[f64]) -> (usize, &'static str) {
    match choice {
        MChoice::Fixed(m) => (m, "fixed"),
        MChoice::Auto => {
            let max_lag = AUTO_MAX_M.min(prefix.len() / 2);
            match estimate_period(prefix, AUTO_MIN_M, max_lag) {
                Some(p) => (p, "auto"),
                None => (FALLBACK_M, "fallback"),
            }
        }
    }
}
