//! The whole `osprey eval discord` report: every data set found, scored, as Markdown text.

use std::path::Path;

use super::datasets::{Found, discover};
use super::scoring::{eval_damp, eval_nab, eval_ucr};
use super::{EvalError, EvalOptions, FALLBACK_M};

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
