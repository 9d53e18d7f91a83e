//! Enhanced fan-out (`consumer = { type = "efo", … }`): the consumer, one SubscribeToShard task
//! per readable shard, and the channel that brings their events to `poll`. See the module
//! docs of [`super`]: *Enhanced fan-out*.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use tokio::time::Instant;

use super::client::{IteratorStart, KinesisApi, ShardEvent};
use super::config::EfoConfig;
use super::polling::ERROR_BACKOFF;
use super::shards::Shards;
use super::{COMPONENT, Metrics};
use crate::connectors::{Poll, RawItem};
use crate::core::Backoff;
use crate::{Result, Retry};

/// Between DescribeStreamConsumer calls while the consumer is being created.
const CONSUMER_POLL: StdDuration = StdDuration::from_millis(500);
/// Subscription events in flight from all shard tasks to `poll`.
const EVENT_CHANNEL: usize = 8;
/// A failed subscription is replaced after 1 s, 2 s, 4 s … up to 10 s (e.g. while the one it
/// replaces is still alive: ResourceInUse); the first event resets it.
pub(super) const RESUBSCRIBE_BACKOFF: Backoff =
    Backoff::new(ERROR_BACKOFF, StdDuration::from_secs(10)).without_jitter();

/// One subscription event for `poll`.
struct EfoMsg {
    shard: Arc<str>,
    event: ShardEvent,
}

/// The enhanced fan-out side of the source.
pub(super) struct Efo {
    stream: String,
    cfg: EfoConfig,
    /// Set once the consumer is ACTIVE.
    consumer_arn: Option<String>,
    next_consumer_check: Instant,
    tx: tokio::sync::mpsc::Sender<EfoMsg>,
    rx: tokio::sync::mpsc::Receiver<EfoMsg>,
    /// The shard tasks; dropped (aborted, cancelling their subscriptions) with the source.
    tasks: tokio::task::JoinSet<()>,
    /// Shards with a subscription task.
    subscribed: HashSet<Arc<str>>,
    /// Waits before subscribing again after an error (tests shorten them).
    pub(super) backoff: Backoff,
}

impl Efo {
    pub(super) fn new(stream: &str, cfg: EfoConfig) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(EVENT_CHANNEL);
        Efo {
            stream: stream.to_string(),
            cfg,
            consumer_arn: None,
            next_consumer_check: Instant::now(),
            tx,
            rx,
            tasks: tokio::task::JoinSet::new(),
            subscribed: HashSet::new(),
            backoff: RESUBSCRIBE_BACKOFF,
        }
    }

    /// `poll` for enhanced fan-out, after discovery and with nothing buffered: makes sure the
    /// consumer is active and every readable shard subscribed, then hands out the records of
    /// the next events (waiting for one at most until `next_discovery`).
    pub(super) async fn poll(
        &mut self,
        api: &Arc<dyn KinesisApi>,
        shards: &mut Shards,
        metrics: &Metrics,
        next_discovery: &mut Instant,
        max: usize,
    ) -> Result<Poll> {
        // A task that panicked stops the source.
        while let Some(r) = self.tasks.try_join_next() {
            if let Err(e) = r {
                let message = format!("subscription task failed: {e}");
                return Err(super::error(&self.stream, message, Retry::No));
            }
        }
        let arn = match &self.consumer_arn {
            Some(arn) => arn.clone(),
            None => match self.activate(api).await {
                Ok(arn) => arn,
                Err(wait) => return Ok(Poll::Idle(wait)),
            },
        };
        // Subscribe every readable shard that has no subscription yet.
        for id in shards.readable() {
            if self.subscribed.contains(&id) {
                continue;
            }
            let start = shards.start_of(&id);
            tracing::info!(stream = %self.stream, shard = %id, ?start, "Subscribing to shard.");
            self.subscribed.insert(Arc::clone(&id));
            self.tasks.spawn(subscription_task(SubscriptionTask {
                api: Arc::clone(api),
                consumer_arn: arn.clone(),
                shard: id,
                start,
                stall_timeout: self.cfg.stall_timeout.as_std(),
                backoff: self.backoff,
                tx: self.tx.clone(),
                resubscriptions: metrics.resubscriptions.clone(),
            }));
        }
        // Apply queued events until one has records to hand on.
        while let Ok(msg) = self.rx.try_recv() {
            let items = self.apply(msg, shards, metrics, next_discovery, max);
            if !items.is_empty() {
                return Ok(Poll::Items(items));
            }
        }
        // Wait for the next event (cancel-safe: `recv` loses nothing when dropped), at most
        // until the next discovery.
        let wait = next_discovery
            .saturating_duration_since(Instant::now())
            .clamp(StdDuration::from_millis(1), StdDuration::from_secs(1));
        if let Ok(Some(msg)) = tokio::time::timeout(wait, self.rx.recv()).await {
            let items = self.apply(msg, shards, metrics, next_discovery, max);
            if !items.is_empty() {
                return Ok(Poll::Items(items));
            }
        }
        Ok(Poll::Idle(StdDuration::from_millis(1)))
    }

    /// Registers or describes the consumer: its ARN once ACTIVE, else how long to wait.
    async fn activate(
        &mut self,
        api: &Arc<dyn KinesisApi>,
    ) -> std::result::Result<String, StdDuration> {
        let now = Instant::now();
        if now < self.next_consumer_check {
            return Err((self.next_consumer_check - now).min(StdDuration::from_secs(1)));
        }
        match api.consumer(&self.stream, &self.cfg.name).await {
            Ok(c) if c.active => {
                tracing::info!(stream = %self.stream, consumer = %c.arn, "Enhanced fan-out consumer is active.");
                self.consumer_arn = Some(c.arn.clone());
                Ok(c.arn)
            }
            Ok(c) => {
                tracing::info!(stream = %self.stream, consumer = %c.arn, "Waiting for the enhanced fan-out consumer to become active.");
                self.next_consumer_check = now + CONSUMER_POLL;
                Err(CONSUMER_POLL)
            }
            Err(e) => {
                tracing::warn!(stream = %self.stream, consumer = %self.cfg.name, error = %e, "Registering or describing the enhanced fan-out consumer failed; retrying.");
                self.next_consumer_check = now + ERROR_BACKOFF;
                Err(ERROR_BACKOFF)
            }
        }
    }

    /// Buffers an event's records, ends its shard when the event says so, and hands out up to
    /// `max` items.
    fn apply(
        &mut self,
        msg: EfoMsg,
        shards: &mut Shards,
        metrics: &Metrics,
        next_discovery: &mut Instant,
        max: usize,
    ) -> Vec<RawItem> {
        let EfoMsg { shard: id, event } = msg;
        let behind = Some(event.millis_behind_latest);
        metrics.read(&id, shards.buffer(&id, event.records), behind);
        if event.continuation.is_none() {
            if shards.end(&id) {
                tracing::info!(shard = %id, children = ?event.child_shards, "Subscription reached the end of the shard.");
                self.subscribed.remove(&id);
            }
            // The children: list them now rather than at the next discovery interval.
            if !event.child_shards.is_empty() {
                *next_discovery = Instant::now();
            }
        }
        super::source::take(shards, max, next_discovery)
    }
}

