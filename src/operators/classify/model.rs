//! The ONNX model: loaded and optimised once with a symbolic batch dimension `N`, then run on
//! batches of any size. The only file that names tract.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::prelude::*;

/// A loaded, optimised, runnable classifier.
///
/// The model is analysed and decluttered once with a symbolic batch `N`. tract can run a
/// plan optimised with `N` left symbolic, but its convolutions then take generic paths
/// (≈ 10× slower here), so each batch is split into power-of-two sub-batches
/// (13 = 8 + 4 + 1) and each size gets a plan specialised from the symbolic model and
/// optimised on first use, then cached: at most `log2(max_batch) + 1` plans.
pub struct Model {
    typed: TypedModel,
    batch: Symbol,
    plans: std::sync::Mutex<std::collections::HashMap<usize, Arc<TypedRunnableModel>>>,
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
    /// Loads `path`, pins input `input` to `[N, 3, size, size]` f32 with a symbolic `N`,
    /// optimises, and checks that the output is `[N, classes]`.
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
        let load = || -> TractResult<(TypedModel, Symbol, usize)> {
            let model = read()?.with_input_names([input])?;
            let n = model.sym("N");
            let model = model
                .with_input_fact(
                    0,
                    f32::fact([n.to_dim(), 3.to_dim(), size.to_dim(), size.to_dim()]).into(),
                )?
                .into_typed()?
                .into_decluttered()?;
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
            Ok((model, n, classes as usize))
        };
        let (typed, batch, classes) = load().map_err(|e| format!("{what}: {e:#}"))?;
        Ok(Model {
            typed,
            batch,
            plans: Default::default(),
            size,
            classes,
        })
    }

    /// The plan for batches of exactly `n` (built on first use).
    fn plan(&self, n: usize) -> Result<Arc<TypedRunnableModel>, String> {
        if let Some(p) = self.plans.lock().unwrap_or_else(|p| p.into_inner()).get(&n) {
            return Ok(Arc::clone(p));
        }
        let subs = std::collections::HashMap::from([(self.batch.clone(), TDim::from(n as i64))]);
        let plan = self
            .typed
            .set_symbols(&subs)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| format!("specialising the model for batch {n}: {e:#}"))?;
        self.plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(n, Arc::clone(&plan));
        Ok(plan)
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
        let mut done = 0;
        while done < n {
            // Largest power of two that fits what is left.
            let m = 1usize << (usize::BITS - 1 - (n - done).leading_zeros());
            let input = tract_ndarray::Array4::from_shape_vec(
                (m, 3, self.size, self.size),
                data[done * per..(done + m) * per].to_vec(),
            )
            .map_err(|e| e.to_string())?;
            let out = self
                .plan(m)?
                .run(tvec!(Tensor::from(input).into()))
                .map_err(|e| format!("{e:#}"))?;
            let view = out[0]
                .to_plain_array_view::<f32>()
                .map_err(|e| format!("{e:#}"))?;
            if view.len() != m * self.classes {
                return Err(format!(
                    "output has {} values, expected {m} × {}",
                    view.len(),
                    self.classes
                ));
            }
            logits.extend(view.iter().copied());
            done += m;
        }
        Ok(logits)
    }
}
