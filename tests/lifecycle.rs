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

/// The sensors generator (`count` readings, as fast as possible) into per-sensor stats on
/// stdout, one partition, no periodic checkpoint: only end of input or a stop takes one.
/// `runtime` is put into `[runtime]`.
fn stdout_job(d: &Path, count: u64, runtime: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
name = "stop"
[source]
type = "generator"
generator = "sensors"
count = {count}
[record]
key = "sensor_id"
values = ["current_temperature"]
[runtime]
partitions = 1
{runtime}
[[operators]]
type = "stats"
[sink]
type = "stdout"
[state]
dir = "{{dir}}/data"
[checkpoint]
interval = "1h"
[metrics]
enabled = false
"#
    );
    job(d, &format!("stop-{count}.toml"), &text)
}

fn kill(sig: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts the job over 200,000 readings with a stdout nobody reads, so the sink blocks once
/// the pipe is full and the final checkpoint cannot complete; returns once the job runs (its
/// signal handlers are installed). Keep the returned stdout alive: closing it would fail the
/// sink instead of blocking it.
fn start_wedged(
    d: &Path,
    runtime: &str,
) -> (
    Child,
    std::process::ChildStdout,
    mpsc::Receiver<String>,
    Vec<String>,
) {
    let (mut child, lines) = spawn(&stdout_job(d, 200_000, runtime), Stdio::piped());
    let stdout = child.stdout.take().unwrap();
    let mut log = Vec::new();
    wait_for(&lines, "Job running.", &mut log);
    // Let the generator fill the pipe (64 KiB, a few hundred records) before the stop.
    std::thread::sleep(std::time::Duration::from_millis(300));
    (child, stdout, lines, log)
}

/// Runs the first 1,000 readings to completion: a complete checkpoint at 1,000 records.
fn first_thousand(d: &Path) {
    let out = osprey()
        .args(["run", stdout_job(d, 1000, "").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 1000);
}

/// Runs up to 2,000 readings and checks the run resumed exactly at the checkpoint of 1,000:
/// it writes readings 1,000..2,000 only, and each sensor's counts continue where they were.
fn resumes_at_the_thousand(d: &Path) {
    let out = osprey()
        .args(["run", stdout_job(d, 2000, "").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Restoring checkpoint."), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records.len(),
        1000,
        "only the readings after the checkpoint"
    );
    let mut last = std::collections::HashMap::new();
    for r in &records {
        let c = r["count"].as_u64().unwrap();
        if let Some(prev) = last.insert(r["sensor_id"].as_u64().unwrap(), c) {
            assert_eq!(c, prev + 1, "gap-free per sensor");
        }
    }
    // The last count per sensor is its number of readings among the first 2,000.
    assert_eq!(last.values().sum::<u64>(), 2000);
}

/// Issue 14.16: a graceful stop whose final checkpoint cannot complete (a wedged sink) ends
/// after `runtime.shutdown_timeout` with exit 1 and a message naming it, and the checkpoint
/// before it stays the one the next start resumes from. Before the fix it waited forever.
#[test]
fn r14_16_the_shutdown_timeout_bounds_the_final_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    first_thousand(d);
    let (child, stdout, lines, mut log) = start_wedged(d, r#"shutdown_timeout = "1s""#);
    kill("-TERM", child.id());
    let status = {
        let mut child = child;
        child.wait().unwrap()
    };
    drop(stdout);
    let log = rest(lines, &mut log);
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("did not complete within runtime.shutdown_timeout (1s)"),
        "{log}"
    );
    resumes_at_the_thousand(d);
}

/// Issue 14.16: a second signal during a stop exits at once, 130 after SIGINT (143 after
/// SIGTERM), with a message; the checkpoint before it stays valid. Before the fix the second
/// signal was ignored and the stop waited for the wedged sink forever.
#[test]
fn r14_16_a_second_signal_during_shutdown_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    first_thousand(d);
    for (second, code, name) in [("-INT", 130, "SIGINT"), ("-TERM", 143, "SIGTERM")] {
        let (child, stdout, lines, mut log) = start_wedged(d, "");
        kill("-TERM", child.id());
        wait_for(&lines, "Shutdown requested", &mut log);
        kill(second, child.id());
        let status = {
            let mut child = child;
            child.wait().unwrap()
        };
        drop(stdout);
        let log = rest(lines, &mut log);
        assert_eq!(status.code(), Some(code), "{log}");
        assert!(
            log.contains(&format!("second {name} during shutdown")),
            "{log}"
        );
    }
    resumes_at_the_thousand(d);
}
