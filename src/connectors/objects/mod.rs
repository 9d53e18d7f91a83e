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
//!
//! # Listing in pages
//!
//! A poll lists one page (up to 1,000 keys) at most, and fetches at most `fetch_batch`
//! objects, so a poll returns within a few requests however large the bucket is (the
//! contract on [`Source`]). A *scan* is a sequence of pages. Scans normally start after the
//! mark (`StartAfter`): they read only what sorts above it, whatever lies below. With a late
//! window, a *full scan* (from the first key) looks for late arrivals below the mark too; it
//! runs when a scan from the mark found nothing and the last full scan finished more than
//! `poll_interval` ago (and always before a `stop_when_idle` source ends). So a busy bucket
//! costs one page per poll, and an idle one a full scan per `poll_interval`, as before.
//!
//! # Objects that cannot be read
//!
//! An object the source may not read (access denied, archived to Glacier, deleted after it
//! was listed, a broken link, a file name that is not UTF-8) becomes a dead letter with a
//! reason (`unreadable`, `bad_name`) and counts as delivered: it is written once, never
//! retried, and never stops the job. A call that fails for the whole source (the bucket or
//! folder is missing, the credentials are refused, the endpoint is down) is a
//! [`SourceFailure`]: the poll answers [`Poll::Idle`], `/readyz` turns 503, and after
//! `fail_after` without progress the job stops with the service's error.

pub mod dir;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::connectors::{Poll, RawItem, Source, SourceFailure};
use crate::core::{DeadLetter, Field, Origin, Record};
use crate::{Error, Result};

/// Keys per listing page (S3's own maximum; the `dir` lister pages its walk the same way).
pub const PAGE_SIZE: usize = 1000;

/// Bytes fetched per poll at most (at least one object is): with `fetch_batch` objects of
/// up to `max_object_bytes` each, a poll could otherwise hold gigabytes.
const MAX_POLL_BYTES: usize = 64 << 20;

/// Wait before retrying a failed call, at most (the poll interval when that is shorter).
const FAILURE_WAIT: Duration = Duration::from_secs(2);

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
    /// Set when the lister already knows the object cannot be read (a file name that is not
    /// UTF-8, a broken link, a folder it may not list): the reason code and why. It is
    /// dead-lettered in its turn instead of fetched.
    pub unreadable: Option<(&'static str, String)>,
}

