//! The source against an in-memory fake of [`KinesisApi`]: the faults kinesis-local cannot
//! produce (throttling, expired iterators, expiring, stalling and failing enhanced fan-out
//! subscriptions), resharding order, KPL resume. Live-server tests are in tests/kinesis_it.rs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::client::{
    ApiError, Consumer, IteratorStart, KinesisApi, KinesisRecord, PutEntry, RecordsPage,
    ShardEvent, ShardInfo, ShardSubscription,
};
use super::config::{ConsumerConfig, KinesisSourceConfig};
use super::shards::{Pos, after};
use super::source::{KinesisSource, Mode};
use super::{COMPONENT, RESUBSCRIPTIONS, THROTTLES, kpl};
use crate::connectors::{Poll, RawItem, Source, SourceSpec};
use crate::core::Backoff;

/// What the fake does with the next SubscribeToShard call (default: a normal subscription
/// that the service ends after `events_per_subscription` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubFault {
    /// The call fails: a previous subscription is still alive.
    InUse,
    /// The subscription delivers this many events, then no event ever again.
    StallAfter(usize),
    /// The subscription delivers this many events, then fails.
    FailAfter(usize),
}

#[derive(Default)]
struct FakeState {
    /// shard id → (parents, records, closed)
    shards: Vec<(String, Vec<String>, Vec<KinesisRecord>, bool)>,
    throttle_next: u32,
    expire_next: u32,
    /// ListShards fails with this while set.
    list_fails: Option<ApiError>,
    /// GetRecords answers AccessDenied this many times first.
    deny_next: u32,
    get_records_calls: u32,
    iterator_requests: Vec<(String, IteratorStart)>,
    /// DescribeStreamConsumer answers "CREATING" this many times first.
    consumer_creating: u32,
    consumer_calls: u32,
    subscribe_requests: Vec<(String, IteratorStart)>,
    sub_faults: VecDeque<SubFault>,
    /// Records per subscription event.
    records_per_event: usize,
    /// Events before the "service" ends a subscription (the 5-minute expiry).
    events_per_subscription: usize,
    /// Between the empty events of an idle shard (the service: ~5 s).
    idle_event_every: StdDuration,
}

#[derive(Default)]
struct Fake(Mutex<FakeState>);

impl Fake {
    fn shard(&self, id: &str, parents: &[&str], n: u64, closed: bool) {
        let mut st = self.0.lock().unwrap();
        let base = st.shards.len() as u64 * 1000;
        let records = (0..n)
            .map(|i| KinesisRecord {
                sequence: format!("{:021}", base + i + 1),
                partition_key: format!("k{}", i % 3),
                data: format!("{{\"shard\":\"{id}\",\"i\":{i}}}").into_bytes(),
            })
            .collect();
        st.shards.push((
            id.into(),
            parents.iter().map(|p| p.to_string()).collect(),
            records,
            closed,
        ));
    }
}

/// A fake SubscribeToShard stream over the shared fake state.
struct FakeSub {
    fake: Arc<Fake>,
    shard: String,
    /// Index of the next record.
    next: usize,
    sent: usize,
    fault: Option<SubFault>,
    limit: usize,
    per_event: usize,
    idle_every: StdDuration,
}

