//! Object sources: every new object under a prefix becomes one record carrying its bytes.
//!
//! Shared by `type = "s3"` (a bucket, see `connectors::s3`) and `type = "dir"` (a local
//! folder, the quick start: [`dir`]). A [`Lister`] lists and fetches; [`ObjectSource`] decides what is new,
//! builds the records and keeps the checkpointed position.
//!
//! # Position
//!
//! Listings come back in key order, and objects are delivered in that order, so the
//! *high-water mark* (the last key delivered in order) says that every key up to it was
//! delivered. Keys do not always arrive in order, though: `zebra.jpg` uploaded after
//! `apple.jpg` was delivered sorts below the mark. To catch those, each listing also looks
//! below the mark, and a bounded set `recent` remembers every delivered key whose
//! LastModified lies within `late_window` of the newest object delivered. A key is new when
//! it is not in `recent` and either sorts above the mark or was modified within the window.
//! Keys below the mark and older than the window are taken as delivered: an object that
//! turns up more than `late_window` late (by its LastModified) is not read. With
//! `late_window = "0s"` listings start after the mark (`StartAfter`) and nothing below it is
//! read.
//!
//! The position (mark, newest LastModified, `recent`) is checkpointed, so a restart neither
//! skips nor repeats an object.

pub mod dir;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::connectors::{Poll, RawItem, Source};
use crate::core::{Field, Origin, Record};
use crate::{Error, Result};

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Object key (for `dir`: the path relative to the folder, `/`-separated).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag (S3) or a size/mtime tag (`dir`).
    pub etag: String,
    /// LastModified, epoch milliseconds.
    pub last_modified_ms: i64,
}

/// Lists and fetches objects.
#[async_trait]
pub trait Lister: Send {
    /// Every object under the prefix whose key sorts after `start_after` (all when `None`),
    /// in key order, following pagination to the end.
    async fn list(&mut self, start_after: Option<&str>) -> Result<Vec<ObjectMeta>>;

    /// The object's bytes.
    async fn get(&mut self, key: &str) -> Result<Vec<u8>>;

    /// Where objects live (bucket name or folder path): the `bucket` field and the origin
    /// stream of the records.
    fn location(&self) -> &str;
}

/// Settings shared by the object sources.
#[derive(Debug, Clone)]
pub struct ObjectOptions {
    /// Only keys ending with this (case-insensitive), when set.
    pub suffixes: Vec<String>,
    /// How long to wait between listings that found nothing new.
    pub poll_interval: Duration,
    /// See the module docs.
    pub late_window: Duration,
    /// Objects larger than this are not downloaded: they are dead-lettered (`too_large`).
    pub max_object_bytes: u64,
    /// End the source after a listing finds nothing new (bounded runs, tests).
    pub stop_when_idle: bool,
    /// Bound on the `recent` set; the oldest entries go first when it is full.
    pub max_tracked_keys: usize,
    /// Objects fetched per poll at most.
    pub fetch_batch: usize,
}

/// See the module docs.
pub struct ObjectSource<L: Lister> {
    lister: L,
    opts: ObjectOptions,
    component: &'static str,
    /// Last key delivered in key order.
    mark: Option<String>,
    /// Newest LastModified delivered.
    newest_ms: i64,
    /// Delivered keys within the late window → LastModified.
    recent: BTreeMap<String, i64>,
    /// The newest LastModified of a key evicted from `recent` by `max_tracked_keys`: keys
    /// below the mark modified at or before it are taken as delivered, so an evicted key is
    /// never delivered again (a late arrival that old is missed instead, with a warning).
    evicted_ms: i64,
    /// Objects found by the last listing and not delivered yet, in key order.
    queue: VecDeque<ObjectMeta>,
    location: Arc<str>,
}

impl<L: Lister> ObjectSource<L> {
    /// A source over `lister`.
    pub fn new(lister: L, opts: ObjectOptions, component: &'static str) -> Self {
        let location = Arc::from(lister.location());
        ObjectSource {
            lister,
            opts,
            component,
            mark: None,
            newest_ms: i64::MIN,
            recent: BTreeMap::new(),
            evicted_ms: i64::MIN,
            queue: VecDeque::new(),
            location,
        }
    }

    fn late_ms(&self) -> i64 {
        self.opts.late_window.as_millis().min(i64::MAX as u128) as i64
    }

