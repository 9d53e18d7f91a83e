use super::*;

/// An in-memory bucket for the position logic (the S3 lister is tested against moto).
/// Key → (bytes, LastModified ms).
type Objects = BTreeMap<String, (Vec<u8>, i64)>;

#[derive(Clone, Default)]
struct Mem(Arc<std::sync::Mutex<Objects>>);

#[async_trait]
impl Lister for Mem {
    async fn list_page(
        &mut self,
        start_after: Option<&str>,
        token: Option<&str>,
    ) -> std::result::Result<Page, SourceFailure> {
        let after = token.or(start_after);
        let all: Vec<ObjectMeta> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| after.is_none_or(|s| k.as_str() > s))
            .map(|(k, (b, lm))| ObjectMeta::new(k.clone(), b.len() as u64, "e".into(), *lm))
            .collect();
        // Small pages, so the position logic is tested across pages.
        let objects: Vec<ObjectMeta> = all.iter().take(3).cloned().collect();
        let next = (all.len() > 3).then(|| objects[2].key.clone());
        Ok(Page { objects, next })
    }
    async fn get(&mut self, key: &str) -> std::result::Result<Vec<u8>, GetError> {
        Ok(self.0.lock().unwrap()[key].0.clone())
    }
    fn location(&self) -> &str {
        "mem"
    }
}

fn opts() -> ObjectOptions {
    ObjectOptions {
        suffixes: vec![],
        poll_interval: Duration::from_secs(1),
        late_window: Duration::from_secs(60),
        max_object_bytes: 10,
        stop_when_idle: true,
        max_tracked_keys: 1000,
        fetch_batch: 2,
    }
}

async fn drain<L: Lister>(src: &mut ObjectSource<L>, out: &mut Vec<String>) {
    for _ in 0..1000 {
        match src.poll(2).await.unwrap() {
            Poll::Items(items) => {
                for i in items {
                    out.push(match i.record {
                        Some(r) => r.key.to_string(),
                        None => format!("too_large:{}", String::from_utf8(i.data).unwrap()),
                    });
                }
            }
            Poll::Idle(d) if d.is_zero() => {}
            _ => return,
        }
    }
    panic!("the source never ended");
}

/// Issue 14.6: with more recent objects than `max_tracked_keys`, an evicted key used to
/// look new again (below the mark but within the late window): it was delivered again on
/// every listing and `stop_when_idle` never ended.
#[tokio::test]
async fn r14_6_evicted_keys_are_never_delivered_again() {
    let mem = Mem::default();
    for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let lm = 1000 + i as i64;
        mem.0
            .lock()
            .unwrap()
            .insert(format!("{k}.jpg"), (vec![1], lm));
    }
    let mut o = opts();
    o.max_tracked_keys = 2;
    let mut src = ObjectSource::new(mem.clone(), o.clone(), "test");
    let mut got = Vec::new();
    // `drain` ends at the first listing that finds nothing new (stop_when_idle): before
    // the fix it never did, so bound the polls.
    for _ in 0..20 {
        match src.poll(2).await.unwrap() {
            Poll::Items(items) => {
                got.extend(items.into_iter().map(|i| i.record.unwrap().key.to_string()))
            }
            Poll::Idle(d) if d.is_zero() => {}
            _ => break,
        }
    }
    assert_eq!(got, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]);
    // A restart from the position does not deliver them either; a genuinely new late key
    // (newer than anything evicted) still is.
    mem.0
        .lock()
        .unwrap()
        .insert("0-late.jpg".into(), (vec![1], 1010));
    let mut resumed = ObjectSource::new(mem.clone(), o, "test");
    resumed.restore(&src.position()).await.unwrap();
    let mut more = Vec::new();
    drain(&mut resumed, &mut more).await;
    assert_eq!(more, ["0-late.jpg"]);
}

#[tokio::test]
async fn late_keys_are_read_once_across_restarts() {
    let mem = Mem::default();
    let put = |k: &str, lm: i64, n: usize| {
        mem.0
            .lock()
            .unwrap()
            .insert(k.to_string(), (vec![1; n], lm));
    };
    put("b it's ü.jpg", 1000, 3);
    put("d.jpg", 1000, 3);
    put("big.jpg", 1000, 30);
    let mut src = ObjectSource::new(mem.clone(), opts(), "test");
    let mut got = Vec::new();
    drain(&mut src, &mut got).await;
    assert_eq!(got, ["b it's ü.jpg", "too_large:big.jpg", "d.jpg"]);
    // A late key below the mark, a new key above it, and a very old key below it.
    put("a.jpg", 2000, 1);
    put("e.jpg", 2000, 1);
    put("0-ancient.jpg", -100_000, 1);
    let pos = src.position();
    let mut resumed = ObjectSource::new(mem.clone(), opts(), "test");
    resumed.restore(&pos).await.unwrap();
    let mut more = Vec::new();
    drain(&mut resumed, &mut more).await;
    // The scan from the mark comes first; the late key below it is found by the full scan
    // that follows a scan with nothing new.
    assert_eq!(more, ["e.jpg", "a.jpg"]);
    let mut again = ObjectSource::new(mem.clone(), opts(), "test");
    again.restore(&resumed.position()).await.unwrap();
    let mut none = Vec::new();
    drain(&mut again, &mut none).await;
    assert!(none.is_empty(), "{none:?}");
}

/// A lister whose calls fail as a test says: a fault moto cannot produce (AccessDenied on
/// one object, the endpoint going away mid-fetch).
struct Faulty {
    mem: Mem,
    list_fails: Option<SourceFailure>,
    get_fails: BTreeMap<String, GetError>,
}

