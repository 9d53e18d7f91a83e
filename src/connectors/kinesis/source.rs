//! The `type = "kinesis"` source: discovery, the position, and the choice between polling
//! (`polling`) and enhanced fan-out (`efo`). See the module docs of [`super`].

use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::Metrics;
use super::client::{KinesisApi, SdkKinesis};
use super::config::{ConsumerConfig, KinesisSourceConfig, StartPosition};
use super::efo::Efo;
use super::polling::{ERROR_BACKOFF, Polling};
use super::shards::Shards;
use crate::connectors::{Poll, RawItem, Source, SourceFailure};
use crate::{Error, Result, Retry};

/// How shards are read.
pub(super) enum Mode {
    /// GetRecords.
    Polling(Polling),
    /// SubscribeToShard.
    Efo(Efo),
}

/// See the module docs.
pub struct KinesisSource {
    cfg: KinesisSourceConfig,
    api: Option<Arc<dyn KinesisApi>>,
    pub(super) shards: Shards,
    next_discovery: Instant,
    metrics: Metrics,
    pub(super) mode: Mode,
    /// Set while ListShards fails (see [`Source::failure`]).
    listing_failure: Option<SourceFailure>,
}

/// Hands out up to `max` buffered items; when that finished a shard, its children are
/// looked for at once rather than at the next discovery interval.
pub(super) fn take(shards: &mut Shards, max: usize, next_discovery: &mut Instant) -> Vec<RawItem> {
    let items = shards.take(max);
    if shards.take_relist() {
        *next_discovery = (*next_discovery).min(Instant::now());
    }
    items
}

impl KinesisSource {
    /// A source that connects on first use.
    pub fn new(cfg: KinesisSourceConfig) -> Self {
        let start_ms = match cfg.start {
            StartPosition::TrimHorizon => None,
            StartPosition::Latest => Some((crate::metrics::now_secs() * 1000.0) as i64),
            StartPosition::AtTimestamp => cfg.start_timestamp.as_deref().and_then(|t| {
                crate::core::time::parse_time(t, crate::core::time::TimeUnit::Millis).ok()
            }),
        };
        let mode = match &cfg.consumer {
            ConsumerConfig::Polling => Mode::Polling(Polling::new(
                &cfg.stream,
                cfg.records_per_read,
                cfg.max_reads_per_second,
                cfg.idle_backoff_max.as_std(),
            )),
            ConsumerConfig::Efo(e) => Mode::Efo(Efo::new(&cfg.stream, e.clone())),
        };
        KinesisSource {
            shards: Shards::new(&cfg.stream, cfg.start, start_ms, cfg.max_record_bytes),
            cfg,
            api: None,
            next_discovery: Instant::now(),
            metrics: Metrics::new(),
            mode,
            listing_failure: None,
        }
    }

    /// A source over a given client (tests inject faults this way).
    pub fn with_api(cfg: KinesisSourceConfig, api: Arc<dyn KinesisApi>) -> Self {
        let mut s = Self::new(cfg);
        s.api = Some(api);
        s
    }

    async fn api(&mut self) -> Arc<dyn KinesisApi> {
        if let Some(a) = &self.api {
            return Arc::clone(a);
        }
        let a: Arc<dyn KinesisApi> =
            Arc::new(SdkKinesis::new(self.cfg.endpoint_url.as_deref()).await);
        self.api = Some(Arc::clone(&a));
        a
    }

    /// Lists shards and adds the new ones.
    async fn discover(&mut self, api: &Arc<dyn KinesisApi>) -> Result<()> {
        let listed = match api.list_shards(&self.cfg.stream).await {
            Ok(l) => l,
            Err(e) => {
                // A missing stream or refused credentials may be fixed while the job waits
                // (a stream being created, a policy being attached): a failure the driver
                // reports and, after `fail_after`, stops the job with.
                tracing::debug!(stream = %self.cfg.stream, error = %e, "ListShards failed; retrying.");
                self.listing_failure = Some(e.failure());
                self.next_discovery = Instant::now() + ERROR_BACKOFF;
                return Ok(());
            }
        };
        self.listing_failure = None;
        self.shards.apply_listing(listed);
        self.next_discovery = Instant::now() + self.cfg.discovery_interval.as_std();
        Ok(())
    }
}

#[async_trait]
impl Source for KinesisSource {
    async fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        self.shards.restore(position).map_err(|what| Error::Source {
            component: "kinesis".into(),
            message: format!("bad checkpoint position ({what}): {position}"),
            retry: Retry::No,
        })
    }

    async fn poll(&mut self, max: usize) -> Result<Poll> {
        let max = max.max(1);
        let api = self.api().await;
        if Instant::now() >= self.next_discovery {
            self.discover(&api).await?;
        }
        let items = take(&mut self.shards, max, &mut self.next_discovery);
        if !items.is_empty() {
            return Ok(Poll::Items(items));
        }
        let polling = match &mut self.mode {
            Mode::Efo(efo) => {
                let (shards, metrics) = (&mut self.shards, &self.metrics);
                return efo
                    .poll(&api, shards, metrics, &mut self.next_discovery, max)
                    .await;
            }
            Mode::Polling(p) => p,
        };
        if polling.read(&api, &mut self.shards, &self.metrics).await? {
            let items = take(&mut self.shards, max, &mut self.next_discovery);
            if !items.is_empty() {
                return Ok(Poll::Items(items));
            }
        }
        // Nothing to return: sleep until the next shard is due or the next discovery.
        let now = Instant::now();
        let next = polling
            .next_due(&self.shards)
            .map_or(self.next_discovery, |due| due.min(self.next_discovery));
        let wait = next
            .saturating_duration_since(now)
            .clamp(StdDuration::from_millis(1), StdDuration::from_secs(1));
        Ok(Poll::Idle(wait))
    }

    fn position(&self) -> serde_json::Value {
        self.shards.position()
    }

    fn failure(&self) -> Option<SourceFailure> {
        if let Some(f) = &self.listing_failure {
            return Some(f.clone());
        }
        match &self.mode {
            Mode::Polling(p) => p.failing.clone(),
            Mode::Efo(_) => None,
        }
    }
}
