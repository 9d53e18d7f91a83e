//! `type = "classify_image"` configuration.

use std::path::PathBuf;

use serde::Deserialize;

use crate::core::{ConfigError, Duration};

/// `type = "classify_image"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Instance name (metrics label). Default `classify_image`.
    pub name: Option<String>,
    /// The ONNX classifier.
    pub model: ModelConfig,
    /// Processing-time tumbling window: images are classified in one batch per window (or
    /// sooner, see `max_batch`). Default 60 s.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// Classify as soon as this many images are pending, without waiting for the window end.
    /// Default 32.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Labels per result. Default 5.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Blocking workers that decode and run the model, shared by all partitions. Default:
    /// the number of cores.
    pub workers: Option<usize>,
    /// Largest accepted image in bytes; larger ones are dead-lettered (`too_large`).
    /// Default 50 MiB.
    #[serde(default = "default_max_image_bytes")]
    pub max_image_bytes: usize,
    /// Largest accepted width × height; larger ones (decompression bombs) are dead-lettered
    /// (`too_many_pixels`) before decoding. Default 40,000,000.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
}

/// The model and how to feed it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Path of the `.onnx` file, or an `s3://bucket/key` URI (fetched once at start through
    /// the standard AWS SDK chain; see `endpoint_url` and `region`).
    pub path: PathBuf,
    /// Class names, one per line in class-index order; a path or an `s3://` URI. Default:
    /// the class index as the name.
    pub labels: Option<PathBuf>,
    /// For `s3://` paths: endpoint override for S3-compatible servers (path-style
    /// addressing). Default: the standard AWS SDK chain.
    pub endpoint_url: Option<String>,
    /// For `s3://` paths: the region. Default: the standard AWS SDK chain, else `us-east-1`.
    pub region: Option<String>,
    /// Name of the model's image input. Default `input`.
    #[serde(default = "default_input")]
    pub input: String,
    /// Model name written into every result. Default: the file stem of `path`.
    pub name: Option<String>,
    /// Per-channel mean on the 0..1 scale (RGB). Default ImageNet `[0.485, 0.456, 0.406]`.
    #[serde(default = "default_mean")]
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB). Default ImageNet `[0.229, 0.224, 0.225]`.
    #[serde(default = "default_std")]
    pub std: [f32; 3],
    /// Side of the square input (the centre crop). Default 224.
    #[serde(default = "default_input_size")]
    pub input_size: u32,
    /// Shorter side after resizing, before the crop. Default 256.
    #[serde(default = "default_resize")]
    pub resize: u32,
}

fn default_window() -> Duration {
    Duration::from_secs(60)
}
fn default_max_batch() -> usize {
    32
}
fn default_top_k() -> usize {
    5
}
fn default_max_image_bytes() -> usize {
    50 << 20
}
fn default_max_pixels() -> u64 {
    40_000_000
}
fn default_input() -> String {
    "input".into()
}
fn default_mean() -> [f32; 3] {
    [0.485, 0.456, 0.406]
}
fn default_std() -> [f32; 3] {
    [0.229, 0.224, 0.225]
}
fn default_input_size() -> u32 {
    224
}
fn default_resize() -> u32 {
    256
}

impl ClassifyConfig {
    /// Semantic checks (paths relative to this operator).
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let paths = [
            ("model.path", Some(&self.model.path)),
            ("model.labels", self.model.labels.as_ref()),
        ];
        for (field, path) in paths {
            if let Some(p) = path
                && let Err(e) = check_location(p)
            {
                errors.push(ConfigError::new(field, e));
            }
        }
        if self.window.as_std().is_zero() {
            errors.push(ConfigError::new("window", "must be greater than zero"));
        }
        for (field, v) in [
            ("max_batch", self.max_batch),
            ("top_k", self.top_k),
            ("workers", self.workers.unwrap_or(1)),
            ("max_image_bytes", self.max_image_bytes),
            ("model.input_size", self.model.input_size as usize),
        ] {
            if v == 0 {
                errors.push(ConfigError::new(field, "must be at least 1"));
            }
        }
        if self.model.resize < self.model.input_size {
            errors.push(ConfigError::new(
                "model.resize",
                "must be at least model.input_size (the crop is taken from the resized image)",
            ));
        }
        if self.model.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            errors.push(ConfigError::new("model.std", "must be finite and non-zero"));
        }
        errors
    }
}

/// Where a model or labels file is: a local path or an S3 object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location<'a> {
    /// A local file.
    File(&'a std::path::Path),
    /// `s3://bucket/key`.
    S3 {
        /// Bucket.
        bucket: &'a str,
        /// Key.
        key: &'a str,
    },
}

impl<'a> Location<'a> {
    /// Reads `path`: anything starting with `s3://` is an S3 URI (which must name a bucket
    /// and a key), everything else a local path.
    pub fn of(path: &'a std::path::Path) -> Result<Location<'a>, String> {
        match path
            .to_str()
            .and_then(|p| p.strip_prefix("s3://").map(|_| p))
        {
            None => Ok(Location::File(path)),
            Some(uri) => {
                let (bucket, key) = uri
                    .strip_prefix("s3://")
                    .and_then(|rest| rest.split_once('/'))
                    .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                    .ok_or_else(|| format!("{uri} is not an s3://bucket/key URI"))?;
                Ok(Location::S3 { bucket, key })
            }
        }
    }
}

fn check_location(path: &std::path::Path) -> Result<(), String> {
    match Location::of(path)? {
        Location::File(p) if !p.is_file() => Err(format!("{} is not a file", p.display())),
        Location::File(_) => Ok(()),
        #[cfg(feature = "s3")]
        Location::S3 { .. } => Ok(()),
        #[cfg(not(feature = "s3"))]
        Location::S3 { .. } => Err("s3:// paths need osprey built with the `s3` feature".into()),
    }
}
