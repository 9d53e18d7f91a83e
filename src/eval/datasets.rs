//! Reading the evaluation data: plain series (DAMP, UCR, the AWS sample), NAB's CSVs and
//! timestamps, DAMP's golden top-1 table, UCR file names, and what a data folder holds.

use std::path::{Path, PathBuf};

use super::{EvalError, io_err};
use crate::core::time::millis_from_utc;

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

pub(super) fn parse_series(text: &str) -> Result<Vec<f64>, (usize, String)> {
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

/// Seconds since 1970-01-01 of a `YYYY-MM-DD HH:MM:SS[.ffffff]` timestamp (NAB's format, UTC),
/// or `None` when it is not one or names an impossible date or time.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    let ms = millis_from_utc(
        i16::try_from(y).ok()?,
        i8::try_from(mo).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(h).ok()?,
        i8::try_from(mi).ok()?,
        i8::try_from(sec).ok()?,
        0,
    )?;
    Some(ms.div_euclid(1000))
}

/// A NAB file: timestamps (seconds) and values.
pub(super) fn read_nab_csv(path: &Path) -> Result<(Vec<i64>, Vec<f64>), EvalError> {
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

pub(super) fn collect_csv(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), EvalError> {
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
