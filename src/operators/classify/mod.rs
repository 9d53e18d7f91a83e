//! `type = "classify_image"`: classifies the images that object sources (`s3`, `dir`) deliver,
//! in processing-time tumbling windows, with an ONNX model run by tract.
//!
//! - **Windows.** Records are collected per processing-time tumbling window (`window`,
//!   default 60 s) and classified as one batch when the window ends, or as soon as
//!   `max_batch` are pending. Every result carries its window's bounds.
//! - **Checkpoints.** On a barrier the pending images are classified before the partition
//!   acknowledges ([`Operator::on_barrier`]): no image is in flight across a checkpoint, so
//!   the operator has no state to persist and a restore replays nothing twice. The price: a
//!   checkpoint cuts the current window's batch short (its results still carry the window's
//!   bounds).
//! - **Work.** Decoding, preprocessing and inference run on the blocking pool, at most
//!   `workers` batches at a time across all partitions (a [`Semaphore`]), so the async
//!   runtime never stalls. A batch is split into one chunk per worker.
//! - **Bad images** (empty, corrupt, not an image, over the byte or pixel limit) are
//!   dead-lettered with their reason; the rest of the batch is classified.
//!
//! Output fields: `window_start_ms`, `window_end_ms`, `labels` (top-k
//! `{index, label, probability}`), `model`, `latency_ms` (from the object's LastModified to
//! the result), after the source's `bucket`, `etag`, `size`, `last_modified_ms`.

pub mod config;
pub mod model;
pub mod preprocess;
pub mod resize;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Semaphore;

use self::config::{ClassifyConfig, Location, ModelConfig};
use self::model::Model;
use self::preprocess::{Preprocess, Rejected};
use super::{Barrier, BuildContext, Context, Operator};
use crate::core::{Batch, Field, Record};
use crate::{Error, Result};

/// Images classified.
pub const IMAGES: &str = "osprey_classify_images_total";
/// Images that could not be classified, by reason (each is also dead-lettered).
pub const FAILURES: &str = "osprey_classify_failures_total";
/// Images per inference batch.
pub const BATCH_SIZE: &str = "osprey_classify_batch_size";
/// Time to decode, preprocess and classify one image.
pub const INFERENCE_SECONDS: &str = "osprey_classify_inference_seconds";
/// Time from the object's LastModified to its result.
pub const END_TO_END_SECONDS: &str = "osprey_classify_end_to_end_seconds";

/// A model shared by every partition (and every operator naming the same file).
struct Shared {
    model: Model,
    labels: Vec<Arc<str>>,
    workers: Arc<Semaphore>,
}

/// The model of `cfg`, loaded once per job run and shared by every partition (and every
/// operator naming the same model file, input and size).
fn load_shared(cfg: &ClassifyConfig, name: &str, cx: &BuildContext) -> Result<Arc<Shared>> {
    let m = &cfg.model;
    let key = format!("{}|{}|{}", m.path.display(), m.input, m.input_size);
    cx.resources.get_or_try_init(&key, || load(cfg, name))
}

fn load(cfg: &ClassifyConfig, name: &str) -> Result<Shared> {
    let m = &cfg.model;
    let fail = |message: String| Error::Operator {
        operator: name.to_string(),
        message,
    };
    let size = m.input_size as usize;
    let model = match Location::of(&m.path).map_err(&fail)? {
        Location::File(p) => Model::load(p, &m.input, size),
        Location::S3 { bucket, key } => fetch(m, bucket, key)
            .and_then(|bytes| Model::load_bytes(&bytes, &m.path.to_string_lossy(), &m.input, size)),
    }
    .map_err(|e| fail(format!("loading model {e}")))?;
    let labels: Vec<Arc<str>> = match &m.labels {
        Some(p) => match Location::of(p).map_err(&fail)? {
            Location::File(p) => {
                std::fs::read_to_string(p).map_err(|e| Error::io("reading labels", p, e))?
            }
            Location::S3 { bucket, key } => {
                String::from_utf8(fetch(m, bucket, key).map_err(&fail)?)
                    .map_err(|_| fail(format!("{}: labels are not UTF-8", p.display())))?
            }
        }
        .lines()
        .map(|l| Arc::from(l.trim()))
        .collect(),
        None => (0..model.classes())
            .map(|i| Arc::from(i.to_string()))
            .collect(),
    };
    if labels.len() != model.classes() {
        return Err(fail(format!(
            "the labels file has {} lines but the model has {} classes",
            labels.len(),
            model.classes()
        )));
    }
    let worker_count = cfg
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    Ok(Shared {
        model,
        labels,
        workers: Arc::new(Semaphore::new(worker_count)),
    })
}

