//! The source driver against fake sources behind the `Source` trait: polls slower than the
//! checkpoint interval, unreadable inputs, failing sources. Real time (the crate does not
//! build tokio's test clock): the runs are short.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::SourceDriver;
use crate::connectors::{Poll, RawItem, Sink, Source, SourceFailure};
use crate::core::{DeadLetter, Origin, Record};
use crate::metrics::Health;
use crate::operators::Barrier;
use crate::parse::{Format, Parser, ParserConfig};
use crate::state::checkpoint::Commit;
use crate::topology::fill::{Bounds, Fill};
use crate::topology::{Ack, Message};

/// The parser of every test here: JSON with one value `v`.
pub(crate) fn parser() -> Parser {
    Parser::new(ParserConfig {
        format: Format::Json,
        key: None,
        values: vec!["v".into()],
        time: None,
        time_unit: crate::core::time::TimeUnit::Millis,
        key_groups: 16,
        max_record_bytes: 1 << 20,
        pass_missing: false,
    })
}

/// No time or byte bound: only the channel.
fn unbounded() -> Bounds {
    Bounds {
        target: Duration::ZERO,
        max_bytes: usize::MAX,
        batch_size: 4,
    }
}

/// Hands out `total` records, `per_poll` at a time, each poll taking `delay`. Position: the
/// number of records returned. Its inputs at `unreadable` indexes are dead letters instead;
/// it fails (Idle plus a failure) for its first `failing_polls` polls.
struct Slow {
    next: u64,
    total: u64,
    per_poll: u64,
    delay: Duration,
    unreadable: Vec<u64>,
    dead: Vec<DeadLetter>,
    failing_polls: u32,
    failure: Option<SourceFailure>,
}

impl Slow {
    fn new(total: u64, per_poll: u64, delay: Duration) -> Self {
        Slow {
            next: 0,
            total,
            per_poll,
            delay,
            unreadable: vec![],
            dead: vec![],
            failing_polls: 0,
            failure: None,
        }
    }
}

#[async_trait]
impl Source for Slow {
    async fn restore(&mut self, position: &serde_json::Value) -> crate::Result<()> {
        self.next = position["next"].as_u64().unwrap();
        Ok(())
    }

    async fn poll(&mut self, _max: usize) -> crate::Result<Poll> {
        tokio::time::sleep(self.delay).await;
        if self.failing_polls > 0 {
            self.failing_polls -= 1;
            self.failure = Some(SourceFailure {
                kind: "not_found",
                message:
                    "ListObjectsV2 bucket b: NoSuchBucket: The specified bucket does not exist"
                        .into(),
            });
            return Ok(Poll::Idle(Duration::from_millis(20)));
        }
        self.failure = None;
        if self.next >= self.total {
            return Ok(Poll::End);
        }
        let mut items = Vec::new();
        while self.next < self.total && (items.len() as u64) < self.per_poll {
            let n = self.next;
            self.next += 1;
            if self.unreadable.contains(&n) {
                self.dead.push(DeadLetter {
                    reason: "unreadable",
                    message: format!("object {n}: AccessDenied"),
                    data: n.to_string(),
                    origin: Origin::default(),
                });
                continue;
            }
            let mut item = RawItem::new(Vec::new(), Arc::from("s"));
            item.record = Some(Box::new(Record::new(format!("k{}", n % 7), vec![n as f64])));
            items.push(item);
        }
        Ok(Poll::Items(items))
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "next": self.next })
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }

    fn failure(&self) -> Option<SourceFailure> {
        self.failure.clone()
    }
}

