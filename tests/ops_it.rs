//! The operations kit: `docker/prometheus/` (scrape config, recording and alerting rules),
//! `docker/compose.yaml`, `docker/grafana/` and `docs/RUNBOOK.md`.
//!
//! - promtool accepts the shipped config and rules, and the rules' unit tests
//!   (`tests/prometheus/*.yml`) fire every alert on synthetic series and stay silent on healthy
//!   ones;
//! - every alert has a summary, a description and a runbook link to a section that exists;
//! - the compose file passes `docker compose config` (or `docker-compose config`), and the
//!   demo job it mounts is a valid job;
//! - a real Prometheus server, run with the shipped scrape config pointed at a running osprey,
//!   scrapes it, evaluates every rule without error, sees an anomaly counter move, and accepts
//!   every query of the Grafana dashboard;
//! - every `osprey_*` metric the rules name is one osprey exports, checked against live
//!   scrapes of real jobs: the compose demo's job against the local stand-ins (kinesis-local,
//!   redis, moto), a job whose enrichment fails and whose input has a bad line, and an image
//!   classification job.
//!
//! Needs promtool and prometheus (Debian's `prometheus` package, installed by
//! `scripts/deps.sh`), docker-compose for the compose check, and the services of
//! `scripts/services.sh`. Under `CI=true` a missing one fails the test; otherwise the test
//! says why and returns.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{job, osprey};

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `None` with a message, or a failure under `CI=true`.
fn unavailable<T>(why: &str) -> Option<T> {
    assert!(!ci(), "CI=true: {why}");
    eprintln!("skipping: {why}");
    None
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A program on PATH, or `None` (a failure under CI).
fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .or_else(|| {
            unavailable(&format!(
                "{name} not found (install {package}: scripts/deps.sh)"
            ))
        })
}

/// Runs a command to completion and asserts it succeeded; returns its stdout.
fn check(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.0 request (no chunked answers): the body of a 2xx answer, else `None`.
fn http(method: &str, addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    status.starts_with('2').then(|| body.to_string())
}

/// Percent-encodes a query parameter.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `f` every 200 ms until it returns `Some`, for at most `secs` seconds.
fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `- alert:` blocks of the rules file: (name, lines of the block).
fn alert_blocks(rules: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in rules.lines() {
        let t = line.trim_start();
        if t.starts_with("- alert:") || t.starts_with("- record:") || t.starts_with("- name:") {
            blocks.extend(current.take());
            if let Some(name) = t.strip_prefix("- alert:") {
                current = Some((name.trim().to_string(), Vec::new()));
            }
        } else if let Some((_, lines)) = &mut current {
            lines.push(t.to_string());
        }
    }
    blocks.extend(current);
    blocks
}

/// The PromQL of every rule (`expr:` on one line or a `|` block).
fn exprs(rules: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let rest = rest.trim();
        if rest != "|" {
            out.push(rest.to_string());
            continue;
        }
        let mut e = String::new();
        while let Some(next) = lines.peek() {
            if !next.trim().is_empty() && next.len() - next.trim_start().len() <= indent {
                break;
            }
            e.push_str(next.trim());
            e.push('\n');
            lines.next();
        }
        out.push(e);
    }
    out
}