#[async_trait]
impl ShardSubscription for FakeSub {
    async fn next_event(&mut self) -> std::result::Result<Option<ShardEvent>, ApiError> {
        match self.fault {
            Some(SubFault::StallAfter(n)) if self.sent >= n => std::future::pending().await,
            Some(SubFault::FailAfter(n)) if self.sent >= n => {
                return Err(ApiError::Other("InternalFailure".into()));
            }
            _ => {}
        }
        if self.sent >= self.limit {
            return Ok(None);
        }
        let (records, closed, children, at_end) = {
            let st = self.fake.0.lock().unwrap();
            let (_, _, recs, closed) = st.shards.iter().find(|s| s.0 == self.shard).unwrap();
            let end = (self.next + self.per_event).min(recs.len());
            let records = recs[self.next..end].to_vec();
            let children: Vec<ShardInfo> = st
                .shards
                .iter()
                .filter(|s| s.1.contains(&self.shard))
                .map(|s| ShardInfo {
                    id: s.0.clone(),
                    parents: s.1.clone(),
                })
                .collect();
            (records, *closed, children, end == recs.len())
        };
        if records.is_empty() && !closed {
            // An idle shard: the service sends an empty event every ~5 s.
            tokio::time::sleep(self.idle_every).await;
        }
        self.sent += 1;
        let continuation = if closed && at_end {
            None
        } else {
            let st = self.fake.0.lock().unwrap();
            let (_, _, recs, _) = st.shards.iter().find(|s| s.0 == self.shard).unwrap();
            // The sequence number of the last record so far (or a synthetic one before any).
            let idx = self.next + records.len();
            Some(match idx {
                0 => "0".to_string(),
                i => recs[i - 1].sequence.clone(),
            })
        };
        self.next += records.len();
        let remaining = {
            let st = self.fake.0.lock().unwrap();
            let (_, _, recs, _) = st.shards.iter().find(|s| s.0 == self.shard).unwrap();
            recs.len() - self.next
        };
        Ok(Some(ShardEvent {
            records,
            child_shards: if continuation.is_none() {
                children
            } else {
                Vec::new()
            },
            continuation,
            millis_behind_latest: (remaining * 1000) as i64,
        }))
    }
}

fn parse_it(it: &str) -> (String, usize) {
    let (s, i) = it.rsplit_once('@').unwrap();
    (s.to_string(), i.parse().unwrap())
}

#[async_trait]
impl KinesisApi for Fake {
    async fn list_shards(&self, _stream: &str) -> std::result::Result<Vec<ShardInfo>, ApiError> {
        let st = self.0.lock().unwrap();
        if let Some(e) = &st.list_fails {
            return Err(e.clone());
        }
        Ok(st
            .shards
            .iter()
            .map(|(id, parents, _, _)| ShardInfo {
                id: id.clone(),
                parents: parents.clone(),
            })
            .collect())
    }

    async fn get_shard_iterator(
        &self,
        _stream: &str,
        shard: &str,
        start: &IteratorStart,
    ) -> std::result::Result<String, ApiError> {
        let mut st = self.0.lock().unwrap();
        st.iterator_requests.push((shard.into(), start.clone()));
        let (_, _, recs, _) = st.shards.iter().find(|s| s.0 == shard).unwrap();
        let idx = match start {
            IteratorStart::TrimHorizon | IteratorStart::AtTimestamp(_) => 0,
            IteratorStart::Latest => recs.len(),
            IteratorStart::AtSequence(s) => recs.iter().position(|r| &r.sequence == s).unwrap(),
            IteratorStart::AfterSequence(s) => {
                recs.iter().position(|r| &r.sequence == s).unwrap() + 1
            }
        };
        Ok(format!("{shard}@{idx}"))
    }

    async fn get_records(
        &self,
        iterator: &str,
        limit: i32,
    ) -> std::result::Result<RecordsPage, ApiError> {
        let mut st = self.0.lock().unwrap();
        st.get_records_calls += 1;
        if st.throttle_next > 0 {
            st.throttle_next -= 1;
            return Err(ApiError::Throttled(
                "ProvisionedThroughputExceededException".into(),
            ));
        }
        if st.deny_next > 0 {
            st.deny_next -= 1;
            return Err(ApiError::AccessDenied(
                "GetRecords stream s: AccessDeniedException: not authorized".into(),
            ));
        }
        if st.expire_next > 0 {
            st.expire_next -= 1;
            return Err(ApiError::ExpiredIterator("ExpiredIteratorException".into()));
        }
        let (shard, idx) = parse_it(iterator);
        let (_, _, recs, closed) = st.shards.iter().find(|s| s.0 == shard).unwrap();
        let end = (idx + limit as usize).min(recs.len());
        let records = recs[idx..end].to_vec();
        let next_iterator = if *closed && end == recs.len() {
            None
        } else {
            Some(format!("{shard}@{end}"))
        };
        Ok(RecordsPage {
            records,
            next_iterator,
            millis_behind_latest: Some(((recs.len() - end) * 1000) as i64),
        })
    }

