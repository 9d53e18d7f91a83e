//! The HTTP origin's client: one `GET` per key on hyper-util's pooled client, over plain HTTP
//! or TLS (rustls with aws-lc-rs, the system's trusted roots).
//!
//! Each operator instance owns one [`HttpClient`], and so one connection pool: the
//! connections of a partition are reused across its lookups (HTTP/1.1 keep-alive), at most
//! `capacity` of them busy at once. Whatever an origin sends is bounded before it is held in
//! memory: the response head by [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`], the body by
//! `origin.max_response_bytes` (a declared `Content-Length` above it is refused before a byte
//! of the body is read), redirects by [`MAX_REDIRECTS`]. Deadlines are the operator's: its
//! `timeout` covers a lookup with all its retries and redirects, and dropping the lookup
//! future drops the request.

use std::error::Error as StdError;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;

use super::cache::Lookup;
use super::config::HttpOrigin;
use super::origin::OriginError;
use crate::Result;
use crate::core::Error;

/// Redirects followed per lookup; one more is answered with the redirect's status.
pub const MAX_REDIRECTS: usize = 5;
/// Largest response head read (hyper's read buffer, which a head must fit in).
pub const MAX_HEAD_BYTES: usize = 64 << 10;
/// Most header lines a response may have.
pub const MAX_HEADERS: usize = 64;

/// A pooled HTTP/1.1 client for one origin URL template.
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// The URL before and after `{key}`.
    before: String,
    after: String,
    max_response_bytes: usize,
}

impl HttpClient {
    /// A client for `origin.url` (`http://…` or `https://…` with `{key}`, checked by the
    /// config validation). An `https://` origin needs the system's trusted CA certificates.
    pub fn new(origin: &HttpOrigin) -> Result<Self> {
        let tls = match system_tls_config() {
            Ok(tls) => tls.clone(),
            Err(why) if origin.url.starts_with("https://") => {
                return Err(enrich_error(format!(
                    "origin url `{}`: cannot verify TLS servers: {why}",
                    origin.url
                )));
            }
            // A plain origin never needs the roots; a redirect to https:// then fails to
            // verify (`origin_io`) instead of the job failing to start.
            Err(_) => tls_builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        Self::with_tls(origin, tls)
    }

    /// [`HttpClient::new`] trusting what `tls` trusts (tests use a CA of their own).
    pub(crate) fn with_tls(origin: &HttpOrigin, tls: ClientConfig) -> Result<Self> {
        let url = &origin.url;
        let (before, after) = url.split_once("{key}").unwrap_or((url, ""));
        let sample: Option<Uri> = format!("{before}k{after}").parse().ok();
        if !sample.is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
        }) {
            return Err(enrich_error(format!(
                "origin url `{url}` is not an http:// or https:// URL"
            )));
        }
        let mut http = HttpConnector::new();
        // The TLS layer takes https:// URLs; the plain connector sees both.
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .http1_max_buf_size(MAX_HEAD_BYTES)
            .http1_max_headers(MAX_HEADERS)
            .build(connector);
        Ok(HttpClient {
            client,
            before: before.to_string(),
            after: after.to_string(),
            max_response_bytes: usize::try_from(origin.max_response_bytes).unwrap_or(usize::MAX),
        })
    }

    /// `GET`s the value of `key`: 200 → found (JSON body), 404 → not found. Redirects are
    /// followed to the same scheme or from http to https.
    pub async fn get(&self, key: &str) -> Result<Lookup, OriginError> {
        let mut url = String::with_capacity(self.before.len() + key.len() + self.after.len());
        url.push_str(&self.before);
        percent_encode(key, &mut url);
        url.push_str(&self.after);
        let mut uri: Uri = url.parse().map_err(|_| OriginError::Malformed)?;
        let mut redirects = 0;
        loop {
            let resp = self.send(&uri).await?;
            let status = resp.status();
            if is_redirect(status) {
                let next = redirect_target(&uri, resp.headers()).ok_or(OriginError::Malformed)?;
                if redirects == MAX_REDIRECTS || !may_follow(&uri, &next) {
                    return Err(OriginError::Status(status.as_u16()));
                }
                self.drain(resp.into_body()).await;
                redirects += 1;
                uri = next;
                continue;
            }
            return match status {
                StatusCode::OK => {
                    let body = read_body(resp.into_body(), self.max_response_bytes).await?;
                    serde_json::from_slice(&body)
                        .map(|v| Lookup::Found(Arc::new(v)))
                        .map_err(|_| OriginError::Malformed)
                }
                StatusCode::NOT_FOUND => {
                    self.drain(resp.into_body()).await;
                    Ok(Lookup::NotFound)
                }
                s => {
                    self.drain(resp.into_body()).await;
                    Err(OriginError::Status(s.as_u16()))
                }
            };
        }
    }

    /// Sends one `GET`. A pooled connection the origin closed while idle fails the request
    /// as it is written: that one is sent again, at once, on another connection (hyper-util
    /// itself only resends requests that never reached a connection).
    async fn send(&self, uri: &Uri) -> Result<Response<Incoming>, OriginError> {
        let request = || {
            Request::get(uri.clone())
                .header(header::ACCEPT, "application/json")
                .body(Empty::new())
                .map_err(|_| OriginError::Malformed)
        };
        let resp = match self.client.request(request()?).await {
            Err(e) if is_stale_connection(&e) => self.client.request(request()?).await,
            r => r,
        };
        resp.map_err(|e| classify(&e))
    }

    /// Reads and discards a body we do not need, so its connection goes back to the pool. A
    /// body over the bound is not read: dropping it closes the connection instead.
    async fn drain(&self, body: Incoming) {
        let _ = read_body(body, self.max_response_bytes).await;
    }
}

