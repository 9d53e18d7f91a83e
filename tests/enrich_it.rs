//! The enrich operator against a real redis-server and a small HTTP origin this file starts
//! on 127.0.0.1:0. Needs `OSPREY_REDIS_URL` (scripts/services.sh); under `CI=true` an
//! unreachable Redis fails the test, elsewhere the test prints why and returns.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use osprey::core::{Field, Record};
use osprey::operators::enrich::{Enrich, config::EnrichConfig};
use osprey::operators::{BuildContext, Context, Operator};
use osprey::state::MemoryBackend;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::util::*;

/// The Redis URL, or `None` (outside CI) when nothing answers there.
fn redis_url() -> Option<String> {
    let url = std::env::var("OSPREY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let ok = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .is_ok();
    if ok {
        return Some(url);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "redis unreachable at {url} under CI=true (run `. scripts/services.sh`)"
    );
    eprintln!("skipping: no redis at {url} (run `. scripts/services.sh`)");
    None
}

/// A key prefix no other test run shares.
fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("osprey:test:{test}:{}:{nanos}:", std::process::id())
}

/// Behaviour of the test origin, changeable while it runs.
#[derive(Default)]
pub struct OriginCtl {
    /// Requests served (all statuses).
    pub requests: AtomicU64,
    /// Answer this many requests with 503 before answering normally.
    pub fail_next: AtomicU64,
    /// Never answer (the client's timeout fires).
    pub hang: AtomicBool,
    /// Delay before each answer, in milliseconds; with `per_key_delay` it varies per key.
    pub delay_ms: AtomicU64,
    /// Make the delay depend on the key (so answers complete out of order).
    pub per_key_delay: AtomicBool,
}

/// The value the origin serves for `key`: `k<n>` is known, anything else is a 404.
pub fn origin_value(key: &str) -> Option<serde_json::Value> {
    let n: u64 = key.strip_prefix('k')?.parse().ok()?;
    Some(serde_json::json!({ "id": n, "owner": format!("team-{}", n % 7), "rack": n * 3 }))
}

/// Starts the origin on 127.0.0.1:0 and returns its URL template and control handle.
pub async fn start_origin() -> (String, Arc<OriginCtl>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ctl = Arc::new(OriginCtl::default());
    let c = Arc::clone(&ctl);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    loop {
                        let mut h = String::new();
                        if stream.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                    }
                    c.requests.fetch_add(1, Ordering::SeqCst);
                    let key = path.rsplit('/').next().unwrap_or("").to_string();
                    if c.hang.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    let mut delay = c.delay_ms.load(Ordering::SeqCst);
                    if c.per_key_delay.load(Ordering::SeqCst) {
                        delay = mix(key.len() as u64 + key.bytes().map(u64::from).sum::<u64>())
                            % (delay + 1);
                    }
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    let failing = c
                        .fail_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let (status, body) = if failing {
                        ("503 Service Unavailable", "{}".to_string())
                    } else {
                        match origin_value(&key) {
                            Some(v) => ("200 OK", v.to_string()),
                            None => ("404 Not Found", "{}".to_string()),
                        }
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.get_mut().write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}/things/{{key}}"), ctl)
}

fn build(toml_text: &str) -> (Enrich, Context) {
    let cfg: EnrichConfig = toml::from_str(toml_text).unwrap();
    assert!(cfg.validate(&Default::default()).is_empty());
    let bcx = BuildContext {
        partition: 0,
        values: 0,
        value_names: vec![],
        has_time: false,
        partitions: 1,
        key_groups: 16,
        resources: Default::default(),
    };
    let mut cx = Context::new(0, Arc::new(MemoryBackend::default()));
    let op = Enrich::new(&cfg, &bcx).unwrap();
    cx.open_tables(&op).unwrap();
    (op, cx)
}

fn records(keys: &[&str]) -> Vec<Record> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let mut r = Record::new(*k, vec![i as f64]);
            r.raw = Some(format!(r#"{{"id":"{k}","seq":{i}}}"#).into());
            r
        })
        .collect()
}

fn json_field<'a>(r: &'a Record, name: &str) -> Option<&'a serde_json::Value> {
    match r.field(name) {
        Some(Field::Json(v)) => Some(v),
        _ => None,
    }
}

async fn run(op: &mut Enrich, cx: &mut Context, batch: Vec<Record>) -> Vec<Record> {
    let mut out = Vec::new();
    op.process(batch, cx, &mut out).await.unwrap();
    out
}

fn lookup_job(url: &str, prefix: &str, origin: &str, extra: &str) -> String {
    format!(
        "{extra}\n[redis]\nurl = \"{url}\"\nkey_prefix = \"{prefix}\"\n[origin]\ntype = \"http\"\nurl = \"{origin}\"\n"
    )
}

