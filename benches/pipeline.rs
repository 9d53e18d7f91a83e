//! End-to-end pipeline throughput: file source of JSON records (~100 bytes, 10,000 keys) →
//! per-key running count/mean/stddev in RocksDB state → null sink, checkpoint every 10 s.
//!
//! Each iteration runs the whole job (open state, read 1,000,000 records, final checkpoint),
//! so the figure includes start-up and the last checkpoint. Read `thrpt` as records/s.
//! Run: `cargo bench --profile dev --bench pipeline`. Peak memory: `scripts/bench_pipeline.sh`.

use std::io::Write;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use osprey::config::JobConfig;
use osprey::topology::RunOptions;

const RECORDS: u64 = 1_000_000;
const KEYS: u64 = 10_000;

/// Writes the input once per target directory and reuses it.
fn input() -> PathBuf {
    let path = std::env::temp_dir().join(format!("osprey-bench-{RECORDS}-{KEYS}.jsonl"));
    if path.exists() {
        return path;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    for i in 0..RECORDS {
        let r = osprey::core::hash::splitmix64(i);
        let key = r % KEYS;
        let temp = 20.0 + (osprey::core::hash::splitmix64(r) % 100_000) as f64 / 1000.0;
        let status = ["OK", "WARNING", "ERROR"][(r % 3) as usize];
        writeln!(
            f,
            r#"{{"sensor_id":"sensor-{key:05}","ts":{},"temperature":{temp:.3},"status":"{status}","seq":{i}}}"#,
            1_704_067_200_000u64 + i
        )
        .unwrap();
    }
    f.flush().unwrap();
    drop(f);
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn job(input: &Path, data: &Path, partitions: usize) -> JobConfig {
    let text = format!(
        r#"name = "bench"
[source]
type = "file"
path = "{}"
[record]
key = "sensor_id"
values = ["temperature"]
[runtime]
partitions = {partitions}
[[operators]]
type = "stats"
[sink]
type = "null"
[state]
dir = "{}"
[checkpoint]
interval = "10s"
[metrics]
enabled = false
"#,
        input.display(),
        data.display()
    );
    JobConfig::from_toml(&text).expect("bench job is valid")
}

fn pipeline(c: &mut Criterion) {
    let input = input();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("osprey::pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));
    // Partitions: 1 runs the operator chain on one task; 2 uses both cores of the bench machine.
    for partitions in [1usize, 2] {
        group.bench_function(
            format!("file_json_stats_rocksdb_null/partitions={partitions}"),
            |b| {
                b.iter(|| {
                    let dir = tempfile::tempdir().unwrap();
                    let cfg = job(&input, dir.path(), partitions);
                    let summary = rt
                        .block_on(osprey::app::run_job(
                            cfg,
                            RunOptions::default(),
                            std::future::pending(),
                        ))
                        .unwrap();
                    assert_eq!(summary.records_in, RECORDS);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
