//! Per-stage costs of image classification: decode + RGB, resize/crop/normalise, and tract
//! inference on ready tensors (one image per run, as the operator runs it) for both test
//! models, one thread.
//!
//! Read `thrpt` as images/s of that stage alone. Needs `$OSPREY_SHARED` (models and photos);
//! without it the bench prints why and measures nothing.
//! Run: `OSPREY_SHARED=/work/shared cargo bench --profile dev --bench classify`.
//! End-to-end images/s (read, decode, preprocess, infer, write): `scripts/bench_classify.sh`.

use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use osprey::operators::classify::model::Model;
use osprey::operators::classify::preprocess::Preprocess;

fn shared() -> Option<PathBuf> {
    std::env::var_os("OSPREY_SHARED").map(PathBuf::from)
}

fn pre() -> Preprocess {
    Preprocess {
        resize: 256,
        size: 224,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        max_bytes: 50 << 20,
        max_pixels: 40_000_000,
    }
}

/// The first 16 sample photos (sizes vary from ~15 KB to ~700 KB).
fn photos(root: &std::path::Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join("images/imagenet-sample"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    paths.sort();
    paths
        .iter()
        .take(16)
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

fn preprocess(c: &mut Criterion) {
    let Some(root) = shared() else {
        eprintln!("OSPREY_SHARED is not set: skipping the classify benches.");
        return;
    };
    let imgs = photos(&root);
    let p = pre();
    let mut g = c.benchmark_group("osprey::operators::classify::preprocess");
    g.throughput(Throughput::Elements(imgs.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            for i in &imgs {
                std::hint::black_box(p.decode(i).unwrap());
            }
        })
    });
    let decoded: Vec<_> = imgs.iter().map(|i| p.decode(i).unwrap()).collect();
    let mut out = vec![0.0; p.len()];
    g.bench_function("resize_crop_normalise", |b| {
        b.iter(|| {
            for d in &decoded {
                p.tensor_into(d, &mut out);
            }
            std::hint::black_box(&out);
        })
    });
    g.finish();
}

/// One model case.
struct Param {
    /// File under `$OSPREY_SHARED/models`.
    file: &'static str,
    /// Its input name.
    input: &'static str,
    /// Short name for the report.
    slug: &'static str,
}

fn inference(c: &mut Criterion) {
    let Some(root) = shared() else { return };
    let params = [
        Param {
            file: "efficientnet_lite0_imagenetnorm.onnx",
            input: "input_imagenet_norm",
            slug: "efficientnet_lite0",
        },
        Param {
            file: "resnet18_random_init.onnx",
            input: "input",
            slug: "resnet18",
        },
    ];
    let mut g = c.benchmark_group("osprey::operators::classify::model");
    g.sample_size(10);
    for p in &params {
        let model = Model::load(&root.join("models").join(p.file), p.input, 224).unwrap();
        // One image per run, as the operator runs it (see `Model`'s docs for why).
        g.throughput(Throughput::Elements(1));
        let data = vec![0.1f32; 3 * 224 * 224];
        g.bench_with_input(BenchmarkId::new(p.slug, 1), &1, |b, &n| {
            b.iter(|| std::hint::black_box(model.run(n, data.clone()).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, preprocess, inference);
criterion_main!(benches);
