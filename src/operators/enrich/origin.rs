//! Tier 3, the origin: an HTTP endpoint (one `GET` per key, see [`super::http`]) or a
//! reference table file.

use std::path::Path;
use std::sync::Arc;

use super::config::{FileFormat, FileOrigin, OriginConfig};
pub use super::http::HttpClient;
use super::table::{Table, parse_table, table_error};
use crate::{Error, Result};

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

/// Loads a reference table file (CSV with a header, or JSON lines; see [`parse_table`]).
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

impl TableSource {
    /// The table source of `origin`, or `None` when it is not a reference table.
    pub async fn new(origin: &OriginConfig) -> Result<Option<Self>> {
        Ok(match origin {
            OriginConfig::File(f) => Some(TableSource::File(f.clone())),
            #[cfg(feature = "s3")]
            OriginConfig::S3(cfg) => {
                let client = crate::connectors::s3::client::S3Connection {
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
    use crate::connectors::s3::client::{GetObjectError, get_object};
    let uri = &cfg.uri;
    let Some((bucket, key)) = cfg.bucket_and_key() else {
        return Err(table_error(format!(
            "origin.uri: `{uri}` is not an s3://bucket/key URI"
        )));
    };
    let bytes = get_object(client, bucket, key, Some(cfg.max_bytes))
        .await
        .map_err(|e| match e {
            GetObjectError::NoSuchKey { .. } => table_error(format!(
                "origin.uri: no object `{key}` in bucket `{bucket}` ({uri})"
            )),
            GetObjectError::TooLarge { len, max } => table_error(format!(
                "origin.uri: {uri} is {len} bytes, more than origin.max_bytes ({max})"
            )),
            // The service's code and message say it best (NoSuchBucket, AccessDenied …);
            // transport errors have neither, their source chain does.
            e => table_error(format!("origin.uri: reading {uri}: {}", e.detail())),
        })?;
    let text = String::from_utf8(bytes)
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
