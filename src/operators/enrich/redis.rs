//! Tier 2: Redis, one `MGET` per batch of distinct misses and one pipelined `SET … EX` for
//! the write-back.
//!
//! We use the `redis` crate's `ConnectionManager` directly instead of a hand-written client
//! actor (mini-redis `buffered_client`): the manager already is one multiplexed connection
//! driven by its own task, cloneable handles talk to it over a channel, and it reconnects
//! after errors. An actor on top would add a channel hop per request and nothing else. What
//! we add is lazy connection: when Redis is down at start (or the manager gives up), the next
//! batch tries again at most every `timeout`, and until then the tier reports an error and
//! the batch falls through to the origin or the failure policy.
//!
//! # TLS and AUTH
//!
//! `rediss://` URLs connect over TLS (rustls, the redis crate's `tokio-rustls-comp`), trusting
//! the system roots or `tls_ca_file`, optionally with a client certificate; AUTH credentials
//! from the URL or `username`/`password` are sent on connect. rustls needs one process-wide
//! crypto provider: the AWS SDK enables aws-lc-rs, and we install that same provider as the
//! default before the first connection ([`install_crypto_provider`]), so a second provider
//! enabled by some other dependency can never leave rustls without a default.

use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::{Duration, Instant};

use super::cache::Lookup;
use super::config::RedisConfig;
use crate::{Error, Result};

/// Installs aws-lc-rs, the provider the AWS SDK's rustls uses, as rustls' process-wide
/// default, once. The redis crate builds its TLS config with `ClientConfig::builder()`, which
/// panics ("no process-level CryptoProvider") when no default is installed and the enabled
/// rustls features do not name exactly one provider. Installing one when another part of the
/// process already did is harmless (the first stays).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Stored in Redis for a key the origin does not know. JSON text never starts with `~`.
pub const NOT_FOUND_MARKER: &[u8] = b"~osprey:not_found";

/// Why connecting to Redis failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownCause {
    /// Refused, unreachable, timed out or dropped.
    Unavailable,
    /// AUTH was refused (wrong password or user).
    Auth,
    /// The TLS handshake failed (untrusted or mismatched certificate, not a TLS server …).
    Tls,
}

impl DownCause {
    /// Bounded reason code (the `enrich_error` value under `on_failure = "emit"`).
    pub fn reason(self) -> &'static str {
        match self {
            DownCause::Unavailable => "redis_unavailable",
            DownCause::Auth => "redis_auth_failed",
            DownCause::Tls => "redis_tls_failed",
        }
    }

    /// Classifies a connect error. The redis crate wraps rustls errors in `io::Error`s whose
    /// `source` skips them, so the text is what tells a handshake failure apart.
    fn of(e: &redis::RedisError) -> DownCause {
        let text = e.to_string();
        if e.kind() == redis::ErrorKind::AuthenticationFailed
            || text.contains("WRONGPASS")
            || text.contains("NOAUTH")
        {
            return DownCause::Auth;
        }
        let lower = text.to_ascii_lowercase();
        if ["certificate", "fatal alert", "handshake", "tls"]
            .iter()
            .any(|w| lower.contains(w))
        {
            DownCause::Tls
        } else {
            DownCause::Unavailable
        }
    }
}

/// Why a Redis call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisError {
    /// Not connected (connecting failed or was not retried yet), and why the last attempt
    /// failed.
    Down(DownCause),
    /// The call returned an error.
    Failed,
    /// The call took longer than the tier's timeout.
    Timeout,
}

/// See the module docs.
pub struct RedisTier {
    client: redis::Client,
    /// `host:port`, for logs (never the password).
    addr: String,
    conn: Option<ConnectionManager>,
    next_connect: Instant,
    last_cause: DownCause,
    /// The last connect error logged at `warn` (repeats are logged at `debug`).
    last_logged: Option<String>,
    prefix: String,
    ttl_secs: u64,
    negative_ttl_secs: u64,
    timeout: Duration,
}

