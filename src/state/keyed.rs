//! The keyed view operators use: values cached in memory, written back once per checkpoint.
//!
//! Reads go to the cache, then to the backend. Writes only mark the cached entry dirty; at a
//! barrier, [`KeyedState::flush`] turns every dirty entry into one write batch. Between two
//! barriers nothing reaches the table itself, so a checkpoint snapshot always holds exactly
//! the state as of its barrier, never half an epoch.
//!
//! The cache holds at most `capacity` entries (issue 14.11). When a new key would pass that,
//! every dirty entry is *spilled*: encoded into the table's spill table (`<table>~spill`, in
//! the same backend) and the cache is emptied. A miss reads the spill before the table. At
//! the barrier, the spilled entries move into the table, one key group at a time, before the
//! cached dirty ones (which are newer). A snapshot may hold spill entries of the next epoch;
//! they are dropped when the table is opened, so a restore never sees them. Memory per table
//! and partition is therefore bounded by `capacity` decoded values, whatever the number of
//! keys an epoch touches.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use super::codec::{DecodeError, Reader, StateValue, Writer};
use super::{StateBackend, TableId, WriteBatch, state_key};
use crate::Result;

struct Slot<V> {
    /// `None`: deleted (a tombstone to write at the next flush).
    value: Option<V>,
    dirty: bool,
    /// When the value was last written, for TTL (event time if the job has one).
    stamp_ms: i64,
}

/// Per-key state of one operator table. See the module docs for the caching contract.
pub struct KeyedState<V> {
    backend: Arc<dyn StateBackend>,
    table: TableId,
    /// Dirty entries evicted this epoch, keyed like the table (see the module docs).
    spill: TableId,
    /// The key groups with entries in the spill table, sorted and deduplicated at the flush.
    spilled: Vec<u16>,
    name: String,
    cache: HashMap<Box<[u8]>, Slot<V>>,
    scratch: Vec<u8>,
    ttl_ms: Option<i64>,
    capacity: usize,
    /// The latest time an entry was read or written at: "now" for the TTL sweep.
    latest_ms: i64,
    _v: PhantomData<V>,
}

/// Default number of cached entries per table and partition before the cache is emptied.
pub const DEFAULT_CACHE_ENTRIES: usize = 100_000;

/// The suffix of a table's spill table.
pub const SPILL_SUFFIX: &str = "~spill";
/// The most bytes of spilled entries moved into the table per write at a barrier.
const UNSPILL_BYTES: usize = 16 << 20;
/// First byte of a spilled value: a stamped value follows.
const SPILL_VALUE: u8 = 1;
/// First byte of a spilled tombstone.
const SPILL_DELETED: u8 = 0;

