//! Tier 3, the origin: an HTTP endpoint (one `GET` per key, see [`super::http`]) or a
//! reference table file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::config::{FileFormat, FileOrigin, OriginConfig};
pub use super::http::HttpClient;
use crate::{Error, Result};

/// A reference table: key → value.
pub type Table = HashMap<Arc<str>, Arc<serde_json::Value>>;

/// Why an origin call failed (cheap: no formatting on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginError {
    /// The origin answered with this status (not 200 or 404).
    Status(u16),
    /// Connecting, writing or reading failed.
    Io,
    /// The response was not HTTP or its body not JSON.
    Malformed,
}

impl OriginError {
    /// Bounded reason code.
    pub fn reason(self) -> &'static str {
        match self {
            OriginError::Status(s) if s >= 500 => "origin_5xx",
            OriginError::Status(_) => "origin_status",
            OriginError::Io => "origin_io",
            OriginError::Malformed => "origin_malformed",
        }
    }
}

/// Loads a reference table file (CSV with a header, or JSON lines).
///
/// A row without the key column is skipped; a malformed JSON line too (counted in the
/// returned `skipped`). CSV cells that parse as numbers become JSON numbers.
pub fn load_table(cfg: &FileOrigin) -> Result<(Table, usize)> {
    let text = std::fs::read_to_string(&cfg.path)
        .map_err(|e| Error::io("reading reference table", &cfg.path, e))?;
    let format = cfg.format.unwrap_or_else(|| format_of(&cfg.path));
    parse_table(
        &text,
        format,
        &cfg.key_column,
        &cfg.path.display().to_string(),
    )
}

/// Parses a reference table (see [`load_table`]); `source` names it in errors.
pub fn parse_table(
    text: &str,
    format: FileFormat,
    key_column: &str,
    source: &str,
) -> Result<(Table, usize)> {
    let mut table = Table::new();
    let mut skipped = 0;
    match format {
        FileFormat::Csv => {
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            let Some(head) = lines.next() else {
                return Ok((table, 0));
            };
            let header = crate::parse::split_csv(head.trim_end_matches('\r'));
            let Some(key_at) = header.iter().position(|h| h.trim() == key_column) else {
                return Err(Error::Operator {
                    operator: "enrich".into(),
                    message: format!(
                        "{source}: no column `{key_column}` (origin.key_column) in the header"
                    ),
                });
            };
            for line in lines {
                let cols = crate::parse::split_csv(line.trim_end_matches('\r'));
                let Some(key) = cols.get(key_at) else {
                    skipped += 1;
                    continue;
                };
                let mut obj = serde_json::Map::new();
                for (h, c) in header.iter().zip(&cols) {
                    let v = match c.trim().parse::<f64>() {
                        Ok(n) if n.is_finite() => serde_json::Number::from_f64(n)
                            .map_or_else(|| c.clone().into(), serde_json::Value::Number),
                        _ => serde_json::Value::String(c.clone()),
                    };
                    let v = match c.trim().parse::<i64>() {
                        Ok(i) => serde_json::Value::from(i),
                        Err(_) => v,
                    };
                    obj.insert(h.trim().to_string(), v);
                }
                table.insert(
                    Arc::from(key.trim()),
                    Arc::new(serde_json::Value::Object(obj)),
                );
            }
        }
        FileFormat::Jsonl => {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    skipped += 1;
                    continue;
                };
                let key = match v.get(key_column) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    _ => {
                        skipped += 1;
                        continue;
                    }
                };
                table.insert(Arc::from(key), Arc::new(v));
            }
        }
    }
    Ok((table, skipped))
}

/// Where a reference table is loaded from, at start and at each refresh.
#[derive(Clone)]
pub enum TableSource {
    /// `origin.type = "file"`.
    File(FileOrigin),
    /// `origin.type = "s3"`, with its client (built once, reused by refreshes).
    #[cfg(feature = "s3")]
    S3 {
        /// The origin options.
        cfg: super::config::S3Origin,
        /// The S3 client.
        client: Arc<aws_sdk_s3::Client>,
    },
}