/// Reads an S3 object named by the model config.
#[cfg(feature = "s3")]
fn fetch(m: &ModelConfig, bucket: &str, key: &str) -> std::result::Result<Vec<u8>, String> {
    let conn = crate::connectors::s3::client::S3Connection {
        endpoint_url: m.endpoint_url.clone(),
        region: m.region.clone(),
    };
    crate::connectors::s3::client::get_object_blocking(&conn, bucket, key)
}

#[cfg(not(feature = "s3"))]
fn fetch(_: &ModelConfig, bucket: &str, key: &str) -> std::result::Result<Vec<u8>, String> {
    Err(format!(
        "s3://{bucket}/{key}: osprey was built without the `s3` feature"
    ))
}

/// One label of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Class index.
    pub index: usize,
    /// Probability after softmax.
    pub probability: f32,
}

/// Softmax of one row of logits (max-subtracted, summed in f64).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// The `k` most probable classes, most probable first (ties: lower index first).
pub fn top_k(probs: &[f32], k: usize) -> Vec<Scored> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    let by = |a: &usize, b: &usize| probs[*b].total_cmp(&probs[*a]).then(a.cmp(b));
    let k = k.min(idx.len());
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, by);
        idx.truncate(k);
    }
    idx.sort_by(by);
    idx.truncate(k);
    idx.into_iter()
        .map(|index| Scored {
            index,
            probability: probs[index],
        })
        .collect()
}

/// What one image produced: its top-k or why it was rejected, and the compute time.
type ImageResult = (std::result::Result<Vec<Scored>, Rejected>, Duration);

/// Decodes, preprocesses and classifies one image (runs on the blocking pool). `Err` is an
/// inference failure, which stops the job; a bad image is an `Ok` rejection.
fn classify_one(
    shared: &Shared,
    pre: &Preprocess,
    blob: Option<&[u8]>,
    k: usize,
) -> std::result::Result<ImageResult, String> {
    let started = Instant::now();
    let Some(bytes) = blob else {
        let no_bytes = Rejected {
            reason: "no_bytes",
            message: "the record carries no object bytes (use an s3 or dir source)".into(),
        };
        return Ok((Err(no_bytes), started.elapsed()));
    };
    let img = match pre.decode(bytes) {
        Ok(img) => img,
        Err(r) => return Ok((Err(r), started.elapsed())),
    };
    let mut data = vec![0.0; pre.len()];
    pre.tensor_into(&img, &mut data);
    drop(img);
    let logits = shared.model.run(1, data)?;
    Ok((Ok(top_k(&softmax(&logits), k)), started.elapsed()))
}

struct Names {
    window_start: Arc<str>,
    window_end: Arc<str>,
    labels: Arc<str>,
    model: Arc<str>,
    latency: Arc<str>,
}

/// See the module docs.
pub struct ClassifyImage {
    name: String,
    shared: Arc<Shared>,
    pre: Arc<Preprocess>,
    model_name: Arc<str>,
    window_ms: i64,
    max_batch: usize,
    top_k: usize,
    pending: Vec<Record>,
    window_start: i64,
    names: Names,
    images: prometheus::IntCounter,
    failures: prometheus::IntCounterVec,
    partition: String,
    batch_size: prometheus::Histogram,
    inference: prometheus::Histogram,
    end_to_end: prometheus::Histogram,
}