    async fn put_records(
        &self,
        _stream: &str,
        entries: &[PutEntry],
    ) -> std::result::Result<Vec<Option<String>>, ApiError> {
        Ok(vec![None; entries.len()])
    }
}

/// The fake behind an `Arc` of itself, so subscriptions can read the shared state; adds the
/// enhanced fan-out calls.
struct FakeApi(Arc<Fake>);

#[async_trait]
impl KinesisApi for FakeApi {
    async fn list_shards(&self, stream: &str) -> std::result::Result<Vec<ShardInfo>, ApiError> {
        self.0.list_shards(stream).await
    }
    async fn get_shard_iterator(
        &self,
        stream: &str,
        shard: &str,
        start: &IteratorStart,
    ) -> std::result::Result<String, ApiError> {
        self.0.get_shard_iterator(stream, shard, start).await
    }
    async fn get_records(
        &self,
        iterator: &str,
        limit: i32,
    ) -> std::result::Result<RecordsPage, ApiError> {
        self.0.get_records(iterator, limit).await
    }
    async fn put_records(
        &self,
        stream: &str,
        entries: &[PutEntry],
    ) -> std::result::Result<Vec<Option<String>>, ApiError> {
        self.0.put_records(stream, entries).await
    }
    async fn consumer(&self, _stream: &str, name: &str) -> std::result::Result<Consumer, ApiError> {
        let mut st = self.0.0.lock().unwrap();
        st.consumer_calls += 1;
        let active = st.consumer_calls > st.consumer_creating;
        Ok(Consumer {
            arn: format!("arn:fake/consumer/{name}"),
            active,
        })
    }
    async fn subscribe(
        &self,
        _consumer_arn: &str,
        shard: &str,
        start: &IteratorStart,
    ) -> std::result::Result<Box<dyn ShardSubscription>, ApiError> {
        let mut st = self.0.0.lock().unwrap();
        st.subscribe_requests.push((shard.into(), start.clone()));
        let fault = st.sub_faults.pop_front();
        if fault == Some(SubFault::InUse) {
            return Err(ApiError::ResourceInUse("ResourceInUseException".into()));
        }
        let (_, _, recs, _) = st.shards.iter().find(|s| s.0 == shard).unwrap();
        let next = match start {
            IteratorStart::TrimHorizon | IteratorStart::AtTimestamp(_) => 0,
            IteratorStart::Latest => recs.len(),
            IteratorStart::AtSequence(s) => recs.iter().position(|r| &r.sequence == s).unwrap(),
            IteratorStart::AfterSequence(s) if s == "0" => 0,
            IteratorStart::AfterSequence(s) => {
                recs.iter().position(|r| &r.sequence == s).unwrap() + 1
            }
        };
        Ok(Box::new(FakeSub {
            fake: Arc::clone(&self.0),
            shard: shard.into(),
            next,
            sent: 0,
            fault,
            limit: st.events_per_subscription.max(1),
            per_event: st.records_per_event.max(1),
            idle_every: st.idle_event_every,
        }))
    }
}

fn cfg() -> KinesisSourceConfig {
    toml::from_str(
        r#"stream = "s"
max_reads_per_second = 1000.0
records_per_read = 7
idle_backoff_max = "5ms"
discovery_interval = "1ms""#,
    )
    .unwrap()
}

