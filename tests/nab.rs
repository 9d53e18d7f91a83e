//! `osprey eval nab` reproduces NAB's published scores: for randomCutForest, windowedGaussian
//! and numenta (their per-record anomaly scores in `$OSPREY_SHARED/datasets/nab/
//! reference-results/`), every profile, every file's score and counts at the published
//! threshold, the totals, and the normalised scores of `final_results.json`. The thresholds
//! themselves come from NAB's pre-2019 optimiser (twiddle), which is reproduced too; NAB's
//! current sweep optimiser must never do worse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use osprey::eval::nab::{
    NabCorpus, Optimizer, choose_threshold, read_published, read_results, score_corpus, sweep_best,
};

use crate::util::*;

const DETECTORS: [&str; 3] = ["randomCutForest", "windowedGaussian", "numenta"];

fn nab_dir() -> Option<PathBuf> {
    let dir = shared()?.join("datasets/nab");
    assert!(
        dir.join("reference-results").is_dir(),
        "{} has no reference-results/",
        dir.display()
    );
    Some(dir)
}

/// One row of NAB's `<detector>_<profile>_scores.csv`.
#[derive(Debug)]
struct Row {
    threshold: f64,
    score: f64,
    counts: [u64; 5],
}

/// File → row, and the `Totals` row.
fn published_rows(path: &Path) -> (BTreeMap<String, Row>, Row) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = BTreeMap::new();
    let mut totals = None;
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        let num = |i: usize| c[i].parse::<f64>().unwrap();
        let int = |i: usize| c[i].parse::<u64>().unwrap();
        let row = Row {
            threshold: if c[3].is_empty() { f64::NAN } else { num(3) },
            score: num(4),
            counts: [int(5), int(6), int(7), int(8), int(9)],
        };
        if c[0] == "Totals" {
            totals = Some(row);
        } else {
            rows.insert(c[2].to_string(), row);
        }
    }
    (rows, totals.expect("a Totals row"))
}

#[test]
fn nab_scorer_reproduces_published_scores() {
    let Some(dir) = nab_dir() else { return };
    let corpus = NabCorpus::load(&dir).unwrap();
    assert_eq!(corpus.files.len(), 58);
    assert_eq!(corpus.window_count(), 116);
    let (thresholds, finals) = read_published(&dir).unwrap();
    let mut worst_file = 0.0f64;
    for detector in DETECTORS {
        let results = dir.join("reference-results").join(detector);
        let scores = read_results(&corpus, &results, detector).unwrap();
        for profile in &corpus.profiles {
            let name = &profile.name;
            let published = thresholds[detector][name];
            let threshold = choose_threshold(
                &corpus,
                &scores,
                profile,
                Optimizer::Published,
                Some(published.threshold),
            )
            .unwrap();
            let got = score_corpus(&corpus, &scores, profile, threshold);
            let csv = results.join(format!("{detector}_{name}_scores.csv"));
            let (rows, totals) = published_rows(&csv);
            assert_eq!(rows.len(), got.files.len(), "{detector}/{name}");
            for f in &got.files {
                let want = &rows[&f.name];
                // The CSV holds 12 significant digits.
                assert!(
                    (want.threshold - threshold).abs() <= 1e-11,
                    "{detector}/{name}"
                );
                let diff = (f.score - want.score).abs();
                worst_file = worst_file.max(diff);
                assert!(
                    diff <= 1e-9,
                    "{detector}/{name}/{}: score {} published {}",
                    f.name,
                    f.score,
                    want.score
                );
                let c = f.counts;
                assert_eq!(
                    [c.tp, c.tn, c.fp, c.fn_, f.total as u64],
                    want.counts,
                    "{detector}/{name}/{}",
                    f.name
                );
            }
            let c = got.counts;
            let records: usize = got.files.iter().map(|f| f.total).sum();
            assert_eq!(
                [c.tp, c.tn, c.fp, c.fn_, records as u64],
                totals.counts,
                "{detector}/{name} totals"
            );
            assert!(
                (got.raw - totals.score).abs() <= 1e-9,
                "{detector}/{name}: raw {} published {}",
                got.raw,
                totals.score
            );
            // thresholds.json's own totals agree, except windowedGaussian's: those are of an
            // earlier run (its result files were re-scored at threshold 1.0 afterwards, and
            // final_results.json follows the re-scored totals).
            if detector != "windowedGaussian" {
                assert!(
                    (got.raw - published.score).abs() <= 1e-9,
                    "{detector}/{name}"
                );
            }
            let want = finals[detector][name];
            assert!(
                (got.normalised - want).abs() <= 1e-6,
                "{detector}/{name}: NAB score {} published {want}",
                got.normalised
            );
            println!(
                "{detector:>16} {name:>18}: {:.9} (published {want:.9}), raw {:.12}",
                got.normalised, got.raw
            );
        }
    }
    println!("largest per-file score difference: {worst_file:e}");
}