impl ClassifyImage {
    /// Builds the operator for one partition; the model is loaded once per job run.
    pub fn new(cfg: &ClassifyConfig, cx: &BuildContext) -> Result<Self> {
        let name = cfg.name.clone().unwrap_or_else(|| "classify_image".into());
        let shared = load_shared(cfg, &name, cx)?;
        let scope = cx.metrics(&name);
        let m = scope.registry();
        let partition = scope.partition().to_string();
        let pow2 = (0..10).map(|i| f64::from(1u32 << i)).collect();
        let secs = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ];
        let model_name = cfg.model.name.clone().unwrap_or_else(|| {
            cfg.model
                .path
                .file_stem()
                .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
        });
        Ok(ClassifyImage {
            images: scope.counter(&m.operator_counter(IMAGES, "Images classified.")),
            failures: m.operator_reason_counter(
                FAILURES,
                "Images that could not be classified, by reason.",
            ),
            batch_size: m
                .operator_histogram(BATCH_SIZE, "Images per inference batch.", pow2)
                .with_label_values(&[&name]),
            inference: m
                .operator_histogram(
                    INFERENCE_SECONDS,
                    "Decode, preprocess and inference time per image.",
                    secs.clone(),
                )
                .with_label_values(&[&name]),
            end_to_end: m
                .operator_histogram(
                    END_TO_END_SECONDS,
                    "Time from the object's LastModified to its classification.",
                    secs,
                )
                .with_label_values(&[&name]),
            partition,
            pre: Arc::new(Preprocess {
                resize: cfg.model.resize,
                size: cfg.model.input_size,
                mean: cfg.model.mean,
                std: cfg.model.std,
                max_bytes: cfg.max_image_bytes,
                max_pixels: cfg.max_pixels,
            }),
            shared,
            model_name: Arc::from(model_name),
            window_ms: cfg.window.as_std().as_millis().clamp(1, i64::MAX as u128) as i64,
            max_batch: cfg.max_batch.max(1),
            top_k: cfg.top_k,
            pending: Vec::new(),
            window_start: 0,
            names: Names {
                window_start: Arc::from("window_start_ms"),
                window_end: Arc::from("window_end_ms"),
                labels: Arc::from("labels"),
                model: Arc::from("model"),
                latency: Arc::from("latency_ms"),
            },
            name,
        })
    }

    /// Classifies everything pending and appends the results to `out`.
    async fn flush(&mut self, cx: &mut Context, out: &mut Batch) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.pending);
        self.batch_size.observe(records.len() as f64);
        // One blocking task per image, at most `workers` at a time across all partitions:
        // every worker stays busy until the batch's last image.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, r) in records.iter().enumerate() {
            let blob = r.blob.clone();
            let shared = Arc::clone(&self.shared);
            let pre = Arc::clone(&self.pre);
            let k = self.top_k;
            let permit = Arc::clone(&self.shared.workers)
                .acquire_owned()
                .await
                .map_err(|_| Error::Internal("the worker semaphore closed".into()))?;
            tasks.spawn_blocking(move || {
                let started = Instant::now();
                // A panic in a decoder or the engine rejects this image alone (issue 14.2).
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    classify_one(&shared, &pre, blob.as_deref(), k)
                }))
                .unwrap_or_else(|payload| {
                    let message = crate::core::panic::report("classify_image", &*payload);
                    let reason = crate::core::panic::INTERNAL_ERROR;
                    Ok((Err(Rejected { reason, message }), started.elapsed()))
                });
                drop(permit);
                (i, r)
            });
        }
        let mut results: Vec<Option<std::result::Result<Vec<Scored>, Rejected>>> =
            (0..records.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (i, r) =
                joined.map_err(|e| Error::Internal(format!("inference task panicked: {e}")))?;
            let (result, took) = r.map_err(|message| Error::Operator {
                operator: self.name.clone(),
                message: format!("inference failed: {message}"),
            })?;
            self.inference.observe(took.as_secs_f64());
            results[i] = Some(result);
        }
        let results = results.into_iter().map(|r| r.expect("every image joined"));
        let now = now_ms();
        let end = self.window_start.saturating_add(self.window_ms);
        for (mut r, result) in records.into_iter().zip(results) {
            r.blob = None;
            match result {
                Ok(scored) => {
                    let labels: Vec<serde_json::Value> = scored
                        .iter()
                        .map(|s| {
                            serde_json::json!({
                                "index": s.index,
                                "label": &*self.shared.labels[s.index],
                                "probability": s.probability,
                            })
                        })
                        .collect();
                    let lm = r.field("last_modified_ms").and_then(|f| match f {
                        Field::I64(v) => Some(*v),
                        _ => None,
                    });
                    r.push_field(&self.names.window_start, Field::I64(self.window_start));
                    r.push_field(&self.names.window_end, Field::I64(end));
                    r.push_field(&self.names.labels, Field::Json(labels.into()));
                    r.push_field(&self.names.model, Field::Str(Arc::clone(&self.model_name)));
                    if let Some(lm) = lm {
                        let latency = (now - lm).max(0);
                        self.end_to_end.observe(latency as f64 / 1000.0);
                        r.push_field(&self.names.latency, Field::I64(latency));
                    }
                    self.images.inc();
                    out.push(r);
                }
                Err(rej) => {
                    self.failures
                        .with_label_values(&[&self.name, &self.partition, rej.reason])
                        .inc();
                    cx.dead_letter(rej.reason, rej.message, &r);
                }
            }
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    (crate::metrics::now_secs() * 1000.0) as i64
}