/// Polls until `n` items arrived (or panics after many idle polls).
async fn read(src: &mut KinesisSource, n: usize) -> Vec<RawItem> {
    let mut out = Vec::new();
    let mut idle = 0;
    while out.len() < n {
        match src.poll((n - out.len()).min(5)).await.unwrap() {
            Poll::Items(items) => out.extend(items),
            Poll::Idle(d) => {
                idle += 1;
                assert!(idle < 10_000, "stuck after {} items", out.len());
                tokio::time::sleep(d).await;
            }
            Poll::End => unreachable!(),
        }
    }
    out
}

fn label(i: &RawItem) -> String {
    format!(
        "{}/{}",
        i.origin.stream.as_deref().unwrap(),
        i.origin.position.as_deref().unwrap()
    )
}

#[tokio::test]
async fn children_are_read_after_their_parents() {
    let fake = Arc::new(Fake::default());
    fake.shard("a", &[], 20, true);
    fake.shard("b", &[], 20, true);
    fake.shard("c", &["a"], 5, false); // split child of a
    fake.shard("d", &["a", "b"], 5, false); // merge child of a and b
    let mut src = KinesisSource::with_api(cfg(), fake.clone());
    let items = read(&mut src, 50).await;
    let pos = |shard: &str, last: bool| {
        let it = items
            .iter()
            .enumerate()
            .filter(|(_, i)| i.origin.stream.as_deref() == Some(shard));
        if last {
            it.max_by_key(|x| x.0).unwrap().0
        } else {
            it.min_by_key(|x| x.0).unwrap().0
        }
    };
    assert!(pos("a", true) < pos("c", false));
    assert!(pos("a", true) < pos("d", false));
    assert!(pos("b", true) < pos("d", false));
    let p = src.position();
    assert_eq!(p["finished"], serde_json::json!(["a", "b"]));
    // Partition key is the item's stream (the default record key).
    assert!(items.iter().all(|i| i.stream.starts_with('k')));
}

/// Issue 14.10: a stream that is missing or refused is a source failure (the driver turns
/// `/readyz` 503 and stops the job after `fail_after`), not a silent retry; it clears when
/// the calls succeed, and nothing is lost.
#[tokio::test]
async fn r14_10_refused_and_missing_streams_are_failures() {
    let fake = Arc::new(Fake::default());
    fake.shard("a", &[], 10, false);
    fake.0.lock().unwrap().list_fails = Some(ApiError::NotFound(
        "ListShards stream s: ResourceNotFoundException: Stream s not found".into(),
    ));
    let mut src = KinesisSource::with_api(cfg(), fake.clone());
    assert!(matches!(src.poll(5).await.unwrap(), Poll::Idle(_)));
    let f = src.failure().expect("a failure");
    assert_eq!(f.kind, crate::connectors::FAILURE_NOT_FOUND);
    assert!(
        f.message.contains("ResourceNotFoundException"),
        "{}",
        f.message
    );
    // The stream appears; every read is refused: still a failure, now access denied.
    {
        let mut st = fake.0.lock().unwrap();
        st.list_fails = None;
        st.deny_next = 3;
    }
    let mut kinds = Vec::new();
    let mut items = Vec::new();
    let deadline = std::time::Instant::now() + StdDuration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match src.poll(5).await.unwrap() {
            Poll::Items(i) => items.extend(i),
            Poll::Idle(d) => {
                if let Some(f) = src.failure() {
                    kinds.push(f.kind);
                }
                tokio::time::sleep(d).await;
            }
            Poll::End => unreachable!(),
        }
        if items.len() == 10 {
            break;
        }
    }
    assert!(
        kinds.contains(&crate::connectors::FAILURE_ACCESS_DENIED),
        "{kinds:?}"
    );
    assert_eq!(items.len(), 10, "nothing lost");
    assert_eq!(src.failure(), None);
}

