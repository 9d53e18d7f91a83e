//! The ONNX model: loaded and optimised once for one image (`[1, 3, size, size]`), then run
//! image by image. The only file that names tract.
//!
//! Why not a symbolic batch dimension: tract runs a plan optimised with `N` left symbolic
//! through generic (≈ 10× slower) convolution paths, and plans specialised to a concrete
//! `N > 1` were no faster per image than `N = 1` for ResNet-18 and about 2× slower for
//! EfficientNet-Lite0 (depthwise convolutions), measured with a throwaway probe on our 2-core
//! machine while it was loaded with builds (docs/BENCHMARKS.md).
//! Batching still happens, a level up: a window's images are spread over the worker pool.
//!
//! How convolutions become matrix products: tract gathers a 3 × 3 convolution's input
//! patches lazily, panel by panel, by default. For the mid-sized ones (up to a few MB of
//! patches: ResNet-18's stages 2 to 4) gathering them once, eagerly, is faster here: ResNet-18
//! ran 17-19 % faster per image, EfficientNet-Lite0 the same (paired runs of
//! `benches/classify_im2col.rs`, docs/BENCHMARKS.md). [`ConvPlan::Tuned`] sets the two tract
//! knobs that say so while the model is optimised; a `TRACT_*` variable of the same name in
//! the environment still wins.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::knobs::KnobScope;

/// Which im2col rules tract applies while it optimises the model (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvPlan {
    /// osprey's: eager im2col for convolutions up to [`EAGER_IM2COL_MAX_BYTES`] of patches.
    #[default]
    Tuned,
    /// tract's own defaults (for comparison).
    TractDefaults,
}

/// Largest im2col scratch, in bytes, that [`ConvPlan::Tuned`] builds eagerly. Tract's default
/// is 4 MiB, but only for kernels smaller than 3 × 3; with 3 × 3 included, ResNet-18's
/// 3.6 MB stage-2 patches were faster gathered lazily and its 1.8 MB and 0.9 MB ones eagerly.
pub const EAGER_IM2COL_MAX_BYTES: usize = 3_000_000;

/// The tract knobs [`ConvPlan::Tuned`] sets, as (name, value).
fn tuned_knobs() -> Vec<(&'static str, String)> {
    [
        // Kernel volume from which im2col is always lazy: 10 leaves 3 × 3 kernels to the
        // size rule below (tract's default, 6, makes them lazy whatever their size).
        ("TRACT_LAZY_IM2COL_MIN_KERNEL", "10".to_string()),
        (
            "TRACT_LAZY_IM2COL_MAX_EAGER_BYTES",
            EAGER_IM2COL_MAX_BYTES.to_string(),
        ),
    ]
    .into_iter()
    // tract ranks a scope above the environment; let an operator's variable win.
    .filter(|(name, _)| std::env::var_os(name).is_none())
    .collect()
}

/// A loaded, optimised, runnable classifier.
pub struct Model {
    plan: Arc<TypedRunnableModel>,
    size: usize,
    classes: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("size", &self.size)
            .field("classes", &self.classes)
            .finish()
    }
}

impl Model {
    /// Loads `path`, pins input `input` to `[1, 3, size, size]` f32,
    /// optimises, and checks that the output is `[1, classes]`.
    pub fn load(path: &Path, input: &str, size: usize) -> Result<Model, String> {
        Self::load_as(path, input, size, ConvPlan::Tuned)
    }

    /// As [`Model::load`], with the im2col rules of `plan`.
    pub fn load_as(path: &Path, input: &str, size: usize, plan: ConvPlan) -> Result<Model, String> {
        Self::load_with(&path.display().to_string(), input, size, plan, || {
            tract_onnx::onnx().model_for_path(path)
        })
    }

