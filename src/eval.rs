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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use crate::operators::matrix_profile::config::ThresholdConfig;
use crate::operators::matrix_profile::{
    Damp, DampConfig, Discord, LeftMatrixProfile, ParamError, Threshold, ThresholdSpec,
    estimate_period,
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

// ---------------------------------------------------------------------------------------------
// Running the detector over one series.

/// What a detector run over one series found.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// Subsequence length used.
    pub m: usize,
    /// History used.
    pub history: usize,
    /// Points at which alarms were raised: the last point of the alarming subsequence.
    pub alarms: Vec<u64>,
    /// The largest exact score among subsequences starting at or after `score_from`.
    pub top: Option<Discord>,
    /// Scores produced.
    pub scored: u64,
    /// Of which exact.
    pub exact: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
}

/// Streams `series` through the detector, scoring (and judging) the subsequences that start
/// at or after `score_from`; those before are history only (DAMP's training prefix).
pub fn detect(
    series: &[f64],
    spec: &DetectorSpec,
    score_from: u64,
) -> Result<Detection, EvalError> {
    let m = spec.m;
    let history = spec.history.unwrap_or(series.len()).max(2 * m);
    let mut threshold = Threshold::new(spec.threshold, m)?;
    let started = Instant::now();
    let mut run = Detection {
        m,
        history,
        alarms: Vec::new(),
        top: None,
        scored: 0,
        exact: 0,
        seconds: 0.0,
    };
    let take = |d: Discord, th: &mut Threshold, run: &mut Detection| {
        if d.index < score_from {
            return;
        }
        run.scored += 1;
        if d.exact {
            run.exact += 1;
            // `>=`: the last of equal maxima, as DAMP's `max` over its output.
            if run.top.is_none_or(|t| d.score >= t.score) {
                run.top = Some(d);
            }
        }
        if th.judge(d.index, d.score, d.exact).is_anomaly {
            run.alarms.push(d.index + m as u64 - 1);
        }
    };
    match spec.mode {
        Mode::Exact => {
            let mut mp = LeftMatrixProfile::try_new(m, history)?;
            let mut outs = Vec::with_capacity(1024);
            for chunk in series.chunks(1024) {
                outs.clear();
                mp.push_slice(chunk, &mut outs);
                for d in outs.iter().flatten() {
                    take(*d, &mut threshold, &mut run);
                }
            }
        }
        Mode::Damp => {
            let mut damp = Damp::new(DampConfig::new(m, history))?;
            for &x in series {
                // With no look-ahead, this push scores the subsequence starting here.
                let scores = (damp.len_points() + 1)
                    .checked_sub(m as u64)
                    .is_some_and(|i| i >= score_from);
                let d = if !scores {
                    damp.push_unscored(x);
                    None
                } else if threshold.is_warming_up() {
                    damp.push_exact(x)
                } else {
                    damp.push(x, threshold.current())
                };
                if let Some(d) = d {
                    take(d, &mut threshold, &mut run);
                }
            }
        }
    }
    run.seconds = started.elapsed().as_secs_f64();
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// Reading data.

/// Reads a series of numbers separated by whitespace or newlines (DAMP `.in`, UCR `.txt`,
/// the AWS sample's CSVs).
pub fn read_series(path: &Path) -> Result<Vec<f64>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    parse_series(&text).map_err(|(line, reason)| EvalError::Parse {
        path: path.to_path_buf(),
        line,
        reason,
    })
}

fn parse_series(text: &str) -> Result<Vec<f64>, (usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for tok in line.split(|c: char| c.is_whitespace() || c == ',') {
            if tok.is_empty() {
                continue;
            }
            out.push(
                tok.parse::<f64>()
                    .map_err(|_| (n + 1, format!("`{tok}` is not a number")))?,
            );
        }
    }
    Ok(out)
}

/// Seconds since 1970-01-01 of a `YYYY-MM-DD HH:MM:SS[.ffffff]` timestamp (NAB's format), or
/// `None` when it is not one.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), counting years from March.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// A NAB file: timestamps (seconds) and values.
fn read_nab_csv(path: &Path) -> Result<(Vec<i64>, Vec<f64>), EvalError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let bad = |line: usize, reason: String| EvalError::Parse {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let (mut ts, mut xs) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (t, v) = line
            .split_once(',')
            .ok_or_else(|| bad(n + 1, "not `timestamp,value`".into()))?;
        ts.push(parse_timestamp(t).ok_or_else(|| bad(n + 1, format!("bad timestamp `{t}`")))?);
        xs.push(
            v.trim()
                .parse::<f64>()
                .map_err(|_| bad(n + 1, format!("`{v}` is not a number")))?,
        );
    }
    Ok((ts, xs))
}

// ---------------------------------------------------------------------------------------------
// Top-1 sets: DAMP's golden files and the UCR archive.

/// One of DAMP's golden files (`$OSPREY_SHARED/datasets/README.md`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DampSet {
    /// File stem: `<stem>.in` holds the series.
    pub stem: &'static str,
    /// DAMP's subsequence length.
    pub m: usize,
    /// DAMP's split point, 1-based: subsequences starting before it are training data.
    pub split_1based: usize,
    /// DAMP's top-1 discord start, 0-based.
    pub position: u64,
    /// Its score.
    pub score: f64,
}