#[tokio::test]
async fn merges_and_writes_back_to_redis() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("merge");
    let (origin, ctl) = start_origin().await;
    let job = lookup_job(&url, &prefix, &origin, "field = \"meta\"");
    let keys: Vec<String> = (0..40).map(|i| format!("k{}", i % 20)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (mut op, mut cx) = build(&job);
    let out = run(&mut op, &mut cx, records(&keys)).await;
    assert_eq!(out.len(), 40);
    for (r, k) in out.iter().zip(&keys) {
        assert_eq!(&*r.key, *k);
        assert_eq!(json_field(r, "meta"), origin_value(k).as_ref(), "merged");
        let mut s = String::new();
        r.write_json(&mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["meta"]["owner"], origin_value(k).unwrap()["owner"]);
    }
    assert_eq!(
        ctl.requests.load(Ordering::SeqCst),
        20,
        "one origin call per distinct key"
    );
    // Cache-aside: the values are in Redis with a TTL.
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let stored: String = redis::cmd("GET")
        .arg(format!("{prefix}k3"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored).unwrap(),
        origin_value("k3").unwrap()
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}k3"))
        .query(&mut conn)
        .unwrap();
    assert!(ttl > 0, "written back with a TTL ({ttl})");
    // A fresh operator (empty tier 1) is served by Redis: no origin call.
    let (mut op2, mut cx2) = build(&job);
    let out = run(&mut op2, &mut cx2, records(&keys)).await;
    assert!(out.iter().all(|r| json_field(r, "meta").is_some()));
    assert_eq!(ctl.requests.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn caches_not_found_answers() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("negative");
    let (origin, ctl) = start_origin().await;
    let job = lookup_job(&url, &prefix, &origin, "");
    let (mut op, mut cx) = build(&job);
    let out = run(&mut op, &mut cx, records(&["nope", "nope", "k1"])).await;
    assert_eq!(out.len(), 3, "not found is not a failure");
    assert!(json_field(&out[0], "enrichment").is_none());
    assert!(out[0].field("enrich_error").is_none());
    assert!(json_field(&out[2], "enrichment").is_some());
    assert_eq!(ctl.requests.load(Ordering::SeqCst), 2);
    // Tier 1 remembers the 404.
    run(&mut op, &mut cx, records(&["nope"])).await;
    assert_eq!(ctl.requests.load(Ordering::SeqCst), 2);
    // So does Redis, with its own TTL.
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}nope"))
        .query(&mut conn)
        .unwrap();
    assert!(ttl > 0 && ttl <= 60, "negative TTL ({ttl})");
    let (mut op2, mut cx2) = build(&job);
    let out = run(&mut op2, &mut cx2, records(&["nope"])).await;
    assert!(json_field(&out[0], "enrichment").is_none());
    assert_eq!(
        ctl.requests.load(Ordering::SeqCst),
        2,
        "served by Redis' marker"
    );
}

#[tokio::test]
async fn ordered_mode_preserves_input_order() {
    let Some(url) = redis_url() else { return };
    let (origin, ctl) = start_origin().await;
    ctl.delay_ms.store(30, Ordering::SeqCst);
    ctl.per_key_delay.store(true, Ordering::SeqCst);
    let job = lookup_job(
        &url,
        &unique_prefix("ordered"),
        &origin,
        "order = \"ordered\"",
    );
    let (mut op, mut cx) = build(&job);
    let keys: Vec<String> = (0..300).map(|i| format!("k{}", mix(i) % 100)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let out = run(&mut op, &mut cx, records(&keys)).await;
    let seqs: Vec<f64> = out.iter().map(|r| r.values[0]).collect();
    assert_eq!(seqs, (0..300).map(|i| i as f64).collect::<Vec<_>>());
    assert!(out.iter().all(|r| json_field(r, "enrichment").is_some()));
}

#[tokio::test]
async fn unordered_mode_emits_every_record_exactly_once() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("unordered");
    let (origin, ctl) = start_origin().await;
    ctl.delay_ms.store(30, Ordering::SeqCst);
    ctl.per_key_delay.store(true, Ordering::SeqCst);
    let job = lookup_job(&url, &prefix, &origin, "order = \"unordered\"");
    let (mut op, mut cx) = build(&job);
    // Half the keys are already in Redis, so completions interleave across tiers.
    run(&mut op, &mut cx, records(&["k1", "k3", "k5", "k7"])).await;
    let (mut op, mut cx) = build(&job);
    let keys: Vec<String> = (0..400).map(|i| format!("k{}", mix(i) % 10)).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let out = run(&mut op, &mut cx, records(&keys)).await;
    assert_eq!(out.len(), 400);
    let mut seen = vec![0u32; 400];
    for r in &out {
        seen[r.values[0] as usize] += 1;
        assert_eq!(json_field(r, "enrichment"), origin_value(&r.key).as_ref());
    }
    assert!(seen.iter().all(|&n| n == 1), "each record exactly once");
    // Within one key, records keep their input order.
    let mut last: HashMap<&str, f64> = HashMap::new();
    for r in &out {
        let prev = last.insert(&r.key, r.values[0]);
        assert!(prev.is_none_or(|p| p < r.values[0]));
    }
}