#[tokio::test]
async fn throttling_backs_off_and_loses_nothing() {
    let fake = Arc::new(Fake::default());
    fake.shard("a", &[], 30, false);
    fake.0.lock().unwrap().throttle_next = 4;
    let mut src = KinesisSource::with_api(cfg(), fake.clone());
    let items = read(&mut src, 30).await;
    let labels: Vec<String> = items.iter().map(label).collect();
    let want: Vec<String> = (1..=30).map(|i| format!("a/{i:021}")).collect();
    assert_eq!(labels, want);
    let throttled = crate::metrics::get()
        .labeled_counter(THROTTLES, "", &["component", "shard"])
        .with_label_values(&[COMPONENT, "a"])
        .get();
    assert!(throttled >= 4);
}

#[tokio::test]
async fn expired_iterator_resumes_after_last_returned() {
    let fake = Arc::new(Fake::default());
    fake.shard("x", &[], 30, false);
    let mut src = KinesisSource::with_api(cfg(), fake.clone());
    let first = read(&mut src, 7).await;
    fake.0.lock().unwrap().expire_next = 2;
    let rest = read(&mut src, 23).await;
    let labels: Vec<String> = first.iter().chain(&rest).map(label).collect();
    let want: Vec<String> = (1..=30).map(|i| format!("x/{i:021}")).collect();
    assert_eq!(labels, want, "no gap, no duplicate");
    let reqs = fake.0.lock().unwrap().iterator_requests.clone();
    assert!(
        reqs.contains(&(
            "x".into(),
            IteratorStart::AfterSequence(format!("{:021}", 7))
        )),
        "{reqs:?}"
    );
}

/// Appends to the first shard an aggregate of four records at sequence 5 (partition keys
/// p0…p3), then a plain record at 6.
fn push_aggregate_and_plain(fake: &Fake) {
    let mut st = fake.0.lock().unwrap();
    let subs: Vec<kpl::SubRecord> = (0..4)
        .map(|i| kpl::SubRecord {
            partition_key: format!("p{i}"),
            data: format!("{{\"sub\":{i}}}").into_bytes(),
        })
        .collect();
    st.shards[0].2.push(KinesisRecord {
        sequence: "5".into(),
        partition_key: "p0".into(),
        data: kpl::encode(&subs),
    });
    st.shards[0].2.push(KinesisRecord {
        sequence: "6".into(),
        partition_key: "z".into(),
        data: b"{\"plain\":1}".to_vec(),
    });
}

#[tokio::test]
async fn restore_resumes_inside_an_aggregated_record() {
    let fake = Arc::new(Fake::default());
    fake.shard("a", &[], 0, false);
    push_aggregate_and_plain(&fake);
    let mut src = KinesisSource::with_api(cfg(), fake.clone());
    let mut items = Vec::new();
    while items.len() < 2 {
        if let Poll::Items(i) = src.poll(2).await.unwrap() {
            items.extend(i);
        }
    }
    assert_eq!(
        items.iter().map(label).collect::<Vec<_>>(),
        ["a/5:0", "a/5:1"]
    );
    assert_eq!(&*items[1].stream, "p1");
    let pos = src.position();
    assert_eq!(
        pos["shards"]["a"],
        serde_json::json!({"seq": "5", "sub": 1})
    );

    let mut again = KinesisSource::with_api(cfg(), fake.clone());
    again.restore(&pos).await.unwrap();
    let rest = read(&mut again, 3).await;
    assert_eq!(
        rest.iter().map(label).collect::<Vec<_>>(),
        ["a/5:2", "a/5:3", "a/6"]
    );
    assert_eq!(&*rest[0].stream, "p2");
    let reqs = fake.0.lock().unwrap().iterator_requests.clone();
    assert_eq!(
        reqs.last().unwrap().1,
        IteratorStart::AtSequence("5".into())
    );
}

#[tokio::test]
async fn restore_in_the_middle_of_a_reshard() {
    let fake = Arc::new(Fake::default());
    fake.shard("a", &[], 10, true);
    fake.shard("c", &["a"], 10, false);
    let mut src = KinesisSource::with_api(cfg(), fake.clone());
    let first = read(&mut src, 4).await;
    let pos = src.position();
    let mut again = KinesisSource::with_api(cfg(), fake.clone());
    again.restore(&pos).await.unwrap();
    let rest = read(&mut again, 16).await;
    let labels: Vec<String> = first.iter().chain(&rest).map(label).collect();
    let mut want: Vec<String> = (1..=10).map(|i| format!("a/{i:021}")).collect();
    want.extend((1001..=1010).map(|i| format!("c/{i:021}")));
    assert_eq!(labels, want);
}