/// DAMP's published top-1 discords, from the datasets README.
pub const DAMP_SETS: &[DampSet] = &[
    DampSet {
        stem: "1-bourkestreetmall",
        m: 24,
        split_1based: 168,
        position: 7827,
        score: 4.456858,
    },
    DampSet {
        stem: "2-machining",
        m: 16,
        split_1based: 4895,
        position: 36765,
        score: 3.252981,
    },
];

/// The UCR rule: a top-1 start `pos` (0-based) is correct iff it lies in the 1-based region
/// `[begin, end]` widened by [`UCR_SLACK`] on each side.
pub fn ucr_correct(pos: u64, begin: u64, end: u64) -> bool {
    let p = pos + 1;
    begin.saturating_sub(UCR_SLACK) <= p && p <= end + UCR_SLACK
}

/// Training length, region begin and end (1-based) from a UCR archive file name
/// (`025_UCR_Anomaly_DISTORTEDCIMIS44AirTemperature1_4000_5391_5392.txt`).
pub fn parse_ucr_name(name: &str) -> Option<(usize, u64, u64)> {
    let stem = name.strip_suffix(".txt")?;
    let mut parts = stem.rsplitn(4, '_');
    let end = parts.next()?.parse().ok()?;
    let begin = parts.next()?.parse().ok()?;
    let train = parts.next()?.parse().ok()?;
    let head = parts.next()?;
    (head.contains("UCR_Anomaly") && begin <= end).then_some((train, begin, end))
}

/// The result on one top-1 series.
#[derive(Clone, Debug, PartialEq)]
pub struct Top1Result {
    /// File name.
    pub name: String,
    /// Points.
    pub len: usize,
    /// How m was chosen (`golden`, `fixed`, `auto`, `fallback`).
    pub m_from: &'static str,
    /// First scored subsequence (0-based).
    pub split: usize,
    /// The detector's run.
    pub run: Detection,
    /// The labelled region (1-based, inclusive).
    pub region: (u64, u64),
    /// DAMP's golden top-1, for DAMP's files.
    pub golden: Option<DampSet>,
}

impl Top1Result {
    /// Top-1 start equals DAMP's and the score agrees to 1e-6 (DAMP files only).
    pub fn equals_golden(&self) -> Option<bool> {
        let g = self.golden?;
        Some(
            self.run
                .top
                .is_some_and(|t| t.index == g.position && (t.score - g.score).abs() <= 1e-6),
        )
    }

    /// The UCR rule on the labelled region.
    pub fn ucr_correct(&self) -> bool {
        self.run
            .top
            .is_some_and(|t| ucr_correct(t.index, self.region.0, self.region.1))
    }
}

fn top1(
    name: String,
    series: &[f64],
    split: usize,
    region: (u64, u64),
    golden: Option<DampSet>,
    opts: &EvalOptions,
) -> Result<Top1Result, EvalError> {
    let (m, m_from) = match (opts.m, golden) {
        (None, Some(g)) => (g.m, "golden"),
        (choice, _) => choose_m(choice.unwrap_or(MChoice::Auto), &series[..split]),
    };
    if series.len() < 2 * m {
        return Err(EvalError::Invalid(format!(
            "{name}: {} points is too short for m = {m}",
            series.len()
        )));
    }
    let spec = DetectorSpec {
        m,
        history: opts.history,
        mode: opts.mode,
        threshold: opts.threshold,
    };
    let run = detect(series, &spec, split as u64)?;
    Ok(Top1Result {
        name,
        len: series.len(),
        m_from,
        split,
        run,
        region,
        golden,
    })
}

/// Evaluates DAMP's golden files found in `dir` (`<stem>.in`).
pub fn eval_damp(dir: &Path, opts: &EvalOptions) -> Result<Vec<Top1Result>, EvalError> {
    let mut out = Vec::new();
    for g in DAMP_SETS {
        let path = dir.join(format!("{}.in", g.stem));
        if !path.is_file() {
            continue;
        }
        let series = read_series(&path)?;
        // DAMP's top-1 subsequence stands in for the labelled region (1-based).
        let region = (g.position + 1, g.position + g.m as u64);
        out.push(top1(
            g.stem.to_string(),
            &series,
            (g.split_1based - 1).min(series.len()),
            region,
            Some(*g),
            opts,
        )?);
    }
    Ok(out)
}