/// The whole body, or `Malformed` when it is (or declares itself) longer than `max`.
async fn read_body(body: Incoming, max: usize) -> Result<Bytes, OriginError> {
    // An exact size hint is the Content-Length: refuse it before reading anything.
    if body.size_hint().lower() > max as u64 {
        return Err(OriginError::Malformed);
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(OriginError::Malformed),
        Err(e) => Err(classify(&*e)),
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Same scheme, or up from http to https; never down to plain text.
fn may_follow(from: &Uri, to: &Uri) -> bool {
    matches!(
        (from.scheme_str(), to.scheme_str()),
        (Some("http"), Some("http" | "https")) | (Some("https"), Some("https"))
    )
}

/// The absolute URL a redirect's `Location` names, resolved against `base` (RFC 9110 §10.2.2
/// allows relative references); `None` when there is none or it is not a URL.
fn redirect_target(base: &Uri, headers: &HeaderMap) -> Option<Uri> {
    let location = headers.get(header::LOCATION)?.to_str().ok()?;
    // A fragment is never sent.
    let location = location.split('#').next().unwrap_or("");
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let absolute = if location.starts_with("//") {
        format!("{scheme}:{location}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else if location.contains("://") {
        location.to_string()
    } else {
        // A relative path replaces the last segment of the base path.
        let path = base.path();
        let dir = &path[..=path.rfind('/')?];
        format!("{scheme}://{authority}{dir}{location}")
    };
    let uri: Uri = absolute.parse().ok()?;
    (uri.scheme().is_some() && uri.authority().is_some()).then_some(uri)
}

/// The hyper error in `e`'s source chain (itself included), if any.
fn hyper_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a hyper::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return Some(h);
        }
        cur = err.source();
    }
    None
}

/// An answer hyper could not parse (not HTTP, a head over the bounds) is `Malformed`;
/// everything else (connect, TLS, reset, EOF) is `Io`.
fn classify(e: &(dyn StdError + 'static)) -> OriginError {
    match hyper_error(e) {
        Some(h) if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() => {
            OriginError::Malformed
        }
        _ => OriginError::Io,
    }
}

/// Whether `e` is an established connection that the origin closed before answering (the
/// race between an idle keep-alive timeout and our request).
fn is_stale_connection(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return false;
    }
    let mut cur: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(err) = cur {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message())
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        cur = err.source();
    }
    false
}

fn tls_builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
}

/// The TLS configuration trusting the system's roots, loaded once per process (reading and
/// parsing the trust store takes milliseconds; every partition's client shares it).
fn system_tls_config() -> &'static std::result::Result<ClientConfig, String> {
    static CONFIG: OnceLock<std::result::Result<ClientConfig, String>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        tls_builder()
            .with_native_roots()
            .map(|b| b.with_no_client_auth())
            .map_err(|e| e.to_string())
    })
}

fn enrich_error(message: String) -> Error {
    Error::Operator {
        operator: "enrich".into(),
        message,
    }
}

/// Appends `s` with every byte outside RFC 3986's unreserved set percent-encoded.
fn percent_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests;