#[tokio::test]
async fn empty_shards_back_off_up_to_the_limit() {
    let fake = Arc::new(Fake::default());
    fake.shard("a", &[], 0, false);
    let mut src = KinesisSource::with_api(cfg(), fake.clone());
    for _ in 0..20 {
        match src.poll(10).await.unwrap() {
            Poll::Idle(d) => assert!(d <= StdDuration::from_secs(1)),
            other => panic!("{other:?}"),
        }
    }
    let Mode::Polling(p) = &src.mode else {
        panic!("a polling source")
    };
    let s = &p.readers["a"];
    assert!(s.empty_backoff <= StdDuration::from_millis(5));
    assert!(s.empty_backoff >= p.min_interval);
}

#[test]
fn sequence_numbers_compare_numerically() {
    let p = |s: &str, sub| Pos { seq: s.into(), sub };
    assert!(after(&p("10", None), &p("9", None)));
    assert!(after(&p("5", Some(2)), &p("5", Some(1))));
    assert!(!after(&p("5", Some(0)), &p("5", None)));
    assert!(after(
        &p(
            "49590338271490256608559692538361571095921575989136588898",
            None
        ),
        &p(
            "49590338271490256608559692538361571095921575989136588897",
            None
        )
    ));
}

#[test]
fn config_checks() {
    let c: KinesisSourceConfig =
        toml::from_str("stream = \"s\"\nstart = \"at_timestamp\"\nrecords_per_read = 0").unwrap();
    let errs = c.validate();
    assert_eq!(errs.len(), 2, "{errs:?}");
}

// ---- enhanced fan-out ----

/// An idle fake shard sends an empty event every 20 ms; the watchdog waits 1 s.
fn efo_cfg() -> KinesisSourceConfig {
    toml::from_str(
        r#"stream = "s"
discovery_interval = "10s"
consumer = { type = "efo", name = "osprey-test", stall_timeout = "1s" }"#,
    )
    .unwrap()
}

fn efo_source(fake: &Arc<Fake>) -> KinesisSource {
    let mut src = KinesisSource::with_api(efo_cfg(), Arc::new(FakeApi(Arc::clone(fake))));
    let Mode::Efo(efo) = &mut src.mode else {
        panic!("an enhanced fan-out source")
    };
    efo.backoff =
        Backoff::new(StdDuration::from_millis(5), StdDuration::from_millis(40)).without_jitter();
    src
}

fn efo_fake(per_event: usize, per_subscription: usize) -> Arc<Fake> {
    let fake = Arc::new(Fake::default());
    {
        let mut st = fake.0.lock().unwrap();
        st.records_per_event = per_event;
        st.events_per_subscription = per_subscription;
        st.idle_event_every = StdDuration::from_millis(20);
    }
    fake
}

fn resubscriptions(shard: &str, reason: &str) -> u64 {
    crate::metrics::get()
        .labeled_counter(RESUBSCRIPTIONS, "", &["component", "shard", "reason"])
        .with_label_values(&[COMPONENT, shard, reason])
        .get()
}