/// Evaluates the UCR-named files in `dir`.
pub fn eval_ucr(dir: &Path, opts: &EvalOptions) -> Result<Vec<Top1Result>, EvalError> {
    let mut files: Vec<(PathBuf, (usize, u64, u64))> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let parsed = parse_ucr_name(&p.file_name()?.to_string_lossy())?;
            Some((p, parsed))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for (path, (train, begin, end)) in files {
        let series = read_series(&path)?;
        let split = train.min(series.len());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(top1(name, &series, split, (begin, end), None, opts)?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// NAB.

/// The result on one NAB file.
#[derive(Clone, Debug, PartialEq)]
pub struct NabResult {
    /// Path under `nab/data/`.
    pub name: String,
    /// Points.
    pub len: usize,
    /// How m was chosen.
    pub m_from: &'static str,
    /// Labelled windows as point ranges (inclusive).
    pub windows: Vec<(u64, u64)>,
    /// Windows with at least one alarm.
    pub found: usize,
    /// Alarms outside every window.
    pub false_alarms: usize,
    /// Points outside every window.
    pub outside_points: u64,
    /// The detector's run.
    pub run: Detection,
}

/// Window recall and false alarms of `alarms` (sorted point indices) over `len` points.
/// Returns (windows found, false alarms, points outside every window).
pub fn score_windows(alarms: &[u64], windows: &[(u64, u64)], len: u64) -> (usize, usize, u64) {
    let inside = |a: u64| windows.iter().any(|&(b, e)| b <= a && a <= e);
    let found = windows
        .iter()
        .filter(|&&(b, e)| alarms.iter().any(|&a| b <= a && a <= e))
        .count();
    let false_alarms = alarms.iter().filter(|&&a| !inside(a)).count();
    let outside = (0..len).filter(|&p| !inside(p)).count() as u64;
    (found, false_alarms, outside)
}

/// NAB's windows (timestamps) as inclusive point ranges of a file with timestamps `ts`.
pub fn windows_to_points(ts: &[i64], windows: &[(i64, i64)]) -> Vec<(u64, u64)> {
    windows
        .iter()
        .filter_map(|&(b, e)| {
            let first = ts.iter().position(|&t| t >= b)?;
            let last = ts.iter().rposition(|&t| t <= e)?;
            (first <= last).then_some((first as u64, last as u64))
        })
        .collect()
}

/// Evaluates every `data/**.csv` under the NAB folder `dir` against
/// `labels/combined_windows.json`.
pub fn eval_nab(dir: &Path, opts: &EvalOptions) -> Result<Vec<NabResult>, EvalError> {
    let labels_path = dir.join("labels/combined_windows.json");
    let text = std::fs::read_to_string(&labels_path).map_err(io_err(&labels_path))?;
    let labels: HashMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&text).map_err(|e| EvalError::Parse {
            path: labels_path.clone(),
            line: e.line(),
            reason: e.to_string(),
        })?;
    let data = dir.join("data");
    let mut files = Vec::new();
    collect_csv(&data, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(&data)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let (ts, series) = read_nab_csv(&path)?;
        let mut windows = Vec::new();
        for w in labels.get(&name).into_iter().flatten() {
            let pair = match w.as_slice() {
                [b, e] => parse_timestamp(b).zip(parse_timestamp(e)),
                _ => None,
            };
            let pair = pair.ok_or_else(|| EvalError::Parse {
                path: labels_path.clone(),
                line: 0,
                reason: format!("window {w:?} of {name} is not [begin, end]"),
            })?;
            windows.push(pair);
        }
        let windows = windows_to_points(&ts, &windows);
        // NAB's probationary period (15%), at least AUTO_MIN_PREFIX points.
        let prefix = (series.len() * 15 / 100)
            .max(AUTO_MIN_PREFIX)
            .min(series.len());
        let (m, m_from) = choose_m(opts.m.unwrap_or(MChoice::Auto), &series[..prefix]);
        let spec = DetectorSpec {
            m,
            history: opts.history,
            mode: opts.mode,
            threshold: opts.threshold,
        };
        if series.len() < 2 * m {
            continue;
        }
        let run = detect(&series, &spec, 0)?;
        let (found, false_alarms, outside_points) =
            score_windows(&run.alarms, &windows, series.len() as u64);
        out.push(NabResult {
            name,
            len: series.len(),
            m_from,
            windows,
            found,
            false_alarms,
            outside_points,
            run,
        });
    }
    Ok(out)
}

fn collect_csv(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), EvalError> {
    for e in std::fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_csv(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "csv") {
            out.push(p);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The whole `osprey eval discord` report.

/// Which folders under `--data` hold which kind of dataset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    /// DAMP's golden files.
    pub damp: Option<PathBuf>,
    /// The NAB folder (with `data/` and `labels/`).
    pub nab: Option<PathBuf>,
    /// UCR-named files.
    pub ucr: Option<PathBuf>,
}

/// Finds the datasets in `dir`: either a root holding `damp/`, `nab/` and `ucr/`, or one of
/// those folders itself.
pub fn discover(dir: &Path) -> Found {
    let is_damp = |d: &Path| {
        DAMP_SETS
            .iter()
            .any(|g| d.join(format!("{}.in", g.stem)).is_file())
    };
    let is_nab =
        |d: &Path| d.join("labels/combined_windows.json").is_file() && d.join("data").is_dir();
    let is_ucr = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| parse_ucr_name(&e.file_name().to_string_lossy()).is_some())
        })
    };
    let pick = |sub: &str, test: &dyn Fn(&Path) -> bool| {
        [dir.join(sub), dir.to_path_buf()]
            .into_iter()
            .find(|d| test(d))
    };
    Found {
        damp: pick("damp", &is_damp),
        nab: pick("nab", &is_nab),
        ucr: pick("ucr", &is_ucr),
    }
}

