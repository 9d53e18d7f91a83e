//! Durable state (issue 15): checkpoints in S3 (moto), incremental, restored on a fresh
//! machine; crashes at each step of a checkpoint; S3 outages; `--from-checkpoint` rollbacks
//! that survive a crash (issue 14, item 14).
//!
//! Needs moto (`OSPREY_S3_ENDPOINT`, started by `scripts/services.sh`) and the AWS variables
//! that script exports; outside `CI=true` the tests skip when it is not there.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use osprey::state::checkpoint::{FORMAT_VERSION, Manifest};
use osprey::state::store::{self, CheckpointStore, RemoteStore, Step, StoreSpec};
use osprey::state::{RocksBackend, StateBackend, WriteBatch};

use crate::util::*;

fn bucket(name: &str) -> String {
    format!(
        "{name}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_007
    )
}

async fn new_bucket(client: &aws_sdk_s3::Client, name: &str) -> String {
    let b = bucket(name);
    client.create_bucket().bucket(&b).send().await.unwrap();
    b
}

fn manifest(epoch: u64) -> Manifest {
    Manifest {
        format: FORMAT_VERSION,
        osprey_version: "test".into(),
        job: "durable".into(),
        fingerprint: "f".into(),
        epoch,
        created_ms: 0,
        backend: "rocksdb".into(),
        source: serde_json::json!({ "epoch": epoch }),
        commits: vec![],
        records_in: epoch,
        state_bytes: 0,
        duration_ms: 0,
        files: vec![],
        outputs: vec![],
        run_id: String::new(),
        checksum: String::new(),
    }
}

/// A RocksDB backend and the model of what it holds.
struct Db {
    backend: RocksBackend,
    table: usize,
    model: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Db {
    fn open(live: &Path, from: Option<&Path>) -> Db {
        let backend = RocksBackend::open(live, from).unwrap();
        let table = backend.open_table("op.t").unwrap();
        Db {
            backend,
            table,
            model: BTreeMap::new(),
        }
    }

    /// Writes keys `range` with values derived from `round`, in batches.
    fn put(&mut self, range: impl Iterator<Item = u64>, round: u64, value_len: usize) {
        let mut batch = WriteBatch::default();
        for k in range {
            let key = format!("key{k:09}").into_bytes();
            let v = mix(k ^ round.wrapping_mul(0x9e37));
            let value: Vec<u8> = (0..value_len)
                .map(|i| (v.rotate_left(i as u32 % 64) & 0xff) as u8)
                .collect();
            self.model.insert(key.clone(), value.clone());
            batch.ops.push((self.table, key, Some(value)));
            if batch.len() >= 10_000 {
                self.backend.write(std::mem::take(&mut batch)).unwrap();
            }
        }
        self.backend.write(batch).unwrap();
    }

    fn contents(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.backend
            .scan_prefix(self.table, b"")
            .unwrap()
            .into_iter()
            .collect()
    }
}

/// Snapshot, save and retain, as the coordinator does.
async fn checkpoint(
    store: &dyn CheckpointStore,
    db: &Db,
    epoch: u64,
    keep: usize,
) -> osprey::Result<store::SaveStats> {
    let dir = store.prepare(epoch).await?;
    db.backend.checkpoint(&dir)?;
    let stats = store.save(&dir, manifest(epoch)).await?;
    store.retain(keep).await?;
    Ok(stats)
}

/// Every file each complete checkpoint lists exists in the bucket, and no file outside the
/// kept checkpoints is left (after a successful retention).
async fn assert_bucket_consistent(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    store: &dyn CheckpointStore,
    no_orphans: bool,
) {
    let keys = s3_keys(client, bucket, "chk/").await;
    let listing = store.list().await.unwrap();
    let mut referenced = std::collections::HashSet::new();
    for l in &listing.checkpoints {
        let m = l
            .manifest
            .as_ref()
            .expect("every listed checkpoint is complete");
        for f in m.files.iter().chain(&m.outputs) {
            let key = format!("chk/{}", f.object);
            assert!(keys.contains(&key), "checkpoint {} lost {key}", l.epoch);
            referenced.insert(key);
        }
    }
    if no_orphans {
        let orphans: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with("chk/files/") && !referenced.contains(*k))
            .collect();
        assert!(orphans.is_empty(), "unreferenced files left: {orphans:?}");
    }
}