#[tokio::test]
async fn efo_reads_children_after_parents_across_expiring_subscriptions() {
    let fake = efo_fake(3, 2);
    fake.shard("efo-a", &[], 20, true);
    fake.shard("efo-b", &[], 20, true);
    fake.shard("efo-c", &["efo-a"], 5, false);
    fake.shard("efo-d", &["efo-a", "efo-b"], 5, false);
    let mut src = efo_source(&fake);
    let items = read(&mut src, 50).await;
    let labels: Vec<String> = items.iter().map(label).collect();
    // Per shard: every record once, in order.
    for (i, shard) in ["efo-a", "efo-b", "efo-c", "efo-d"].iter().enumerate() {
        let got: Vec<&String> = labels
            .iter()
            .filter(|l| l.starts_with(&format!("{shard}/")))
            .collect();
        let n = if i < 2 { 20 } else { 5 };
        let want: Vec<String> = (1..=n)
            .map(|k| format!("{shard}/{:021}", i as u64 * 1000 + k))
            .collect();
        assert_eq!(got, want.iter().collect::<Vec<_>>());
    }
    let first = |shard: &str| labels.iter().position(|l| l.starts_with(shard)).unwrap();
    let last = |shard: &str| labels.iter().rposition(|l| l.starts_with(shard)).unwrap();
    assert!(last("efo-a") < first("efo-c"));
    assert!(last("efo-a") < first("efo-d"));
    assert!(last("efo-b") < first("efo-d"));
    assert_eq!(
        src.position()["finished"],
        serde_json::json!(["efo-a", "efo-b"])
    );
    // Each subscription ends after 2 events of 3 records: replaced AFTER the continuation.
    assert!(resubscriptions("efo-a", "expired") >= 3);
    let reqs = fake.0.lock().unwrap().subscribe_requests.clone();
    assert!(
        reqs.contains(&(
            "efo-a".into(),
            IteratorStart::AfterSequence(format!("{:021}", 6))
        )),
        "{reqs:?}"
    );
    assert!(reqs.contains(&("efo-a".into(), IteratorStart::TrimHorizon)));
}

#[tokio::test]
async fn efo_watchdog_replaces_a_stalled_subscription() {
    let fake = efo_fake(4, 1000);
    fake.shard("efo-stall", &[], 30, false);
    fake.0.lock().unwrap().sub_faults = VecDeque::from([SubFault::StallAfter(2)]);
    let mut src = efo_source(&fake);
    let items = read(&mut src, 30).await;
    let labels: Vec<String> = items.iter().map(label).collect();
    let want: Vec<String> = (1..=30).map(|i| format!("efo-stall/{i:021}")).collect();
    assert_eq!(labels, want, "no gap, no duplicate");
    assert_eq!(resubscriptions("efo-stall", "stalled"), 1);
    let reqs = fake.0.lock().unwrap().subscribe_requests.clone();
    assert_eq!(
        reqs[1],
        (
            "efo-stall".into(),
            IteratorStart::AfterSequence(format!("{:021}", 8))
        )
    );
}

#[tokio::test]
async fn efo_errors_and_resource_in_use_back_off_and_lose_nothing() {
    let fake = efo_fake(5, 1000);
    fake.shard("efo-err", &[], 40, false);
    fake.0.lock().unwrap().sub_faults = VecDeque::from([
        SubFault::FailAfter(3),
        SubFault::InUse,
        SubFault::InUse,
        SubFault::FailAfter(1),
    ]);
    let mut src = efo_source(&fake);
    let items = read(&mut src, 40).await;
    let labels: Vec<String> = items.iter().map(label).collect();
    let want: Vec<String> = (1..=40).map(|i| format!("efo-err/{i:021}")).collect();
    assert_eq!(labels, want, "no gap, no duplicate");
    // Failed stream, two refused calls, failed stream: four replacements for errors.
    assert_eq!(resubscriptions("efo-err", "error"), 4);
    let reqs = fake.0.lock().unwrap().subscribe_requests.clone();
    let after15 = IteratorStart::AfterSequence(format!("{:021}", 15));
    assert_eq!(reqs[1].1, after15);
    assert_eq!(reqs[3].1, after15);
    assert_eq!(
        reqs[4].1,
        IteratorStart::AfterSequence(format!("{:021}", 20))
    );
}