/// A redis-server of our own on a spare loopback port, so the test can stop it.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start() -> Option<OwnRedis> {
        let Ok(path) = which("redis-server") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server not on PATH under CI=true"
            );
            eprintln!("skipping: no redis-server on PATH");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = OwnRedis {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        r.spawn(&path);
        Some(r)
    }

    fn spawn(&mut self, path: &Path) {
        let child = std::process::Command::new(path)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if self.client().get_connection().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("own redis-server did not start on port {}", self.port);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

#[tokio::test]
async fn redis_outage_follows_the_failure_policy_then_recovers() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let set = |r: &OwnRedis| {
        let mut c = r.client().get_connection().unwrap();
        for i in 0..10 {
            let _: () = redis::cmd("SET")
                .arg(format!("osprey:enrich:k{i}"))
                .arg(origin_value(&format!("k{i}")).unwrap().to_string())
                .query(&mut c)
                .unwrap();
        }
    };
    set(&redis);
    // Redis is the store (no origin); tier 1 off so every batch asks Redis.
    let job = format!(
        "timeout = \"500ms\"\n[cache]\nmax_entries = 0\n[redis]\nurl = \"{}\"\ntimeout = \"200ms\"\n",
        redis.url()
    );
    let (mut op, mut cx) = build(&job);
    let keys = ["k1", "k2", "k3"];
    let out = run(&mut op, &mut cx, records(&keys)).await;
    assert!(out.iter().all(|r| json_field(r, "enrichment").is_some()));

    redis.kill();
    for _ in 0..3 {
        let out = run(&mut op, &mut cx, records(&keys)).await;
        assert_eq!(out.len(), 3, "records keep flowing");
        for r in &out {
            assert!(json_field(r, "enrichment").is_none());
            assert_eq!(
                r.field("enrich_error"),
                Some(&Field::Str("redis_unavailable".into()))
            );
        }
    }

    let path = which("redis-server").unwrap();
    redis.spawn(&path);
    set(&redis);
    let mut recovered = false;
    for _ in 0..100 {
        let out = run(&mut op, &mut cx, records(&keys)).await;
        assert_eq!(out.len(), 3);
        if out.iter().all(|r| json_field(r, "enrichment").is_some()) {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "enrichment resumes once Redis is back");
}

#[tokio::test]
async fn origin_errors_are_retried_then_handled_by_the_policy() {
    let Some(url) = redis_url() else { return };
    let (origin, ctl) = start_origin().await;
    // Two 503s, then success: retried (3 retries allowed), enriched.
    ctl.fail_next.store(2, Ordering::SeqCst);
    let job = lookup_job(
        &url,
        &unique_prefix("retry"),
        &origin,
        "retries = 3\nbackoff = \"1ms\"\non_failure = \"dead_letter\"",
    );
    let (mut op, mut cx) = build(&job);
    let out = run(&mut op, &mut cx, records(&["k9"])).await;
    assert_eq!(ctl.requests.load(Ordering::SeqCst), 3);
    assert_eq!(
        json_field(&out[0], "enrichment"),
        origin_value("k9").as_ref()
    );

    // Always 503: 1 + 3 calls, then the record is dead-lettered with the reason.
    ctl.fail_next.store(u64::MAX, Ordering::SeqCst);
    let out = run(&mut op, &mut cx, records(&["k10", "k11"])).await;
    assert!(out.is_empty());
    assert_eq!(ctl.requests.load(Ordering::SeqCst), 3 + 2 * 4);
    assert_eq!(cx.dead_letters.len(), 2);
    assert!(cx.dead_letters.iter().all(|d| d.reason == "origin_5xx"));

    // `emit`: un-enriched with the error field.
    let job = lookup_job(
        &url,
        &unique_prefix("retry-emit"),
        &origin,
        "retries = 1\nbackoff = \"1ms\"",
    );
    let (mut op, mut cx) = build(&job);
    let out = run(&mut op, &mut cx, records(&["k12"])).await;
    assert_eq!(
        out[0].field("enrich_error"),
        Some(&Field::Str("origin_5xx".into()))
    );

    // `fail`: the job stops.
    let job = lookup_job(
        &url,
        &unique_prefix("retry-fail"),
        &origin,
        "retries = 0\non_failure = \"fail\"",
    );
    let (mut op, mut cx) = build(&job);
    let mut out = Vec::new();
    let err = op
        .process(records(&["k13"]), &mut cx, &mut out)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("origin_5xx"), "{err}");
}

#[tokio::test]
async fn origin_timeouts_end_in_the_failure_policy() {
    let Some(url) = redis_url() else { return };
    let (origin, ctl) = start_origin().await;
    ctl.hang.store(true, Ordering::SeqCst);
    let job = lookup_job(
        &url,
        &unique_prefix("timeout"),
        &origin,
        "timeout = \"200ms\"\nretries = 5",
    );
    let (mut op, mut cx) = build(&job);
    let out = run(&mut op, &mut cx, records(&["k1", "k2", "k1"])).await;
    assert_eq!(out.len(), 3);
    for r in &out {
        assert_eq!(
            r.field("enrich_error"),
            Some(&Field::Str("lookup_timeout".into()))
        );
    }
}