#[async_trait]
impl Lister for Faulty {
    async fn list_page(
        &mut self,
        start_after: Option<&str>,
        token: Option<&str>,
    ) -> std::result::Result<Page, SourceFailure> {
        match &self.list_fails {
            Some(f) => Err(f.clone()),
            None => self.mem.list_page(start_after, token).await,
        }
    }
    async fn get(&mut self, key: &str) -> std::result::Result<Vec<u8>, GetError> {
        match self.get_fails.get(key) {
            Some(e) => Err(e.clone()),
            None => self.mem.get(key).await,
        }
    }
    fn location(&self) -> &str {
        "faulty"
    }
}

fn failure(kind: &'static str) -> SourceFailure {
    SourceFailure {
        kind,
        message: format!("ListObjectsV2 bucket b: {kind}"),
    }
}

/// Issue 14.9: an object the source may not read is a dead letter (once), the objects
/// around it are delivered, and a restart does not read it again. Issue 14.10: a call
/// failing for the whole source is a failure the poll reports, and nothing is lost while it
/// lasts.
#[tokio::test]
async fn r14_9_unreadable_objects_and_failing_calls() {
    let mem = Mem::default();
    for k in ["a", "b", "c", "d"] {
        mem.0
            .lock()
            .unwrap()
            .insert(format!("{k}.jpg"), (vec![1], 1000));
    }
    let mut get_fails = BTreeMap::new();
    get_fails.insert(
        "b.jpg".to_string(),
        GetError::Unreadable(
            "unreadable",
            "GetObject s3://b/b.jpg: AccessDenied: no".into(),
        ),
    );
    get_fails.insert(
        "c.jpg".to_string(),
        GetError::Failing(failure(crate::connectors::FAILURE_UNAVAILABLE)),
    );
    let lister = Faulty {
        mem: mem.clone(),
        list_fails: Some(failure(crate::connectors::FAILURE_ACCESS_DENIED)),
        get_fails,
    };
    let mut src = ObjectSource::new(lister, opts(), "test");
    // Listing refused: a failure, nothing read.
    assert!(matches!(src.poll(8).await.unwrap(), Poll::Idle(_)));
    assert_eq!(src.failure().unwrap().kind, "access_denied");
    src.lister.list_fails = None;
    // a.jpg fetched, b.jpg dead-lettered; c.jpg fails for the source: the poll hands out a.
    let Poll::Items(items) = src.poll(8).await.unwrap() else {
        panic!("items expected")
    };
    assert_eq!(items.len(), 1);
    let dead = src.take_dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].reason, dead[0].data.as_str()),
        ("unreadable", "b.jpg")
    );
    assert!(dead[0].message.contains("AccessDenied"));
    // c.jpg keeps failing: a failure, and nothing is skipped.
    assert!(matches!(src.poll(8).await.unwrap(), Poll::Idle(_)));
    assert_eq!(src.failure().unwrap().kind, "unavailable");
    src.lister.get_fails.remove("c.jpg");
    let mut rest = Vec::new();
    drain(&mut src, &mut rest).await;
    assert_eq!(rest, ["c.jpg", "d.jpg"]);
    assert_eq!(src.failure(), None);
    // A restart reads none of them again, b.jpg included.
    let mut again = ObjectSource::new(mem.clone(), opts(), "test");
    again.restore(&src.position()).await.unwrap();
    let mut none = Vec::new();
    drain(&mut again, &mut none).await;
    assert!(none.is_empty(), "{none:?}");
    assert!(again.take_dead_letters().is_empty());
}

/// Issue 14.5: a poll lists one page at most (a large bucket is not scanned in one call),
/// and scans after the first start from the mark while the bucket is busy.
#[tokio::test]
async fn r14_5_polls_list_one_page() {
    #[derive(Clone, Default)]
    struct Counting {
        mem: Mem,
        calls: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    }
    #[async_trait]
    impl Lister for Counting {
        async fn list_page(
            &mut self,
            start_after: Option<&str>,
            token: Option<&str>,
        ) -> std::result::Result<Page, SourceFailure> {
            self.calls
                .lock()
                .unwrap()
                .push(start_after.map(String::from));
            self.mem.list_page(start_after, token).await
        }
        async fn get(&mut self, key: &str) -> std::result::Result<Vec<u8>, GetError> {
            self.mem.get(key).await
        }
        fn location(&self) -> &str {
            "counting"
        }
    }
    let lister = Counting::default();
    for i in 0..10 {
        lister
            .mem
            .0
            .lock()
            .unwrap()
            .insert(format!("{i:02}"), (vec![1], 1000));
    }
    let mut o = opts();
    o.stop_when_idle = false;
    let mut src = ObjectSource::new(lister.clone(), o, "test");
    let mut got = Vec::new();
    for _ in 0..12 {
        let before = lister.calls.lock().unwrap().len();
        if let Poll::Items(items) = src.poll(100).await.unwrap() {
            got.extend(items.into_iter().map(|i| i.record.unwrap().key.to_string()));
        }
        assert!(
            lister.calls.lock().unwrap().len() - before <= 1,
            "one page per poll"
        );
    }
    let want: Vec<String> = (0..10).map(|i| format!("{i:02}")).collect();
    assert_eq!(got, want);
    // New keys above the mark: the next scan starts after the mark, not from the first key.
    lister
        .mem
        .0
        .lock()
        .unwrap()
        .insert("99".into(), (vec![1], 1001));
    let calls_before = lister.calls.lock().unwrap().len();
    let mut more = Vec::new();
    for _ in 0..3 {
        if let Poll::Items(items) = src.poll(100).await.unwrap() {
            more.extend(items.into_iter().map(|i| i.record.unwrap().key.to_string()));
        }
    }
    assert_eq!(more, ["99"]);
    let calls = lister.calls.lock().unwrap();
    assert_eq!(calls[calls_before], Some("09".to_string()));
}
