//! Sources that cannot read (issue 14, items 9 and 10), against the real servers: a bucket or
//! stream that does not exist turns `/readyz` 503, counts `osprey_source_errors_total`, and
//! after `fail_after` stops the job with exit code 1 and the service's error; an object that
//! cannot be read (archived to Glacier) is a dead letter while the objects around it are read.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// Runs `job` with a metrics port; returns (exit code, stderr, whether `/readyz` answered 503
/// while it ran, the highest `osprey_source_errors_total` scraped).
fn run_failing(job: &std::path::Path, port: u16) -> (Option<i32>, String, bool, f64) {
    let mut child: Child = osprey()
        .args(["run", job.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut saw_503, mut errors) = (false, 0.0f64);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not stop within 60 s"
        );
        if let Some((status, _)) = http_get(port, "/readyz") {
            saw_503 |= status.contains("503");
        }
        if let Some((_, body)) = http_get(port, "/metrics") {
            for line in body.lines() {
                if line.starts_with("osprey_source_errors_total{")
                    && let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())
                {
                    errors = errors.max(v);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr, saw_503, errors)
}

fn failing_job(dir: &std::path::Path, source: &str, port: u16) -> std::path::PathBuf {
    job(
        dir,
        "fail.toml",
        &format!(
            "name = \"fail\"\n[source]\n{source}\nfail_after = \"3s\"\n[sink]\ntype = \"null\"\n[state]\ndir = \"{{dir}}/data\"\n[checkpoint]\ninterval = \"500ms\"\n[metrics]\naddress = \"127.0.0.1:{port}\"\n"
        ),
    )
}

/// Runs a job over `source` (with `fail_after = "3s"`) and checks that it stopped with exit
/// code 1 after `fail_after`, saying each of `needles`, with `/readyz` 503 and the error
/// counter up meanwhile.
async fn assert_fails_after(source: String, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let job = failing_job(dir.path(), &source, port);
    let started = Instant::now();
    let (code, stderr, saw_503, errors) =
        tokio::task::spawn_blocking(move || run_failing(&job, port))
            .await
            .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "stopped before fail_after"
    );
    for needle in needles {
        assert!(stderr.contains(needle), "{needle} missing from: {stderr}");
    }
    assert!(saw_503, "/readyz never answered 503");
    assert!(errors >= 1.0, "osprey_source_errors_total never rose");
}

/// Issue 14.10: an S3 bucket that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_10_missing_bucket_fails_the_job_after_fail_after() {
    let Some((endpoint, _client)) = moto().await else {
        return;
    };
    let source = format!(
        "type = \"s3\"\nbucket = \"osprey-no-such-bucket\"\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\npoll_interval = \"200ms\""
    );
    assert_fails_after(source, &["NoSuchBucket", "osprey-no-such-bucket"]).await;
}

/// Issue 14.10: a Kinesis stream that does not exist (before: an exit at once from
/// ListShards, or retries every second forever from the reads, `/readyz` 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_10_missing_stream_fails_the_job_after_fail_after() {
    let Some(endpoint) = crate::kinesis_it::endpoint() else {
        return;
    };
    let source = format!(
        "type = \"kinesis\"\nstream = \"osprey-no-such-stream\"\nendpoint_url = \"{endpoint}\"\ndiscovery_interval = \"200ms\""
    );
    assert_fails_after(
        source,
        &["ResourceNotFoundException", "osprey-no-such-stream"],
    )
    .await;
}

/// Issue 14.9: an object archived to Glacier (GetObject: InvalidObjectState) among readable
/// ones is a dead letter with reason `unreadable`; the others are read; the job exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_9_archived_object_is_a_dead_letter() {
    let Some((endpoint, client)) = moto().await else {
        return;
    };
    let bucket = format!("osprey-archived-{}", std::process::id());
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    for k in ["a.bin", "c.bin"] {
        client
            .put_object()
            .bucket(&bucket)
            .key(k)
            .body(b"data".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    client
        .put_object()
        .bucket(&bucket)
        .key("b.bin")
        .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
        .body(b"cold".to_vec().into())
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = job(
        dir.path(),
        "archived.toml",
        &format!(
            "name = \"archived\"\n[source]\ntype = \"s3\"\nbucket = \"{bucket}\"\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\nstop_when_idle = true\n[sink]\ntype = \"file\"\npath = \"{{dir}}/out\"\n[dead_letter]\ntype = \"file\"\npath = \"{{dir}}/dead\"\n[state]\ndir = \"{{dir}}/data\"\n"
        ),
    );
    let out = tokio::task::spawn_blocking(move || {
        osprey()
            .args(["run", "--no-metrics", job.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mut keys: Vec<String> = published_json(&dir.path().join("out"))
        .iter()
        .map(|v| v["key"].as_str().unwrap_or_default().to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, ["a.bin", "c.bin"]);
    let dead = published_json(&dir.path().join("dead"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "unreadable", "{dead:?}");
    assert!(
        dead[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("InvalidObjectState"),
        "{dead:?}"
    );
}
