//! NAB's folder: the data files' timestamps, the labelled windows, the profiles, the published
//! thresholds and scores, and a detector's result files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::score::CostMatrix;
use crate::eval::datasets::{parse_timestamp, read_nab_csv};
use crate::eval::{EvalError, io_err};

/// One scoring profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// `standard`, `reward_low_FP_rate` or `reward_low_FN_rate` (NAB's names).
    pub name: String,
    /// Its weights.
    pub cost: CostMatrix,
}

/// One data file of the corpus.
#[derive(Clone, Debug, PartialEq)]
pub struct NabFile {
    /// Path under `data/`, as NAB names it (`realKnownCause/nyc_taxi.csv`).
    pub name: String,
    /// Its records' timestamps (seconds).
    pub timestamps: Vec<i64>,
    /// Its records' values.
    pub values: Vec<f64>,
    /// Its labelled windows as (first, last) record indices, in order.
    pub windows: Vec<(usize, usize)>,
}

/// The corpus: every file named in `labels/combined_windows.json`, in name order.
#[derive(Clone, Debug, PartialEq)]
pub struct NabCorpus {
    /// The NAB folder.
    pub dir: PathBuf,
    /// The files.
    pub files: Vec<NabFile>,
    /// The profiles of `config/profiles.json`, in NAB's order.
    pub profiles: Vec<Profile>,
}

fn parse_err(path: &Path, line: usize, reason: impl Into<String>) -> EvalError {
    EvalError::Parse {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EvalError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| parse_err(path, e.line(), e.to_string()))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileEntry {
    #[serde(rename = "CostMatrix")]
    cost_matrix: CostMatrix,
}

impl NabCorpus {
    /// Loads the NAB folder `dir` (holding `data/`, `labels/` and `config/`). Every window's
    /// begin and end must be timestamps of its file (NAB refuses the labels otherwise), and the
    /// windows of a file must be in order and must not overlap.
    pub fn load(dir: &Path) -> Result<Self, EvalError> {
        let labels_path = dir.join("labels/combined_windows.json");
        let labels: BTreeMap<String, Vec<Vec<String>>> = read_json(&labels_path)?;
        let profiles_path = dir.join("config/profiles.json");
        let entries: BTreeMap<String, ProfileEntry> = read_json(&profiles_path)?;
        let mut profiles: Vec<Profile> = entries
            .into_iter()
            .map(|(name, e)| Profile {
                name,
                cost: e.cost_matrix,
            })
            .collect();
        profiles.sort_by_key(|p| {
            let rank = super::PROFILE_ORDER.iter().position(|&n| n == p.name);
            (rank.unwrap_or(usize::MAX), p.name.clone())
        });
        let mut files = Vec::with_capacity(labels.len());
        for (name, windows) in labels {
            let path = dir.join("data").join(&name);
            let (timestamps, values) = read_nab_csv(&path)?;
            let mut indices: Vec<(usize, usize)> = Vec::with_capacity(windows.len());
            for w in &windows {
                let bad = |why: &str| parse_err(&labels_path, 0, format!("{name}: {w:?}: {why}"));
                let [begin, end] = w.as_slice() else {
                    return Err(bad("a window is [begin, end]"));
                };
                let find = |t: &str| {
                    let t = parse_timestamp(t).ok_or_else(|| bad("not a timestamp"))?;
                    timestamps
                        .iter()
                        .position(|&x| x == t)
                        .ok_or_else(|| bad("the timestamp is not in the data file"))
                };
                let (first, last) = (find(begin)?, find(end)?);
                if last < first {
                    return Err(bad("the window ends before it begins"));
                }
                if indices
                    .last()
                    .is_some_and(|&(_, prev_last)| first < prev_last)
                {
                    return Err(bad("the window overlaps the one before"));
                }
                indices.push((first, last));
            }
            files.push(NabFile {
                name,
                timestamps,
                values,
                windows: indices,
            });
        }
        Ok(NabCorpus {
            dir: dir.to_path_buf(),
            files,
            profiles,
        })
    }

    /// Labelled windows in the whole corpus (the perfect detector's count).
    pub fn window_count(&self) -> usize {
        self.files.iter().map(|f| f.windows.len()).sum()
    }

    /// The corpus-wide number of each file's first window.
    pub fn first_windows(&self) -> Vec<u32> {
        let mut next = 0u32;
        self.files
            .iter()
            .map(|f| {
                let first = next;
                next += f.windows.len() as u32;
                first
            })
            .collect()
    }
}

/// A detector's anomaly scores for every file of `corpus`, from NAB's results layout:
/// `<results>/<category>/<detector>_<file>.csv` with an `anomaly_score` column, one row per
/// record of the data file. Scores must be finite.
pub fn read_results(
    corpus: &NabCorpus,
    results: &Path,
    detector: &str,
) -> Result<Vec<Vec<f64>>, EvalError> {
    corpus
        .files
        .iter()
        .map(|f| {
            let (category, file) = f.name.rsplit_once('/').unwrap_or(("", &f.name));
            let path = results.join(category).join(format!("{detector}_{file}"));
            let scores = read_scores(&path)?;
            if scores.len() != f.timestamps.len() {
                return Err(parse_err(
                    &path,
                    0,
                    format!(
                        "{} anomaly scores for the {} records of data/{}",
                        scores.len(),
                        f.timestamps.len(),
                        f.name
                    ),
                ));
            }
            Ok(scores)
        })
        .collect()
}

/// The `anomaly_score` column of one result file.
fn read_scores(path: &Path) -> Result<Vec<f64>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let column = header
        .split(',')
        .position(|c| c.trim() == "anomaly_score")
        .ok_or_else(|| parse_err(path, 1, "no `anomaly_score` column"))?;
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cell = line.split(',').nth(column).unwrap_or("").trim();
        match cell.parse::<f64>() {
            // -0 compares equal to 0 in NAB (Python floats); keep one of them.
            Ok(x) if x.is_finite() => out.push(if x == 0.0 { 0.0 } else { x }),
            _ => {
                return Err(parse_err(
                    path,
                    n + 2,
                    format!("`{cell}` is not a finite anomaly score"),
                ));
            }
        }
    }
    Ok(out)
}

/// A published detector's numbers for one profile.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// The threshold NAB's optimiser chose.
    pub threshold: f64,
    /// The raw corpus score at it.
    pub score: f64,
}

/// NAB's `config/thresholds.json` (detector → profile → threshold and raw score) and
/// `final_results.json` (detector → profile → normalised score; looked up in
/// `reference-results/` and then `results/`), whichever exist under `dir`.
#[allow(clippy::type_complexity)]
pub fn read_published(
    dir: &Path,
) -> Result<
    (
        BTreeMap<String, BTreeMap<String, Published>>,
        BTreeMap<String, BTreeMap<String, f64>>,
    ),
    EvalError,
> {
    let thresholds_path = dir.join("config/thresholds.json");
    let thresholds = if thresholds_path.is_file() {
        read_json(&thresholds_path)?
    } else {
        BTreeMap::new()
    };
    let finals = ["reference-results", "results"]
        .iter()
        .map(|d| dir.join(d).join("final_results.json"))
        .find(|p| p.is_file());
    let finals = match finals {
        Some(p) => read_json(&p)?,
        None => BTreeMap::new(),
    };
    Ok((thresholds, finals))
}