impl<V: StateValue> KeyedState<V> {
    /// Opens `table` in `backend`. `ttl`: entries not written for that long read as absent.
    pub fn open(
        backend: Arc<dyn StateBackend>,
        table: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<Self> {
        let id = backend.open_table(table)?;
        let spill = backend.open_table(&format!("{table}{SPILL_SUFFIX}"))?;
        // Left by a run that stopped mid-epoch, or by another partition's next epoch in the
        // snapshot restored: newer than the table, and not part of any checkpoint. Every
        // partition opens its tables before the source starts, so nothing is spilling yet.
        let stale: Vec<_> = backend.scan_prefix(spill, &[])?;
        if !stale.is_empty() {
            let ops = stale.into_iter().map(|(k, _)| (spill, k, None)).collect();
            backend.write(WriteBatch { ops })?;
        }
        Ok(KeyedState {
            backend,
            table: id,
            spill,
            spilled: Vec::new(),
            name: table.to_string(),
            cache: HashMap::new(),
            scratch: Vec::new(),
            ttl_ms: ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
            capacity: DEFAULT_CACHE_ENTRIES,
            latest_ms: i64::MIN,
            _v: PhantomData,
        })
    }

    /// Sets the cache capacity in entries.
    pub fn with_capacity(mut self, entries: usize) -> Self {
        self.capacity = entries.max(1);
        self
    }

    /// The table name.
    pub fn table_name(&self) -> &str {
        &self.name
    }

    fn load(&mut self, key_group: u16, key: &[u8], now_ms: i64) -> Result<()> {
        self.latest_ms = self.latest_ms.max(now_ms);
        self.scratch.clear();
        self.scratch.extend_from_slice(&key_group.to_be_bytes());
        self.scratch.extend_from_slice(key);
        if self.cache.contains_key(self.scratch.as_slice()) {
            return Ok(());
        }
        if self.cache.len() >= self.capacity {
            self.evict()?;
        }
        let corrupt =
            |name: &str, e: DecodeError| crate::Error::State(format!("table {name}: {e}"));
        let spilled = if self.spilled.contains(&key_group) {
            self.backend.get(self.spill, &self.scratch)?
        } else {
            None
        };
        let slot = match spilled {
            // A spilled tombstone: deleted this epoch.
            Some(bytes) if bytes.first() == Some(&SPILL_DELETED) => Slot {
                value: None,
                dirty: false,
                stamp_ms: now_ms,
            },
            Some(bytes) => {
                let (stamp, value) =
                    decode_stamped::<V>(&bytes[1..]).map_err(|e| corrupt(&self.name, e))?;
                Slot {
                    value: Some(value),
                    dirty: false,
                    stamp_ms: stamp,
                }
            }
            None => match self.backend.get(self.table, &self.scratch)? {
                None => Slot {
                    value: None,
                    dirty: false,
                    stamp_ms: now_ms,
                },
                Some(bytes) => {
                    let (stamp, value) =
                        decode_stamped::<V>(&bytes).map_err(|e| corrupt(&self.name, e))?;
                    Slot {
                        value: Some(value),
                        dirty: false,
                        stamp_ms: stamp,
                    }
                }
            },
        };
        self.cache
            .insert(self.scratch.clone().into_boxed_slice(), slot);
        Ok(())
    }

    /// Empties the cache: dirty entries go to the spill table (one write), clean ones are
    /// dropped (the table has them).
    fn evict(&mut self) -> Result<()> {
        let mut ops = Vec::new();
        for (key, slot) in self.cache.drain().filter(|(_, s)| s.dirty) {
            let mut out = Vec::with_capacity(32);
            match &slot.value {
                Some(v) => {
                    out.push(SPILL_VALUE);
                    out.extend_from_slice(&slot.stamp_ms.to_le_bytes());
                    v.encode(&mut out);
                }
                None => out.push(SPILL_DELETED),
            }
            if let Some(g) = key.get(..2) {
                self.spilled.push(u16::from_be_bytes([g[0], g[1]]));
            }
            ops.push((self.spill, key.into_vec(), Some(out)));
        }
        self.spilled.sort_unstable();
        self.spilled.dedup();
        if !ops.is_empty() {
            self.backend.write(WriteBatch { ops })?;
        }
        Ok(())
    }

    /// Moves the spilled entries into the table, one key group per write, and empties the
    /// spill. Called at the barrier, before the cached dirty entries are flushed.
    fn unspill(&mut self) -> Result<()> {
        for kg in std::mem::take(&mut self.spilled) {
            let prefix = kg.to_be_bytes();
            let mut from = prefix.to_vec();
            loop {
                let entries =
                    self.backend
                        .scan_prefix_from(self.spill, &prefix, &from, UNSPILL_BYTES)?;
                let Some((last, _)) = entries.last() else {
                    break;
                };
                // The next scan starts just after the last key moved.
                from.clone_from(last);
                from.push(0);
                let mut ops = Vec::with_capacity(entries.len() * 2);
                for (key, mut value) in entries {
                    let moved = (value.first() == Some(&SPILL_VALUE)).then(|| {
                        value.remove(0);
                        value
                    });
                    ops.push((self.table, key.clone(), moved));
                    ops.push((self.spill, key, None));
                }
                self.backend.write(WriteBatch { ops })?;
            }
        }
        Ok(())
    }

    fn expired(&self, slot: &Slot<V>, now_ms: i64) -> bool {
        self.ttl_ms
            .is_some_and(|ttl| now_ms.saturating_sub(slot.stamp_ms) > ttl)
    }

    /// The value of `key`, if any (and not expired).
    pub fn get(&mut self, key_group: u16, key: &[u8], now_ms: i64) -> Result<Option<&V>> {
        self.load(key_group, key, now_ms)?;
        let slot = self
            .cache
            .get(self.scratch.as_slice())
            .expect("load inserted the slot");
        if self.expired(slot, now_ms) {
            return Ok(None);
        }
        Ok(slot.value.as_ref())
    }

    /// The value of `key` for update, created with `init` when absent or expired.
    pub fn get_or_insert_with(
        &mut self,
        key_group: u16,
        key: &[u8],
        now_ms: i64,
        init: impl FnOnce() -> V,
    ) -> Result<&mut V> {
        self.load(key_group, key, now_ms)?;
        let ttl = self.ttl_ms;
        let slot = self
            .cache
            .get_mut(self.scratch.as_slice())
            .expect("load inserted the slot");
        if ttl.is_some_and(|t| now_ms.saturating_sub(slot.stamp_ms) > t) {
            slot.value = None;
        }
        slot.dirty = true;
        slot.stamp_ms = now_ms;
        Ok(slot.value.get_or_insert_with(init))
    }

    /// Sets the value of `key`.
    pub fn insert(&mut self, key_group: u16, key: &[u8], now_ms: i64, value: V) {
        self.cache.insert(
            state_key(key_group, key).into_boxed_slice(),
            Slot {
                value: Some(value),
                dirty: true,
                stamp_ms: now_ms,
            },
        );
    }

    /// Deletes the value of `key`.
    pub fn remove(&mut self, key_group: u16, key: &[u8]) {
        self.cache.insert(
            state_key(key_group, key).into_boxed_slice(),
            Slot {
                value: None,
                dirty: true,
                stamp_ms: 0,
            },
        );
    }

    /// Moves the entries spilled this epoch into the table, then every dirty cached entry into
    /// `batch` (written after, so the newer value wins). Called on each barrier, before the
    /// partition acknowledges it.
    pub fn flush(&mut self, batch: &mut WriteBatch) -> Result<()> {
        self.unspill()?;
        for (key, slot) in self.cache.iter_mut().filter(|(_, s)| s.dirty) {
            slot.dirty = false;
            let value = slot.value.as_ref().map(|v| {
                let mut out = Vec::with_capacity(32);
                out.extend_from_slice(&slot.stamp_ms.to_le_bytes());
                v.encode(&mut out);
                out
            });
            batch.ops.push((self.table, key.to_vec(), value));
        }
        Ok(())
    }

    /// Deletes the entries of `key_group` that expired (not written for longer than the TTL
    /// before the latest time this table saw), into `batch`; returns how many. The runtime
    /// calls it at barriers for one key group at a time, so expired state leaves RocksDB
    /// instead of only reading as absent. Entries in the cache are left to it: a dirty one is
    /// newer than what is stored, and a clean one is swept on a later round.
    pub fn sweep(&mut self, key_group: u16, batch: &mut WriteBatch) -> Result<usize> {
        let Some(ttl) = self.ttl_ms else {
            return Ok(0);
        };
        if self.latest_ms == i64::MIN {
            return Ok(0);
        }
        let horizon = self.latest_ms.saturating_sub(ttl);
        let mut n = 0;
        for (key, value) in self
            .backend
            .scan_prefix(self.table, &key_group.to_be_bytes())?
        {
            // A cached or spilled entry is newer than the stored one: left to a later round.
            if self.cache.contains_key(key.as_slice())
                || (self.spilled.contains(&key_group)
                    && self.backend.get(self.spill, &key)?.is_some())
            {
                continue;
            }
            let stamp = value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(i64::MAX, i64::from_le_bytes);
            if stamp < horizon {
                batch.ops.push((self.table, key, None));
                n += 1;
            }
        }
        Ok(n)
    }

    /// Number of cached entries.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

fn decode_stamped<V: StateValue>(bytes: &[u8]) -> std::result::Result<(i64, V), DecodeError> {
    let mut r = Reader::new(bytes);
    let stamp = r.i64()?;
    let rest = r.take(bytes.len() - 8)?;
    Ok((stamp, V::decode(rest)?))
}

/// A list of values kept under one key (append-mostly state such as a window's contents).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListValue<V>(pub Vec<V>);

impl<V: StateValue> StateValue for ListValue<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        Writer::new(out).u64(self.0.len() as u64);
        let mut buf = Vec::new();
        for v in &self.0 {
            buf.clear();
            v.encode(&mut buf);
            Writer::new(out).len_bytes(&buf);
        }
    }
    fn decode(bytes: &[u8]) -> std::result::Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != 1 {
            return Err(DecodeError::invalid("unknown list version"));
        }
        let n = r.u64()?;
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(V::decode(r.len_bytes()?)?);
        }
        r.finish()?;
        Ok(ListValue(out))
    }
}

