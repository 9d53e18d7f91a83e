//! An in-memory backend: a sorted map per table, snapshotted to one file per checkpoint.
//! For unit tests and jobs with small state.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use super::codec::{Reader, Writer};
use super::{StateBackend, TableId, WriteBatch};
use crate::{Error, Result};

const SNAPSHOT_FILE: &str = "memory.state";
const SNAPSHOT_MAGIC: &[u8; 8] = b"OSPMEM01";

type Tables = Vec<(String, BTreeMap<Vec<u8>, Vec<u8>>)>;

/// See the module docs.
#[derive(Default)]
pub struct MemoryBackend {
    tables: Mutex<Tables>,
}

impl MemoryBackend {
    /// An empty backend, or one restored from a checkpoint directory written by `checkpoint`.
    pub fn open(restore_from: Option<&Path>) -> Result<Self> {
        let Some(dir) = restore_from else {
            return Ok(Self::default());
        };
        let path = dir.join(SNAPSHOT_FILE);
        let bytes =
            std::fs::read(&path).map_err(|e| Error::io("reading state snapshot", &path, e))?;
        let corrupt = |e: String| Error::checkpoint(&path, format!("corrupt memory snapshot: {e}"));
        let mut r = Reader::new(&bytes);
        if r.take(8).map_err(|e| corrupt(e.to_string()))? != SNAPSHOT_MAGIC {
            return Err(corrupt("bad magic".into()));
        }
        let mut tables = Vec::new();
        let n = r.u64().map_err(|e| corrupt(e.to_string()))?;
        for _ in 0..n {
            let name =
                String::from_utf8(r.len_bytes().map_err(|e| corrupt(e.to_string()))?.to_vec())
                    .map_err(|_| corrupt("table name not UTF-8".into()))?;
            let entries = r.u64().map_err(|e| corrupt(e.to_string()))?;
            let mut map = BTreeMap::new();
            for _ in 0..entries {
                let k = r.len_bytes().map_err(|e| corrupt(e.to_string()))?.to_vec();
                let v = r.len_bytes().map_err(|e| corrupt(e.to_string()))?.to_vec();
                map.insert(k, v);
            }
            tables.push((name, map));
        }
        r.finish().map_err(|e| corrupt(e.to_string()))?;
        Ok(MemoryBackend {
            tables: Mutex::new(tables),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding this lock leaves the maps consistent (every mutation is a
        // single insert/remove), so a poisoned lock is still usable.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StateBackend for MemoryBackend {
    fn open_table(&self, name: &str) -> Result<TableId> {
        let mut t = self.lock();
        if let Some(i) = t.iter().position(|(n, _)| n == name) {
            return Ok(i);
        }
        t.push((name.to_string(), BTreeMap::new()));
        Ok(t.len() - 1)
    }

    fn get(&self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .lock()
            .get(table)
            .and_then(|(_, m)| m.get(key).cloned()))
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut t = self.lock();
        for (table, key, value) in batch.ops {
            let (_, map) = t
                .get_mut(table)
                .ok_or_else(|| Error::State(format!("no table {table}")))?;
            match value {
                Some(v) => map.insert(key, v),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn scan_prefix_from(
        &self,
        table: TableId,
        prefix: &[u8],
        from: &[u8],
        max_bytes: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let t = self.lock();
        let Some((_, map)) = t.get(table) else {
            return Ok(Vec::new());
        };
        let mut bytes = 0;
        Ok(map
            .range(from.max(prefix).to_vec()..)
            .take_while(|(k, v)| {
                let take = k.starts_with(prefix) && bytes < max_bytes;
                bytes += k.len() + v.len();
                take
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        {
            let t = self.lock();
            Writer::new(&mut out).u64(t.len() as u64);
            for (name, map) in t.iter() {
                Writer::new(&mut out).len_bytes(name.as_bytes());
                Writer::new(&mut out).u64(map.len() as u64);
                for (k, v) in map {
                    Writer::new(&mut out).len_bytes(k);
                    Writer::new(&mut out).len_bytes(v);
                }
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let path = dir.join(SNAPSHOT_FILE);
        let mut f = std::fs::File::create(&path).map_err(|e| Error::io("creating", &path, e))?;
        f.write_all(&out)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("writing", &path, e))
    }

    fn size_bytes(&self) -> u64 {
        self.lock()
            .iter()
            .flat_map(|(_, m)| m.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    fn table_names(&self) -> Vec<String> {
        self.lock().iter().map(|(n, _)| n.clone()).collect()
    }
}