const CRASH_RECORDS: u64 = 300_000;

fn crash_job(d: &Path, name: &str, redis: &str, origin: &str, prefix: &str) -> std::path::PathBuf {
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
type = "enrich"
field = "meta"
capacity = 50
[operators.redis]
url = "{redis}"
key_prefix = "{prefix}"
[operators.origin]
type = "http"
url = "{origin}"
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
interval = "50ms"
keep = 2
[metrics]
enabled = false
"#
        ),
    )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_lose_and_duplicate_nothing() {
    let Some(url) = redis_url() else { return };
    let (origin, _ctl) = start_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    // 2,000 keys, a tenth unknown to the origin (`x…` keys get a 404).
    write_records(&d.join("input.jsonl"), CRASH_RECORDS, 2_000);
    let text = std::fs::read_to_string(d.join("input.jsonl"))
        .unwrap()
        .replace("\"k1", "\"x1");
    std::fs::write(d.join("input.jsonl"), text).unwrap();

    let prefix = unique_prefix("crash");
    let reference = crash_job(&d, "reference", &url, &origin, &format!("{prefix}ref:"));
    let out = tokio::task::spawn_blocking(move || run_bin(&reference))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = published(&d.join("reference-out"));
    assert_eq!(
        expected.iter().filter(|&&b| b == b'\n').count() as u64,
        CRASH_RECORDS
    );

    let crashed = crash_job(&d, "crashed", &url, &origin, &format!("{prefix}crash:"));
    let dd = d.clone();
    let restored = tokio::task::spawn_blocking(move || {
        let checkpoints = dd.join("crashed-data/checkpoints");
        let mut restored = 0;
        for round in 0..2u64 {
            let done = newest_records(&checkpoints);
            // Fixed, spread-out kill points (15 % and 35 % of the input by the newest
            // checkpoint): checkpoints lag the source by one 50 ms interval, so even a fast run
            // is still going when the kill lands.
            let _ = done;
            let target = CRASH_RECORDS * (15 + 20 * round) / 100;
            let mut child = osprey()
                .args(["run", crashed.to_str().unwrap()])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            while newest_records(&checkpoints) < target && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(mix(round) % 20));
            let running = child.try_wait().unwrap().is_none();
            child.kill().unwrap(); // SIGKILL
            let out = child.wait_with_output().unwrap();
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(running, "the run finished before the kill\n{log}");
            if log.contains("Restoring checkpoint") {
                restored += 1;
            }
        }
        let out = run_bin(&crashed);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{log}");
        if log.contains("Restoring checkpoint") {
            restored += 1;
        }
        restored
    })
    .await
    .unwrap();
    assert!(
        restored >= 2,
        "restarts resumed from checkpoints ({restored})"
    );
    let got = published(&d.join("crashed-out"));
    assert_eq!(got.len(), expected.len(), "same number of bytes");
    assert!(
        got == expected,
        "committed output equals the uninterrupted run's"
    );
    // Spot-check the merge in the committed output.
    let first: serde_json::Value =
        serde_json::from_slice(got.split(|&b| b == b'\n').next().unwrap()).unwrap();
    let id = first["id"].as_str().unwrap();
    assert_eq!(first.get("meta"), origin_value(id).as_ref());
}

fn run_bin(job: &Path) -> std::process::Output {
    osprey()
        .args(["run", job.to_str().unwrap()])
        .output()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tier 3 from S3: a reference table object in moto.

#[cfg(feature = "s3")]
use crate::util::moto;

/// Creates a fresh bucket and uploads `body` as `key`.
#[cfg(feature = "s3")]
async fn upload(client: &aws_sdk_s3::Client, bucket: &str, key: &str, body: String) {
    let _ = client.create_bucket().bucket(bucket).send().await;
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into_bytes().into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("uploading {key}: {e:?}"));
}

