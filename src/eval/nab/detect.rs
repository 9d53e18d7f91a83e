//! osprey's own detectors on NAB, through the operators a job runs: the corpus becomes one
//! JSON-lines file keyed by NAB file (so every file gets its own per-key detector state, as
//! keys do in production), a job runs `discord` and `rcf` over it with the file sink, and the
//! output records become NAB anomaly scores.
//!
//! # The anomaly score NAB needs (a value in [0, 1] per record)
//!
//! Both detectors emit a raw score and their own online alarm threshold per record
//! (`discord_score`/`discord_threshold`, `rcf_score`/`rcf_threshold`).
//!
//! - `rcf`: `s / (1 + s)` of the raw score `s`. A fixed monotone map, so NAB's threshold
//!   sweep sees the forest's own ranking of the records. (Dividing by the online threshold
//!   first, as for `discord`, ranks records by a time-varying yardstick instead, and scored
//!   48.05 against this 52.01 on NAB's standard profile.)
//! - `discord`: `r / (1 + r)` with `r = score / threshold`: 0.5 exactly where the operator
//!   itself would alarm, comparable across files because each threshold adapts to its own
//!   series (the raw z-normalised distance scored lower).
//!
//! A record without a score (warm-up, or for `discord` a threshold not yet armed) scores 0.
//! `max` is the fused score of both detectors (the `any_true` of their alarms, at every NAB
//! threshold). The operators' own verdicts are scored too: 1 where `is_anomaly` is true, else
//! 0 (each detector's alarms, and `any_true` of both, as the quick start's filter keeps them).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::corpus::NabCorpus;
use crate::eval::{EvalError, io_err};

/// Which operator settings the job uses (one configuration for the whole corpus).
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorJob {
    /// `discord`'s subsequence length.
    pub m: usize,
    /// `discord`'s history in points.
    pub history: usize,
    /// Extra `key = value` lines for the `discord` table (TOML), e.g. a `threshold` table.
    pub discord_extra: String,
    /// Extra `key = value` lines for the `rcf` table (TOML).
    pub rcf_extra: String,
}

impl Default for DetectorJob {
    fn default() -> Self {
        DetectorJob {
            m: 32,
            history: 10_000,
            discord_extra: String::new(),
            rcf_extra: String::new(),
        }
    }
}

/// The NAB scores of each detector, per file of the corpus.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorScores {
    /// `discord`'s.
    pub discord: Vec<Vec<f64>>,
    /// `rcf`'s.
    pub rcf: Vec<Vec<f64>>,
    /// 1 where `discord_is_anomaly` is true, else 0.
    pub discord_alarms: Vec<Vec<f64>>,
    /// 1 where `rcf_is_anomaly` is true, else 0.
    pub rcf_alarms: Vec<Vec<f64>>,
}

impl DetectorScores {
    /// The larger of the two scores per record (fused score).
    pub fn max(&self) -> Vec<Vec<f64>> {
        pairwise(&self.discord, &self.rcf)
    }

    /// 1 where either operator alarms (`any_true`), else 0.
    pub fn any_true(&self) -> Vec<Vec<f64>> {
        pairwise(&self.discord_alarms, &self.rcf_alarms)
    }
}

fn pairwise(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p.max(*q)).collect())
        .collect()
}

/// Writes the corpus as one JSON-lines input file: `{"file": name, "i": row, "x": value}`.
pub fn write_input(corpus: &NabCorpus, path: &Path) -> Result<(), EvalError> {
    let f = std::fs::File::create(path).map_err(io_err(path))?;
    let mut w = std::io::BufWriter::new(f);
    for file in &corpus.files {
        let name = serde_json::to_string(&file.name).expect("a string serialises");
        for (i, x) in file.values.iter().enumerate() {
            // `{:?}` prints a float that reads back to the same bits.
            writeln!(w, "{{\"file\":{name},\"i\":{i},\"x\":{x:?}}}").map_err(io_err(path))?;
        }
    }
    w.flush().map_err(io_err(path))
}