    /// Whether a listed object is new (see the module docs).
    fn is_new(&self, o: &ObjectMeta) -> bool {
        if self.recent.contains_key(&o.key) {
            return false;
        }
        let above = self.mark.as_deref().is_none_or(|m| o.key.as_str() > m);
        above
            || (self.late_ms() > 0
                && o.last_modified_ms >= self.floor_ms()
                && o.last_modified_ms > self.evicted_ms)
    }

    fn floor_ms(&self) -> i64 {
        self.newest_ms.saturating_sub(self.late_ms())
    }

    fn suffix_ok(&self, key: &str) -> bool {
        self.opts.suffixes.is_empty() || {
            let k = key.to_lowercase();
            self.opts.suffixes.iter().any(|s| k.ends_with(s.as_str()))
        }
    }

    /// Records `o` as delivered.
    fn delivered(&mut self, o: &ObjectMeta) {
        if self.mark.as_deref().is_none_or(|m| o.key.as_str() > m) {
            self.mark = Some(o.key.clone());
        }
        self.newest_ms = self.newest_ms.max(o.last_modified_ms);
        if self.late_ms() > 0 {
            self.recent.insert(o.key.clone(), o.last_modified_ms);
            let floor = self.floor_ms();
            self.recent.retain(|_, lm| *lm >= floor);
            if self.recent.len() > self.opts.max_tracked_keys {
                // Forget the oldest; they sort below the mark or are older than the rest.
                let mut by_age: Vec<(i64, String)> =
                    self.recent.iter().map(|(k, v)| (*v, k.clone())).collect();
                by_age.sort();
                let drop = self.recent.len() - self.opts.max_tracked_keys;
                for (lm, k) in by_age.into_iter().take(drop) {
                    self.recent.remove(&k);
                    self.evicted_ms = self.evicted_ms.max(lm);
                }
                tracing::warn!(
                    limit = self.opts.max_tracked_keys,
                    "Too many recent objects to track; late arrivals among the oldest may be missed."
                );
            }
        }
    }

    fn record(&self, o: &ObjectMeta, bytes: Vec<u8>) -> Record {
        let mut r = Record::new(o.key.as_str(), vec![]);
        r.origin = Origin {
            stream: Some(Arc::clone(&self.location)),
            position: Some(o.key.clone().into_boxed_str()),
        };
        r.blob = Some(Arc::from(bytes));
        let names = object_field_names();
        r.push_field(&names[0], Field::Str(Arc::clone(&self.location)));
        r.push_field(&names[1], Field::Str(Arc::from(o.etag.as_str())));
        r.push_field(&names[2], Field::U64(o.size));
        r.push_field(&names[3], Field::I64(o.last_modified_ms));
        r
    }
}

/// Names of the fields an object record carries: `bucket`, `etag`, `size`,
/// `last_modified_ms` (the key is the record key).
pub fn object_field_names() -> &'static [Arc<str>; 4] {
    static NAMES: std::sync::LazyLock<[Arc<str>; 4]> =
        std::sync::LazyLock::new(|| ["bucket", "etag", "size", "last_modified_ms"].map(Arc::from));
    &NAMES
}

