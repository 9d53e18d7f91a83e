//! Exactly-once under crashes: SIGKILL at random moments, restart, compare with an
//! uninterrupted run byte for byte.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::*;

const RECORDS: u64 = 1_000_000;
const KEYS: u64 = 2_000;

fn crash_job(d: &Path, name: &str) -> std::path::PathBuf {
    job(
        d,
        &format!("{name}.toml"),
        &format!(
            r#"name = "{name}"
[source]
type = "file"
path = "{{dir}}/input.jsonl"
[record]
key = "id"
values = ["x"]
[runtime]
partitions = 2
batch_size = 512
[[operators]]
type = "stats"
[sink]
type = "file"
path = "{{dir}}/{name}-out"
max_file_bytes = 4000000
[dead_letter]
type = "file"
path = "{{dir}}/{name}-dlq"
[state]
dir = "{{dir}}/{name}-data"
[checkpoint]
interval = "250ms"
keep = 2
[metrics]
enabled = false
"#
        ),
    )
}

#[test]
fn sigkill_three_times_gives_byte_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_records(&d.join("input.jsonl"), RECORDS, KEYS);
    // A few bad lines, so the dead-letter output is checked too.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("input.jsonl"))
            .unwrap();
        writeln!(f, "{{\"id\":\"k1\",\"x\":NaN}}\nnot json").unwrap();
    }

    let reference = crash_job(d, "reference");
    let out = run(&["run", reference.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = published(&d.join("reference-out"));
    assert_eq!(
        expected.iter().filter(|&&b| b == b'\n').count() as u64,
        RECORDS
    );

    let seed: u64 = std::env::var("OSPREY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash seed {seed} (set OSPREY_CRASH_SEED to replay)");
    let crashed = crash_job(d, "crashed");
    let checkpoints = d.join("crashed-data/checkpoints");
    let mut restored = 0;
    for round in 0..3u64 {
        // Kill at a random point: wait until a checkpoint covers a random 10–25 % (round 0),
        // 30–45 % (round 1) or 50–65 % (round 2) of the input, then a random 0–50 ms more, then
        // SIGKILL. Checkpoints lag the source by at most one interval, so the kill always lands
        // before the end of the input.
        let frac = 0.1
            + 0.2 * round as f64
            + 0.15 * ((mix(seed ^ round) >> 11) as f64 / (1u64 << 53) as f64);
        let target = (RECORDS as f64 * frac) as u64;
        let extra = Duration::from_millis(mix(seed ^ round ^ 0xff) % 50);
        let mut child = osprey()
            .args(["run", crashed.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while newest_records(&checkpoints) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(extra);
        let still_running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "round {round}: killed past {target} records (+{extra:?}); running: {still_running}"
        );
        assert!(still_running, "the run finished before the kill\n{log}");
        if log.contains("Restoring checkpoint") {
            restored += 1;
        }
    }
    let out = run(&["run", crashed.to_str().unwrap()]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    if log.contains("Restoring checkpoint") {
        restored += 1;
    }
    assert!(
        restored >= 2,
        "at least two restarts resumed from a checkpoint ({restored})"
    );
    let got = published(&d.join("crashed-out"));
    assert_eq!(got.len(), expected.len(), "same number of bytes");
    assert!(got == expected, "output differs from the uninterrupted run");
    assert_eq!(
        published(&d.join("crashed-dlq")),
        published(&d.join("reference-dlq"))
    );
    assert!(!published(&d.join("reference-dlq")).is_empty());
}

#[test]
fn sigterm_takes_a_final_checkpoint_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = r#"name = "term"
[source]
type = "generator"
generator = "sensors"
rate = 20000
[[operators]]
type = "stats"
[sink]
type = "file"
path = "{dir}/out"
[state]
dir = "{dir}/data"
[checkpoint]
interval = "10s"
[metrics]
enabled = false
"#;
    let job = job(d, "term.toml", text);
    let child = osprey()
        .args(["run", job.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SIGTERM, well before the first periodic checkpoint.
    unsafe_sigterm(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit 0 after SIGTERM: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = published_json(&d.join("out"));
    assert!(
        !first.is_empty(),
        "the final checkpoint published the output"
    );
    // Resume and stop again: together the two runs are one gap-free sequence per sensor.
    let child = osprey()
        .args(["run", job.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    unsafe_sigterm(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let all = published_json(&d.join("out"));
    assert!(all.len() > first.len());
    let mut counts = std::collections::HashMap::new();
    for r in &all {
        let c = counts
            .entry(r["sensor_id"].as_u64().unwrap())
            .or_insert(0u64);
        *c += 1;
        assert_eq!(
            r["count"].as_u64().unwrap(),
            *c,
            "per-sensor counts have no gap or repeat"
        );
    }
}

/// Records covered by the newest complete checkpoint under `root` (0 when there is none).
fn newest_records(root: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("MANIFEST.json")).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter_map(|m| m["records_in"].as_u64())
        .max()
        .unwrap_or(0)
}

fn unsafe_sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn restoring_an_older_checkpoint_rolls_output_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_records(&d.join("input.jsonl"), 200_000, 100);
    let job = crash_job(d, "older");
    // keep = 2 in crash_job; keep more here so an older one survives.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("keep = 2", "keep = 50")
        .replace("250ms", "50ms");
    std::fs::write(&job, text).unwrap();
    let out = run(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = published(&d.join("older-out"));
    let chks: Vec<_> = {
        let mut v: Vec<_> = std::fs::read_dir(d.join("older-data/checkpoints"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    };
    assert!(chks.len() >= 3, "several checkpoints kept: {chks:?}");
    let older = &chks[chks.len() / 2];
    let out = run(&[
        "run",
        job.to_str().unwrap(),
        "--from-checkpoint",
        older.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        published(&d.join("older-out")),
        expected,
        "replay from an older checkpoint gives the same output"
    );
    assert!(d.join("older-out/.rolled-back").is_dir());
}