#[async_trait]
impl Operator for ClassifyImage {
    fn name(&self) -> &str {
        &self.name
    }

    fn tick_interval(&self) -> Option<Duration> {
        // Window ends are noticed within a second (or a window, when shorter).
        Some(Duration::from_millis(self.window_ms.clamp(1, 1000) as u64))
    }

    async fn process(&mut self, batch: Batch, cx: &mut Context, out: &mut Batch) -> Result<()> {
        for r in batch {
            let now = now_ms();
            let start = now - now.rem_euclid(self.window_ms);
            if start != self.window_start && !self.pending.is_empty() {
                self.flush(cx, out).await?;
            }
            self.window_start = start;
            self.pending.push(r);
            if self.pending.len() >= self.max_batch {
                self.flush(cx, out).await?;
            }
        }
        Ok(())
    }

    async fn on_tick(&mut self, cx: &mut Context, out: &mut Batch) -> Result<()> {
        if !self.pending.is_empty() && now_ms() >= self.window_start + self.window_ms {
            self.flush(cx, out).await?;
        }
        Ok(())
    }

    async fn on_barrier(&mut self, _b: Barrier, cx: &mut Context, out: &mut Batch) -> Result<()> {
        self.flush(cx, out).await
    }

    async fn on_close(&mut self, cx: &mut Context, out: &mut Batch) -> Result<()> {
        self.flush(cx, out).await
    }
}

impl super::OperatorSpec for ClassifyConfig {
    fn type_name(&self) -> &'static str {
        "classify_image"
    }
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("classify_image")
    }
    fn validate(
        &self,
        _record: &crate::core::RecordConfig,
        _values: &[String],
    ) -> Vec<crate::core::ConfigError> {
        ClassifyConfig::validate(self)
    }
    /// Results are new records, not fields appended to the input.
    fn output_fields(&self) -> Vec<String> {
        Vec::new()
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(ClassifyImage::new(self, cx)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn top_k_matches_full_sort(xs in proptest::collection::vec(-50f32..50.0, 1..200), k in 0usize..10) {
            let p = softmax(&xs);
            let sum: f32 = p.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-4);
            let mut naive: Vec<usize> = (0..p.len()).collect();
            naive.sort_by(|a, b| p[*b].total_cmp(&p[*a]).then(a.cmp(b)));
            naive.truncate(k);
            let got: Vec<usize> = top_k(&p, k).into_iter().map(|s| s.index).collect();
            prop_assert_eq!(got, naive);
        }
    }

    #[test]
    fn model_locations() {
        use std::path::Path;
        assert_eq!(
            Location::of(Path::new("models/m.onnx")),
            Ok(Location::File(Path::new("models/m.onnx")))
        );
        assert_eq!(
            Location::of(Path::new("s3://b/models/m v2.onnx")),
            Ok(Location::S3 {
                bucket: "b",
                key: "models/m v2.onnx"
            })
        );
        for bad in ["s3://", "s3://bucket", "s3://bucket/", "s3:///key"] {
            let e = Location::of(Path::new(bad)).unwrap_err();
            assert!(e.contains("not an s3://bucket/key URI"), "{bad}: {e}");
        }
    }
}