/// A dead-letter sink that keeps what it is given.
#[derive(Clone, Default)]
pub(crate) struct Kept(pub Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Sink for Kept {
    async fn write(&mut self, records: &[Record]) -> crate::Result<()> {
        let mut v = self.0.lock().unwrap();
        v.extend(
            records
                .iter()
                .map(|r| r.raw.as_deref().unwrap().to_string()),
        );
        Ok(())
    }
    async fn precommit(&mut self, _epoch: u64) -> crate::Result<Vec<Commit>> {
        Ok(vec![])
    }
}

/// What one run of the driver produced.
struct Run {
    /// Values routed to the partitions, in order.
    values: Vec<u64>,
    /// Per acked barrier: (epoch, position, values routed before the barrier).
    barriers: Vec<(u64, serde_json::Value, usize)>,
    dead: Vec<String>,
    result: crate::Result<()>,
    /// `/readyz` as the driver left it after each barrier.
    ready: Vec<bool>,
}

/// Drives `source` with one partition, as the coordinator would: a barrier every
/// `interval`, each waited for, at most `max_barriers`, then a final one.
async fn drive(source: Slow, interval: Duration, max_barriers: u64, fail_after: Duration) -> Run {
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(4);
    let (trig_tx, trig_rx) = mpsc::channel::<Barrier>(4);
    let (ack_tx, mut ack_rx) = mpsc::channel::<Ack>(16);
    let dead = Kept::default();
    let health = Arc::new(Health::default());
    health
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let driver = SourceDriver {
        source: Box::new(source),
        parser: parser(),
        outputs: vec![out_tx],
        fills: vec![Arc::new(Fill::new(unbounded()))],
        buffers: vec![Vec::new()],
        batch_size: 4,
        key_groups: 16,
        dead_letter: Box::new(dead.clone()),
        triggers: trig_rx,
        acks: ack_tx,
        records: 0,
        component: "slow".into(),
        health: Arc::clone(&health),
        fail_after,
    };
    let task = tokio::spawn(driver.run());
    // The partition: every value, and how many came before each barrier.
    let seen = Arc::new(Mutex::new((Vec::<u64>::new(), Vec::<(u64, usize)>::new())));
    let consumer = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let mut s = seen.lock().unwrap();
                match m {
                    Message::Batch(b) => s.0.extend(b.iter().map(|r| r.values[0] as u64)),
                    Message::Barrier(b) => {
                        let n = s.0.len();
                        s.1.push((b.epoch, n));
                    }
                }
            }
        })
    };
    let mut positions = Vec::new();
    let mut ready = Vec::new();
    let mut finished = false;
    let mut epoch = 0;
    while !task.is_finished() {
        let then_stop = finished || epoch == max_barriers;
        tokio::time::sleep(interval).await;
        epoch += 1;
        if trig_tx.send(Barrier { epoch, then_stop }).await.is_err() {
            break;
        }
        loop {
            match ack_rx.recv().await {
                Some(Ack::SourceFinished) => finished = true,
                Some(Ack::Source {
                    epoch: e, position, ..
                }) => {
                    assert_eq!(e, epoch);
                    positions.push((e, position));
                    ready.push(health.ready.load(std::sync::atomic::Ordering::Relaxed));
                    break;
                }
                Some(Ack::Partition { .. }) => unreachable!(),
                None => break,
            }
        }
        if then_stop {
            break;
        }
    }
    let result = task.await.unwrap();
    consumer.await.unwrap();
    let (values, counts) = std::mem::take(&mut *seen.lock().unwrap());
    let barriers = positions
        .into_iter()
        .map(|(e, p)| {
            let n = counts.iter().find(|(ce, _)| *ce == e).unwrap().1;
            (e, p, n)
        })
        .collect();
    let dead = dead.0.lock().unwrap().clone();
    Run {
        values,
        barriers,
        dead,
        result,
        ready,
    }
}

/// Issue 14.5: a poll slower than the checkpoint interval (300 ms against 100 ms) used to be
/// dropped by every barrier request, so the job read nothing while checkpoints completed.
/// Now every record is read, every checkpoint's position is exactly what was routed before
/// its barrier, and resuming from any checkpoint reproduces the rest of the output.
#[tokio::test]
async fn r14_5_polls_slower_than_the_interval_make_progress_with_exact_positions() {
    let (total, per_poll, delay) = (12, 2, Duration::from_millis(300));
    let interval = Duration::from_millis(100);
    let far = Duration::from_secs(3600);
    let run = drive(Slow::new(total, per_poll, delay), interval, 500, far).await;
    run.result.unwrap();
    let all: Vec<u64> = (0..total).collect();
    assert_eq!(run.values, all, "every record read, once, in order");
    assert!(run.barriers.len() > 3, "checkpoints were taken meanwhile");
    let mut resumed_runs = 0;
    for (epoch, position, routed) in &run.barriers {
        assert_eq!(
            position["next"].as_u64().unwrap() as usize,
            *routed,
            "barrier {epoch}: the position covers exactly what was routed before it"
        );
        if *routed == 0 || *routed == all.len() || resumed_runs == 3 {
            continue;
        }
        resumed_runs += 1;
        // Restore there: the output before the barrier plus the resumed run is the whole.
        let mut resumed = Slow::new(total, per_poll, delay);
        resumed.restore(position).await.unwrap();
        let rest = drive(resumed, interval, 500, far).await;
        rest.result.unwrap();
        let mut whole = run.values[..*routed].to_vec();
        whole.extend(rest.values);
        assert_eq!(whole, all, "resumed at barrier {epoch}");
    }
}

/// Issue 14.9: inputs the source could not read are dead-lettered with their reason, once,
/// and the job goes on.
#[tokio::test]
async fn r14_9_unreadable_inputs_are_dead_lettered_and_the_job_goes_on() {
    let mut src = Slow::new(10, 4, Duration::from_millis(10));
    src.unreadable = vec![2, 7];
    let run = drive(
        src,
        Duration::from_millis(100),
        500,
        Duration::from_secs(60),
    )
    .await;
    run.result.unwrap();
    assert_eq!(run.values, [0, 1, 3, 4, 5, 6, 8, 9]);
    assert_eq!(run.dead.len(), 2, "{:?}", run.dead);
    let first: serde_json::Value = serde_json::from_str(&run.dead[0]).unwrap();
    assert_eq!(first["reason"], "unreadable");
    assert_eq!(first["error"], "object 2: AccessDenied");
}