/// `osprey_*` identifiers in a PromQL expression (recording rules are `osprey:…`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("osprey_") {
        let start = i + at;
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
        let mut end = start;
        while end < b.len() && ident(b[end]) {
            end += 1;
        }
        if start == 0 || !ident(b[start - 1]) {
            names.insert(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn promtool_accepts_the_config_and_rules_and_their_unit_tests_pass() {
    let Some(promtool) = tool("promtool", "Debian's prometheus") else {
        return;
    };
    let text = check(
        Command::new(&promtool)
            .arg("check")
            .arg("config")
            .arg(repo("docker/prometheus/prometheus.yml")),
    );
    assert!(text.contains("SUCCESS"), "{text}");
    check(
        Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(repo("docker/prometheus/rules.yml")),
    );
    let mut tests: Vec<PathBuf> = std::fs::read_dir(repo("tests/prometheus"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    tests.sort();
    assert!(!tests.is_empty());
    let text = check(
        Command::new(&promtool)
            .arg("test")
            .arg("rules")
            .args(&tests),
    );
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_alert_has_a_summary_a_description_a_runbook_section_and_a_unit_test() {
    let rules = read("docker/prometheus/rules.yml");
    let runbook = read("docs/RUNBOOK.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("### ").or_else(|| l.strip_prefix("## ")))
        .map(anchor)
        .collect();
    let unit_tests: String = std::fs::read_dir(repo("tests/prometheus"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    let blocks = alert_blocks(&rules);
    assert!(blocks.len() >= 9, "{} alerts", blocks.len());
    for (name, lines) in &blocks {
        let field = |key: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().trim_matches('"').to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| panic!("alert {name} has no {key}"))
        };
        field("summary:");
        field("description:");
        let url = field("runbook_url:");
        let target = url
            .strip_prefix("docs/RUNBOOK.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not docs/RUNBOOK.md#…"));
        assert!(
            anchors.contains(target),
            "{name}: docs/RUNBOOK.md has no section #{target}"
        );
        assert_eq!(
            target,
            anchor(name),
            "{name}: its section is named after it"
        );
        // A unit test in which it fires (the file lists expected alerts under their name).
        let fires = unit_tests
            .split("alertname: ")
            .skip(1)
            .any(|s| s.starts_with(name.as_str()) && s.contains("exp_labels:"));
        assert!(fires, "no unit test in tests/prometheus fires {name}");
    }
}

#[test]
fn the_compose_file_is_valid_and_its_pieces_exist() {
    // Everything the compose file and the provisioning mount exists.
    let compose = read("docker/compose.yaml");
    for line in compose.lines() {
        let t = line.trim().trim_start_matches("- ");
        if let Some(rel) = t.strip_prefix("./") {
            let src = rel.split(':').next().unwrap();
            assert!(
                repo("docker").join(src).exists(),
                "compose.yaml mounts ./{src}, which does not exist"
            );
        }
    }
    // The demo job is valid, and Prometheus scrapes the port it serves on.
    check(osprey().args([
        "validate",
        repo("docker/osprey/sensors.toml").to_str().unwrap(),
    ]));
    assert!(
        read("docker/osprey/sensors.toml")
            .contains("address = \"${METRICS_ADDRESS:-0.0.0.0:9898}\"")
    );
    assert!(read("docker/prometheus/prometheus.yml").contains("targets: [\"osprey:9898\"]"));
    // Grafana: the dashboard is JSON and uses the provisioned data source.
    let dash: serde_json::Value =
        serde_json::from_str(&read("docker/grafana/dashboards/osprey.json")).unwrap();
    let ds = read("docker/grafana/provisioning/datasources/prometheus.yaml");
    for p in dash["panels"].as_array().unwrap() {
        let uid = p["datasource"]["uid"].as_str().unwrap();
        assert!(ds.contains(&format!("uid: {uid}")), "panel {}", p["title"]);
    }
    // The compose client's own check: `docker compose` (plugin) or `docker-compose`.
    let file = repo("docker/compose.yaml");
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if plugin {
        check(
            Command::new("docker")
                .args(["compose", "-f"])
                .arg(&file)
                .args(["config", "-q"]),
        );
    } else if let Some(dc) = tool("docker-compose", "Debian's docker-compose") {
        check(Command::new(dc).arg("-f").arg(&file).args(["config", "-q"]));
    }
}

/// A job scoring the sine generator, unbounded: anomalies within seconds.
fn sine_job(dir: &Path, port: u16) -> PathBuf {
    job(
        dir,
        "sine.toml",
        &format!(
            r#"name = "ops-sine"
[source]
type = "generator"
generator = "sine"
rate = 4000
[[operators]]
type = "discord"
m = 16
history = 256
prefix = "discord_"
[[operators]]
type = "rcf"
trees = 20
sample_size = 64
prefix = "rcf_"
[sink]
type = "null"
[state]
dir = "{{dir}}/sine-data"
[checkpoint]
interval = "500ms"
[metrics]
address = "127.0.0.1:{port}"
"#
        ),
    )
}

fn spawn(job: &Path) -> Running {
    spawn_with(job, &[])
}

/// [`spawn`] with environment variables for the job's `${VAR}`s.
fn spawn_with(job: &Path, vars: &[(&str, String)]) -> Running {
    Running(
        osprey()
            .args(["run", job.to_str().unwrap()])
            .envs(vars.iter().map(|(k, v)| (k, v)))
            // Defaults relative to the working directory (an S3 sink's staging folder) land
            // in the test's folder, not in the checkout.
            .current_dir(job.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A /metrics body.
fn scrape(port: u16) -> Option<String> {
    http("GET", &format!("127.0.0.1:{port}"), "/metrics")
}

/// The sum of the samples of `name` whose line contains every one of `parts`; `None` when
/// there is none.
fn sample(body: &str, name: &str, parts: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| matches!(l.as_bytes().get(name.len()), Some(b'{' | b' ')))
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

#[test]
fn prometheus_scrapes_osprey_with_the_shipped_config() {
    let Some(prometheus) = tool("prometheus", "Debian's prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _osprey = spawn(&sine_job(dir.path(), port));

    // The shipped config, its target pointed at this osprey and scraped every second.
    let shipped = read("docker/prometheus/prometheus.yml");
    assert!(shipped.contains("osprey:9898") && shipped.contains("scrape_interval: 15s"));
    let config = shipped
        .replace("osprey:9898", &format!("127.0.0.1:{port}"))
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(
        repo("docker/prometheus/rules.yml"),
        dir.path().join("rules.yml"),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Running(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| -> Option<serde_json::Value> {
        let body = http("GET", &web, &format!("/api/v1/query?query={}", encode(q)))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["status"] == "success").then(|| v["data"]["result"].clone())
    };
    let first = |q: &str| -> Option<f64> {
        query(q)?.as_array()?.first()?["value"][1]
            .as_str()?
            .parse()
            .ok()
    };

    // Scraped, with osprey's series and an anomaly counter that moved.
    let up = wait_for(120, "a successful scrape", || {
        first(r#"up{job="osprey"}"#).filter(|&v| v == 1.0)
    });
    assert_eq!(up, 1.0);
    let anomalies = wait_for(120, "an anomaly counted by Prometheus", || {
        first(r#"sum(osprey_rcf_anomalies_total{job="osprey"}) + sum(osprey_discord_anomalies_total{job="osprey"})"#)
            .filter(|&v| v > 0.0)
    });
    let families = first(r#"count(count by (__name__) ({job="osprey", __name__=~"osprey_.+"}))"#)
        .unwrap_or(0.0);
    assert!(families >= 20.0, "only {families} osprey_ families");
    for name in [
        "osprey_ready",
        "osprey_checkpoints_total",
        "osprey_rcf_points_scored_total",
        "osprey_discord_warmup_points_total",
    ] {
        assert!(
            query(&format!(r#"{name}{{job="osprey"}}"#))
                .is_some_and(|r| !r.as_array().unwrap().is_empty()),
            "{name} not in Prometheus"
        );
    }

    // Every rule evaluates without error; the recording rules produce series.
    wait_for(120, "the recording rules' first series", || {
        first("osprey:points_scored:rate5m").filter(|&v| v > 0.0)
    });
    let body = http("GET", &web, "/api/v1/rules").unwrap();
    let rules: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut n = 0;
    for g in rules["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            n += 1;
            assert_ne!(
                r["health"], "err",
                "rule {} fails: {}",
                r["name"], r["lastError"]
            );
        }
    }
    assert!(n >= 19, "{n} rules loaded");

    // Every query of the Grafana dashboard is valid PromQL.
    let dash: serde_json::Value =
        serde_json::from_str(&read("docker/grafana/dashboards/osprey.json")).unwrap();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let q = t["expr"]
                .as_str()
                .unwrap()
                .replace("$job", "osprey")
                .replace("$instance", ".*");
            assert!(query(&q).is_some(), "dashboard query fails: {q}");
        }
    }
    eprintln!(
        "prometheus: up = {up}, anomalies = {anomalies}, {families} osprey_ families, {n} rules"
    );
}

/// Scrapes `port` until `done` holds for the body (`what` names it for the failure message).
fn scrape_until(port: u16, secs: u64, what: &str, done: impl Fn(&str) -> bool) -> String {
    wait_for(secs, what, || scrape(port).filter(|b| done(b)))
}

/// The metric families of a /metrics body (from its `# TYPE` lines), with their series names
/// (`_bucket`, `_sum`, `_count` for histograms).
fn families(body: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in body.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        // A labelled family without a child has a TYPE line but no sample.
        if !body
            .lines()
            .any(|s| !s.starts_with('#') && s.starts_with(name))
        {
            continue;
        }
        out.insert(name.to_string());
        if kind == "histogram" || kind == "summary" {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        }
    }
    out
}

/// The compose demo's job against the local stand-ins: Kinesis source and sink
/// (kinesis-local), enrichment through Redis, dead letters to S3 (moto).
fn demo_job_metrics(dir: &Path) -> Option<String> {
    let (Ok(kinesis), Ok(redis), Ok(s3)) = (
        std::env::var("OSPREY_KINESIS_ENDPOINT"),
        std::env::var("OSPREY_REDIS_URL"),
        std::env::var("OSPREY_S3_ENDPOINT"),
    ) else {
        return unavailable(
            "OSPREY_KINESIS_ENDPOINT, OSPREY_REDIS_URL or OSPREY_S3_ENDPOINT is not set (run . scripts/services.sh)",
        );
    };
    let s3_addr = s3.trim_start_matches("http://").trim_end_matches('/');
    let suffix = format!("{}-{}", std::process::id(), free_port());
    let (input, output, bucket) = (
        format!("ops-in-{suffix}"),
        format!("ops-out-{suffix}"),
        format!("ops-dl-{suffix}"),
    );
    let streams = |verb: &str, name: &str, extra: &[&str]| {
        check(
            Command::new("python3")
                .arg(repo("scripts/kinesis_local.py"))
                .args([verb, name])
                .args(extra)
                .env("OSPREY_KINESIS_ENDPOINT", &kinesis),
        );
    };
    streams("create", &input, &["1"]);
    streams("create", &output, &["1"]);
    assert!(
        http("PUT", s3_addr, &format!("/{bucket}")).is_some(),
        "cannot create bucket {bucket} at {s3}"
    );
    let port = free_port();
    // The job as shipped: its `${VAR:-default}`s point it at the local stand-ins.
    let demo = job(dir, "demo.toml", &read("docker/osprey/sensors.toml"));
    let data = format!("{}/sensor_locations.csv", repo("examples/data").display());
    let vars = [
        ("KINESIS_ENDPOINT", kinesis.clone()),
        ("REDIS_URL", redis),
        ("S3_ENDPOINT", s3.clone()),
        ("INPUT_STREAM", input.clone()),
        ("OUTPUT_STREAM", output.clone()),
        ("DEAD_LETTER_BUCKET", bucket.clone()),
        ("SENSOR_LOCATIONS", data),
        ("STATE_DIR", format!("{}/demo-data", dir.display())),
        ("METRICS_ADDRESS", format!("127.0.0.1:{port}")),
    ];
    check(
        osprey()
            .args(["produce", "--stream", &input, "--endpoint-url", &kinesis])
            .args(["--generator", "sensors", "--count", "10000"]),
    );
    let run = spawn_with(&demo, &vars);
    let body = scrape_until(
        port,
        180,
        "the demo job to read and score the stream",
        |b| {
            sample(b, "osprey_kinesis_records_read_total", &[]).is_some_and(|v| v >= 10_000.0)
                && sample(b, "osprey_kinesis_millis_behind_latest", &[]).is_some()
                && sample(b, "osprey_checkpoints_total", &[]).is_some_and(|v| v >= 1.0)
        },
    );
    drop(run);
    streams("delete", &input, &[]);
    streams("delete", &output, &[]);
    // Empty unless something was dead-lettered; a bucket left behind is harmless.
    let _ = http("DELETE", s3_addr, &format!("/{bucket}"));
    Some(body)
}

/// A job whose enrichment origin refuses connections and whose input has a bad line.
fn failing_enrich_metrics(dir: &Path) -> String {
    let port = free_port();
    let closed = free_port();
    let j = job(
        dir,
        "enrich.toml",
        &format!(
            r#"name = "ops-enrich"
[source]
type = "stdin"
[record]
key = "id"
values = ["x"]
[[operators]]
type = "enrich"
field = "ref"
retries = 0
timeout = "500ms"
on_failure = "emit"
[operators.origin]
type = "http"
url = "http://127.0.0.1:{closed}/{{key}}"
[[operators]]
type = "discord"
m = 4
history = 64
[sink]
type = "null"
[state]
dir = "{{dir}}/enrich-data"
[checkpoint]
interval = "200ms"
[metrics]
address = "127.0.0.1:{port}"
"#
        ),
    );
    let mut child = Running(
        osprey()
            .args(["run", j.to_str().unwrap()])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let mut lines = String::from("{not json\n");
    for i in 0..200 {
        lines.push_str(&format!("{{\"id\":\"k{}\",\"x\":{}}}\n", i % 4, i % 7));
    }
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // stdin stays open: the job keeps running while it is scraped.
    let body = scrape_until(
        port,
        120,
        "the enrich job's fallbacks and dead letter",
        |b| {
            sample(b, "osprey_enrich_fallbacks_total", &[]).is_some_and(|v| v >= 200.0)
                && sample(b, "osprey_dead_letter_records_total", &[]).is_some()
        },
    );
    drop(stdin);
    body
}

/// A classification job over two photos and one corrupt file.
#[cfg(feature = "onnx")]
fn classify_metrics(dir: &Path) -> Option<String> {
    let Some(shared) = std::env::var_os("OSPREY_SHARED").map(PathBuf::from) else {
        return unavailable("OSPREY_SHARED is not set (models and photos)");
    };
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut photos: Vec<PathBuf> = std::fs::read_dir(shared.join("images/imagenet-sample"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    photos.sort();
    for p in photos.iter().take(2) {
        std::fs::copy(p, images.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        images.join("broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
    let port = free_port();
    let models = shared.join("models");
    let j = job(
        dir,
        "classify.toml",
        &format!(
            r#"name = "ops-classify"
[source]
type = "dir"
path = "{images}"
suffix = [".jpg", ".JPEG"]
poll_interval = "200ms"
[[operators]]
type = "classify_image"
window = "500ms"
top_k = 1
[operators.model]
path = "{model}"
labels = "{labels}"
input = "input_imagenet_norm"
[sink]
type = "null"
[state]
dir = "{{dir}}/classify-data"
[checkpoint]
interval = "500ms"
[metrics]
address = "127.0.0.1:{port}"
"#,
            images = images.display(),
            model = models
                .join("efficientnet_lite0_imagenetnorm.onnx")
                .display(),
            labels = models.join("imagenet_labels.txt").display(),
        ),
    );
    let _run = spawn(&j);
    Some(scrape_until(
        port,
        300,
        "the classify job's images and failure",
        |b| {
            sample(b, "osprey_classify_images_total", &[]).is_some_and(|v| v >= 2.0)
                && sample(b, "osprey_classify_failures_total", &[]).is_some()
        },
    ))
}

#[test]
fn the_rules_name_only_metrics_osprey_exports() {
    let rules = read("docker/prometheus/rules.yml");
    let dashboard = read("docker/grafana/dashboards/osprey.json");
    let mut named: BTreeSet<String> = exprs(&rules).iter().flat_map(|e| metric_names(e)).collect();
    assert!(named.len() >= 15, "{named:?}");
    named.extend(metric_names(&dashboard));

    let dir = tempfile::tempdir().unwrap();
    let Some(demo) = demo_job_metrics(dir.path()) else {
        return;
    };
    #[cfg(feature = "onnx")]
    let Some(classify) = classify_metrics(dir.path()) else {
        return;
    };
    #[cfg(not(feature = "onnx"))]
    let classify = String::new();
    let port = free_port();
    let sine = {
        let _run = spawn(&sine_job(dir.path(), port));
        scrape_until(port, 120, "the sine job's anomalies", |b| {
            sample(b, "osprey_rcf_anomalies_total", &[]).is_some_and(|v| v > 0.0)
        })
    };
    let enrich = failing_enrich_metrics(dir.path());

    let mut exported = BTreeSet::new();
    for body in [&demo, &classify, &sine, &enrich] {
        exported.extend(families(body));
    }
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !exported.contains(*n))
        .filter(|n| cfg!(feature = "onnx") || !n.starts_with("osprey_classify_"))
        .collect();
    assert!(
        missing.is_empty(),
        "named in the rules or the dashboard but not exported: {missing:?}\nexported: {exported:?}"
    );
    // The demo job exercised what the compose demo promises.
    for (name, parts) in [
        ("osprey_enrich_lookups_total", &["tier=\"redis\""][..]),
        ("osprey_discord_points_scored_total", &[][..]),
        ("osprey_rcf_points_scored_total", &[][..]),
        ("osprey_sink_records_total", &[][..]),
    ] {
        assert!(
            sample(&demo, name, parts).is_some_and(|v| v > 0.0),
            "demo job: {name}{parts:?} did not move"
        );
    }
    eprintln!(
        "{} osprey_ names in the rules and dashboard, all among {} exported series names",
        named.len(),
        exported.len()
    );
}
