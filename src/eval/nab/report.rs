//! `osprey eval nab`: the report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::corpus::{NabCorpus, read_published, read_results};
use super::optimize::{CorpusScore, Optimizer, choose_threshold, score_corpus};
use crate::eval::EvalError;

/// What `osprey eval nab` was asked to score.
#[derive(Clone, Debug, PartialEq)]
pub struct NabArgs {
    /// The NAB folder (`data/`, `labels/`, `config/`).
    pub nab: PathBuf,
    /// A folder of result files in NAB's layout, or a detector's name under
    /// `<nab>/reference-results/` (or `<nab>/results/`).
    pub results: String,
    /// The prefix of the result files (`<detector>_<file>.csv`); default: the folder's name.
    pub detector: Option<String>,
    /// How each profile's threshold is chosen.
    pub optimizer: Optimizer,
    /// Also print every file's row.
    pub per_file: bool,
}

/// The results folder `args.results` names.
fn results_dir(args: &NabArgs) -> Result<PathBuf, EvalError> {
    let given = Path::new(&args.results);
    [
        given.to_path_buf(),
        args.nab.join("reference-results").join(given),
        args.nab.join("results").join(given),
    ]
    .into_iter()
    .find(|d| d.is_dir())
    .ok_or_else(|| {
        EvalError::Invalid(format!(
            "`{}` is neither a folder nor a detector under {}/reference-results",
            args.results,
            args.nab.display()
        ))
    })
}

/// Scores one detector's result files in every profile; returns the profiles' scores.
pub fn score_results(args: &NabArgs) -> Result<(String, Vec<CorpusScore>), EvalError> {
    let corpus = NabCorpus::load(&args.nab)?;
    let dir = results_dir(args)?;
    let detector = match &args.detector {
        Some(d) => d.clone(),
        None => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| EvalError::Invalid("pass --detector-name".into()))?,
    };
    let scores = read_results(&corpus, &dir, &detector)?;
    let (thresholds, _) = read_published(&args.nab)?;
    let mut out = Vec::new();
    for profile in &corpus.profiles {
        let published = thresholds
            .get(&detector)
            .and_then(|p| p.get(&profile.name))
            .map(|p| p.threshold);
        let threshold = choose_threshold(&corpus, &scores, profile, args.optimizer, published)
            .ok_or_else(|| {
                EvalError::Invalid(format!(
                    "no threshold for {detector} / {} in config/thresholds.json",
                    profile.name
                ))
            })?;
        out.push(score_corpus(&corpus, &scores, profile, threshold));
    }
    Ok((detector, out))
}

/// Runs `osprey eval nab` and returns its report.
pub fn run_nab_eval(args: &NabArgs) -> Result<String, EvalError> {
    let (detector, profiles) = score_results(args)?;
    let (_, finals) = read_published(&args.nab)?;
    let mut s = String::new();
    let files = profiles.first().map_or(0, |p| p.files.len());
    let _ = writeln!(
        s,
        "NAB score of `{detector}` ({files} files, optimizer: {:?})\n",
        args.optimizer
    );
    let _ = writeln!(
        s,
        "| profile | threshold | raw score | NAB score | published | TP | TN | FP | FN |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for p in &profiles {
        let published = finals
            .get(&detector)
            .and_then(|f| f.get(&p.profile))
            .map_or("—".to_string(), |v| format!("{v:.6}"));
        let c = p.counts;
        let _ = writeln!(
            s,
            "| {} | {} | {:.6} | {:.6} | {published} | {} | {} | {} | {} |",
            p.profile, p.threshold, p.raw, p.normalised, c.tp, c.tn, c.fp, c.fn_
        );
    }
    if let Some(p) = profiles.first() {
        let _ = writeln!(
            s,
            "\nNAB score = 100 · (raw − null) / (perfect − null); {}: null {}, perfect {}.",
            p.profile, p.null, p.perfect
        );
    }
    if args.per_file {
        let _ = writeln!(
            s,
            "\n| profile | file | raw score | TP | TN | FP | FN | records |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for p in &profiles {
            for f in &p.files {
                let c = f.counts;
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.9} | {} | {} | {} | {} | {} |",
                    p.profile, f.name, f.score, c.tp, c.tn, c.fp, c.fn_, f.total
                );
            }
        }
    }
    Ok(s)
}

/// The report of osprey's detectors on NAB (`osprey eval nab --detector …`): for each named
/// set of per-file anomaly scores, every profile at the threshold its optimiser chooses
/// ([`Optimizer::Sweep`] or [`Optimizer::Fixed`]; 0/1 verdicts are scored at 1.0, since the
/// sweep may prefer no detection at all).
pub fn detectors_report(corpus: &NabCorpus, runs: &[(&str, Vec<Vec<f64>>, Optimizer)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "NAB scores of osprey's detectors ({} files)\n",
        corpus.files.len()
    );
    let _ = writeln!(
        s,
        "| detector | profile | threshold | raw score | NAB score | TP | TN | FP | FN |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for (name, scores, optimizer) in runs {
        for profile in &corpus.profiles {
            let threshold = choose_threshold(corpus, scores, profile, *optimizer, None)
                .expect("sweep and fixed always choose");
            let p = score_corpus(corpus, scores, profile, threshold);
            let c = p.counts;
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {:.6} | {:.3} | {} | {} | {} | {} |",
                p.profile, p.threshold, p.raw, p.normalised, c.tp, c.tn, c.fp, c.fn_
            );
        }
    }
    s
}
