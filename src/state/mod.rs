//! Keyed state: the backend trait, the RocksDB and in-memory backends, the cached keyed view
//! operators use, and the checkpoint files.
//!
//! Layout: one table (a RocksDB column family) per `(operator, table)`, named
//! `<operator>.<table>`; every key starts with its key group as two big-endian bytes, so the
//! state of a range of key groups is a contiguous key range that can be moved as one.

pub mod checkpoint;
pub mod codec;
mod keyed;
pub mod lock;
mod memory;
mod rocks;
pub mod store;

pub use codec::{DecodeError, StateValue};
pub use keyed::{KeyedState, ListValue, MapState};
pub use lock::DataDirLock;
pub use memory::MemoryBackend;
pub use rocks::RocksBackend;

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::Result;

/// Index of an opened table.
pub type TableId = usize;

/// Writes applied atomically by [`StateBackend::write`].
#[derive(Debug, Default)]
pub struct WriteBatch {
    /// `(table, key, Some(value))` puts, `(table, key, None)` deletes.
    pub ops: Vec<(TableId, Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// No operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Where keyed state lives between checkpoints.
///
/// Called from partition tasks (reads on cache misses, one batch write per barrier) and from
/// the checkpoint coordinator (`checkpoint`), never concurrently with a `write` of the same
/// epoch: partitions write only when they handle a barrier, and the coordinator snapshots
/// only once every partition has acknowledged that barrier.
pub trait StateBackend: Send + Sync + 'static {
    /// Opens (creating if needed) a table and returns its id. Idempotent.
    fn open_table(&self, name: &str) -> Result<TableId>;
    /// Reads one value.
    fn get(&self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Applies a batch of puts and deletes atomically.
    fn write(&self, batch: WriteBatch) -> Result<()>;
    /// Every entry of a table whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, table: TableId, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_prefix_from(table, prefix, prefix, usize::MAX)
    }
    /// The entries whose key starts with `prefix` and is at least `from`, in key order, until
    /// their keys and values reach `max_bytes` (at least one entry when there is one): a scan
    /// in bounded pieces.
    fn scan_prefix_from(
        &self,
        table: TableId,
        prefix: &[u8],
        from: &[u8],
        max_bytes: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Writes a consistent snapshot of all tables into `dir` (which must not exist yet).
    fn checkpoint(&self, dir: &Path) -> Result<()>;
    /// Approximate live state size in bytes (for the state-size gauge).
    fn size_bytes(&self) -> u64;
    /// Names of the tables, in id order.
    fn table_names(&self) -> Vec<String>;
}

/// Which state backend keeps keyed state.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// RocksDB on local disk (default).
    #[default]
    Rocksdb,
    /// In memory, snapshotted to a file per checkpoint: small state and tests.
    Memory,
}

/// Opens the backend for a job: fresh at `live_dir`, or restored from a checkpoint's snapshot.
pub fn open_backend(
    kind: BackendKind,
    live_dir: &Path,
    restore_from: Option<&Path>,
) -> Result<Arc<dyn StateBackend>> {
    Ok(match kind {
        BackendKind::Rocksdb => Arc::new(RocksBackend::open(live_dir, restore_from)?),
        BackendKind::Memory => Arc::new(MemoryBackend::open(restore_from)?),
    })
}

/// The storage key of `key` in `key_group`: group first, so groups are contiguous ranges.
pub fn state_key(key_group: u16, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + key.len());
    k.extend_from_slice(&key_group.to_be_bytes());
    k.extend_from_slice(key);
    k
}

#[cfg(test)]
mod tests;