/// Runs every dataset found under `dir` and returns the printed report.
pub fn run_discord_eval(dir: &Path, opts: &EvalOptions) -> Result<String, EvalError> {
    use std::fmt::Write;
    let found = discover(dir);
    if found == Found::default() {
        return Err(EvalError::NoData(dir.to_path_buf()));
    }
    let history = opts
        .history
        .map_or("all earlier points".to_string(), |h| h.to_string());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "osprey eval discord: mode {:?}, history {history}, threshold {:?}",
        opts.mode, opts.threshold
    );
    let top1_sets = [
        ("DAMP golden files", found.damp.as_ref(), true),
        ("UCR anomaly archive", found.ucr.as_ref(), false),
    ];
    for (title, dir, is_damp) in top1_sets {
        let Some(dir) = dir else { continue };
        let results = if is_damp {
            eval_damp(dir, opts)?
        } else {
            eval_ucr(dir, opts)?
        };
        let _ = writeln!(s, "\n## {title} ({})\n", dir.display());
        let _ = writeln!(
            s,
            "| series | points | m | split | top-1 start | score | golden start | golden score | \
             equals golden | UCR rule (±100) | seconds |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|");
        for r in &results {
            let (pos, score) = r.run.top.map_or(("-".into(), "-".into()), |t| {
                (t.index.to_string(), format!("{:.6}", t.score))
            });
            let (gpos, gscore) = r.golden.map_or(("-".into(), "-".into()), |g| {
                (g.position.to_string(), format!("{:.6}", g.score))
            });
            let eq = match r.equals_golden() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} ({}) | {} | {pos} | {score} | {gpos} | {gscore} | {eq} | {} | {:.2} |",
                r.name,
                r.len,
                r.run.m,
                r.m_from,
                r.split,
                if r.ucr_correct() { "correct" } else { "wrong" },
                r.run.seconds
            );
        }
        let correct = results.iter().filter(|r| r.ucr_correct()).count();
        let _ = writeln!(
            s,
            "\ntop-1 accuracy (UCR rule): {correct}/{} = {:.1}%",
            results.len(),
            pct(correct, results.len())
        );
    }
    if let Some(dir) = &found.nab {
        let results = eval_nab(dir, opts)?;
        let _ = writeln!(s, "\n## NAB ({})\n", dir.display());
        let _ = writeln!(
            s,
            "| file | points | m | windows found | alarms | false alarms | seconds |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        for r in &results {
            let _ = writeln!(
                s,
                "| {} | {} | {} ({}) | {}/{} | {} | {} | {:.2} |",
                r.name,
                r.len,
                r.run.m,
                r.m_from,
                r.found,
                r.windows.len(),
                r.run.alarms.len(),
                r.false_alarms,
                r.run.seconds
            );
        }
        let windows: usize = results.iter().map(|r| r.windows.len()).sum();
        let found_w: usize = results.iter().map(|r| r.found).sum();
        let fa: usize = results.iter().map(|r| r.false_alarms).sum();
        let outside: u64 = results.iter().map(|r| r.outside_points).sum();
        let points: usize = results.iter().map(|r| r.len).sum();
        let alarms: usize = results.iter().map(|r| r.run.alarms.len()).sum();
        let secs: f64 = results.iter().map(|r| r.run.seconds).sum();
        let auto = results.iter().filter(|r| r.m_from == "auto").count();
        let _ = writeln!(
            s,
            "\nNAB: {} files, {points} points, m auto-detected on {auto} files \
             (fallback {FALLBACK_M} otherwise, unless --m)",
            results.len()
        );
        let _ = writeln!(
            s,
            "NAB window recall: {found_w}/{windows} = {:.1}%",
            pct(found_w, windows)
        );
        let _ = writeln!(
            s,
            "NAB false alarms: {fa} of {alarms} alarms, {:.2} per 10,000 points outside windows \
             ({outside} such points)",
            if outside == 0 {
                0.0
            } else {
                fa as f64 * 1e4 / outside as f64
            }
        );
        let _ = writeln!(s, "NAB detector time: {secs:.1} s");
    }
    Ok(s)
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

// ---------------------------------------------------------------------------------------------
// The AWS left-discords sample: its stream and its method.

/// SplitMix64: a small seeded generator, so the stream is the same on every machine.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Points between injected anomalies in the sample's stream.
pub const AWS_SPIKE_EVERY: u64 = 30;

/// The AWS sample's synthetic stream.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsStream {
    /// The values, one per 100 ms.
    pub values: Vec<f64>,
    /// Points replaced by an anomaly (0-based) and the value put there.
    pub injected: Vec<(u64, f64)>,
}

impl AwsStream {
    /// Injected points whose value differs from the sine's (a replacement of 0 lands on the
    /// sine's own zero crossing, since sin(30j·π/5) = 0, and cannot be seen by any detector).
    pub fn visible(&self) -> Vec<u64> {
        self.injected
            .iter()
            .filter(|(_, v)| v.abs() > 0.5)
            .map(|(p, _)| *p)
            .collect()
    }
}

