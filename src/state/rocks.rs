//! The RocksDB backend: one column family per table, WAL off (durability comes from
//! checkpoints, not from the live database), snapshots via RocksDB checkpoints (hard links).

use std::path::Path;
use std::sync::RwLock;

use rocksdb::{DBWithThreadMode, MultiThreaded, Options, WriteOptions};

use super::{StateBackend, TableId, WriteBatch};
use crate::{Error, Result};

type Db = DBWithThreadMode<MultiThreaded>;

/// See the module docs.
pub struct RocksBackend {
    db: Db,
    tables: RwLock<Vec<String>>,
    write_opts: WriteOptions,
}

fn options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // A bloom filter per SST: a read of a key the table does not hold (every new key, and
    // every miss in a spill table) then skips the data blocks instead of decompressing them.
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    o.set_block_based_table_factory(&table);
    o.increase_parallelism(2);
    o.set_max_background_jobs(2);
    o
}

impl RocksBackend {
    /// Opens the live database at `live_dir`. With `restore_from`, the live directory is first
    /// replaced by a copy of that checkpoint snapshot (SST files hard-linked, the rest copied,
    /// because RocksDB rewrites its MANIFEST and OPTIONS files but never an SST).
    pub fn open(live_dir: &Path, restore_from: Option<&Path>) -> Result<Self> {
        if live_dir.exists() {
            std::fs::remove_dir_all(live_dir)
                .map_err(|e| Error::io("clearing live state", live_dir, e))?;
        }
        if let Some(src) = restore_from {
            let db_dir = src.join("db");
            if !db_dir.is_dir() {
                return Err(Error::checkpoint(
                    src,
                    "has no RocksDB snapshot (db/ is missing)",
                ));
            }
            copy_snapshot(&db_dir, live_dir)?;
        }
        std::fs::create_dir_all(live_dir).map_err(|e| Error::io("creating", live_dir, e))?;
        let opts = options();
        let cfs = Db::list_cf(&opts, live_dir).unwrap_or_else(|_| vec!["default".to_string()]);
        let db = Db::open_cf(&opts, live_dir, &cfs).map_err(|e| {
            if restore_from.is_some() {
                Error::checkpoint(
                    restore_from.unwrap_or(live_dir),
                    format!("RocksDB snapshot cannot be opened: {e}"),
                )
            } else {
                Error::State(format!("opening {}: {e}", live_dir.display()))
            }
        })?;
        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(true);
        let tables = cfs.into_iter().filter(|c| c != "default").collect();
        Ok(RocksBackend {
            db,
            tables: RwLock::new(tables),
            write_opts,
        })
    }

    fn name(&self, table: TableId) -> Result<String> {
        self.tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(table)
            .cloned()
            .ok_or_else(|| Error::State(format!("no table {table}")))
    }
}

fn copy_snapshot(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io("creating", to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| Error::io("reading", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("reading", from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let is_sst = src.extension().is_some_and(|e| e == "sst");
        let res = if is_sst {
            std::fs::hard_link(&src, &dst).or_else(|_| std::fs::copy(&src, &dst).map(|_| ()))
        } else {
            std::fs::copy(&src, &dst).map(|_| ())
        };
        res.map_err(|e| Error::io("restoring state file", &src, e))?;
    }
    Ok(())
}

impl StateBackend for RocksBackend {
    fn open_table(&self, name: &str) -> Result<TableId> {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = tables.iter().position(|n| n == name) {
            return Ok(i);
        }
        self.db.create_cf(name, &options())?;
        tables.push(name.to_string());
        Ok(tables.len() - 1)
    }

    fn get(&self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let name = self.name(table)?;
        let cf = self
            .db
            .cf_handle(&name)
            .ok_or_else(|| Error::State(format!("no column family {name}")))?;
        Ok(self.db.get_pinned_cf(&cf, key)?.map(|v| v.to_vec()))
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let names = self
            .tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let handles: Vec<_> = names.iter().map(|n| self.db.cf_handle(n)).collect();
        let mut wb = rocksdb::WriteBatch::default();
        for (table, key, value) in &batch.ops {
            let cf = handles
                .get(*table)
                .and_then(|h| h.as_ref())
                .ok_or_else(|| Error::State(format!("no table {table}")))?;
            match value {
                Some(v) => wb.put_cf(cf, key, v),
                None => wb.delete_cf(cf, key),
            }
        }
        self.db.write_opt(wb, &self.write_opts)?;
        Ok(())
    }

    fn scan_prefix_from(
        &self,
        table: TableId,
        prefix: &[u8],
        from: &[u8],
        max_bytes: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let name = self.name(table)?;
        let cf = self
            .db
            .cf_handle(&name)
            .ok_or_else(|| Error::State(format!("no column family {name}")))?;
        let start = from.max(prefix);
        let mode = rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward);
        let (mut out, mut bytes) = (Vec::new(), 0);
        for item in self.db.iterator_cf(&cf, mode) {
            let (k, v) = item?;
            if !k.starts_with(prefix) || bytes >= max_bytes {
                break;
            }
            bytes += k.len() + v.len();
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn checkpoint(&self, dir: &Path) -> Result<()> {
        // With the WAL off, a checkpoint must flush the memtables; rust-rocksdb's
        // `create_checkpoint` asks for exactly that (log_size_for_flush = 0).
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        cp.create_checkpoint(dir.join("db"))?;
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        let names = self
            .tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        names
            .iter()
            .filter_map(|n| self.db.cf_handle(n))
            .map(|cf| {
                let p = |name: &str| {
                    self.db
                        .property_int_value_cf(&cf, name)
                        .ok()
                        .flatten()
                        .unwrap_or(0)
                };
                p("rocksdb.total-sst-files-size") + p("rocksdb.cur-size-all-mem-tables")
            })
            .sum()
    }

    fn table_names(&self) -> Vec<String> {
        self.tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