fn spec(endpoint: &str, bucket: &str) -> StoreSpec {
    StoreSpec {
        dir: format!("s3://{bucket}/chk/").into(),
        endpoint_url: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
    }
}

async fn s3_store(endpoint: &str, bucket: &str, scratch: &Path) -> RemoteStore {
    store::s3_store(&spec(endpoint, bucket), scratch)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_checkpoints_are_incremental_and_restore_on_a_fresh_machine() {
    let Some((endpoint, client)) = moto().await else {
        return;
    };
    let b = new_bucket(&client, "incremental").await;
    let tmp = tempfile::tempdir().unwrap();
    let store = s3_store(&endpoint, &b, &tmp.path().join("scratch")).await;
    let mut db = Db::open(&tmp.path().join("live"), None);
    db.put(0..200_000, 0, 100);
    let first = checkpoint(&store, &db, 1, 2).await.unwrap();
    assert!(
        first.files_uploaded > 0 && first.files_reused == 0,
        "{first:?}"
    );
    // 1 % of the keys change.
    db.put((0..200_000).step_by(100), 1, 100);
    let second = checkpoint(&store, &db, 2, 2).await.unwrap();
    assert!(
        second.files_reused > 0,
        "the first SSTs are shared: {second:?}"
    );
    assert!(
        second.bytes_uploaded * 10 < first.bytes_uploaded,
        "the second checkpoint sends only what changed: {second:?} after {first:?}"
    );
    assert_bucket_consistent(&client, &b, &store, true).await;

    // A fresh machine: nothing local, a new store instance.
    let fresh = tempfile::tempdir().unwrap();
    let store2 = s3_store(&endpoint, &b, &fresh.path().join("scratch")).await;
    let listing = store2.list().await.unwrap();
    let newest = listing.checkpoints.last().unwrap();
    assert_eq!(newest.epoch, 2);
    let (dir, m, fetched) = store2
        .fetch(2, &fresh.path().join("restore"))
        .await
        .unwrap();
    assert_eq!(m.epoch, 2);
    assert!(fetched.bytes > 0 && fetched.files > 0);
    let restored = Db::open(&fresh.path().join("live"), Some(&dir));
    assert!(restored.contents() == db.model, "restored state differs");
    // The restored store knows the files: the next checkpoint re-sends none of the SSTs.
    let mut restored = restored;
    restored.model = db.model.clone();
    let third = checkpoint(&store2, &restored, 3, 2).await.unwrap();
    assert!(third.files_reused > 0, "{third:?}");
    assert!(
        third.bytes_uploaded * 10 < first.bytes_uploaded,
        "{third:?}"
    );
    assert_bucket_consistent(&client, &b, &store2, true).await;
    assert_eq!(
        store2
            .list()
            .await
            .unwrap()
            .checkpoints
            .iter()
            .map(|l| l.epoch)
            .collect::<Vec<_>>(),
        [2, 3],
        "keep = 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_leaves_a_restorable_checkpoint() {
    let Some((endpoint, client)) = moto().await else {
        return;
    };
    for step in [Step::SomeFiles, Step::AllFiles, Step::Manifest, Step::MidGc] {
        let b = new_bucket(&client, "crash").await;
        let tmp = tempfile::tempdir().unwrap();
        let store = s3_store(&endpoint, &b, &tmp.path().join("scratch")).await;
        let mut db = Db::open(&tmp.path().join("live"), None);
        db.put(0..50_000, 0, 64);
        checkpoint(&store, &db, 1, 1).await.unwrap();
        let at_1 = db.model.clone();
        // Enough new data for several new files, so "some files" is a real middle.
        for round in 1..=4 {
            db.put((round * 1000)..(round * 1000 + 20_000), round, 64);
            db.backend
                .checkpoint(&tmp.path().join(format!("flush{round}")))
                .unwrap();
        }
        let at_2 = db.model.clone();
        store.fail_at(Some(step));
        let failed = checkpoint(&store, &db, 2, 1).await;
        assert!(
            failed.is_err(),
            "{step:?}: the injected failure stops the checkpoint"
        );

        // Restart: a new process on a new machine.
        let fresh = tempfile::tempdir().unwrap();
        let store2 = s3_store(&endpoint, &b, &fresh.path().join("scratch")).await;
        let listing = store2.list().await.unwrap();
        let newest = listing.checkpoints.last().unwrap();
        let want_epoch = match step {
            Step::SomeFiles | Step::AllFiles => 1,
            Step::Manifest | Step::MidGc => 2,
        };
        assert_eq!(newest.epoch, want_epoch, "{step:?}");
        assert!(
            newest.manifest.is_ok(),
            "{step:?}: never a broken checkpoint"
        );
        assert_bucket_consistent(&client, &b, &store2, false).await;
        let (dir, _, _) = store2
            .fetch(newest.epoch, &fresh.path().join("restore"))
            .await
            .unwrap();
        let restored = Db::open(&fresh.path().join("live"), Some(&dir));
        let want = if want_epoch == 1 { &at_1 } else { &at_2 };
        assert!(
            &restored.contents() == want,
            "{step:?}: restored state differs"
        );
        // The next checkpoint cleans up whatever the crash left.
        let mut restored = restored;
        restored.model = want.clone();
        restored.put(0..10, 9, 8);
        checkpoint(&store2, &restored, 3, 1).await.unwrap();
        assert_bucket_consistent(&client, &b, &store2, true).await;
        let kept: Vec<u64> = store2
            .list()
            .await
            .unwrap()
            .checkpoints
            .iter()
            .map(|l| l.epoch)
            .collect();
        assert_eq!(kept, [3], "{step:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_an_error_naming_checkpoint_dir() {
    let Some((endpoint, _client)) = moto().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = s3_store(&endpoint, &bucket("missing"), tmp.path()).await;
    let err = store.list().await.unwrap_err().to_string();
    assert!(
        err.contains("checkpoint.dir") && err.contains("NoSuchBucket"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// The whole job, SIGKILLed, its data directory deleted.

const RECORDS: u64 = 1_000_000;
const KEYS: u64 = 2_000;

/// The job every process-level test here runs: `stats` + `discord` + `rcf` over a file of
/// records, S3 sink and dead letters, checkpoints in S3 every second.
fn durable_job(
    d: &Path,
    name: &str,
    endpoint: &str,
    bucket: &str,
    extra: &str,
) -> std::path::PathBuf {
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
[[operators]]
type = "discord"
m = 8
history = 128
prefix = "discord_"
[[operators]]
type = "rcf"
trees = 10
sample_size = 64
shingle_size = 4
prefix = "rcf_"
[sink]
type = "s3"
bucket = "{bucket}"
prefix = "{name}/out/"
staging_dir = "{{dir}}/{name}-data/staging-out"
endpoint_url = "{endpoint}"
region = "us-east-1"
[dead_letter]
type = "s3"
bucket = "{bucket}"
prefix = "{name}/dlq/"
staging_dir = "{{dir}}/{name}-data/staging-dlq"
endpoint_url = "{endpoint}"
region = "us-east-1"
[state]
dir = "{{dir}}/{name}-data"
[checkpoint]
interval = "1s"
keep = 2
dir = "s3://{bucket}/{name}/chk/"
endpoint_url = "{endpoint}"
region = "us-east-1"
{extra}
"#
        ),
    )
}

/// The published output under `prefix`: per component, in epoch order, concatenated.
/// Epoch numbers differ between an interrupted run and an uninterrupted one; their order
/// within a component does not.
async fn published_s3(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<u8> {
    let mut keys: Vec<((String, u64, String), String)> = Vec::new();
    for key in s3_keys(client, bucket, prefix).await {
        let (dir, file) = key.rsplit_once('/').unwrap();
        let stem = file
            .strip_prefix("part-")
            .unwrap()
            .strip_suffix(".jsonl")
            .unwrap();
        let (component, epoch) = stem.rsplit_once('-').unwrap();
        keys.push((
            (
                component.to_string(),
                epoch.parse().unwrap(),
                dir.to_string(),
            ),
            key,
        ));
    }
    keys.sort();
    let mut out = Vec::new();
    for (_, key) in keys {
        out.extend(s3_get(client, bucket, &key).await);
    }
    out
}

/// `records_in` of the newest checkpoint under `prefix` (0 if none).
async fn newest_records_s3(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> u64 {
    let Ok(page) = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
    else {
        return 0;
    };
    let newest = page
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter(|k| k.ends_with("/MANIFEST.json") && !k.contains("superseded/"))
        .max()
        .map(str::to_string);
    let Some(key) = newest else { return 0 };
    let Ok(obj) = client.get_object().bucket(bucket).key(&key).send().await else {
        return 0;
    };
    let bytes = obj.body.collect().await.unwrap().into_bytes();
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|m| m["records_in"].as_u64())
        .unwrap_or(0)
}

fn input(d: &Path, n: u64) {
    write_records(&d.join("input.jsonl"), n, KEYS);
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("input.jsonl"))
        .unwrap();
    writeln!(f, "{{\"id\":\"k1\",\"x\":NaN}}\nnot json").unwrap();
}

/// See the issue: SIGKILL three times at seeded random moments; before the second and third
/// restarts the whole local data directory (live RocksDB, staged output) is deleted. The
/// output in S3 is byte-identical to an uninterrupted run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_lost_disk_give_byte_identical_output() {
    let Some((endpoint, client)) = moto().await else {
        return;
    };
    let records: u64 = std::env::var("OSPREY_DURABLE_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(RECORDS);
    let b = new_bucket(&client, "durable").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    input(d, records);

    let reference = durable_job(d, "reference", &endpoint, &b, "[metrics]\nenabled = false");
    let started = std::time::Instant::now();
    let out = run(&["run", reference.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "uninterrupted run: {records} records in {:?}",
        started.elapsed()
    );
    let expected = published_s3(&client, &b, "reference/out/").await;
    assert_eq!(
        expected.iter().filter(|&&c| c == b'\n').count() as u64,
        records
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
    let crashed = durable_job(d, "crashed", &endpoint, &b, "[metrics]\nenabled = false");
    let data = d.join("crashed-data");
    let mut restored = 0;
    for round in 0..3u64 {
        if round > 0 {
            // A new machine: nothing of the data directory is left.
            std::fs::remove_dir_all(&data).unwrap();
        }
        let frac = 0.1
            + 0.2 * round as f64
            + 0.15 * ((mix(seed ^ round) >> 11) as f64 / (1u64 << 53) as f64);
        let target = (records as f64 * frac) as u64;
        let extra = std::time::Duration::from_millis(mix(seed ^ round ^ 0xff) % 1000);
        let mut child = osprey()
            .args(["run", crashed.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while newest_records_s3(&client, &b, "crashed/chk/").await < target
            && std::time::Instant::now() < deadline
            && child.try_wait().unwrap().is_none()
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(extra).await;
        let still_running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "round {round}: killed past {target} records (+{extra:?}); running: {still_running}"
        );
        assert!(still_running, "the run ended before the kill\n{log}");
        if log.contains("Restoring checkpoint") {
            restored += 1;
        }
    }
    std::fs::remove_dir_all(&data).unwrap();
    let out = run(&["run", crashed.to_str().unwrap()]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Restoring checkpoint"), "{log}");
    restored += 1;
    assert!(
        restored >= 3,
        "restarts resumed from a checkpoint ({restored})"
    );
    let got = published_s3(&client, &b, "crashed/out/").await;
    assert_eq!(got.len(), expected.len(), "same number of bytes");
    assert!(got == expected, "output differs from the uninterrupted run");
    let dlq = published_s3(&client, &b, "crashed/dlq/").await;
    assert!(!dlq.is_empty());
    assert!(dlq == published_s3(&client, &b, "reference/dlq/").await);
}

// ---------------------------------------------------------------------------------------
// S3 outages: a proxy in front of moto that passes, refuses or answers 500.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Pass,
    Refuse,
    Fail500,
}

/// A TCP proxy to `upstream` whose behaviour the test switches. Connections opened while
/// passing are cut as soon as the mode changes (the SDK keeps connections alive).
struct Proxy {
    addr: String,
    mode: Arc<std::sync::Mutex<Mode>>,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mode = Arc::new(std::sync::Mutex::new(Mode::Pass));
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let m = Arc::clone(&mode);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let mode = *m.lock().unwrap();
                match mode {
                    Mode::Refuse => drop(client),
                    Mode::Fail500 => {
                        std::thread::spawn(move || answer_500(client));
                    }
                    Mode::Pass => {
                        let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                            continue;
                        };
                        let m = Arc::clone(&m);
                        pipe(client, server, m);
                    }
                }
            }
        });
        Proxy { addr, mode }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

fn answer_500(mut client: std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 65536];
    let _ = client.set_read_timeout(Some(std::time::Duration::from_millis(200)));
    let _ = client.read(&mut buf);
    let body = "<?xml version=\"1.0\"?><Error><Code>InternalError</Code><Message>injected</Message></Error>";
    let _ = write!(
        client,
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn pipe(
    client: std::net::TcpStream,
    server: std::net::TcpStream,
    mode: Arc<std::sync::Mutex<Mode>>,
) {
    use std::io::{Read, Write};
    let pump = |mut from: std::net::TcpStream,
                mut to: std::net::TcpStream,
                mode: Arc<std::sync::Mutex<Mode>>| {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if *mode.lock().unwrap() != Mode::Pass || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    };
    pump(
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
        Arc::clone(&mode),
    );
    pump(server, client, mode);
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool, child: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !f() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended while waiting for {what}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outages_fail_checkpoints_that_are_retried_and_lose_nothing() {
    let Some((endpoint, client)) = moto().await else {
        return;
    };
    let b = new_bucket(&client, "outage").await;
    let proxy = Proxy::start(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let metrics = format!("127.0.0.1:{}", free_port());
    const COUNT: u64 = 300_000;
    let text = format!(
        r#"name = "outage"
[source]
type = "generator"
generator = "sensors"
count = {COUNT}
rate = 10000
[[operators]]
type = "stats"
[sink]
type = "s3"
bucket = "{b}"
prefix = "out/"
staging_dir = "{{dir}}/data/staging"
endpoint_url = "{endpoint}"
[state]
dir = "{{dir}}/data"
[checkpoint]
interval = "500ms"
dir = "s3://{b}/chk/"
endpoint_url = "{proxy}"
[metrics]
address = "{metrics}"
"#,
        proxy = proxy.endpoint()
    );
    let job = job(d, "outage.toml", &text);
    let mut child = osprey()
        .args(["run", job.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let failures = || scrape(&metrics, "osprey_checkpoint_failures_total").unwrap_or(-1.0);
    let records = || scrape(&metrics, "osprey_source_records_total").unwrap_or(0.0);
    let completed = || scrape(&metrics, "osprey_checkpoints_total").unwrap_or(0.0);
    wait_for("the first checkpoint", || completed() >= 1.0, &mut child).await;
    assert_eq!(failures(), 0.0);
    for (round, mode) in [Mode::Fail500, Mode::Refuse].into_iter().enumerate() {
        proxy.set(mode);
        let before = failures();
        wait_for(
            &format!("a failed checkpoint ({mode:?})"),
            || failures() > before,
            &mut child,
        )
        .await;
        // Records keep flowing while checkpoints fail.
        let read = records();
        wait_for(
            "records to keep flowing",
            || records() > read + 2000.0,
            &mut child,
        )
        .await;
        proxy.set(Mode::Pass);
        let done = completed();
        wait_for(
            "a checkpoint after the outage",
            || completed() > done,
            &mut child,
        )
        .await;
        eprintln!("round {round}: {mode:?} counted, recovered");
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing lost, nothing twice.
    let mut lines = 0;
    let mut seen = std::collections::HashSet::new();
    for key in s3_keys(&client, &b, "out/").await {
        for line in String::from_utf8(s3_get(&client, &b, &key).await)
            .unwrap()
            .lines()
        {
            lines += 1;
            seen.insert(line.to_string());
        }
    }
    assert_eq!(lines, COUNT);
    assert_eq!(seen.len() as u64, COUNT, "no record published twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_checkpoint_bucket_is_missing_does_not_start() {
    let Some((endpoint, _client)) = moto().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    input(d, 10);
    let job = durable_job(
        d,
        "nobucket",
        &endpoint,
        &bucket("absent"),
        "[metrics]\nenabled = false",
    );
    let out = run(&["run", job.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("checkpoint.dir") && err.contains("NoSuchBucket"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Issue 14, item 14: a rollback survives a crash before its first new checkpoint.

/// Runs a job to its end, rolls it back to an early checkpoint, crashes the rolled-back run
/// before its first checkpoint, restarts plainly: the restart resumes the rollback, and the
/// output is the uninterrupted run's.
async fn rollback_survives_a_crash(store: &str, endpoint: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_records(&d.join("input.jsonl"), 200_000, 500);
    let text = format!(
        r#"name = "rollback"
[source]
type = "file"
path = "{{dir}}/input.jsonl"
[record]
key = "id"
values = ["x"]
[runtime]
partitions = 2
batch_size = 256
[[operators]]
type = "stats"
[sink]
type = "file"
path = "{{dir}}/out"
[state]
dir = "{{dir}}/data"
[checkpoint]
interval = "20ms"
keep = 1000
dir = "{store}"
{endpoint}
[metrics]
enabled = false
"#
    );
    let store = store.replace("{dir}", &d.display().to_string());
    let job = job(d, "rollback.toml", &text);
    let out = run(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = published(&d.join("out"));
    let list = run(&[
        "checkpoints",
        "list",
        &store,
        "--endpoint-url",
        &moto_endpoint(),
    ]);
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    let epochs: Vec<u64> = listing
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(epochs.len() >= 3, "several checkpoints: {listing}");
    let back = epochs[1];
    let from = format!("{}/chk-{back:010}", store.trim_end_matches('/'));
    let crashed = osprey()
        .args(["run", job.to_str().unwrap(), "--from-checkpoint", &from])
        .env("OSPREY_CHECKPOINT_CRASH_AT", "all_files")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the rolled-back run crashed");
    let out = run(&["run", job.to_str().unwrap()]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let log = strip_ansi(&log);
    let restoring = log
        .lines()
        .find(|l| l.contains("Restoring checkpoint"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        restoring.contains(&format!("epoch={back}")),
        "the plain restart resumes the rollback to {back}: {restoring}"
    );
    assert!(published(&d.join("out")) == expected, "output differs");
}

/// The log without its colour escapes (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn moto_endpoint() -> String {
    std::env::var("OSPREY_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5010".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_14_rollback_survives_a_crash_local_store() {
    rollback_survives_a_crash("{dir}/data/checkpoints", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_14_rollback_survives_a_crash_s3_store() {
    let Some((endpoint, client)) = moto().await else {
        return;
    };
    let b = new_bucket(&client, "rollback").await;
    rollback_survives_a_crash(
        &format!("s3://{b}/chk/"),
        &format!("endpoint_url = \"{endpoint}\""),
    )
    .await;
}

/// Item 5's hard case: the machine dies after a checkpoint's manifest is in S3 but before its
/// sealed output is published, and its disk is lost with it. The restore fetches the sealed
/// output from the checkpoint and publishes it: nothing is lost, nothing doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_sealed_but_unpublished_survives_a_lost_machine() {
    let Some((endpoint, client)) = moto().await else {
        return;
    };
    let b = new_bucket(&client, "sealed").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    input(d, 60_000);
    let extra = "[metrics]\nenabled = false";
    let reference = durable_job(d, "reference", &endpoint, &b, extra);
    let out = run(&["run", reference.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = published_s3(&client, &b, "reference/out/").await;

    let crashed = durable_job(d, "crashed", &endpoint, &b, extra);
    // Die right after the first checkpoint's manifest, before its output is published.
    let out = osprey()
        .args(["run", crashed.to_str().unwrap()])
        .env("OSPREY_CHECKPOINT_CRASH_AT", "manifest:1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the run died after the manifest");
    assert!(
        s3_keys(&client, &b, "crashed/out/").await.is_empty(),
        "nothing was published before the crash"
    );
    std::fs::remove_dir_all(d.join("crashed-data")).unwrap();
    let out = run(&["run", crashed.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        published_s3(&client, &b, "crashed/out/").await == expected,
        "output differs from the uninterrupted run"
    );
}
