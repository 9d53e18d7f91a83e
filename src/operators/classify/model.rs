//! The ONNX model: loaded and optimised once for one image (`[1, 3, size, size]`), then run
//! image by image. The only file that names tract.
//!
//! Why not a symbolic batch dimension: tract runs a plan optimised with `N` left symbolic
//! through generic (≈ 10× slower) convolution paths, and plans specialised to a concrete
//! `N > 1` were no faster per image than `N = 1` for ResNet-18 and about 2× slower for
//! EfficientNet-Lite0 (depthwise convolutions), measured with a throwaway probe on our 2-core
//! machine while it was loaded with builds (docs/BENCHMARKS.md).
//! Batching still happens, a level up: a window's images are spread over the worker pool.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

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
        Self::load_with(&path.display().to_string(), input, size, || {
            tract_onnx::onnx().model_for_path(path)
        })
    }

    /// As [`Model::load`], from the bytes of an `.onnx` file (a model fetched from S3);
    /// `what` names it in errors. Models with external data files need a local path.
    pub fn load_bytes(bytes: &[u8], what: &str, input: &str, size: usize) -> Result<Model, String> {
        Self::load_with(what, input, size, || {
            tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(bytes))
        })
    }

    fn load_with(
        what: &str,
        input: &str,
        size: usize,
        read: impl FnOnce() -> TractResult<InferenceModel>,
    ) -> Result<Model, String> {
        let load = || -> TractResult<(Arc<TypedRunnableModel>, usize)> {
            let model = read()?
                .with_input_names([input])?
                .with_input_fact(0, f32::fact([1, 3, size, size]).into())?
                .into_optimized()?;
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