/// The AWS sample's stream generator, reimplemented with a seeded generator: point `k`
/// (counting from 1, as the sample's script does) is `sin(k·π/5)`, except that every 30th
/// point is replaced by `sign·round(3·U)` with a random sign and `U` uniform in [0, 1).
pub fn aws_sample_stream(n: usize, seed: u64) -> AwsStream {
    let mut rng = SplitMix64::new(seed);
    let mut values = Vec::with_capacity(n);
    let mut injected = Vec::new();
    for i in 0..n as u64 {
        let k = i + 1;
        let mut x = (k as f64 * std::f64::consts::PI / 5.0).sin();
        if k % AWS_SPIKE_EVERY == 0 {
            let sign = if rng.next_f64() < 0.5 { -1.0 } else { 1.0 };
            x = sign * (rng.next_f64() * 3.0).round();
            injected.push((i, x));
        }
        values.push(x);
    }
    AwsStream { values, injected }
}

/// The AWS sample's detector, reimplemented for the comparison (its weaknesses included on
/// purpose): a ring of `64·m` points; once more than `2m` points have arrived, the newest
/// subsequence's nearest neighbour by **raw squared Euclidean distance** is found by brute
/// force over the ring (skipping the `2m − 1` newest starts and the oldest slot), where a
/// candidate reaching into not-yet-filled slots counts as distance 0; every such distance,
/// zeros included, feeds a never-forgetting mean + 2σ; after `16·m` points a distance above
/// it is an alarm. The sample uses `m = floor(0.8 · 3) = 2`.
#[derive(Clone, Debug)]
pub struct AwsSampleDetector {
    m: usize,
    ring: std::collections::VecDeque<f64>,
    capacity: usize,
    seen: u64,
    sum: f64,
    sum_sq: f64,
    count: u64,
}

impl AwsSampleDetector {
    /// The sample's subsequence length.
    pub const SAMPLE_M: usize = 2;

    /// A detector with subsequence length `m` (the sample's: [`Self::SAMPLE_M`]).
    pub fn new(m: usize) -> Self {
        AwsSampleDetector {
            m,
            ring: std::collections::VecDeque::with_capacity(64 * m),
            capacity: 64 * m,
            seen: 0,
            sum: 0.0,
            sum_sq: 0.0,
            count: 0,
        }
    }

    /// Takes one point; returns its distance (0 while initialising) and whether it alarms.
    pub fn push(&mut self, x: f64) -> (f64, bool) {
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(x);
        self.seen += 1;
        let (m, size) = (self.m, self.ring.len());
        if size <= 2 * m {
            return (0.0, false);
        }
        // Candidate starts, absolute: seen − capacity + 1 ..= seen − 2m. Those before the
        // first point read empty slots, which the sample sums as nothing: distance 0.
        let t = self.seen as i64;
        let oldest = t - size as i64;
        let query = size - m;
        let mut best = f64::MAX;
        for s in (t - self.capacity as i64 + 1)..=(t - 2 * m as i64) {
            let d = if s < oldest {
                0.0
            } else {
                let j = (s - oldest) as usize;
                (0..m)
                    .map(|k| {
                        let diff = self.ring[j + k] - self.ring[query + k];
                        diff * diff
                    })
                    .sum()
            };
            best = best.min(d);
        }
        self.sum += best;
        self.sum_sq += best * best;
        self.count += 1;
        let mean = self.sum / self.count as f64;
        let threshold = mean + 2.0 * (self.sum_sq / self.count as f64 - mean * mean).sqrt();
        let alarm = size > 16 * m && best > threshold;
        (best, alarm)
    }
}

/// Alarms of the AWS sample's detector over `series` (points that alarmed).
pub fn aws_sample_alarms(series: &[f64], m: usize) -> Vec<u64> {
    let mut det = AwsSampleDetector::new(m);
    series
        .iter()
        .enumerate()
        .filter_map(|(i, &x)| det.push(x).1.then_some(i as u64))
        .collect()
}

/// Alarms against injected anomalies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Alarms raised.
    pub alarms: usize,
    /// Alarms whose subsequence holds an injected point.
    pub true_alarms: usize,
    /// The others.
    pub false_alarms: usize,
    /// Injected points with at least one alarm on a subsequence holding them.
    pub detected: usize,
    /// Injected points without.
    pub missed: usize,
}

/// Scores `alarms` (the last points of alarming subsequences of length `m`) against the
/// injected points: an alarm at `a` is true iff an injected point lies in `[a − m + 1, a]`.
pub fn tally(alarms: &[u64], injected: &[u64], m: usize) -> Tally {
    let span = m as u64 - 1;
    let covers = |a: u64, p: u64| p <= a && a <= p + span;
    let true_alarms = alarms
        .iter()
        .filter(|&&a| injected.iter().any(|&p| covers(a, p)))
        .count();
    let detected = injected
        .iter()
        .filter(|&&p| alarms.iter().any(|&a| covers(a, p)))
        .count();
    Tally {
        alarms: alarms.len(),
        true_alarms,
        false_alarms: alarms.len() - true_alarms,
        detected,
        missed: injected.len() - detected,
    }
}

/// Options of `osprey eval aws-sample`.
#[derive(Clone, Debug, PartialEq)]
pub struct AwsOptions {
    /// Points of the synthetic stream.
    pub points: usize,
    /// Seed of the anomaly generator.
    pub seed: u64,
    /// osprey's m (`auto`: the period of the first 1,000 points).
    pub m: MChoice,
    /// osprey's history.
    pub history: usize,
    /// osprey's mode.
    pub mode: Mode,
    /// osprey's threshold.
    pub threshold: ThresholdSpec,
}

