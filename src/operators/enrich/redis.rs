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

use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::{Duration, Instant};

use super::cache::Lookup;
use super::config::RedisConfig;
use crate::{Error, Result};

/// Stored in Redis for a key the origin does not know. JSON text never starts with `~`.
pub const NOT_FOUND_MARKER: &[u8] = b"~osprey:not_found";

/// Why a Redis call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisError {
    /// Not connected (connecting failed or was not retried yet).
    Down,
    /// The call returned an error.
    Failed,
    /// The call took longer than the tier's timeout.
    Timeout,
}

/// See the module docs.
pub struct RedisTier {
    client: redis::Client,
    conn: Option<ConnectionManager>,
    next_connect: Instant,
    prefix: String,
    ttl_secs: u64,
    negative_ttl_secs: u64,
    timeout: Duration,
}

impl RedisTier {
    /// A tier for `cfg`; connects on first use.
    pub fn new(cfg: &RedisConfig) -> Result<Self> {
        let mut info: redis::ConnectionInfo =
            redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str()).map_err(|e| {
                Error::Operator {
                    operator: "enrich".into(),
                    message: format!("redis.url: {e}"),
                }
            })?;
        let mut redis_info = info.redis_settings().clone();
        if let Some(u) = &cfg.username {
            redis_info = redis_info.set_username(u);
        }
        if let Some(p) = &cfg.password {
            redis_info = redis_info.set_password(p);
        }
        info = info.set_redis_settings(redis_info);
        let client = redis::Client::open(info).map_err(|e| Error::Operator {
            operator: "enrich".into(),
            message: format!("redis: {e}"),
        })?;
        Ok(RedisTier {
            client,
            conn: None,
            next_connect: Instant::now(),
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
            return Err(RedisError::Down);
        }
        self.next_connect = now + self.timeout.max(Duration::from_millis(100));
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.timeout);
        let connect = ConnectionManager::new_with_config(self.client.clone(), cfg);
        match tokio::time::timeout(self.timeout * 2, connect).await {
            Ok(Ok(c)) => {
                self.conn = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "Redis connect failed.");
                Err(RedisError::Down)
            }
            Err(_) => Err(RedisError::Down),
        }
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
