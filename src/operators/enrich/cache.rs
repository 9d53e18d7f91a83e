//! Tier 1: an in-process cache bounded by entry count and time to live, evicting the least
//! recently used entry when full.
//!
//! Plain synchronous code with the clock passed in (`now`), so tests drive time by hand or
//! with paused tokio time. Found values and "not found" answers are both cached, each with
//! its own TTL (negative caching).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::time::{Duration, Instant};

/// The answer of a lookup: a value, or a definite "this key has no reference data".
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The reference data of the key.
    Found(Arc<serde_json::Value>),
    /// The origin answered that the key does not exist.
    NotFound,
}

struct Entry {
    value: Lookup,
    expires: Instant,
    /// Position in the recency order (larger = used more recently).
    tick: u64,
}

/// See the module docs.
pub struct TtlLru {
    max_entries: usize,
    ttl: Duration,
    negative_ttl: Duration,
    map: HashMap<Arc<str>, Entry>,
    /// Recency order: tick → key. The first entry is the least recently used.
    order: BTreeMap<u64, Arc<str>>,
    next_tick: u64,
}

impl TtlLru {
    /// A cache of at most `max_entries` entries; found values live `ttl`, "not found"
    /// answers `negative_ttl`. `max_entries = 0` disables the cache.
    pub fn new(max_entries: usize, ttl: Duration, negative_ttl: Duration) -> Self {
        TtlLru {
            max_entries,
            ttl,
            negative_ttl,
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_tick: 0,
        }
    }

    /// Number of entries held (expired ones included until they are touched or evicted).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The live entry of `key`, marking it recently used; an expired entry is removed.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Lookup> {
        let entry = self.map.get_mut(key)?;
        if now >= entry.expires {
            let tick = entry.tick;
            self.order.remove(&tick);
            self.map.remove(key);
            return None;
        }
        self.order.remove(&entry.tick);
        entry.tick = self.next_tick;
        self.next_tick += 1;
        let k = self
            .order
            .entry(entry.tick)
            .or_insert_with(|| Arc::from(key));
        debug_assert_eq!(&**k, key);
        Some(entry.value.clone())
    }

    /// Stores `value` under `key`, evicting the least recently used entries when full.
    pub fn insert(&mut self, key: Arc<str>, value: Lookup, now: Instant) {
        if self.max_entries == 0 {
            return;
        }
        let ttl = match value {
            Lookup::Found(_) => self.ttl,
            Lookup::NotFound => self.negative_ttl,
        };
        if let Some(old) = self.map.remove(&key) {
            self.order.remove(&old.tick);
        }
        while self.map.len() >= self.max_entries {
            let Some((_, lru)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&lru);
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        self.order.insert(tick, Arc::clone(&key));
        self.map.insert(
            key,
            Entry {
                value,
                expires: now + ttl,
                tick,
            },
        );
    }
}