/// A bucket name no other run shares (S3 rules: lowercase, at most 63 characters).
#[cfg(feature = "s3")]
fn unique_bucket(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "osprey-{test}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

/// The reference CSV: keys `k0`…`k29` (the ids of [`write_records`] and [`records`]),
/// `floor` shifted by `version` so a reload is visible.
#[cfg(feature = "s3")]
fn sites_csv(version: i64) -> String {
    let mut s = String::from("id,site,floor\n");
    for i in 0..30 {
        s.push_str(&format!("k{i},\"hall {}, east\",{}\n", i % 4, i + version));
    }
    s
}

#[cfg(feature = "s3")]
fn site(key: &str, version: i64) -> Option<serde_json::Value> {
    let n: i64 = key.strip_prefix('k')?.parse().ok()?;
    (n < 30).then(|| {
        serde_json::json!({ "id": key, "site": format!("hall {}, east", n % 4), "floor": n + version })
    })
}

#[cfg(feature = "s3")]
fn s3_origin(endpoint: &str, uri: &str) -> String {
    format!(
        "[origin]\ntype = \"s3\"\nuri = \"{uri}\"\nkey_column = \"id\"\nendpoint_url = \"{endpoint}\"\n"
    )
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_origin_serves_lookups_and_preloads() {
    let Some((endpoint, client)) = moto().await else {
        return;
    };
    let bucket = unique_bucket("enrich");
    upload(&client, &bucket, "ref/sites.csv", sites_csv(0)).await;
    let uri = format!("s3://{bucket}/ref/sites.csv");
    let keys = ["k3", "k99", "k3", "k29", "k0"];

    // Lookup mode: the table is tier 3 behind the cache.
    let (mut op, mut cx) = build(&format!("field = \"site\"\n{}", s3_origin(&endpoint, &uri)));
    op.on_start(&mut cx).await.unwrap();
    let out = run(&mut op, &mut cx, records(&keys)).await;
    assert_eq!(out.len(), keys.len());
    for (r, k) in out.iter().zip(keys) {
        assert_eq!(&*r.key, k);
        assert_eq!(json_field(r, "site"), site(k, 0).as_ref(), "{k}");
    }

    // Preload, unpartitioned, refreshed in the background: a new version of the object is
    // picked up while batches keep flowing.
    let (mut op, mut cx) = build(&format!(
        "mode = \"preload\"\nrefresh = \"50ms\"\n{}",
        s3_origin(&endpoint, &uri)
    ));
    op.on_start(&mut cx).await.unwrap();
    let out = run(&mut op, &mut cx, records(&keys)).await;
    for (r, k) in out.iter().zip(keys) {
        assert_eq!(json_field(r, "enrichment"), site(k, 0).as_ref(), "{k}");
    }
    upload(&client, &bucket, "ref/sites.csv", sites_csv(100)).await;
    let mut reloaded = false;
    // Bounded only so a broken refresh fails instead of hanging.
    for _ in 0..1200 {
        let out = run(&mut op, &mut cx, records(&["k5"])).await;
        if json_field(&out[0], "enrichment") == site("k5", 100).as_ref() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the refreshed object replaces the table");

    // Preload, partitioned over two partitions: each keeps only the keys it owns.
    let cfg: EnrichConfig = toml::from_str(&format!(
        "mode = \"preload\"\npartitioned = true\n{}",
        s3_origin(&endpoint, &uri)
    ))
    .unwrap();
    assert!(cfg.validate(&Default::default()).is_empty());
    let mut seen = 0;
    for p in 0..2 {
        let bcx = BuildContext {
            partition: p,
            values: 0,
            value_names: vec![],
            has_time: false,
            partitions: 2,
            key_groups: 16,
            resources: Default::default(),
        };
        let mut op = Enrich::new(&cfg, &bcx).unwrap();
        let mut cx = Context::new(p, Arc::new(MemoryBackend::default()));
        cx.open_tables(&op).unwrap();
        op.on_start(&mut cx).await.unwrap();
        let all: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mine: Vec<Record> = records(&all)
            .into_iter()
            .map(|mut r| {
                r.key_group = osprey::core::partition::key_group(r.key.as_bytes(), 16);
                r
            })
            .filter(|r| osprey::core::partition::partition_of(r.key_group, 16, 2) == p)
            .collect();
        let out = run(&mut op, &mut cx, mine).await;
        for r in &out {
            assert_eq!(json_field(r, "enrichment"), site(&r.key, 100).as_ref());
            seen += 1;
        }
    }
    assert_eq!(seen, 40, "every record went through one partition");
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_preload_job_end_to_end() {
    let Some((endpoint, client)) = moto().await else {
        return;
    };
    let bucket = unique_bucket("enrich-job");
    upload(&client, &bucket, "sites.csv", sites_csv(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    // 40 keys, 30 of them in the table.
    write_records(&d.join("input.jsonl"), 5_000, 40);
    let job_path = job(
        &d,
        "s3.toml",
        &format!(
            r#"name = "s3_enrich"
[source]
type = "file"
path = "{{dir}}/input.jsonl"
[record]
key = "id"
values = ["x"]
[runtime]
partitions = 2
[[operators]]
type = "enrich"
field = "site"
mode = "preload"
partitioned = true
{origin}
[sink]
type = "file"
path = "{{dir}}/out"
[state]
dir = "{{dir}}/data"
[metrics]
enabled = false
"#,
            origin = s3_origin(&endpoint, &format!("s3://{bucket}/sites.csv"))
                .replace("[origin]", "[operators.origin]")
        ),
    );
    let out = tokio::task::spawn_blocking(move || run_bin(&job_path))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = published_json(&d.join("out"));
    assert_eq!(got.len(), 5_000);
    let mut enriched = 0;
    for r in &got {
        let id = r["id"].as_str().unwrap();
        assert_eq!(r.get("site"), site(id, 0).as_ref(), "{id}");
        enriched += usize::from(r.get("site").is_some());
    }
    assert!(enriched > 0 && enriched < 5_000, "{enriched}");
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_origin_errors_name_the_field() {
    let Some((endpoint, client)) = moto().await else {
        return;
    };
    let bucket = unique_bucket("enrich-err");
    upload(&client, &bucket, "present.csv", sites_csv(0)).await;
    let start_error = |uri: String, extra: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            let (mut op, mut cx) = build(&format!("{extra}\n{}", s3_origin(&endpoint, &uri)));
            op.on_start(&mut cx).await.unwrap_err().to_string()
        }
    };
    // A missing object, in both modes.
    for mode in ["mode = \"lookup\"", "mode = \"preload\""] {
        let e = start_error(format!("s3://{bucket}/absent.csv"), mode).await;
        assert!(
            e.contains("origin.uri") && e.contains("no object `absent.csv`"),
            "{e}"
        );
    }
    // A missing bucket.
    let e = start_error(format!("s3://{bucket}-gone/present.csv"), "").await;
    assert!(
        e.contains("origin.uri") && e.contains("NoSuchBucket"),
        "{e}"
    );
    // A table without the key column.
    let (mut op, mut cx) = build(
        &s3_origin(&endpoint, &format!("s3://{bucket}/present.csv"))
            .replace("key_column = \"id\"", "key_column = \"device\""),
    );
    let e = op.on_start(&mut cx).await.unwrap_err().to_string();
    assert!(
        e.contains("origin.key_column") && e.contains("`device`"),
        "{e}"
    );

    // A bad URI is a configuration error naming the field, before anything runs.
    let dir = tempfile::tempdir().unwrap();
    let bad = job(
        dir.path(),
        "bad.toml",
        &format!(
            "[source]\ntype = \"stdin\"\n[[operators]]\ntype = \"enrich\"\n{}",
            s3_origin(&endpoint, "s3://just-a-bucket").replace("[origin]", "[operators.origin]")
        ),
    );
    let out = tokio::task::spawn_blocking(move || osprey().arg("validate").arg(&bad).output())
        .await
        .unwrap()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("origin.uri") && text.contains("s3://bucket/key"),
        "{text}"
    );

    // And a job whose object is missing stops at start, saying so.
    let missing = job(
        dir.path(),
        "missing.toml",
        &format!(
            "[source]\ntype = \"stdin\"\n[[operators]]\ntype = \"enrich\"\n{}[state]\ndir = \"{{dir}}/data\"\n[metrics]\nenabled = false\n",
            s3_origin(&endpoint, &format!("s3://{bucket}/absent.csv"))
                .replace("[origin]", "[operators.origin]")
        ),
    );
    let out = tokio::task::spawn_blocking(move || run_bin(&missing))
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("origin.uri"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Redis over TLS with AUTH: a redis-server of our own with a CA and certificates made here.

const TLS_PASSWORD: &str = "s3cret-enrich";

/// Runs `openssl` in `dir`, failing the test when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA (`<name>.crt`, `<name>.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (key, crt, subj) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN=osprey test {name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A leaf certificate `<name>.crt`/`<name>.key` signed by the CA `ca`, with extensions `ext`.
fn make_leaf(dir: &Path, ca: &str, name: &str, ext: &str) {
    let (key, csr, crt, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
    );
}

/// redis-server with TLS only (`--port 0`), client certificates required and `requirepass`.
struct TlsRedis {
    port: u16,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl TlsRedis {
    /// `None` (outside CI) when redis-server or openssl is missing.
    fn start() -> Option<TlsRedis> {
        for tool in ["redis-server", "openssl"] {
            if which(tool).is_err() {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{tool} not on PATH under CI=true"
                );
                eprintln!("skipping: no {tool} on PATH");
                return None;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_ca(d, "ca");
        make_ca(d, "other-ca");
        make_leaf(
            d,
            "ca",
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        );
        make_leaf(
            d,
            "ca",
            "client",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(which("redis-server").unwrap())
            .current_dir(d)
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .args(["--tls-port", &port.to_string()])
            .args([
                "--tls-cert-file",
                "server.crt",
                "--tls-key-file",
                "server.key",
            ])
            .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "yes"])
            .args(["--requirepass", TLS_PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--dir", "."])
            .args(["--logfile", "redis.log"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut r = TlsRedis { port, child, dir };
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(r);
            }
            if let Some(status) = r.child.try_wait().unwrap() {
                panic!(
                    "TLS redis-server exited ({status}): {}",
                    std::fs::read_to_string(r.dir.path().join("redis.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("TLS redis-server did not listen on port {port}");
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `[redis]` options: `password`, the CA trusted, and whether to present the client
    /// certificate.
    fn redis_toml(&self, password: &str, ca: &str, client_cert: bool, prefix: &str) -> String {
        let mut s = format!(
            "url = \"rediss://127.0.0.1:{}\"\npassword = \"{password}\"\ntls_ca_file = \"{}\"\n\
             key_prefix = \"{prefix}\"\ntimeout = \"2s\"\n",
            self.port,
            self.file(&format!("{ca}.crt"))
        );
        if client_cert {
            s.push_str(&format!(
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                self.file("client.crt"),
                self.file("client.key")
            ));
        }
        s
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `osprey_enrich_lookups_total` of one operator instance, tier and outcome.
fn lookups(operator: &str, tier: &str, outcome: &str) -> u64 {
    let text = osprey::metrics::get().render();
    let head = format!(
        "osprey_enrich_lookups_total{{operator=\"{operator}\",outcome=\"{outcome}\",partition=\"p000\",tier=\"{tier}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_auth_enriches_and_counts_tls_and_auth_failures() {
    let Some(redis) = TlsRedis::start() else {
        return;
    };
    let prefix = unique_prefix("tls");
    let keys = ["k0", "k1", "k2", "k3", "k4"];

    // Seed through the operator: origin answers are written back to Redis over TLS.
    let (origin, ctl) = start_origin().await;
    let (mut op, mut cx) = build(&format!(
        "name = \"tls_seed\"\n[redis]\n{}[origin]\ntype = \"http\"\nurl = \"{origin}\"\n",
        redis.redis_toml(TLS_PASSWORD, "ca", true, &prefix)
    ));
    let out = run(&mut op, &mut cx, records(&keys)).await;
    for (r, k) in out.iter().zip(keys) {
        assert_eq!(json_field(r, "enrichment"), origin_value(k).as_ref());
    }
    assert_eq!(lookups("tls_seed", "redis", "miss"), 5);
    assert_eq!(ctl.requests.load(Ordering::SeqCst), 5);

    // Redis as the store (no origin, no tier 1): every value now comes from Redis.
    let reader = |name: &str, password: &str, ca: &str, client_cert: bool, policy: &str| {
        format!(
            "name = \"{name}\"\non_failure = \"{policy}\"\n[cache]\nmax_entries = 0\n[redis]\n{}",
            redis.redis_toml(password, ca, client_cert, &prefix)
        )
    };
    let (mut op, mut cx) = build(&reader("tls_read", TLS_PASSWORD, "ca", true, "emit"));
    let out = run(&mut op, &mut cx, records(&keys)).await;
    for (r, k) in out.iter().zip(keys) {
        assert_eq!(json_field(r, "enrichment"), origin_value(k).as_ref(), "{k}");
    }
    assert_eq!(lookups("tls_read", "redis", "hit"), 5);
    assert_eq!(ctl.requests.load(Ordering::SeqCst), 5, "no origin call");

    // Failures are counted, and records keep flowing under the failure policy.
    for (name, password, ca, client_cert, reason) in [
        (
            "tls_wrong_password",
            "not-the-password",
            "ca",
            true,
            "redis_auth_failed",
        ),
        (
            "tls_untrusted",
            TLS_PASSWORD,
            "other-ca",
            true,
            "redis_tls_failed",
        ),
    ] {
        let (mut op, mut cx) = build(&reader(name, password, ca, client_cert, "emit"));
        for round in 1..=2u64 {
            let out = run(&mut op, &mut cx, records(&keys)).await;
            assert_eq!(out.len(), 5, "{name}: records keep flowing");
            for r in &out {
                assert!(json_field(r, "enrichment").is_none());
                assert_eq!(
                    r.field("enrich_error"),
                    Some(&Field::Str(reason.into())),
                    "{name}"
                );
            }
            assert_eq!(lookups(name, "redis", "error"), 5 * round, "{name}");
        }
    }
    // Without the client certificate the server refuses the connection; dead-lettered.
    let (mut op, mut cx) = build(&reader(
        "tls_no_client_cert",
        TLS_PASSWORD,
        "ca",
        false,
        "dead_letter",
    ));
    let out = run(&mut op, &mut cx, records(&keys)).await;
    assert!(out.is_empty());
    assert_eq!(cx.dead_letters.len(), 5);
    assert!(
        cx.dead_letters
            .iter()
            .all(|d| d.reason.starts_with("redis_")),
        "{:?}",
        cx.dead_letters
            .iter()
            .map(|d| &d.reason)
            .collect::<Vec<_>>()
    );
    assert_eq!(lookups("tls_no_client_cert", "redis", "error"), 5);

    // The binary end to end through rediss:// (a fresh process: rustls' crypto provider is
    // set up by osprey itself, not by this test).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    write_records(&d.join("input.jsonl"), 2_000, 5);
    let job_path = job(
        &d,
        "tls.toml",
        &format!(
            r#"name = "tls_job"
[source]
type = "file"
path = "{{dir}}/input.jsonl"
[record]
key = "id"
values = ["x"]
[[operators]]
type = "enrich"
field = "meta"
[operators.redis]
{}
[sink]
type = "file"
path = "{{dir}}/out"
[state]
dir = "{{dir}}/data"
[metrics]
enabled = false
"#,
            redis.redis_toml(TLS_PASSWORD, "ca", true, &prefix)
        ),
    );
    let out = tokio::task::spawn_blocking(move || run_bin(&job_path))
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let got = published_json(&d.join("out"));
    assert_eq!(got.len(), 2_000);
    for r in &got {
        let id = r["id"].as_str().unwrap();
        assert_eq!(r.get("meta"), origin_value(id).as_ref(), "{id}");
        assert!(r.get("enrich_error").is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// Tier 3 over HTTPS: a TLS origin with a CA made here, trusted through `SSL_CERT_FILE` (read by
// the system trust store loader), reached through a plain-HTTP redirect.

/// Serves `listener` on threads, one per connection wrapped by `wrap` (TLS or not), with
/// keep-alive: each request's path is answered with the bytes `answer` returns for it.
fn serve_blocking<S: std::io::Read + std::io::Write + Send + 'static>(
    listener: std::net::TcpListener,
    wrap: impl Fn(std::net::TcpStream) -> S + Send + Sync + 'static,
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) {
    use std::io::BufRead;
    let (wrap, answer) = (Arc::new(wrap), Arc::new(answer));
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (wrap, answer) = (Arc::clone(&wrap), Arc::clone(&answer));
            std::thread::spawn(move || {
                let mut s = std::io::BufReader::new(wrap(tcp));
                loop {
                    let mut line = String::new();
                    if s.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    loop {
                        let mut h = String::new();
                        if s.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                    }
                    let resp = answer(&path);
                    if s.get_mut().write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                    let _ = s.get_mut().flush();
                }
            });
        }
    });
}

/// A TLS origin on 127.0.0.1 (rustls, the certificate `server.crt` in `dir`):
/// `/things/<key>` is [`origin_value`] (404 when unknown); `/things/down` redirects to
/// `downgrade`, a plain http:// URL the client must refuse to follow. Returns its port.
fn start_tls_origin(dir: &Path, downgrade: String) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.crt"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = move |tcp| {
        rustls::StreamOwned::new(
            rustls::ServerConnection::new(Arc::clone(&config)).unwrap(),
            tcp,
        )
    };
    serve_blocking(listener, tls, move |path| {
        let key = path.rsplit('/').next().unwrap_or("");
        let (status, extra, body) = match origin_value(key) {
            _ if key == "down" => (
                "302 Found",
                format!("Location: {downgrade}\r\n"),
                String::new(),
            ),
            Some(v) => ("200 OK", String::new(), v.to_string()),
            None => ("404 Not Found", String::new(), "{}".into()),
        };
        format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    });
    port
}

/// A plain origin redirecting every `/things/<key>` to `https://127.0.0.1:<tls_port>`.
fn start_redirector(tls_port: u16) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    serve_blocking(
        listener,
        |tcp| tcp,
        move |path| {
            format!(
                "HTTP/1.1 301 Moved Permanently\r\nLocation: https://127.0.0.1:{tls_port}{path}\r\n\
             Content-Length: 0\r\n\r\n"
            )
        },
    );
    format!("http://{addr}/things/{{key}}")
}

#[test]
fn https_origin_behind_a_redirect_enriches_and_refuses_downgrades() {
    if which("openssl").is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "openssl not on PATH under CI=true"
        );
        eprintln!("skipping: no openssl on PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_leaf(
        d,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
    let tls_port = start_tls_origin(d, "http://127.0.0.1:9/things/down".into());
    let origin = start_redirector(tls_port);
    std::fs::write(
        d.join("input.jsonl"),
        "{\"id\":\"k1\",\"x\":1}\n{\"id\":\"nope\",\"x\":2}\n{\"id\":\"down\",\"x\":3}\n{\"id\":\"k2\",\"x\":4}\n",
    )
    .unwrap();
    let j = job(
        d,
        "https.toml",
        &format!(
            r#"name = "https-origin"
[source]
type = "file"
path = "{{dir}}/input.jsonl"
[record]
key = "id"
values = ["x"]
[[operators]]
type = "enrich"
field = "meta"
retries = 0
timeout = "10s"
[operators.origin]
type = "http"
url = "{origin}"
[sink]
type = "file"
path = "{{dir}}/out"
[state]
dir = "{{dir}}/data"
[metrics]
enabled = false
"#
        ),
    );
    let out = osprey()
        .args(["run", j.to_str().unwrap()])
        .env("SSL_CERT_FILE", d.join("ca.crt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = published_json(&d.join("out"));
    assert_eq!(got.len(), 4);
    let by_id = |id: &str| got.iter().find(|r| r["id"] == id).unwrap().clone();
    for k in ["k1", "k2"] {
        assert_eq!(by_id(k).get("meta"), origin_value(k).as_ref(), "{k}");
    }
    assert_eq!(
        by_id("nope").get("meta"),
        None,
        "a 404 leaves the record as it was"
    );
    let down = by_id("down");
    assert_eq!(down.get("meta"), None);
    assert_eq!(
        down["enrich_error"], "origin_status",
        "https -> http is not followed"
    );
}
