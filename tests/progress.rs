//! The `Checkpoint complete.` and `Progress.` log lines: their fields carry the right values.

use std::collections::HashMap;

use crate::util::*;

/// The fields of every stderr line whose message is `message`, ANSI colours stripped.
fn lines_with(stderr: &str, message: &str) -> Vec<HashMap<String, String>> {
    let plain = strip_ansi(stderr);
    plain
        .lines()
        .filter(|l| l.contains(message))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect()
        })
        .collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn num(fields: &HashMap<String, String>, k: &str) -> f64 {
    fields
        .get(k)
        .unwrap_or_else(|| panic!("field {k} in {fields:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{k} is a number in {fields:?}"))
}

#[test]
fn checkpoint_lines_count_records_and_file_progress_reaches_100() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut input, mut good, mut bad) = (String::new(), 0u64, 0u64);
    for i in 0..30_000u64 {
        if i % 1000 == 7 {
            input.push_str("{\"id\":\"k1\",\"x\":\n");
            bad += 1;
        } else {
            input.push_str(&format!("{{\"id\":\"k{}\",\"x\":{i}}}\n", i % 5));
            good += 1;
        }
    }
    std::fs::write(d.join("in.jsonl"), &input).unwrap();
    let job = job(
        d,
        "job.toml",
        r#"name = "progress"
[source]
type = "file"
path = "{dir}/in.jsonl"
[record]
key = "id"
values = ["x"]
[[operators]]
type = "stats"
[sink]
type = "file"
path = "{dir}/out"
[dead_letter]
type = "file"
path = "{dir}/dlq"
[checkpoint]
interval = "20ms"
[state]
dir = "{dir}/data"
[metrics]
enabled = false
"#,
    );
    let out = run(&["run", job.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let checkpoints = lines_with(&stderr, "Checkpoint complete.");
    assert!(!checkpoints.is_empty(), "{stderr}");
    let epochs: Vec<f64> = checkpoints.iter().map(|f| num(f, "epoch")).collect();
    let want: Vec<f64> = (1..=epochs.len()).map(|e| e as f64).collect();
    assert_eq!(epochs, want, "one line per epoch, in order");
    let sum = |k: &str| checkpoints.iter().map(|f| num(f, k)).sum::<f64>() as u64;
    assert_eq!(sum("records_in"), good + bad);
    assert_eq!(sum("records_out"), good);
    assert_eq!(sum("dead_lettered"), bad);
    for f in &checkpoints {
        assert!(num(f, "records_per_sec") >= 0.0);
        assert!(num(f, "duration_ms") >= 0.0);
        assert!(f.contains_key("state_bytes"), "{f:?}");
    }

    let progress = lines_with(&stderr, "Progress.");
    let last = progress.last().unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(num(last, "percent"), 100.0);
    assert_eq!(num(last, "done"), input.len() as f64);
    assert_eq!(num(last, "total"), input.len() as f64);
    assert_eq!(num(last, "eta_secs"), 0.0);
}