/// Why a subscription is replaced (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resubscribe {
    Expired,
    Stalled,
    Error,
}

impl Resubscribe {
    fn label(self) -> &'static str {
        match self {
            Resubscribe::Expired => "expired",
            Resubscribe::Stalled => "stalled",
            Resubscribe::Error => "error",
        }
    }
}

/// One shard's enhanced fan-out reading.
struct SubscriptionTask {
    api: Arc<dyn KinesisApi>,
    consumer_arn: String,
    shard: Arc<str>,
    start: IteratorStart,
    stall_timeout: StdDuration,
    /// Waits before subscribing again after an error.
    backoff: Backoff,
    tx: tokio::sync::mpsc::Sender<EfoMsg>,
    resubscriptions: prometheus::IntCounterVec,
}

/// The life of one shard's enhanced fan-out reading: subscribe from `start`, forward events,
/// replace the subscription when it ends, fails or stalls, until the shard ends (an event
/// without continuation) or the source is dropped (the channel closes or the task is aborted).
async fn subscription_task(task: SubscriptionTask) {
    let SubscriptionTask {
        api,
        consumer_arn,
        shard,
        mut start,
        stall_timeout,
        backoff,
        tx,
        resubscriptions,
    } = task;
    let mut failures = backoff.attempts(0);
    // The wait before the next subscription: set by a failure, cleared by an event.
    let mut delay = StdDuration::ZERO;
    let mut first = true;
    let mut why = Resubscribe::Expired;
    loop {
        if !first {
            resubscriptions
                .with_label_values(&[COMPONENT, &shard, why.label()])
                .inc();
        }
        first = false;
        if why == Resubscribe::Error {
            tokio::time::sleep(delay).await;
        }
        let mut sub = match api.subscribe(&consumer_arn, &shard, &start).await {
            Ok(sub) => sub,
            Err(e) => {
                delay = failures.next_delay();
                why = Resubscribe::Error;
                tracing::warn!(%shard, error = %e, backoff = ?delay, "SubscribeToShard failed; retrying.");
                continue;
            }
        };
        tracing::debug!(%shard, ?start, "Subscribed.");
        why = loop {
            match tokio::time::timeout(stall_timeout, sub.next_event()).await {
                Err(_) => {
                    tracing::warn!(%shard, ?stall_timeout, "No subscription event within the stall timeout; subscribing again.");
                    break Resubscribe::Stalled;
                }
                Ok(Ok(None)) => {
                    tracing::debug!(%shard, "Subscription ended; subscribing again.");
                    break Resubscribe::Expired;
                }
                Ok(Err(e)) => {
                    delay = failures.next_delay();
                    tracing::warn!(%shard, error = %e, backoff = ?delay, "Subscription failed; subscribing again.");
                    break Resubscribe::Error;
                }
                Ok(Ok(Some(event))) => {
                    failures.reset();
                    let end = event.continuation.is_none();
                    if let Some(c) = &event.continuation {
                        start = IteratorStart::AfterSequence(c.clone());
                    }
                    let msg = EfoMsg {
                        shard: Arc::clone(&shard),
                        event,
                    };
                    if tx.send(msg).await.is_err() || end {
                        return;
                    }
                }
            }
        };
        // Dropping the subscription cancels it before the next one starts.
        drop(sub);
    }
}