impl ObjectMeta {
    /// A readable object.
    pub fn new(key: String, size: u64, etag: String, last_modified_ms: i64) -> Self {
        ObjectMeta {
            key,
            size,
            etag,
            last_modified_ms,
            unreadable: None,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Objects, in key order.
    pub objects: Vec<ObjectMeta>,
    /// Continuation of the listing (pass it as `token` for the next page); `None` on the
    /// last page.
    pub next: Option<String>,
}

/// Why a [`Lister::get`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetError {
    /// This object cannot be read (access denied, archived, deleted since the listing):
    /// dead-letter it with this reason code and message, and go on.
    Unreadable(&'static str, String),
    /// The call failed for the whole source (the endpoint is down, the bucket is gone):
    /// retry later.
    Failing(SourceFailure),
}

/// Lists and fetches objects.
#[async_trait]
pub trait Lister: Send {
    /// One page of the objects under the prefix whose key sorts after `start_after` (all when
    /// `None`), in key order; `token` is the previous page's [`Page::next`] (`None` for the
    /// first page). One request at most.
    async fn list_page(
        &mut self,
        start_after: Option<&str>,
        token: Option<&str>,
    ) -> std::result::Result<Page, SourceFailure>;

    /// The object's bytes.
    async fn get(&mut self, key: &str) -> std::result::Result<Vec<u8>, GetError>;

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

/// What fetching one queued object gave.
enum Fetched {
    Bytes(Vec<u8>),
    TooLarge,
    Unreadable(&'static str, String),
}

/// A listing in progress (see the module docs).
#[derive(Debug, Clone)]
struct Scan {
    /// Where it started: after this key, or from the first key (a full scan).
    start_after: Option<String>,
    /// The next page's continuation; `None` before the first page.
    token: Option<String>,
    /// Whether a page of this scan found something new.
    found: bool,
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
    /// Objects found by the last page and not delivered yet, in key order.
    queue: VecDeque<ObjectMeta>,
    /// The listing in progress.
    scan: Option<Scan>,
    /// When the last full scan finished.
    full_scanned: Option<tokio::time::Instant>,
    /// The call that is failing, until one succeeds.
    failure: Option<SourceFailure>,
    /// Objects that could not be read, for [`Source::take_dead_letters`].
    dead: Vec<DeadLetter>,
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
            scan: None,
            full_scanned: None,
            failure: None,
            dead: Vec::new(),
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

    fn origin(&self, o: &ObjectMeta) -> Origin {
        Origin {
            stream: Some(Arc::clone(&self.location)),
            position: Some(o.key.clone().into_boxed_str()),
        }
    }

    fn record(&self, o: &ObjectMeta, bytes: Vec<u8>) -> Record {
        let mut r = Record::new(o.key.as_str(), vec![]);
        r.origin = self.origin(o);
        r.blob = Some(Arc::from(bytes));
        let names = object_field_names();
        r.push_field(&names[0], Field::Str(Arc::clone(&self.location)));
        r.push_field(&names[1], Field::Str(Arc::from(o.etag.as_str())));
        r.push_field(&names[2], Field::U64(o.size));
        r.push_field(&names[3], Field::I64(o.last_modified_ms));
        r
    }

    /// The wait after a failed call.
    fn failing(&mut self, f: SourceFailure) -> Poll {
        self.failure = Some(f);
        Poll::Idle(self.opts.poll_interval.min(FAILURE_WAIT))
    }

    /// The scan to start: from the mark, or a full scan when one is due (see the module docs).
    fn next_scan(&self, after_empty: bool) -> Scan {
        let full_due = self.late_ms() > 0
            && after_empty
            && (self.opts.stop_when_idle
                || self
                    .full_scanned
                    .is_none_or(|t| t.elapsed() >= self.opts.poll_interval));
        Scan {
            start_after: if full_due { None } else { self.mark.clone() },
            token: None,
            found: false,
        }
    }

    /// Lists one page into the queue. `Some(poll)` when the poll must answer that (a failure,
    /// the end of an empty scan); `None` when the queue may hold something to fetch.
    async fn list_page(&mut self) -> Option<Poll> {
        // Cancel safety: state changes only after the call returned.
        let scan = self.scan.clone().unwrap_or_else(|| self.next_scan(false));
        let page = match self
            .lister
            .list_page(scan.start_after.as_deref(), scan.token.as_deref())
            .await
        {
            Ok(p) => p,
            Err(f) => {
                self.scan = Some(scan);
                return Some(self.failing(f));
            }
        };
        self.failure = None;
        let fresh: VecDeque<ObjectMeta> = page
            .objects
            .into_iter()
            .filter(|o| self.suffix_ok(&o.key) && self.is_new(o))
            .collect();
        let found = scan.found || !fresh.is_empty();
        self.queue = fresh;
        match page.next {
            Some(token) => {
                self.scan = Some(Scan {
                    token: Some(token),
                    found,
                    ..scan
                });
                None
            }
            None => {
                let full = scan.start_after.is_none();
                if full {
                    self.full_scanned = Some(tokio::time::Instant::now());
                }
                self.scan = None;
                if found {
                    return None;
                }
                // A whole scan found nothing: a full scan next if one is due, else wait.
                let next = self.next_scan(true);
                if next.start_after.is_none() && !full && self.late_ms() > 0 {
                    self.scan = Some(next);
                    return None;
                }
                Some(if self.opts.stop_when_idle {
                    Poll::End
                } else {
                    Poll::Idle(self.opts.poll_interval)
                })
            }
        }
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
        self.scan = None;
        Ok(())
    }

    async fn poll(&mut self, max: usize) -> Result<Poll> {
        if self.queue.is_empty() {
            if let Some(p) = self.list_page().await {
                return Ok(p);
            }
            if self.queue.is_empty() {
                // A page with nothing new, more pages to come.
                return Ok(Poll::Idle(Duration::ZERO));
            }
        }
        let n = max
            .clamp(1, self.opts.fetch_batch.max(1))
            .min(self.queue.len());
        // Fetch first, then pop: a poll dropped mid-fetch leaves the queue as it was.
        let mut fetched = Vec::with_capacity(n);
        let mut bytes = 0usize;
        for o in self.queue.iter().take(n) {
            if bytes >= MAX_POLL_BYTES {
                break;
            }
            fetched.push(if let Some((reason, why)) = &o.unreadable {
                Fetched::Unreadable(reason, why.clone())
            } else if o.size > self.opts.max_object_bytes {
                Fetched::TooLarge
            } else {
                match self.lister.get(&o.key).await {
                    Ok(b) => {
                        bytes += b.len();
                        Fetched::Bytes(b)
                    }
                    Err(GetError::Unreadable(reason, why)) => Fetched::Unreadable(reason, why),
                    Err(GetError::Failing(f)) if fetched.is_empty() => {
                        return Ok(self.failing(f));
                    }
                    // Hand out what was fetched; this object is fetched again next poll.
                    Err(GetError::Failing(_)) => break,
                }
            });
        }
        let mut items = Vec::with_capacity(fetched.len());
        for got in fetched {
            let o = self.queue.pop_front().expect("fetched <= queue length");
            let stream = Arc::clone(&self.location);
            match got {
                Fetched::TooLarge => {
                    let mut item = RawItem::new(o.key.as_bytes().to_vec(), stream);
                    item.origin = self.origin(&o);
                    item.too_large = Some(o.size.try_into().unwrap_or(usize::MAX));
                    items.push(item);
                }
                Fetched::Bytes(b) => {
                    let mut item = RawItem::new(Vec::new(), stream);
                    item.origin = self.origin(&o);
                    item.record = Some(Box::new(self.record(&o, b)));
                    items.push(item);
                }
                Fetched::Unreadable(reason, message) => self.dead.push(DeadLetter {
                    reason,
                    message,
                    data: o.key.clone(),
                    origin: self.origin(&o),
                }),
            }
            self.delivered(&o);
        }
        self.failure = None;
        if items.is_empty() {
            // Only dead letters this time: the driver writes them after the poll.
            return Ok(Poll::Idle(Duration::ZERO));
        }
        Ok(Poll::Items(items))
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }

    fn failure(&self) -> Option<SourceFailure> {
        self.failure.clone()
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
mod tests;