fn table_error(message: String) -> Error {
    Error::Operator {
        operator: "enrich".into(),
        message,
    }
}

impl TableSource {
    /// The table source of `origin`, or `None` when it is not a reference table.
    pub async fn new(origin: &OriginConfig) -> Result<Option<Self>> {
        Ok(match origin {
            OriginConfig::File(f) => Some(TableSource::File(f.clone())),
            #[cfg(feature = "s3")]
            OriginConfig::S3(cfg) => {
                let client = crate::sources::s3::S3Connection {
                    endpoint_url: cfg.endpoint_url.clone(),
                    region: cfg.region.clone(),
                }
                .client()
                .await;
                Some(TableSource::S3 {
                    cfg: cfg.clone(),
                    client: Arc::new(client),
                })
            }
            #[cfg(not(feature = "s3"))]
            OriginConfig::S3(_) => {
                return Err(table_error(
                    "origin.type = \"s3\": osprey was built without the `s3` feature".into(),
                ));
            }
            OriginConfig::None | OriginConfig::Http(_) => None,
        })
    }

    /// The file path or S3 URI, for logs.
    pub fn describe(&self) -> String {
        match self {
            TableSource::File(f) => f.path.display().to_string(),
            #[cfg(feature = "s3")]
            TableSource::S3 { cfg, .. } => cfg.uri.clone(),
        }
    }

    /// Loads the whole table; returns it with the number of rows skipped (no key).
    pub async fn load(&self) -> Result<(Table, usize)> {
        match self {
            TableSource::File(f) => {
                let f = f.clone();
                tokio::task::spawn_blocking(move || load_table(&f))
                    .await
                    .map_err(|e| table_error(format!("loading table: {e}")))?
            }
            #[cfg(feature = "s3")]
            TableSource::S3 { cfg, client } => load_s3_table(cfg, client).await,
        }
    }
}

/// Reads the `origin.uri` object whole and parses it. Every error names `origin.uri`.
#[cfg(feature = "s3")]
async fn load_s3_table(
    cfg: &super::config::S3Origin,
    client: &aws_sdk_s3::Client,
) -> Result<(Table, usize)> {
    use crate::sources::s3::sdk_error;
    let uri = &cfg.uri;
    let Some((bucket, key)) = cfg.bucket_and_key() else {
        return Err(table_error(format!(
            "origin.uri: `{uri}` is not an s3://bucket/key URI"
        )));
    };
    let obj = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                table_error(format!(
                    "origin.uri: no object `{key}` in bucket `{bucket}` ({uri})"
                ))
            } else {
                // The service's code and message say it best (NoSuchBucket, AccessDenied …);
                // transport errors have neither, their source chain does.
                use aws_sdk_s3::error::ProvideErrorMetadata;
                let why = match e.code() {
                    Some(code) => format!("{code}: {}", e.message().unwrap_or("")),
                    None => sdk_error(&e),
                };
                table_error(format!("origin.uri: reading {uri}: {why}"))
            }
        })?;
    if let Some(len) = obj.content_length()
        && u64::try_from(len).unwrap_or(0) > cfg.max_bytes
    {
        return Err(table_error(format!(
            "origin.uri: {uri} is {len} bytes, more than origin.max_bytes ({})",
            cfg.max_bytes
        )));
    }
    let bytes = obj
        .body
        .collect()
        .await
        .map_err(|e| table_error(format!("origin.uri: reading {uri}: {}", sdk_error(&e))))?
        .into_bytes();
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| table_error(format!("origin.uri: {uri} is not UTF-8 text")))?;
    let format = cfg.format.unwrap_or_else(|| format_of(Path::new(key)));
    let (key_column, source) = (cfg.key_column.clone(), uri.clone());
    tokio::task::spawn_blocking(move || parse_table(&text, format, &key_column, &source))
        .await
        .map_err(|e| table_error(format!("parsing {uri}: {e}")))?
}

fn format_of(path: &Path) -> FileFormat {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => FileFormat::Csv,
        _ => FileFormat::Jsonl,
    }
}