#[async_trait]
impl<L: Lister> Source for ObjectSource<L> {
    async fn restore(&mut self, position: &serde_json::Value) -> Result<()> {
        let p: Position = serde_json::from_value(position.clone()).map_err(|e| Error::Source {
            component: self.component.into(),
            message: format!("bad checkpoint position {position}: {e}"),
            retry: crate::Retry::No,
        })?;
        self.mark = p.mark;
        self.newest_ms = p.newest_ms;
        self.recent = p.recent.into_iter().collect();
        self.evicted_ms = p.evicted_ms;
        self.queue.clear();
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Poll> {
        if self.queue.is_empty() {
            // Cancel safety: state changes only after the listing completed.
            let start_after = if self.late_ms() > 0 {
                None
            } else {
                self.mark.clone()
            };
            let listed = self.lister.list(start_after.as_deref()).await?;
            let fresh: VecDeque<ObjectMeta> = listed
                .into_iter()
                .filter(|o| self.suffix_ok(&o.key) && self.is_new(o))
                .collect();
            if fresh.is_empty() {
                return Ok(if self.opts.stop_when_idle {
                    Poll::End
                } else {
                    Poll::Idle(self.opts.poll_interval)
                });
            }
            self.queue = fresh;
        }
        let n = max
            .clamp(1, self.opts.fetch_batch.max(1))
            .min(self.queue.len());
        // Fetch first, then pop: a poll dropped mid-fetch leaves the queue as it was.
        let mut fetched = Vec::with_capacity(n);
        for o in self.queue.iter().take(n) {
            if o.size > self.opts.max_object_bytes {
                fetched.push(None);
            } else {
                fetched.push(Some(self.lister.get(&o.key).await?));
            }
        }
        let mut items = Vec::with_capacity(n);
        for bytes in fetched {
            let o = self.queue.pop_front().expect("n <= queue length");
            let mut item = RawItem::new(Vec::new(), Arc::clone(&self.location));
            item.origin = Origin {
                stream: Some(Arc::clone(&self.location)),
                position: Some(o.key.clone().into_boxed_str()),
            };
            match bytes {
                None => {
                    item.data = o.key.as_bytes().to_vec();
                    item.too_large = Some(o.size.try_into().unwrap_or(usize::MAX));
                }
                Some(b) => item.record = Some(Box::new(self.record(&o, b))),
            }
            self.delivered(&o);
            items.push(item);
        }
        Ok(Poll::Items(items))
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({
            "mark": self.mark,
            "newest_ms": self.newest_ms,
            "recent": self.recent.iter().collect::<Vec<_>>(),
            "evicted_ms": self.evicted_ms,
        })
    }
}

#[derive(Deserialize)]
struct Position {
    mark: Option<String>,
    newest_ms: i64,
    recent: Vec<(String, i64)>,
    /// Absent in positions written before issue 14.6.
    #[serde(default = "no_eviction")]
    evicted_ms: i64,
}

fn no_eviction() -> i64 {
    i64::MIN
}

/// 10 s.
pub fn default_poll_interval() -> crate::core::Duration {
    crate::core::Duration::from_secs(10)
}
/// 1 h.
pub fn default_late_window() -> crate::core::Duration {
    crate::core::Duration::from_secs(3600)
}
/// 50 MiB.
pub fn default_max_object_bytes() -> u64 {
    50 << 20
}
/// 100,000.
pub fn default_max_tracked_keys() -> usize {
    100_000
}

impl ObjectOptions {
    /// The options of a source config's fields (the `dir` and `s3` sources share them).
    pub fn new(
        suffix: &[String],
        poll_interval: crate::core::Duration,
        late_window: crate::core::Duration,
        max_object_bytes: u64,
        stop_when_idle: bool,
        max_tracked_keys: usize,
    ) -> Self {
        ObjectOptions {
            suffixes: suffix.iter().map(|s| s.to_lowercase()).collect(),
            poll_interval: poll_interval.as_std(),
            late_window: late_window.as_std(),
            max_object_bytes,
            stop_when_idle,
            max_tracked_keys: max_tracked_keys.max(1),
            fetch_batch: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory bucket for the position logic (the S3 lister is tested against moto).
    /// Key → (bytes, LastModified ms).
    type Objects = BTreeMap<String, (Vec<u8>, i64)>;

    #[derive(Clone, Default)]
    struct Mem(Arc<std::sync::Mutex<Objects>>);

    #[async_trait]
    impl Lister for Mem {
        async fn list(&mut self, start_after: Option<&str>) -> Result<Vec<ObjectMeta>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| start_after.is_none_or(|s| k.as_str() > s))
                .map(|(k, (b, lm))| ObjectMeta {
                    key: k.clone(),
                    size: b.len() as u64,
                    etag: "e".into(),
                    last_modified_ms: *lm,
                })
                .collect())
        }
        async fn get(&mut self, key: &str) -> Result<Vec<u8>> {
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

    async fn drain(src: &mut ObjectSource<Mem>, out: &mut Vec<String>) {
        while let Poll::Items(items) = src.poll(2).await.unwrap() {
            for i in items {
                out.push(match i.record {
                    Some(r) => r.key.to_string(),
                    None => format!("too_large:{}", String::from_utf8(i.data).unwrap()),
                });
            }
        }
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
        assert_eq!(more, ["a.jpg", "e.jpg"]);
        let mut again = ObjectSource::new(mem.clone(), opts(), "test");
        again.restore(&resumed.position()).await.unwrap();
        let mut none = Vec::new();
        drain(&mut again, &mut none).await;
        assert!(none.is_empty(), "{none:?}");
    }
}