/// Map state: per key, a map from a user key to a value, stored as composite keys
/// `group ‖ key ‖ 0xFF ‖ user key` (0xFF never occurs in UTF-8 keys, so prefixes cannot clash).
pub struct MapState<V> {
    inner: KeyedState<V>,
    buf: Vec<u8>,
}

impl<V: StateValue> MapState<V> {
    /// Opens the map table.
    pub fn open(
        backend: Arc<dyn StateBackend>,
        table: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<Self> {
        Ok(MapState {
            inner: KeyedState::open(backend, table, ttl)?,
            buf: Vec::new(),
        })
    }

    fn composite(&mut self, key: &[u8], user_key: &[u8]) -> Vec<u8> {
        self.buf.clear();
        self.buf.extend_from_slice(key);
        self.buf.push(0xff);
        self.buf.extend_from_slice(user_key);
        self.buf.clone()
    }

    /// The value under `(key, user_key)`.
    pub fn get(
        &mut self,
        key_group: u16,
        key: &[u8],
        user_key: &[u8],
        now_ms: i64,
    ) -> Result<Option<&V>> {
        let k = self.composite(key, user_key);
        self.inner.get(key_group, &k, now_ms)
    }

    /// Sets the value under `(key, user_key)`.
    pub fn insert(&mut self, key_group: u16, key: &[u8], user_key: &[u8], now_ms: i64, value: V) {
        let k = self.composite(key, user_key);
        self.inner.insert(key_group, &k, now_ms, value);
    }

    /// Deletes the value under `(key, user_key)`.
    pub fn remove(&mut self, key_group: u16, key: &[u8], user_key: &[u8]) {
        let k = self.composite(key, user_key);
        self.inner.remove(key_group, &k);
    }

    /// Writes dirty entries into `batch` (see [`KeyedState::flush`]).
    pub fn flush(&mut self, batch: &mut WriteBatch) -> Result<()> {
        self.inner.flush(batch)
    }
}