#[test]
fn nab_optimisers_find_the_published_thresholds_or_better() {
    let Some(dir) = nab_dir() else { return };
    let corpus = NabCorpus::load(&dir).unwrap();
    let (thresholds, _) = read_published(&dir).unwrap();
    for detector in DETECTORS {
        let results = dir.join("reference-results").join(detector);
        let scores = read_results(&corpus, &results, detector).unwrap();
        for profile in &corpus.profiles {
            let name = &profile.name;
            let published = thresholds[detector][name];
            let published_raw = score_corpus(&corpus, &scores, profile, published.threshold).raw;
            // Twiddle, as NAB ran it: the same corpus total (the same detections). Not for
            // windowedGaussian, whose published threshold (exactly 1.0) no climb from 0.5
            // reaches: its sums of steps stop at 0.99999981, where thousands of scores lie
            // between it and 1.0.
            let t = choose_threshold(&corpus, &scores, profile, Optimizer::Twiddle, None).unwrap();
            let twiddled = score_corpus(&corpus, &scores, profile, t);
            assert!(
                detector == "windowedGaussian" || (twiddled.raw - published_raw).abs() <= 1e-9,
                "{detector}/{name}: twiddle {t} → {}, published {} → {}",
                twiddled.raw,
                published.threshold,
                published_raw
            );
            // The sweep is exhaustive: at least as good.
            let best = sweep_best(&corpus, &scores, profile);
            let swept = score_corpus(&corpus, &scores, profile, best.threshold);
            assert!((swept.raw - best.score).abs() <= 1e-9);
            assert!(
                swept.raw >= published_raw - 1e-9,
                "{detector}/{name}: sweep {} below published {}",
                swept.raw,
                published_raw
            );
            println!(
                "{detector:>16} {name:>18}: twiddle {t} → {:.6}, published {} → {:.6}, \
                 sweep {} → {:.6} (raw +{:.6})",
                twiddled.normalised,
                published.threshold,
                score_corpus(&corpus, &scores, profile, published.threshold).normalised,
                best.threshold,
                swept.normalised,
                swept.raw - published_raw
            );
        }
    }
}

#[test]
fn eval_nab_prints_the_published_totals() {
    let Some(dir) = nab_dir() else { return };
    let out = run(&[
        "eval",
        "nab",
        "numenta",
        "--nab",
        dir.to_str().unwrap(),
        "--optimizer",
        "published",
        "--per-file",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |profile: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("| {profile} | 0.")))
            .unwrap_or_else(|| panic!("no {profile} row in\n{text}"))
            .split('|')
            .map(|c| c.trim().to_string())
            .collect::<Vec<_>>()
    };
    // | profile | threshold | raw | NAB score | published | TP | TN | FP | FN |
    assert_eq!(row("standard")[4], "70.101056");
    assert_eq!(row("reward_low_FP_rate")[4], "63.116842");
    assert_eq!(row("reward_low_FN_rate")[4], "74.320244");
    assert!(text.contains("| standard | realKnownCause/nyc_taxi.csv | 2.435727"));
    // A results folder that is not there: exit 2 with a message.
    let out = run(&[
        "eval",
        "nab",
        "noSuchDetector",
        "--nab",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("noSuchDetector"));
}

/// A NAB folder of two files (a sine with one spike inside its window, and a flat-noise file
/// without windows) and the standard profile only.
fn tiny_nab(dir: &Path) {
    std::fs::create_dir_all(dir.join("data/art")).unwrap();
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let stamp = |i: usize| {
        format!(
            "2014-01-{:02} {:02}:{:02}:00",
            1 + i / 288,
            i % 288 / 12,
            i % 12 * 5
        )
    };
    let mut spike = String::from("timestamp,value\n");
    let mut flat = String::from("timestamp,value\n");
    for i in 0..3000 {
        let x = (i as f64 / 8.0).sin() + if i == 2500 { 6.0 } else { 0.0 };
        spike.push_str(&format!("{},{x}\n", stamp(i)));
        flat.push_str(&format!(
            "{},{}\n",
            stamp(i),
            ((i * 7919) % 13) as f64 / 13.0
        ));
    }
    std::fs::write(dir.join("data/art/spike.csv"), spike).unwrap();
    std::fs::write(dir.join("data/art/flat.csv"), flat).unwrap();
    let windows = format!(
        r#"{{"art/flat.csv": [], "art/spike.csv": [["{}.000000", "{}.000000"]]}}"#,
        stamp(2480),
        stamp(2580)
    );
    std::fs::write(dir.join("labels/combined_windows.json"), windows).unwrap();
    std::fs::write(
        dir.join("config/profiles.json"),
        r#"{"standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}}}"#,
    )
    .unwrap();
}

#[test]
fn eval_nab_runs_the_operators_and_scores_them() {
    let tmp = tempfile::tempdir().unwrap();
    let nab = tmp.path().join("nab");
    tiny_nab(&nab);
    let out = run(&[
        "eval",
        "nab",
        "--detector",
        "all",
        "--nab",
        nab.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    // | detector | profile | threshold | raw | NAB score | TP | TN | FP | FN |
    let score = |detector: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("| {detector} | standard |")))
            .unwrap_or_else(|| panic!("no {detector} row in\n{text}"));
        line.split('|').nth(5).unwrap().trim().parse().unwrap()
    };
    // The spike is the one thing both detectors see: each finds the window early, with at
    // most a few false positives, far above the null detector's 0.
    for detector in ["discord", "rcf", "max(discord, rcf)"] {
        let s = score(detector);
        assert!(s > 80.0 && s <= 100.0, "{detector}: {s}\n{text}");
    }
}