/// The job file that runs both detectors over `input` into the folder `out`, keeping its state
/// in `state`.
pub fn job_text(job: &DetectorJob, input: &Path, out: &Path, state: &Path) -> String {
    let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("a string serialises");
    let mut s = String::new();
    let _ = write!(
        s,
        "name = \"eval_nab\"\n\
         [source]\ntype = \"file\"\npath = {}\n\
         [record]\nkey = \"file\"\nvalues = [\"x\"]\n\
         [[operators]]\ntype = \"discord\"\nm = {}\nhistory = {}\nprefix = \"discord_\"\n{}\n\
         [[operators]]\ntype = \"rcf\"\nprefix = \"rcf_\"\n{}\n\
         [sink]\ntype = \"file\"\npath = {}\n\
         [state]\ndir = {}\n\
         [metrics]\nenabled = false\n",
        q(input),
        job.m,
        job.history,
        job.discord_extra,
        job.rcf_extra,
        q(out),
        q(state),
    );
    s
}

/// The raw score mapped to [0, 1) (see the module docs); 0 without one.
fn raw_score(rec: &serde_json::Value, prefix: &str) -> f64 {
    match rec.get(format!("{prefix}score")).and_then(|v| v.as_f64()) {
        Some(s) if s.is_finite() && s >= 0.0 => s / (1.0 + s),
        _ => 0.0,
    }
}

/// `score / threshold` mapped to [0, 1) (see the module docs); 0 without both.
fn nab_score(rec: &serde_json::Value, prefix: &str) -> f64 {
    let get = |k: &str| rec.get(format!("{prefix}{k}")).and_then(|v| v.as_f64());
    match (get("score"), get("threshold")) {
        (Some(s), Some(t)) if s.is_finite() && t.is_finite() && t > 0.0 && s >= 0.0 => {
            let r = s / t;
            r / (1.0 + r)
        }
        _ => 0.0,
    }
}

/// Reads the job's output (every `*.jsonl` under `out`) back into per-file NAB scores.
/// Every input record must come out exactly once.
pub fn read_output(corpus: &NabCorpus, out: &Path) -> Result<DetectorScores, EvalError> {
    let index: HashMap<&str, usize> = corpus
        .files
        .iter()
        .enumerate()
        .map(|(k, f)| (f.name.as_str(), k))
        .collect();
    let blank = || -> Vec<Vec<f64>> {
        corpus
            .files
            .iter()
            .map(|f| vec![f64::NAN; f.values.len()])
            .collect()
    };
    let (mut discord, mut rcf) = (blank(), blank());
    let (mut discord_alarms, mut rcf_alarms) = (blank(), blank());
    let alarm = |rec: &serde_json::Value, k: &str| {
        let on = rec.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        if on { 1.0 } else { 0.0 }
    };
    let mut paths: Vec<_> = std::fs::read_dir(out)
        .map_err(io_err(out))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    for path in &paths {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        for (n, line) in text.lines().enumerate() {
            let bad = |why: String| EvalError::Parse {
                path: path.clone(),
                line: n + 1,
                reason: why,
            };
            let rec: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            let file = rec.get("file").and_then(|v| v.as_str());
            let row = rec.get("i").and_then(|v| v.as_u64());
            let (Some(&k), Some(row)) = (file.and_then(|f| index.get(f)), row) else {
                return Err(bad("no known `file` and `i`".into()));
            };
            let row = row as usize;
            let slot = discord[k]
                .get_mut(row)
                .ok_or_else(|| bad(format!("row {row} is past the end of the file")))?;
            if !slot.is_nan() {
                return Err(bad(format!("record {row} came out twice")));
            }
            *slot = nab_score(&rec, "discord_");
            rcf[k][row] = raw_score(&rec, "rcf_");
            discord_alarms[k][row] = alarm(&rec, "discord_is_anomaly");
            rcf_alarms[k][row] = alarm(&rec, "rcf_is_anomaly");
        }
    }
    for (f, scores) in corpus.files.iter().zip(&discord) {
        if let Some(row) = scores.iter().position(|x| x.is_nan()) {
            return Err(EvalError::Invalid(format!(
                "record {row} of {} did not come out of the job",
                f.name
            )));
        }
    }
    Ok(DetectorScores {
        discord,
        rcf,
        discord_alarms,
        rcf_alarms,
    })
}