    /// As [`Model::load`], from the bytes of an `.onnx` file (a model fetched from S3);
    /// `what` names it in errors. Models with external data files need a local path.
    pub fn load_bytes(bytes: &[u8], what: &str, input: &str, size: usize) -> Result<Model, String> {
        Self::load_with(what, input, size, ConvPlan::Tuned, || {
            tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(bytes))
        })
    }

    fn load_with(
        what: &str,
        input: &str,
        size: usize,
        plan: ConvPlan,
        read: impl FnOnce() -> TractResult<InferenceModel>,
    ) -> Result<Model, String> {
        let knobs = match plan {
            ConvPlan::Tuned => tuned_knobs(),
            ConvPlan::TractDefaults => Vec::new(),
        };
        let load = || -> TractResult<(Arc<TypedRunnableModel>, usize)> {
            let model = read()?
                .with_input_names([input])?
                .with_input_fact(0, f32::fact([1, 3, size, size]).into())?;
            // Knobs are read while the model is optimised, on this thread.
            let scope = KnobScope::new(knobs.iter().map(|(k, v)| (*k, v.as_str())))?;
            let model = scope.enter(|| model.into_optimized())?;
            let out = model.output_fact(0)?.clone();
            let classes = out
                .shape
                .iter()
                .last()
                .and_then(|d| d.to_i64().ok())
                .ok_or_else(|| {
                    TractError::msg(format!(
                        "output shape {:?} has no fixed class axis",
                        out.shape
                    ))
                })?;
            Ok((model.into_runnable()?, classes as usize))
        };
        let (plan, classes) = load().map_err(|e| format!("{what}: {e:#}"))?;
        Ok(Model {
            plan,
            size,
            classes,
        })
    }

    /// Number of classes (the output's last dimension).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Runs `n` images (`data` is `n × 3 × size × size` floats, NCHW) and returns the logits,
    /// `n × classes`, row-major.
    pub fn run(&self, n: usize, data: Vec<f32>) -> Result<Vec<f32>, String> {
        let per = 3 * self.size * self.size;
        if data.len() != n * per {
            return Err(format!("{} floats for {n} images", data.len()));
        }
        let mut logits = Vec::with_capacity(n * self.classes);
        for image in data.chunks_exact(per) {
            let input =
                tract_ndarray::Array4::from_shape_vec((1, 3, self.size, self.size), image.to_vec())
                    .map_err(|e| e.to_string())?;
            let out = self
                .plan
                .run(tvec!(Tensor::from(input).into()))
                .map_err(|e| format!("{e:#}"))?;
            let view = out[0]
                .to_plain_array_view::<f32>()
                .map_err(|e| format!("{e:#}"))?;
            if view.len() != self.classes {
                return Err(format!(
                    "output has {} values, expected {}",
                    view.len(),
                    self.classes
                ));
            }
            logits.extend(view.iter().copied());
        }
        Ok(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `$OSPREY_SHARED/models`, or `None` with a message; under `CI=true` an unset variable
    /// fails the test.
    fn models() -> Option<std::path::PathBuf> {
        match std::env::var_os("OSPREY_SHARED") {
            Some(s) => Some(std::path::PathBuf::from(s).join("models")),
            None => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "OSPREY_SHARED must be set when CI=true"
                );
                println!("OSPREY_SHARED is not set: skipping this model test");
                None
            }
        }
    }

    /// Eager and lazy im2col gather the same patches: both plans give the same logits, up to
    /// the order of float additions.
    #[test]
    fn tuned_plan_matches_tract_defaults() {
        let Some(dir) = models() else { return };
        // A fixed pseudo-random input in about [-2, 2], as a normalised photo would be.
        let mut x = 0x2545_f491_u32;
        let data: Vec<f32> = (0..3 * 224 * 224)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 4.0 - 2.0
            })
            .collect();
        for (file, input) in [
            ("resnet18_random_init.onnx", "input"),
            (
                "efficientnet_lite0_imagenetnorm.onnx",
                "input_imagenet_norm",
            ),
        ] {
            let run = |plan| {
                Model::load_as(&dir.join(file), input, 224, plan)
                    .unwrap()
                    .run(1, data.clone())
                    .unwrap()
            };
            let (tract, tuned) = (run(ConvPlan::TractDefaults), run(ConvPlan::Tuned));
            let scale = tract.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = tract
                .iter()
                .zip(&tuned)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-4 * scale.max(1.0),
                "{file}: logits differ by {worst} (largest logit {scale})"
            );
            let argmax = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j]));
            assert_eq!(argmax(&tract), argmax(&tuned), "{file}");
        }
    }
}
