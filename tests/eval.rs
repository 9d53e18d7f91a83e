//! `osprey eval`: the detector over DAMP's golden files must report DAMP's own top-1 discords;
//! the AWS sample comparison prints both detectors.

use std::path::PathBuf;

use crate::util::*;

/// `$OSPREY_SHARED/datasets`, or `None` with a message; under `CI=true` a missing variable or
/// folder is a failure.
fn shared_datasets() -> Option<PathBuf> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let dir = std::env::var_os("OSPREY_SHARED").map(|s| PathBuf::from(s).join("datasets"));
    match dir {
        Some(d) if d.join("damp").is_dir() => Some(d),
        other => {
            assert!(
                !ci,
                "OSPREY_SHARED must point at the shared data when CI=true (got {other:?})"
            );
            println!("OSPREY_SHARED/datasets/damp not found ({other:?}): skipping this test");
            None
        }
    }
}

/// The cells of the report's table row for `series`.
fn row<'a>(text: &'a str, series: &str) -> Vec<&'a str> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("| {series} |")))
        .unwrap_or_else(|| panic!("no row for {series} in:\n{text}"));
    line.split('|').map(str::trim).collect()
}

#[test]
fn eval_discord_reports_damp_golden_top1() {
    let Some(dir) = shared_datasets() else { return };
    let damp = dir.join("damp");
    for mode in ["exact", "damp"] {
        let out = run(&[
            "eval",
            "discord",
            "--data",
            damp.to_str().unwrap(),
            "--mode",
            mode,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        // | series | points | m | split | top-1 start | score | golden start | golden score |
        // equals golden | UCR rule | seconds |
        for (series, m, position, score) in [
            ("1-bourkestreetmall", "24 (golden)", "7827", "4.456858"),
            ("2-machining", "16 (golden)", "36765", "3.252981"),
        ] {
            let cells = row(&text, series);
            assert_eq!(cells[3], m, "{mode} {series}");
            assert_eq!(cells[5], position, "{mode} {series}: top-1 start");
            assert_eq!(cells[6], score, "{mode} {series}: top-1 score");
            assert_eq!(cells[9], "yes", "{mode} {series}: equals golden");
            assert_eq!(cells[10], "correct", "{mode} {series}: UCR rule");
        }
        assert!(
            text.contains("top-1 accuracy (UCR rule): 2/2 = 100.0%"),
            "{text}"
        );
    }
}

#[test]
fn eval_without_data_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["eval", "discord", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no dataset found"));
    let out = run(&["eval", "discord", "--data", ".", "--threshold", "median"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn eval_aws_sample_prints_both_detectors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "eval",
        "aws-sample",
        "--points",
        "3000",
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("100 injected anomalies"), "{text}");
    let sample = text
        .lines()
        .find(|l| l.starts_with("| AWS sample"))
        .unwrap_or_else(|| panic!("no sample row in:\n{text}"));
    let cells: Vec<&str> = sample.split('|').map(str::trim).collect();
    // The sample's m = 2, and its 2σ rule raises alarms on this stream.
    assert_eq!(cells[2], "2");
    assert!(cells[4].parse::<usize>().unwrap() > 0, "{sample}");
    assert!(
        text.lines().any(|l| l.starts_with("| osprey discord")),
        "{text}"
    );
}