impl Default for AwsOptions {
    fn default() -> Self {
        AwsOptions {
            points: 36_000,
            seed: 1,
            m: MChoice::Auto,
            history: 10_000,
            mode: Mode::Exact,
            threshold: ThresholdSpec::DEFAULT,
        }
    }
}

/// One detector's line of the side-by-side.
#[derive(Clone, Debug, PartialEq)]
pub struct SideBySide {
    /// Who.
    pub detector: String,
    /// Subsequence length.
    pub m: usize,
    /// Against the visible injected points.
    pub tally: Tally,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Both detectors over `series`, scored against `injected` (visible points only).
pub fn compare_on(
    series: &[f64],
    injected: &[u64],
    opts: &AwsOptions,
) -> Result<Vec<SideBySide>, EvalError> {
    let started = Instant::now();
    let sample = aws_sample_alarms(series, AwsSampleDetector::SAMPLE_M);
    let sample_secs = started.elapsed().as_secs_f64();
    let (m, _) = choose_m(opts.m, &series[..series.len().min(1_000)]);
    let spec = DetectorSpec {
        m,
        history: Some(opts.history),
        mode: opts.mode,
        threshold: opts.threshold,
    };
    let run = detect(series, &spec, 0)?;
    Ok(vec![
        SideBySide {
            detector: "AWS sample (raw sq. distance, mean + 2σ, brute force)".into(),
            m: AwsSampleDetector::SAMPLE_M,
            tally: tally(&sample, injected, AwsSampleDetector::SAMPLE_M),
            seconds: sample_secs,
        },
        SideBySide {
            detector: format!(
                "osprey discord ({:?}, history {}, {})",
                opts.mode,
                opts.history,
                threshold_name(&opts.threshold)
            ),
            m,
            tally: tally(&run.alarms, injected, m),
            seconds: run.seconds,
        },
    ])
}

fn threshold_name(t: &ThresholdSpec) -> String {
    match *t {
        ThresholdSpec::Gaussian { k, warmup, .. } => format!("gaussian k={k} warmup={warmup}"),
        ThresholdSpec::Warmup { k, train } => format!("warmup k={k} train={train}"),
        ThresholdSpec::Quantile { q, factor, .. } => format!("quantile q={q} ×{factor}"),
        ThresholdSpec::Static { value } => format!("static {value}"),
    }
}

/// `osprey eval aws-sample`: the side-by-side on the sample's stream, then alarm counts and
/// run times on `<data>/aws-leftdiscords/97.csv` when `data` holds it.
pub fn run_aws_eval(data: Option<&Path>, opts: &AwsOptions) -> Result<String, EvalError> {
    use std::fmt::Write;
    let stream = aws_sample_stream(opts.points, opts.seed);
    let visible = stream.visible();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "AWS left-discords sample stream: {} points (sin(k·π/5) at 10 Hz), seed {}, \
         {} injected anomalies (every {AWS_SPIKE_EVERY}th point), {} visible \
         ({} were replaced by 0, the sine's own value there)\n",
        opts.points,
        opts.seed,
        stream.injected.len(),
        visible.len(),
        stream.injected.len() - visible.len()
    );
    let _ = writeln!(
        s,
        "| detector | m | injected (visible) | alarms | true positives | false positives | \
         detected | missed | seconds |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in compare_on(&stream.values, &visible, opts)? {
        let t = r.tally;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
            r.detector,
            r.m,
            visible.len(),
            t.alarms,
            t.true_alarms,
            t.false_alarms,
            t.detected,
            t.missed,
            r.seconds
        );
    }
    if let Some(path) = data
        .map(|d| d.join("aws-leftdiscords/97.csv"))
        .filter(|p| p.is_file())
    {
        let series = read_series(&path)?;
        let _ = writeln!(
            s,
            "\n{} ({} points, no labels):\n",
            path.display(),
            series.len()
        );
        let _ = writeln!(s, "| detector | m | alarms | seconds | points/s |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for r in compare_on(&series, &[], opts)? {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.0} |",
                r.detector,
                r.m,
                r.tally.alarms,
                r.seconds,
                series.len() as f64 / r.seconds.max(1e-9)
            );
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_flag_uses_the_operator_defaults() {
        assert_eq!(parse_threshold("gaussian").unwrap(), ThresholdSpec::DEFAULT);
        assert_eq!(
            parse_threshold("gaussian:k=4,warmup=200").unwrap(),
            ThresholdSpec::Gaussian {
                k: 4.0,
                half_life: 10_000.0,
                warmup: 200,
                floor: 0.05
            }
        );
        assert_eq!(
            parse_threshold("static:value=2.5").unwrap(),
            ThresholdSpec::Static { value: 2.5 }
        );
        assert_eq!(
            parse_threshold("warmup:train=1000").unwrap(),
            ThresholdSpec::Warmup {
                k: 5.0,
                train: 1000
            }
        );
        for bad in [
            "nope",
            "gaussian:k",
            "gaussian:k=x",
            "gaussian:colour=1",
            "quantile:q=2",
            "static",
            "gaussian:k=inf",
            "gaussian:a\"=1",
        ] {
            assert!(parse_threshold(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn m_and_mode_flags() {
        assert_eq!("auto".parse(), Ok(MChoice::Auto));
        assert_eq!("24".parse(), Ok(MChoice::Fixed(24)));
        assert!("1".parse::<MChoice>().is_err());
        assert_eq!("damp".parse(), Ok(Mode::Damp));
        assert!("fast".parse::<Mode>().is_err());
    }

    #[test]
    fn timestamps_match_unix_time() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        // 2014-04-10 16:15:00 UTC = 1397146500 (date -u -d … +%s).
        assert_eq!(parse_timestamp("2014-04-10 16:15:00"), Some(1_397_146_500));
        assert_eq!(
            parse_timestamp("2014-04-10 16:15:00.000000"),
            Some(1_397_146_500)
        );
        assert_eq!(parse_timestamp("2000-02-29 23:59:59"), Some(951_868_799));
        assert_eq!(parse_timestamp("2014-13-10 16:15:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn ucr_names_and_rule() {
        assert_eq!(
            parse_ucr_name("025_UCR_Anomaly_DISTORTEDCIMIS44AirTemperature1_4000_5391_5392.txt"),
            Some((4000, 5391, 5392))
        );
        assert_eq!(parse_ucr_name("1-bourkestreetmall.in"), None);
        assert_eq!(parse_ucr_name("x_1_2_3.txt"), None);
        // Region [5391, 5392], 1-based: starts 5290..=5491 (0-based) are correct.
        assert!(ucr_correct(5290, 5391, 5392));
        assert!(!ucr_correct(5289, 5391, 5392));
        assert!(ucr_correct(5491, 5391, 5392));
        assert!(!ucr_correct(5492, 5391, 5392));
        assert!(ucr_correct(0, 50, 60));
    }

    #[test]
    fn series_parsing() {
        assert_eq!(
            parse_series("1\n2.5\n\n-3e2\n").unwrap(),
            vec![1.0, 2.5, -300.0]
        );
        assert_eq!(parse_series("1 2  3").unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(parse_series("1\nx\n").unwrap_err().0, 2);
    }

    #[test]
    fn windows_map_to_points_and_score() {
        let ts: Vec<i64> = (0..100).map(|i| i * 300).collect();
        let w = windows_to_points(&ts, &[(3000, 4500), (29_000, 40_000), (50_000, 60_000)]);
        assert_eq!(w, vec![(10, 15), (97, 99)]);
        let (found, fa, outside) = score_windows(&[12, 50, 51], &w, 100);
        assert_eq!((found, fa, outside), (1, 2, 100 - 6 - 3));
    }

    #[test]
    fn tally_counts_alarms_within_the_subsequence_span() {
        // m = 3: an alarm at a covers injected points a−2..=a.
        let t = tally(&[10, 12, 13, 40], &[10, 30], 3);
        assert_eq!(
            t,
            Tally {
                alarms: 4,
                true_alarms: 2,
                false_alarms: 2,
                detected: 1,
                missed: 1
            }
        );
    }

    #[test]
    fn aws_stream_is_the_samples_shape() {
        let s = aws_sample_stream(300, 7);
        assert_eq!(s.values.len(), 300);
        let idx: Vec<u64> = s.injected.iter().map(|p| p.0).collect();
        assert_eq!(idx, (1..=10).map(|j| 30 * j - 1).collect::<Vec<_>>());
        for (p, v) in &s.injected {
            assert!([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0].contains(v));
            assert_eq!(s.values[*p as usize], *v);
        }
        // Point k (1-based) is sin(k·π/5) elsewhere: a period of 10.
        assert!((s.values[0] - (std::f64::consts::PI / 5.0).sin()).abs() < 1e-15);
        assert!((s.values[3] - s.values[13]).abs() < 1e-12);
        assert_eq!(aws_sample_stream(300, 7), s, "seeded");
        assert_ne!(aws_sample_stream(300, 8).injected, s.injected);
    }

    /// The sample's method, written the slow way from its description: all earlier
    /// subsequence starts in the ring window, absolute indices.
    fn sample_reference(series: &[f64], m: usize) -> Vec<(f64, bool)> {
        let cap = 64 * m as i64;
        let (mut sum, mut sq, mut n) = (0.0, 0.0, 0.0);
        let mut out = Vec::new();
        for t in 1..=series.len() as i64 {
            let size = t.min(cap);
            if size <= 2 * m as i64 {
                out.push((0.0, false));
                continue;
            }
            let q = (t - m as i64) as usize;
            let mut best = f64::MAX;
            for s in (t - cap + 1)..=(t - 2 * m as i64) {
                let d: f64 = if s < 0 {
                    0.0
                } else {
                    (0..m)
                        .map(|k| (series[s as usize + k] - series[q + k]).powi(2))
                        .sum()
                };
                best = best.min(d);
            }
            sum += best;
            sq += best * best;
            n += 1.0;
            let mean = sum / n;
            let th = mean + 2.0 * (sq / n - mean * mean).sqrt();
            out.push((best, size > 16 * m as i64 && best > th));
        }
        out
    }

    #[test]
    fn aws_detector_matches_its_reference() {
        let s = aws_sample_stream(1_000, 3);
        for m in [2, 3] {
            let mut det = AwsSampleDetector::new(m);
            let got: Vec<(f64, bool)> = s.values.iter().map(|&x| det.push(x)).collect();
            assert_eq!(got, sample_reference(&s.values, m));
        }
        // Zeros during warm-up: until 127 points have arrived, some candidate reads an
        // empty slot and counts as distance 0.
        let mut det = AwsSampleDetector::new(2);
        let d: Vec<f64> = s.values.iter().take(200).map(|&x| det.push(x).0).collect();
        assert!(d[..126].iter().all(|&x| x == 0.0));
        assert!(d[126..].iter().any(|&x| x > 0.0));
    }

    #[test]
    fn aws_detector_goes_nan_free_but_silent_on_a_constant_stream() {
        // sqrt of a rounding-negative variance is NaN and compares false: no alarms, no panic.
        let alarms = aws_sample_alarms(&[1.0; 500], 2);
        assert!(alarms.is_empty());
    }

    #[test]
    fn detect_flags_a_spike_in_a_sine_and_finds_it_as_top1() {
        let mut xs: Vec<f64> = (0..3_000).map(|i| (i as f64 * 0.1).sin()).collect();
        xs[2_000] += 3.0;
        for mode in [Mode::Exact, Mode::Damp] {
            let spec = DetectorSpec {
                m: 63,
                history: None,
                mode,
                threshold: ThresholdSpec::DEFAULT,
            };
            let run = detect(&xs, &spec, 0).unwrap();
            let top = run.top.unwrap();
            assert!((1_938..=2_000).contains(&top.index), "{mode:?}: {top:?}");
            assert_eq!(run.alarms.len(), 1, "{mode:?}: {:?}", run.alarms);
            assert!((2_000..2_063).contains(&run.alarms[0]));
        }
    }

    #[test]
    fn detect_exact_and_damp_agree_on_top1_with_a_split() {
        let mut rng = SplitMix64::new(5);
        let mut x = 0.0;
        let xs: Vec<f64> = (0..2_000)
            .map(|_| {
                x += rng.next_f64() - 0.5;
                x
            })
            .collect();
        let spec = |mode| DetectorSpec {
            m: 20,
            history: None,
            mode,
            threshold: ThresholdSpec::Static { value: f64::MAX },
        };
        let exact = detect(&xs, &spec(Mode::Exact), 500).unwrap();
        let damp = detect(&xs, &spec(Mode::Damp), 500).unwrap();
        let (e, d) = (exact.top.unwrap(), damp.top.unwrap());
        assert!(e.index >= 500);
        assert_eq!(e.index, d.index);
        assert!((e.score - d.score).abs() < 1e-9);
        // The naive top-1 over starts ≥ 500 against every earlier non-overlapping start.
        let m = 20;
        let naive = |i: usize| {
            (0..=i + 1 - m)
                .map(|j| znorm(&xs[i..i + m], &xs[j..j + m]))
                .fold(f64::INFINITY, f64::min)
        };
        let (ni, ns) =
            (500..=xs.len() - m)
                .map(|i| (i, naive(i)))
                .fold(
                    (0, f64::NEG_INFINITY),
                    |b, c| if c.1 >= b.1 { c } else { b },
                );
        assert_eq!(e.index, ni as u64);
        assert!((e.score - ns).abs() < 1e-9);
    }

    fn znorm(a: &[f64], b: &[f64]) -> f64 {
        let stats = |x: &[f64]| {
            let n = x.len() as f64;
            let mu = x.iter().sum::<f64>() / n;
            let sd = (x.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / n).sqrt();
            (mu, sd)
        };
        let ((ma, sa), (mb, sb)) = (stats(a), stats(b));
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - ma) / sa - (y - mb) / sb).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn choose_m_finds_the_period_or_falls_back() {
        let sine: Vec<f64> = (0..2_000)
            .map(|i| (i as f64 * 2.0 * std::f64::consts::PI / 50.0).sin())
            .collect();
        assert_eq!(choose_m(MChoice::Auto, &sine), (50, "auto"));
        assert_eq!(choose_m(MChoice::Fixed(7), &sine), (7, "fixed"));
        let mut rng = SplitMix64::new(1);
        let noise: Vec<f64> = (0..2_000).map(|_| rng.next_f64()).collect();
        assert_eq!(choose_m(MChoice::Auto, &noise), (FALLBACK_M, "fallback"));
    }

    #[test]
    fn discover_finds_root_or_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(discover(dir.path()), Found::default());
        let damp = dir.path().join("damp");
        std::fs::create_dir(&damp).unwrap();
        std::fs::write(damp.join("2-machining.in"), "1\n2\n").unwrap();
        assert_eq!(discover(dir.path()).damp.as_deref(), Some(damp.as_path()));
        assert_eq!(discover(&damp).damp.as_deref(), Some(damp.as_path()));
        assert!(matches!(
            run_discord_eval(&dir.path().join("nothing"), &EvalOptions::default()),
            Err(EvalError::NoData(_))
        ));
    }
}