/// Issue 14.10: a source that keeps failing makes the job unready, then stops it with the
/// service's error once `fail_after` passed without progress.
#[tokio::test]
async fn r14_10_a_failing_source_is_unready_then_stops_the_job() {
    let mut src = Slow::new(10, 4, Duration::from_millis(10));
    src.failing_polls = u32::MAX;
    let m = crate::metrics::get();
    let errors = m.labeled_counter(
        crate::metrics::SOURCE_ERRORS,
        "errors",
        &["component", "kind"],
    );
    let before = errors.with_label_values(&["slow", "not_found"]).get();
    let run = drive(
        src,
        Duration::from_millis(50),
        10_000,
        Duration::from_millis(400),
    )
    .await;
    let e = run.result.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("NoSuchBucket: The specified bucket does not exist"),
        "{text}"
    );
    assert!(text.starts_with("source slow: "), "{text}");
    assert!(run.values.is_empty());
    assert!(
        !run.ready.is_empty() && run.ready.iter().all(|r| !r),
        "{:?}",
        run.ready
    );
    assert!(errors.with_label_values(&["slow", "not_found"]).get() > before);
}

/// Issue 14.10: a failure that clears before `fail_after` only delays the job: ready again,
/// every record read.
#[tokio::test]
async fn r14_10_a_source_that_recovers_in_time_is_ready_again() {
    let mut src = Slow::new(10, 4, Duration::from_millis(10));
    src.failing_polls = 6;
    let run = drive(
        src,
        Duration::from_millis(50),
        10_000,
        Duration::from_secs(60),
    )
    .await;
    run.result.unwrap();
    assert_eq!(run.values, (0..10).collect::<Vec<_>>());
    assert_eq!(
        run.ready.first(),
        Some(&false),
        "unready while failing: {:?}",
        run.ready
    );
    assert_eq!(run.ready.last(), Some(&true), "ready once it recovered");
}

/// Issue 14.11: with a slow partition, a barrier waits behind about `in_flight_target` of
/// work, not behind a full channel. The partition takes 2 ms a record; the channel holds 1,024
/// records (2 s of work); with a 100 ms target, few records are queued when a barrier comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_11_a_barrier_waits_behind_the_target_not_the_channel() {
    async fn queued_ahead_of_barrier(bounds: Bounds) -> usize {
        let (out_tx, mut out_rx) = mpsc::channel::<Message>(256);
        let (trig_tx, trig_rx) = mpsc::channel::<Barrier>(4);
        let (ack_tx, mut ack_rx) = mpsc::channel::<Ack>(16);
        let fill = Arc::new(Fill::new(bounds));
        let driver = SourceDriver {
            source: Box::new(Slow::new(1_000_000, 64, Duration::ZERO)),
            parser: parser(),
            outputs: vec![out_tx],
            fills: vec![Arc::clone(&fill)],
            buffers: vec![Vec::new()],
            batch_size: 4,
            key_groups: 16,
            dead_letter: Box::new(Kept::default()),
            triggers: trig_rx,
            acks: ack_tx,
            records: 0,
            component: "fast".into(),
            health: Arc::new(Health::default()),
            fail_after: Duration::from_secs(60),
        };
        let task = tokio::spawn(driver.run());
        let acks = tokio::spawn(async move { while ack_rx.recv().await.is_some() {} });
        let consumed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let consumer = {
            let (fill, consumed) = (Arc::clone(&fill), Arc::clone(&consumed));
            tokio::spawn(async move {
                while let Some(m) = out_rx.recv().await {
                    match m {
                        Message::Batch(b) => {
                            let started = std::time::Instant::now();
                            tokio::time::sleep(Duration::from_millis(2 * b.len() as u64)).await;
                            let bytes = b.iter().map(crate::topology::fill::record_bytes).sum();
                            fill.done(b.len(), bytes, started.elapsed());
                            consumed.fetch_add(b.len(), std::sync::atomic::Ordering::SeqCst);
                        }
                        Message::Barrier(_) => {
                            return consumed.load(std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                }
                unreachable!("the source ended before the barrier")
            })
        };
        // Let the queue fill up, then ask for a barrier: what the partition consumes before
        // seeing it was queued ahead of it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = consumed.load(std::sync::atomic::Ordering::SeqCst);
        trig_tx
            .send(Barrier {
                epoch: 1,
                then_stop: true,
            })
            .await
            .unwrap();
        let at_barrier = consumer.await.unwrap();
        task.abort();
        acks.abort();
        at_barrier - before
    }
    let unbounded = queued_ahead_of_barrier(unbounded()).await;
    let bounded = queued_ahead_of_barrier(Bounds {
        target: Duration::from_millis(100),
        max_bytes: usize::MAX,
        batch_size: 4,
    })
    .await;
    assert!(
        unbounded >= 700,
        "the channel alone holds ~1,024 records: {unbounded}"
    );
    assert!(
        bounded <= 200,
        "100 ms at 2 ms a record is ~50 records: {bounded}"
    );
}
