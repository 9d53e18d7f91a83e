//! The source against an in-memory fake of [`KinesisApi`]: the faults kinesis-local cannot
//! produce (throttling, expired iterators), resharding order, KPL resume. Live-server tests
//! are in tests/kinesis_it.rs.

use std::sync::Mutex;

use super::client::{KinesisRecord, PutEntry};
use super::*;

#[derive(Default)]
struct FakeState {
    /// shard id → (parents, records, closed)
    shards: Vec<(String, Vec<String>, Vec<KinesisRecord>, bool)>,
    throttle_next: u32,
    expire_next: u32,
    get_records_calls: u32,
    iterator_requests: Vec<(String, IteratorStart)>,
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

fn parse_it(it: &str) -> (String, usize) {
    let (s, i) = it.rsplit_once('@').unwrap();
    (s.to_string(), i.parse().unwrap())
}

#[async_trait]
impl KinesisApi for Fake {
    async fn list_shards(&self, _stream: &str) -> std::result::Result<Vec<ShardInfo>, ApiError> {
        let st = self.0.lock().unwrap();
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

#[tokio::test]
async fn restore_resumes_inside_an_aggregated_record() {
    let fake = Arc::new(Fake::default());
    fake.shard("a", &[], 0, false);
    {
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
    let s = src.shards.get("a").unwrap();
    assert!(s.empty_backoff <= StdDuration::from_millis(5));
    assert!(s.empty_backoff >= src.min_interval);
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
