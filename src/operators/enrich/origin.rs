//! Tier 3, the origin: an HTTP endpoint (one `GET` per key) or a reference table file.
//!
//! The HTTP client is deliberately small: plain HTTP/1.1 `GET` with keep-alive connections
//! kept in a pool, `Content-Length` or chunked bodies. It exists so the enrich operator needs
//! no HTTP stack of its own; TLS origins are out of scope.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::cache::Lookup;
use super::config::{FileFormat, FileOrigin, OriginConfig};
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

/// A keep-alive HTTP/1.1 client for one origin URL template.
pub struct HttpClient {
    /// `host:port`.
    authority: String,
    /// Path before and after `{key}`.
    before: String,
    after: String,
    idle: Mutex<Vec<BufReader<TcpStream>>>,
}

impl HttpClient {
    /// A client for `http://host:port/path/{key}…` (checked by the config validation).
    pub fn new(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("http://").ok_or_else(|| Error::Operator {
            operator: "enrich".into(),
            message: format!("origin url `{url}` is not http://"),
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let authority = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let (before, after) = path.split_once("{key}").unwrap_or((path, ""));
        Ok(HttpClient {
            authority,
            before: before.to_string(),
            after: after.to_string(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// `GET`s the value of `key`: 200 → found (JSON body), 404 → not found.
    pub async fn get(&self, key: &str) -> Result<Lookup, OriginError> {
        let mut path = String::with_capacity(self.before.len() + key.len() + self.after.len());
        path.push_str(&self.before);
        percent_encode(key, &mut path);
        path.push_str(&self.after);
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(conn) = pooled {
            // A pooled connection may have been closed by the server since: one fresh retry.
            if let Ok(r) = self.request(conn, &path).await {
                return r;
            }
        }
        let conn = TcpStream::connect(&self.authority)
            .await
            .map_err(|_| OriginError::Io)?;
        let _ = conn.set_nodelay(true);
        self.request(BufReader::new(conn), &path)
            .await
            .map_err(|_| OriginError::Io)?
    }

    /// One request on `conn`. The outer error means the connection failed (worth one retry
    /// on a fresh connection); the inner result is the origin's answer.
    async fn request(
        &self,
        mut conn: BufReader<TcpStream>,
        path: &str,
    ) -> std::io::Result<Result<Lookup, OriginError>> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: keep-alive\r\n\r\n",
            self.authority
        );
        conn.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let Some(status) = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
        else {
            return Ok(Err(OriginError::Malformed));
        };
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
                let start = body.len();
                body.resize(start + size + 2, 0);
                conn.read_exact(&mut body[start..]).await?;
                body.truncate(start + size);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            conn.read_exact(&mut body).await?;
        } else {
            conn.read_to_end(&mut body).await?;
            close = true;
        }
        if !close {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        Ok(match status {
            200 => serde_json::from_slice(&body)
                .map(|v| Lookup::Found(Arc::new(v)))
                .map_err(|_| OriginError::Malformed),
            404 => Ok(Lookup::NotFound),
            s => Err(OriginError::Status(s)),
        })
    }
}

/// Appends `s` with every byte outside RFC 3986's unreserved set percent-encoded.
fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}
