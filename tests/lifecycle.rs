//! The process's life: one process per data directory (issue 14.3), a second signal during
//! shutdown and the shutdown timeout (issue 14.16).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;

use crate::util::{job, osprey, published_json};

/// A job that runs a few seconds: 3,000 sensor readings at 1,000 a second, per-sensor stats,
/// a file sink, checkpoints every 200 ms.
fn slow_job(d: &Path) -> std::path::PathBuf {
    job(
        d,
        "slow.toml",
        r#"
name = "slow"
[source]
type = "generator"
generator = "sensors"
count = 3000
rate = 1000.0
[record]
key = "sensor_id"
values = ["current_temperature"]
[[operators]]
type = "stats"
[sink]
type = "file"
path = "{dir}/out"
[state]
dir = "{dir}/data"
[checkpoint]
interval = "200ms"
[metrics]
enabled = false
"#,
    )
}

/// Spawns `osprey run job` with stderr read line by line on a thread (so logging never
/// blocks), returning the child and the lines.
fn spawn(job: &Path, stdout: Stdio) -> (Child, mpsc::Receiver<String>) {
    let mut child = osprey()
        .args(["run", job.to_str().unwrap()])
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a stderr line containing `needle`; panics with the log if the process ends first.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, log: &mut Vec<String>) {
    loop {
        match lines.recv() {
            Ok(l) => {
                let hit = l.contains(needle);
                log.push(l);
                if hit {
                    return;
                }
            }
            Err(_) => panic!("stderr ended before `{needle}`:\n{}", log.join("\n")),
        }
    }
}

fn rest(lines: mpsc::Receiver<String>, log: &mut Vec<String>) -> String {
    log.extend(lines);
    log.join("\n")
}

/// Issue 14.3: a second `osprey run` on a data directory in use exits 2 naming the first
/// process, and leaves it alone: the first job finishes with every record, each sensor's
/// counts gap-free (before the fix the second run deleted the first's live RocksDB and
/// in-progress checkpoint).
#[test]
fn r14_3_a_second_process_on_a_data_directory_in_use_exits_2_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = slow_job(d);
    let (first, lines) = spawn(&job, Stdio::null());
    let mut log = Vec::new();
    // The first has the lock once it restores or starts fresh.
    wait_for(&lines, "Job running.", &mut log);
    let lock = std::fs::read_to_string(d.join("data/osprey.lock")).unwrap();
    assert_eq!(lock.trim(), first.id().to_string());
    let second = osprey()
        .args(["run", job.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "second run: {err}");
    assert!(
        err.contains(&format!("pid {}", first.id())) && err.contains("in use"),
        "the message names the first process: {err}"
    );
    let out = first.wait_with_output().unwrap();
    let log = rest(lines, &mut log);
    assert!(out.status.success(), "the first job finished: {log}");
    let records = published_json(&d.join("out"));
    assert_eq!(records.len(), 3000, "{log}");
    let mut counts = std::collections::HashMap::new();
    for r in &records {
        let c = counts
            .entry(r["sensor_id"].as_u64().unwrap())
            .or_insert(0u64);
        *c += 1;
        assert_eq!(r["count"].as_u64().unwrap(), *c, "gap-free per sensor");
    }
    // The lock is free again: a third run on the same directory starts (and resumes at the end).
    let third = osprey()
        .args(["run", job.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
}
