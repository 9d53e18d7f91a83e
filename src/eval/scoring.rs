//! Running the detector over one series, and scoring what it found: top-1 discords against
//! DAMP's golden values and the UCR rule, NAB windows against alarms.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::datasets::{
    DAMP_SETS, DampSet, collect_csv, parse_timestamp, parse_ucr_name, read_nab_csv, read_series,
};
use super::{
    AUTO_MIN_PREFIX, DetectorSpec, EvalError, EvalOptions, MChoice, Mode, UCR_SLACK, choose_m,
    io_err,
};
use crate::detectors::matrix_profile::{Damp, DampConfig, Discord, LeftMatrixProfile, Threshold};

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

/// The UCR rule: a top-1 start `pos` (0-based) is correct iff it lies in the 1-based region
/// `[begin, end]` widened by [`UCR_SLACK`] on each side.
pub fn ucr_correct(pos: u64, begin: u64, end: u64) -> bool {
    let p = pos + 1;
    begin.saturating_sub(UCR_SLACK) <= p && p <= end + UCR_SLACK
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
