//! Checkpoint cost, local directory against S3 (moto), for a large RocksDB state with a small
//! fraction of the keys updated between checkpoints.
//!
//! Builds a state of `OSPREY_BENCH_KEYS` keys (default 2,200,000) × `OSPREY_BENCH_VALUE_BYTES`
//! (default 480, incompressible) ≈ 1 GB of SSTs, then runs `OSPREY_BENCH_ROUNDS` (default 6)
//! rounds of "update 1 % of the keys, checkpoint" against each store, and finally restores
//! the newest S3 checkpoint into an empty directory. Prints one line per checkpoint: bytes
//! sent (the goal is ≤ 3 % of the state, the bar ≤ 10 %), files sent/reused, and seconds.
//! Needs moto at `OSPREY_S3_ENDPOINT` (`. scripts/services.sh`).
//! Run: `cargo bench --profile dev --features integration-tests --bench checkpoint_store`.

use std::time::Instant;

use osprey::state::checkpoint::{FORMAT_VERSION, Manifest};
use osprey::state::store::{self, CheckpointStore, StoreSpec};
use osprey::state::{RocksBackend, StateBackend, WriteBatch};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn manifest(epoch: u64) -> Manifest {
    Manifest {
        format: FORMAT_VERSION,
        osprey_version: "bench".into(),
        job: "bench".into(),
        fingerprint: "bench".into(),
        epoch,
        created_ms: 0,
        backend: "rocksdb".into(),
        source: serde_json::Value::Null,
        commits: vec![],
        records_in: 0,
        state_bytes: 0,
        duration_ms: 0,
        files: vec![],
        outputs: vec![],
        run_id: String::new(),
        checksum: String::new(),
    }
}

fn write(db: &RocksBackend, table: usize, keys: impl Iterator<Item = u64>, round: u64, len: usize) {
    let mut batch = WriteBatch::default();
    for k in keys {
        let mut value = Vec::with_capacity(len);
        let mut x = osprey::core::hash::splitmix64(k ^ (round << 40));
        while value.len() < len {
            x = osprey::core::hash::splitmix64(x);
            value.extend_from_slice(&x.to_le_bytes());
        }
        value.truncate(len);
        batch
            .ops
            .push((table, format!("key{k:010}").into_bytes(), Some(value)));
        if batch.len() >= 50_000 {
            db.write(std::mem::take(&mut batch)).unwrap();
        }
    }
    db.write(batch).unwrap();
}

async fn checkpoint(
    store: &dyn CheckpointStore,
    db: &RocksBackend,
    epoch: u64,
) -> (store::SaveStats, f64, u64) {
    let started = Instant::now();
    let dir = store.prepare(epoch).await.unwrap();
    db.checkpoint(&dir).unwrap();
    let size = osprey::state::checkpoint::dir_size(&dir);
    let stats = store.save(&dir, manifest(epoch)).await.unwrap();
    store.retain(2).await.unwrap();
    (stats, started.elapsed().as_secs_f64(), size)
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches`/`--list`: nothing to enumerate.
    }
    let keys = env("OSPREY_BENCH_KEYS", 2_200_000);
    let len = env("OSPREY_BENCH_VALUE_BYTES", 480) as usize;
    let rounds = env("OSPREY_BENCH_ROUNDS", 6);
    let endpoint =
        std::env::var("OSPREY_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5010".into());
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();

    let started = Instant::now();
    let db = RocksBackend::open(&d.join("live"), None).unwrap();
    let table = db.open_table("bench.values").unwrap();
    write(&db, table, 0..keys, 0, len);
    println!(
        "state: {keys} keys x {len} B written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let bucket = format!("osprey-bench-{}", std::process::id());
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "b", "b", None, None, "bench",
        ))
        .endpoint_url(&endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let local: std::sync::Arc<dyn CheckpointStore> = store::open(
        &StoreSpec {
            dir: d.join("local-checkpoints"),
            ..StoreSpec::default()
        },
        &d.join("scratch-local"),
    )
    .await
    .unwrap();
    let s3_spec = StoreSpec {
        dir: format!("s3://{bucket}/bench/").into(),
        endpoint_url: Some(endpoint.clone()),
        region: Some("us-east-1".into()),
    };
    let s3 = store::open(&s3_spec, &d.join("scratch-s3")).await.unwrap();

    println!("| round | store | state MB | sent MB | sent % | files sent / reused | seconds |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut epoch = 0;
    for round in 0..=rounds {
        if round > 0 {
            // 1 % of the keys, spread over the key space.
            write(
                &db,
                table,
                (0..keys).step_by(100).map(|k| k + round % 100),
                round,
                len,
            );
        }
        for (name, store) in [("local", &local), ("s3", &s3)] {
            epoch += 1;
            let (stats, secs, size) = checkpoint(store.as_ref(), &db, epoch).await;
            println!(
                "| {round} | {name} | {:.0} | {:.1} | {:.2} | {} / {} | {secs:.2} |",
                mb(size),
                mb(stats.bytes_uploaded),
                100.0 * stats.bytes_uploaded as f64 / size.max(1) as f64,
                stats.files_uploaded,
                stats.files_reused
            );
        }
    }
    let fresh = store::open(&s3_spec, &d.join("scratch-fresh"))
        .await
        .unwrap();
    let started = Instant::now();
    let (dir, _, fetched) = fresh.fetch(epoch, &d.join("restore")).await.unwrap();
    let download = started.elapsed().as_secs_f64();
    let opened = RocksBackend::open(&d.join("live-restored"), Some(&dir)).unwrap();
    println!(
        "restore from S3: {:.0} MB in {} files downloaded in {download:.1} s, opened in {:.1} s total",
        mb(fetched.bytes),
        fetched.files,
        started.elapsed().as_secs_f64()
    );
    drop(opened);
}
