//! Random Cut Forest throughput: osprey's [`Forest`] next to `krcflib` 4.0.2 (the crates.io
//! republish of the AWS library's Rust port) in the same run, on one thread.
//!
//! Every iteration feeds one point of the AWS sample's sine wave (with its −17 drop) and does
//! what the operator does per record: score, then update. `thrpt` is therefore points per
//! second. Forests are warmed up first, so the numbers are for a forest past `output_after`
//! with a (nearly) full sample. Bars from issue 4: ≥ 45k points/s for `s1-t50-n628` and
//! ≥ 20k points/s for `s8-t100-n256`, goal 2× `krcflib`.
//!
//! The `1000keys` cases keep one forest per key and feed the keys round-robin, so each point
//! meets a forest that has left the CPU caches since its previous point: that is the keyed
//! operator's worst case and it is bound by memory latency rather than arithmetic.
//!
//! Each case's setup prints osprey's `Forest::memory_bytes` and checkpoint size per forest
//! (and, for 1,000 keys, the RSS growth per forest, which matches `memory_bytes`), and
//! `krcflib`'s own size estimate. An RSS comparison with `krcflib` needs a fresh process each:
//! its many small allocations reuse heap memory freed by the previous case.
//!
//! Run alone with `cargo bench --profile dev --bench operators -- rcf`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use osprey::detectors::rcf::{Forest, ForestConfig};
use rcflib::rcf::{RCF, RCFBuilder, RCFOptionsBuilder};

/// One benchmark case: a forest shape and how many keys (forests) share the stream.
struct Param {
    /// Case name in the report.
    slug: &'static str,
    /// Shingle size; always one input field.
    shingle: usize,
    /// Trees per forest.
    trees: usize,
    /// Sample size per tree.
    sample: usize,
    /// Forests, fed round-robin.
    keys: usize,
    /// Points fed to each forest before measuring.
    warm: u64,
}

const PARAMS: &[Param] = &[
    // The AWS sample's setting: no shingling, 50 trees, sample 628.
    Param {
        slug: "s1-t50-n628",
        shingle: 1,
        trees: 50,
        sample: 628,
        keys: 1,
        warm: 5_000,
    },
    // Shingled: shingle 8, 100 trees, sample 256.
    Param {
        slug: "s8-t100-n256",
        shingle: 8,
        trees: 100,
        sample: 256,
        keys: 1,
        warm: 5_000,
    },
    // Keyed: 1,000 forests with the operator's defaults (shingle 1, 50 trees, sample 256).
    Param {
        slug: "s1-t50-n256-1000keys",
        shingle: 1,
        trees: 50,
        sample: 256,
        keys: 1_000,
        warm: 600,
    },
];

/// The AWS sample's generator: `rad = (t / 100) % 360`, `10·sin(rad) + 10`, −17 while
/// `2.4 < rad < 2.6`.
fn sine(t: u64) -> f64 {
    let rad = (t as f64 / 100.0) % 360.0;
    if rad > 2.4 && rad < 2.6 {
        -17.0
    } else {
        10.0 * rad.sin() + 10.0
    }
}

/// Resident set size of this process in bytes (Linux), for memory-per-forest reports.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// RSS growth per forest, when there are enough forests for it to mean something.
fn per_forest(before: Option<u64>, after: Option<u64>, keys: usize) -> String {
    match (before, after) {
        (Some(b), Some(a)) if keys >= 100 => {
            format!("{} bytes", a.saturating_sub(b) / keys as u64)
        }
        _ => "n/a".to_owned(),
    }
}

fn osprey_forests(p: &Param) -> Vec<Forest> {
    (0..p.keys)
        .map(|key| {
            let mut cfg = ForestConfig::new(1, p.shingle, p.trees, p.sample);
            cfg.seed = key as u64;
            let mut f = Forest::new(cfg).expect("valid forest config");
            for t in 0..p.warm {
                // Keys get different phases so that their forests differ.
                let _ = f.process(&[sine(t + 37 * key as u64)]);
            }
            f
        })
        .collect()
}

fn krcflib_forests(p: &Param) -> Vec<Box<dyn RCF + Send + Sync>> {
    (0..p.keys)
        .map(|key| {
            let cfg = ForestConfig::new(1, p.shingle, p.trees, p.sample);
            let mut f = RCFBuilder::new(1, p.shingle)
                .tree_capacity(p.sample)
                .number_of_trees(p.trees)
                .random_seed(key as u64)
                .time_decay(cfg.time_decay)
                .output_after(cfg.output_after)
                .build_default()
                .expect("valid krcflib config");
            for t in 0..p.warm {
                let x = [sine(t + 37 * key as u64) as f32];
                f.update(&x, 0).expect("krcflib update");
            }
            f
        })
        .collect()
}

fn forest(c: &mut Criterion) {
    let mut group = c.benchmark_group("osprey::operators::rcf::Forest");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for p in PARAMS {
        let before = rss_bytes();
        let mut forests = osprey_forests(p);
        let after = rss_bytes();
        let mut checkpoint = Vec::new();
        forests[0].encode(&mut checkpoint);
        eprintln!(
            "rcf {}: osprey memory_bytes {} per forest, RSS {} per forest, checkpoint {} bytes",
            p.slug,
            forests[0].memory_bytes(),
            per_forest(before, after, p.keys),
            checkpoint.len()
        );
        let mut t = p.warm;
        let mut key = 0;
        group.bench_function(BenchmarkId::new("osprey", p.slug), |b| {
            b.iter(|| {
                let x = sine(t + 37 * key as u64);
                let score = forests[key].process(&[x]).ok().flatten().map(|s| s.score);
                key += 1;
                if key == forests.len() {
                    key = 0;
                    t += 1;
                }
                black_box(score)
            })
        });
        drop(forests);

        let mut forests = krcflib_forests(p);
        eprintln!(
            "rcf {}: krcflib size() {} per forest",
            p.slug,
            forests[0].size()
        );
        let mut t = p.warm;
        let mut key = 0;
        group.bench_function(BenchmarkId::new("krcflib", p.slug), |b| {
            b.iter(|| {
                let x = [sine(t + 37 * key as u64) as f32];
                let f = &mut forests[key];
                let score = f.score(&x).expect("krcflib score");
                f.update(&x, 0).expect("krcflib update");
                key += 1;
                if key == forests.len() {
                    key = 0;
                    t += 1;
                }
                black_box(score)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, forest);
