//! Throughput of the left-discord detector's algorithms (no runtime, no state backend).
//!
//! Each case reports points per second (`Throughput::Elements`): one element is one point
//! pushed and scored.
//!
//! - `LeftMatrixProfile/push/*`: exact streaming, one `push` per point, history already full
//!   (steady state). Compare with stumpy's `stumpi` update rate (`scripts/compare_stumpy.py`).
//! - `LeftMatrixProfile/push_slice/*`: the same points handed over 64 at a time, as the operator
//!   does with one key's values of a batch; results are bit-identical to `push`, but up to
//!   eight points share a pass over the history, so large histories stop being bound by memory
//!   bandwidth.
//! - `Damp/machining`: DAMP mode over DAMP's "Machining" series (44,056 points, m = 16, the
//!   first 4,894 points as training prefix), as in the paper; needs `$OSPREY_SHARED` and is
//!   skipped with a message without it.
//! - `left_profile/100k`: the batch helper on a 100k-point random walk, m = 100 (the whole
//!   series per iteration: divide 100,000 by the time).
//!
//! Run: `cargo bench --profile dev --bench operators -- matrix_profile`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use osprey::detectors::matrix_profile::{
    Damp, DampConfig, Discord, Kernel, LeftMatrixProfile, left_profile,
};
use std::hint::black_box;
use std::time::Duration;

/// One exact-streaming case.
struct Param {
    /// Bench id suffix.
    slug: &'static str,
    /// History in points: the per-point cost is linear in it.
    history: usize,
    /// Subsequence length.
    m: usize,
    /// Forced kernel (`None`: the CPU's best), to show the SIMD gain.
    kernel: Option<Kernel>,
}

const CASES: &[Param] = &[
    Param {
        slug: "h10k_m100",
        history: 10_000,
        m: 100,
        kernel: None,
    },
    Param {
        slug: "h100k_m100",
        history: 100_000,
        m: 100,
        kernel: None,
    },
    Param {
        slug: "h10k_m100_scalar",
        history: 10_000,
        m: 100,
        kernel: Some(Kernel::Scalar),
    },
];

/// Points scored per iteration in the streaming cases.
const CHUNK: usize = 2_048;

/// A deterministic random walk (xorshift64*), so runs compare across machines and with the
/// Python side, which generates the same series.
fn random_walk(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.max(1);
    let mut x = 0.0;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            x += u - 0.5;
            x
        })
        .collect()
}

fn exact_streaming(c: &mut Criterion) {
    let mut group = c.benchmark_group("osprey::operators::matrix_profile::LeftMatrixProfile");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    for p in CASES {
        let kernel = p.kernel.unwrap_or_else(Kernel::detect);
        let Ok(mut mp) = LeftMatrixProfile::with_kernel(p.m, p.history, kernel) else {
            continue;
        };
        let data = random_walk(p.history + CHUNK, 7);
        let mut outs: Vec<Option<Discord>> = Vec::with_capacity(p.history + CHUNK);
        mp.push_slice(&data[..p.history], &mut outs);
        let chunk = &data[p.history..];
        group.throughput(Throughput::Elements(CHUNK as u64));
        let mut one = mp.clone();
        group.bench_function(BenchmarkId::new("push", p.slug), |b| {
            b.iter(|| {
                for &x in chunk {
                    black_box(one.push(x));
                }
            })
        });
        group.bench_function(BenchmarkId::new("push_slice", p.slug), |b| {
            b.iter(|| {
                for xs in chunk.chunks(64) {
                    outs.clear();
                    mp.push_slice(xs, &mut outs);
                    black_box(&outs);
                }
            })
        });
    }
    group.finish();
}

fn damp_machining(c: &mut Criterion) {
    let Some(series) = shared_series("damp/2-machining.in") else {
        println!("OSPREY_SHARED is not set: skipping the DAMP Machining bench");
        return;
    };
    let mut group = c.benchmark_group("osprey::operators::matrix_profile::Damp");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(series.len() as u64));
    // DAMP's split point for this series is 4895 (1-based): subsequences before it train.
    let split = 4894;
    group.bench_function("machining", |b| {
        b.iter(|| {
            let mut d = Damp::new(DampConfig::new(16, series.len())).expect("valid config");
            for (k, &x) in series.iter().enumerate() {
                if k + 1 >= 16 && k + 1 - 16 >= split {
                    black_box(d.push(x, None));
                } else {
                    d.push_unscored(x);
                }
            }
            black_box(d.best_so_far())
        })
    });
    group.finish();
}

fn batch_profile(c: &mut Criterion) {
    let mut group = c.benchmark_group("osprey::operators::matrix_profile::left_profile");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let data = random_walk(100_000, 11);
    group.throughput(Throughput::Elements(data.len() as u64));
    group.bench_function("100k_m100", |b| {
        b.iter(|| black_box(left_profile(&data, 100)))
    });
    group.finish();
}

/// A one-value-per-line file under `$OSPREY_SHARED/datasets`, or `None` without the variable.
fn shared_series(rel: &str) -> Option<Vec<f64>> {
    let root = std::env::var_os("OSPREY_SHARED")?;
    let path = std::path::Path::new(&root).join("datasets").join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

criterion_group!(benches, exact_streaming, damp_machining, batch_profile);