#[tokio::test]
async fn efo_waits_for_the_consumer_and_idle_events_keep_the_watchdog_quiet() {
    let fake = efo_fake(10, 1000);
    fake.shard("efo-idle", &[], 3, false);
    fake.0.lock().unwrap().consumer_creating = 3;
    let mut src = efo_source(&fake);
    let items = read(&mut src, 3).await;
    assert_eq!(items.len(), 3);
    assert_eq!(fake.0.lock().unwrap().consumer_calls, 4);
    // An idle shard: only empty events, every 20 ms, well within the 1 s watchdog; no
    // resubscription.
    let until = Instant::now() + StdDuration::from_millis(1500);
    while Instant::now() < until {
        match src.poll(10).await.unwrap() {
            Poll::Idle(d) => tokio::time::sleep(d).await,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fake.0.lock().unwrap().subscribe_requests.len(), 1);
    assert_eq!(resubscriptions("efo-idle", "stalled"), 0);
}

#[tokio::test]
async fn efo_restore_resumes_inside_an_aggregated_record_and_positions_match_polling() {
    let fake = efo_fake(10, 1000);
    fake.shard("efo-kpl", &[], 0, false);
    push_aggregate_and_plain(&fake);
    let mut src = efo_source(&fake);
    let mut items = Vec::new();
    while items.len() < 2 {
        match src.poll(2 - items.len()).await.unwrap() {
            Poll::Items(i) => items.extend(i),
            Poll::Idle(d) => tokio::time::sleep(d).await,
            Poll::End => unreachable!(),
        }
    }
    assert_eq!(
        items.iter().map(label).collect::<Vec<_>>(),
        ["efo-kpl/5:0", "efo-kpl/5:1"]
    );
    let pos = src.position();
    assert_eq!(
        pos["shards"]["efo-kpl"],
        serde_json::json!({"seq": "5", "sub": 1})
    );
    drop(src);

    // The same checkpoint restores an enhanced fan-out source …
    let mut again = efo_source(&fake);
    again.restore(&pos).await.unwrap();
    let rest = read(&mut again, 3).await;
    assert_eq!(
        rest.iter().map(label).collect::<Vec<_>>(),
        ["efo-kpl/5:2", "efo-kpl/5:3", "efo-kpl/6"]
    );
    let reqs = fake.0.lock().unwrap().subscribe_requests.clone();
    assert_eq!(
        reqs.last().unwrap().1,
        IteratorStart::AtSequence("5".into())
    );
    // … and a polling one.
    let mut polling = KinesisSource::with_api(cfg(), Arc::new(FakeApi(fake.clone())));
    polling.restore(&pos).await.unwrap();
    let rest = read(&mut polling, 3).await;
    assert_eq!(
        rest.iter().map(label).collect::<Vec<_>>(),
        ["efo-kpl/5:2", "efo-kpl/5:3", "efo-kpl/6"]
    );
}

#[test]
fn efo_config_checks() {
    assert!(efo_cfg().validate().is_empty());
    let c: KinesisSourceConfig =
        toml::from_str("stream = \"s\"\nconsumer = { type = \"efo\", name = \"job-1.a_b\" }")
            .unwrap();
    assert!(c.validate().is_empty());
    let ConsumerConfig::Efo(e) = &c.consumer else {
        panic!("{:?}", c.consumer)
    };
    assert_eq!(e.stall_timeout.as_std(), StdDuration::from_secs(30));
    let c: KinesisSourceConfig = toml::from_str(
        "stream = \"s\"\nconsumer = { type = \"efo\", name = \"bad name\", stall_timeout = \"0s\" }",
    )
    .unwrap();
    assert_eq!(c.validate().len(), 2);
    let unknown = toml::from_str::<KinesisSourceConfig>(
        "stream = \"s\"\nconsumer = { type = \"efo\", name = \"n\", watchdog = \"1s\" }",
    );
    assert!(unknown.is_err());
    let c: KinesisSourceConfig =
        toml::from_str("stream = \"s\"\nconsumer = { type = \"polling\" }").unwrap();
    assert!(matches!(c.consumer, ConsumerConfig::Polling));
}
