//! Paired comparison of tract's default im2col rules against osprey's ([`ConvPlan`]), one
//! thread, one image per run, for both test models.
//!
//! Each round runs one image through each plan back to back, so a noisy machine (a shared
//! VM whose speed drifts by 30 % within minutes) slows both sides alike; the plan that goes
//! first alternates from round to round, because the second run of a pair tends to be a
//! little faster. The report gives each side's fastest and median run and how many rounds
//! osprey's plan won.
//! Run: `OSPREY_SHARED=/work/shared cargo bench --profile dev --bench classify_im2col`
//! (`ROUNDS=n` to change the 40 rounds). Without `$OSPREY_SHARED` it says why and exits.

use std::path::PathBuf;
use std::time::Instant;

use osprey::operators::classify::model::{ConvPlan, Model};

fn main() {
    let Some(root) = std::env::var_os("OSPREY_SHARED").map(PathBuf::from) else {
        eprintln!("OSPREY_SHARED is not set: nothing to compare.");
        return;
    };
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for (file, input) in [
        ("resnet18_random_init.onnx", "input"),
        (
            "efficientnet_lite0_imagenetnorm.onnx",
            "input_imagenet_norm",
        ),
    ] {
        let path = root.join("models").join(file);
        let load = |plan| Model::load_as(&path, input, 224, plan).unwrap();
        let plans = [load(ConvPlan::TractDefaults), load(ConvPlan::Tuned)];
        let data = vec![0.1f32; 3 * 224 * 224];
        let time = |m: &Model| {
            let t = Instant::now();
            std::hint::black_box(m.run(1, data.clone()).unwrap());
            t.elapsed().as_secs_f64() * 1e3
        };
        for m in &plans {
            for _ in 0..3 {
                time(m);
            }
        }
        let mut ms = [Vec::new(), Vec::new()];
        let mut wins = 0;
        for round in 0..rounds {
            let (a, b) = if round % 2 == 0 {
                let a = time(&plans[0]);
                (a, time(&plans[1]))
            } else {
                let b = time(&plans[1]);
                (time(&plans[0]), b)
            };
            wins += usize::from(b < a);
            ms[0].push(a);
            ms[1].push(b);
        }
        let stats = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[0], v[v.len() / 2])
        };
        let (a, b) = (stats(&mut ms[0]), stats(&mut ms[1]));
        println!(
            "{file}: tract defaults {:.1} ms fastest, {:.1} ms median | osprey {:.1} ms fastest, \
             {:.1} ms median ({:+.0} %) | osprey faster in {wins}/{rounds} rounds",
            a.0,
            a.1,
            b.0,
            b.1,
            100.0 * (b.1 / a.1 - 1.0)
        );
    }
}