impl RedisTier {
    /// A tier for `cfg`; connects on first use. TLS files are read here, so a missing or
    /// malformed one stops the job at start naming its option.
    pub fn new(cfg: &RedisConfig) -> Result<Self> {
        let fail = |message: String| Error::Operator {
            operator: "enrich".into(),
            message,
        };
        let mut info: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str())
                .map_err(|e| fail(format!("redis.url: {e}")))?;
        let mut redis_info = info.redis_settings().clone();
        if let Some(u) = &cfg.username {
            redis_info = redis_info.set_username(u);
        }
        if let Some(p) = &cfg.password {
            redis_info = redis_info.set_password(p);
        }
        info = info.set_redis_settings(redis_info);
        let is_tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        if is_tls {
            install_crypto_provider();
        }
        if cfg.tls_insecure
            && let redis::ConnectionAddr::TcpTls {
                host,
                port,
                tls_params,
                ..
            } = info.addr().clone()
        {
            info = info.set_addr(redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: true,
                tls_params,
            });
        }
        // A PEM file of the wrong kind would otherwise only show as failed handshakes.
        let read = |name: &str,
                    path: &Option<std::path::PathBuf>,
                    label: &str|
         -> Result<Option<Vec<u8>>> {
            let Some(p) = path else {
                return Ok(None);
            };
            let pem = std::fs::read(p)
                .map_err(|e| fail(format!("{name}: reading {}: {e}", p.display())))?;
            if !pem.windows(label.len()).any(|w| w == label.as_bytes()) {
                return Err(fail(format!("{name}: no PEM {label} in {}", p.display())));
            }
            Ok(Some(pem))
        };
        let root_cert = read("redis.tls_ca_file", &cfg.tls_ca_file, "CERTIFICATE-----")?;
        let client_cert = read(
            "redis.tls_cert_file",
            &cfg.tls_cert_file,
            "CERTIFICATE-----",
        )?;
        let client_key = read("redis.tls_key_file", &cfg.tls_key_file, "PRIVATE KEY-----")?;
        let client = if is_tls && (root_cert.is_some() || client_cert.is_some()) {
            let client_tls = match (client_cert, client_key) {
                (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
                _ => None,
            };
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls,
                    root_cert,
                },
            )
            .map_err(|e| {
                fail(format!(
                    "redis TLS settings (tls_ca_file, tls_cert_file, tls_key_file): {e}"
                ))
            })?
        } else {
            redis::Client::open(info).map_err(|e| fail(format!("redis: {e}")))?
        };
        Ok(RedisTier {
            addr: client.get_connection_info().addr().to_string(),
            client,
            conn: None,
            next_connect: Instant::now(),
            last_cause: DownCause::Unavailable,
            last_logged: None,
            prefix: cfg.key_prefix.clone(),
            ttl_secs: cfg.ttl.as_std().as_secs().max(1),
            negative_ttl_secs: cfg.negative_ttl.as_std().as_secs().max(1),
            timeout: cfg.timeout.as_std(),
        })
    }

    fn key(&self, k: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + k.len());
        s.push_str(&self.prefix);
        s.push_str(k);
        s
    }

    async fn conn(&mut self) -> Result<ConnectionManager, RedisError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let now = Instant::now();
        if now < self.next_connect {
            return Err(RedisError::Down(self.last_cause));
        }
        self.next_connect = now + self.timeout.max(Duration::from_millis(100));
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.timeout);
        let connect = ConnectionManager::new_with_config(self.client.clone(), cfg);
        let error = match tokio::time::timeout(self.timeout * 2, connect).await {
            Ok(Ok(c)) => {
                if self.last_logged.take().is_some() {
                    tracing::info!(addr = %self.addr, "Redis connected again.");
                }
                self.conn = Some(c.clone());
                return Ok(c);
            }
            Ok(Err(e)) => {
                self.last_cause = DownCause::of(&e);
                format!("{}: {e}", self.last_cause.reason())
            }
            Err(_) => {
                self.last_cause = DownCause::Unavailable;
                "redis_unavailable: connect timed out".to_string()
            }
        };
        // One warning per distinct error, not one per batch.
        if self.last_logged.as_deref() != Some(error.as_str()) {
            tracing::warn!(addr = %self.addr, %error, "Redis connect failed; lookups fall through to the origin or the failure policy.");
            self.last_logged = Some(error);
        } else {
            tracing::debug!(addr = %self.addr, %error, "Redis connect failed again.");
        }
        Err(RedisError::Down(self.last_cause))
    }

    /// `MGET` of `keys`: per key `Some(lookup)` on a hit (value or not-found marker), `None`
    /// on a miss. A stored value that is not JSON counts as a miss.
    pub async fn mget(&mut self, keys: &[Arc<str>]) -> Result<Vec<Option<Lookup>>, RedisError> {
        let mut conn = self.conn().await?;
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(self.key(k));
        }
        let res = tokio::time::timeout(
            self.timeout,
            cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn),
        )
        .await;
        let values = match res {
            Ok(Ok(v)) if v.len() == keys.len() => v,
            Ok(Ok(_)) | Ok(Err(_)) => return Err(RedisError::Failed),
            Err(_) => return Err(RedisError::Timeout),
        };
        Ok(values
            .into_iter()
            .map(|v| {
                let v = v?;
                if v == NOT_FOUND_MARKER {
                    return Some(Lookup::NotFound);
                }
                serde_json::from_slice(&v)
                    .ok()
                    .map(|v| Lookup::Found(Arc::new(v)))
            })
            .collect())
    }

    /// Writes origin answers back (cache-aside) in one pipeline: values with `ttl`,
    /// not-found markers with `negative_ttl`.
    pub async fn write_back(&mut self, entries: &[(Arc<str>, Lookup)]) -> Result<(), RedisError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        for (k, v) in entries {
            match v {
                Lookup::Found(v) => pipe
                    .cmd("SET")
                    .arg(self.key(k))
                    .arg(v.to_string())
                    .arg("EX")
                    .arg(self.ttl_secs)
                    .ignore(),
                Lookup::NotFound => pipe
                    .cmd("SET")
                    .arg(self.key(k))
                    .arg(NOT_FOUND_MARKER)
                    .arg("EX")
                    .arg(self.negative_ttl_secs)
                    .ignore(),
            };
        }
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(RedisError::Failed),
            Err(_) => Err(RedisError::Timeout),
        }
    }
}
