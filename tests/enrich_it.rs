//! The enrich operator against a real redis-server and a small HTTP origin this file starts
//! on 127.0.0.1:0. Needs `OSPREY_REDIS_URL` (scripts/services.sh); under `CI=true` an
//! unreachable Redis fails the test, elsewhere the test prints why and returns.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use osprey::event::{Field, Record};
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
    };
    let cx = Context {
        partition: 0,
        partition_name: "p000".into(),
        backend: Arc::new(MemoryBackend::default()),
        writes: Default::default(),
        dead_letters: Vec::new(),
    };
    (Enrich::new(&cfg, &bcx).unwrap(), cx)
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
