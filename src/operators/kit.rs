//! The operator kit: what the runtime does for every operator, so that an operator only turns
//! records into records.
//!
//! - **State tables** are declared up front ([`crate::operators::Operator::tables`], as
//!   Arroyo's `tables()`): the runtime opens them before `on_start`, hands them to the
//!   operator through [`Context::tables`] and flushes every dirty entry into the barrier's write
//!   batch after `on_checkpoint`. An operator never opens or flushes a table itself.
//! - **Records in and out** of every operator are counted by the runtime
//!   (`osprey_operator_records_in_total` / `_out_total`), with labels built once.
//! - **Metrics**: [`BuildContext::metrics`] gives a [`MetricsScope`] that labels an operator's
//!   own series with its name and partition.
//! - **Shared resources**: [`BuildContext::resources`] is one per job run, shared by every
//!   partition, so a model (or any other expensive, read-only thing) is loaded once per
//!   process however many partitions build the operator.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Result;
use crate::core::{DeadLetter, Record};
use crate::metrics::Metrics;
use crate::state::{KeyedState, StateBackend, StateValue, WriteBatch};

/// A typed handle to the `index`-th table an operator declares in
/// [`crate::operators::Operator::tables`].
pub struct TableRef<V> {
    index: usize,
    _v: PhantomData<fn() -> V>,
}

impl<V> Clone for TableRef<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for TableRef<V> {}

impl<V: StateValue> TableRef<V> {
    /// The handle of the `index`-th declared table.
    pub const fn new(index: usize) -> Self {
        TableRef {
            index,
            _v: PhantomData,
        }
    }

    /// The declaration of this table: keyed state of `V` stored as `<operator>.<name>`.
    pub fn spec(self, name: &'static str) -> TableSpec {
        TableSpec {
            index: self.index,
            name,
            ttl: None,
            cache_keys: None,
            value_type: TypeId::of::<V>(),
            open: open_keyed::<V>,
        }
    }
}

type OpenFn = fn(
    Arc<dyn StateBackend>,
    &str,
    Option<Duration>,
    Option<usize>,
) -> Result<Box<dyn ErasedTable>>;

/// A state table an operator keeps (see [`TableRef::spec`]).
pub struct TableSpec {
    index: usize,
    name: &'static str,
    ttl: Option<Duration>,
    cache_keys: Option<usize>,
    value_type: TypeId,
    open: OpenFn,
}

impl TableSpec {
    /// Entries not written for this long read as absent.
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Entries cached in memory per partition before clean ones are evicted.
    pub fn cache_keys(mut self, entries: usize) -> Self {
        self.cache_keys = Some(entries);
        self
    }

    /// The table's name under its operator (the state table is `<operator>.<name>`).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

fn open_keyed<V: StateValue>(
    backend: Arc<dyn StateBackend>,
    name: &str,
    ttl: Option<Duration>,
    cache_keys: Option<usize>,
) -> Result<Box<dyn ErasedTable>> {
    let mut state = KeyedState::<V>::open(backend, name, ttl)?;
    if let Some(n) = cache_keys {
        state = state.with_capacity(n);
    }
    Ok(Box::new(state))
}

/// A keyed table whose value type the runtime does not know.
trait ErasedTable: Send {
    fn flush(&mut self, writes: &mut WriteBatch) -> Result<()>;
    fn sweep(&mut self, key_group: u16, writes: &mut WriteBatch) -> Result<usize>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<V: StateValue> ErasedTable for KeyedState<V> {
    fn flush(&mut self, writes: &mut WriteBatch) -> Result<()> {
        KeyedState::flush(self, writes)
    }
    fn sweep(&mut self, key_group: u16, writes: &mut WriteBatch) -> Result<usize> {
        KeyedState::sweep(self, key_group, writes)
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The open tables of one operator instance.
#[derive(Default)]
pub struct Tables {
    tables: Vec<Box<dyn ErasedTable>>,
}

impl Tables {
    /// Opens `specs` for the operator named `operator`.
    pub fn open(
        backend: &Arc<dyn StateBackend>,
        operator: &str,
        specs: Vec<TableSpec>,
    ) -> Result<Tables> {
        let mut tables = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            assert_eq!(
                spec.index, i,
                "operator {operator}: table `{}` is declared at position {i} but its TableRef says {}",
                spec.name, spec.index
            );
            let name = format!("{operator}.{}", spec.name);
            tables.push((spec.open)(
                Arc::clone(backend),
                &name,
                spec.ttl,
                spec.cache_keys,
            )?);
            debug_assert_ne!(spec.value_type, TypeId::of::<()>());
        }
        Ok(Tables { tables })
    }

    /// The table `table` points to.
    ///
    /// # Panics
    /// If the operator declared that table with another value type: a bug in the operator,
    /// caught by its first test.
    pub fn get<V: StateValue>(&mut self, table: TableRef<V>) -> &mut KeyedState<V> {
        self.tables
            .get_mut(table.index)
            .and_then(|t| t.as_any_mut().downcast_mut::<KeyedState<V>>())
            .expect("a TableRef names a table its operator declared with the same value type")
    }

    /// Whether the operator declared no table.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Writes every dirty entry into `writes` (at a barrier); entries spilled this epoch
    /// are moved into their tables directly (see [`KeyedState::flush`]).
    pub fn flush(&mut self, writes: &mut WriteBatch) -> Result<()> {
        for t in &mut self.tables {
            t.flush(writes)?;
        }
        Ok(())
    }

    /// Deletes the expired entries of `key_group` from every table with a TTL, into
    /// `writes`; returns how many (see [`KeyedState::sweep`]).
    pub fn sweep(&mut self, key_group: u16, writes: &mut WriteBatch) -> Result<usize> {
        let mut n = 0;
        for t in &mut self.tables {
            n += t.sweep(key_group, writes)?;
        }
        Ok(n)
    }
}

/// What an operator sees of its partition while it runs.
pub struct Context {
    /// Partition index.
    pub partition: usize,
    /// Partition name (`p000` …), the metrics label.
    pub partition_name: String,
    /// The job's state backend.
    pub backend: Arc<dyn StateBackend>,
    /// Writes collected for the barrier being handled (see
    /// [`crate::operators::Operator::on_checkpoint`]).
    pub writes: WriteBatch,
    /// Dead letters collected while processing the current batch.
    pub dead_letters: Vec<DeadLetter>,
    /// The state tables of the operator being called (swapped in by the runtime per call).
    pub tables: Tables,
}

impl Context {
    /// A context for partition `partition` over `backend`, with no tables open.
    pub fn new(partition: usize, backend: Arc<dyn StateBackend>) -> Self {
        Context {
            partition,
            partition_name: partition_name(partition),
            backend,
            writes: WriteBatch::default(),
            dead_letters: Vec::new(),
            tables: Tables::default(),
        }
    }

    /// Opens the tables `op` declares as the context's current tables: for tests and benches
    /// that drive one operator without the runtime.
    pub fn open_tables(&mut self, op: &dyn crate::operators::Operator) -> Result<()> {
        self.tables = Tables::open(&self.backend, op.name(), op.tables())?;
        Ok(())
    }

    /// Sends a record to the dead-letter sink with a reason.
    pub fn dead_letter(
        &mut self,
        reason: &'static str,
        message: impl Into<String>,
        record: &Record,
    ) {
        self.dead_letters
            .push(DeadLetter::of_record(reason, message, record));
    }
}

/// Which records leave a detector operator (`emit`, shared by `discord` and `rcf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// Every record, scored.
    #[default]
    All,
    /// Only the records flagged as anomalies.
    Anomalies,
}

/// The metrics label of partition `p`.
pub fn partition_name(p: usize) -> String {
    format!("p{p:03}")
}

/// What `build` gets to know about the job.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// Partition index.
    pub partition: usize,
    /// Number of value fields each record carries.
    pub values: usize,
    /// Names of the value fields.
    pub value_names: Vec<String>,
    /// Whether records carry event time.
    pub has_time: bool,
    /// Number of partitions of the job.
    pub partitions: usize,
    /// Number of key groups of the job (see [`crate::core::partition`]).
    pub key_groups: u16,
    /// Resources shared by every partition of the job run (a model loaded once).
    pub resources: Resources,
}

impl Default for BuildContext {
    /// Partition 0 of 1, one value field `value`, no event time, 256 key groups: the shape
    /// tests and benches start from.
    fn default() -> Self {
        BuildContext {
            partition: 0,
            values: 1,
            value_names: vec!["value".into()],
            has_time: false,
            partitions: 1,
            key_groups: 256,
            resources: Resources::default(),
        }
    }
}

impl BuildContext {
    /// The metrics label of this partition.
    pub fn partition_name(&self) -> String {
        partition_name(self.partition)
    }

    /// The metrics scope of operator `operator` in this partition.
    pub fn metrics(&self, operator: &str) -> MetricsScope {
        MetricsScope {
            operator: operator.to_string(),
            partition: self.partition_name(),
            registry: crate::metrics::get(),
        }
    }
}

/// An operator instance's view of the metrics registry: its series carry its name and
/// partition without the operator building labels.
#[derive(Clone)]
pub struct MetricsScope {
    operator: String,
    partition: String,
    registry: &'static Metrics,
}

impl MetricsScope {
    /// The registry, to create or find a metric family.
    pub fn registry(&self) -> &'static Metrics {
        self.registry
    }

    /// The operator name label.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// The partition label.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// `(operator, partition)`, the labels of per-instance series.
    pub fn labels(&self) -> [&str; 2] {
        [&self.operator, &self.partition]
    }

    /// The series of `family` (labels `operator`, `partition`) for this instance.
    pub fn counter(&self, family: &prometheus::IntCounterVec) -> prometheus::IntCounter {
        family.with_label_values(&self.labels())
    }
}

/// Process-wide resources of one job run, keyed by type and a name (the model's path…).
/// Cloning shares them.
#[derive(Clone, Default)]
pub struct Resources {
    inner: Arc<Mutex<ResourceMap>>,
}

type ResourceMap = HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>;

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.lock().map_or(0, |m| m.len());
        write!(f, "Resources({n})")
    }
}

impl Resources {
    /// The resource of type `T` named `key`, built by `init` the first time it is asked for.
    /// The lock is held while `init` runs, so partitions built one after another (or at once)
    /// build it once; a failed `init` is not cached.
    pub fn get_or_try_init<T, E>(
        &self,
        key: &str,
        init: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<Arc<T>, E>
    where
        T: Any + Send + Sync,
    {
        // A panic while initialising leaves the map unchanged, so a poisoned lock is usable.
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let k = (TypeId::of::<T>(), key.to_string());
        if let Some(v) = map.get(&k)
            && let Ok(v) = Arc::clone(v).downcast::<T>()
        {
            return Ok(v);
        }
        let v = Arc::new(init()?);
        map.insert(k, Arc::clone(&v) as Arc<dyn Any + Send + Sync>);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryBackend;

    const COUNTS: TableRef<u64> = TableRef::new(0);
    const NAMES: TableRef<Vec<u8>> = TableRef::new(1);

    #[test]
    fn declared_tables_open_flush_and_restore() {
        let backend: Arc<dyn StateBackend> = Arc::new(MemoryBackend::default());
        let specs = || vec![COUNTS.spec("counts").cache_keys(8), NAMES.spec("names")];
        let mut tables = Tables::open(&backend, "op", specs()).unwrap();
        *tables
            .get(COUNTS)
            .get_or_insert_with(3, b"k", 0, || 0)
            .unwrap() += 5;
        tables.get(NAMES).insert(3, b"k", 0, b"v".to_vec());
        let mut writes = WriteBatch::default();
        tables.flush(&mut writes).unwrap();
        assert_eq!(writes.len(), 2);
        backend.write(writes).unwrap();
        let mut again = Tables::open(&backend, "op", specs()).unwrap();
        assert_eq!(again.get(COUNTS).get(3, b"k", 0).unwrap(), Some(&5));
        assert_eq!(
            again.get(NAMES).get(3, b"k", 0).unwrap(),
            Some(&b"v".to_vec())
        );
    }

    #[test]
    #[should_panic(expected = "same value type")]
    fn a_table_read_with_another_type_is_a_bug() {
        let backend: Arc<dyn StateBackend> = Arc::new(MemoryBackend::default());
        let mut tables = Tables::open(&backend, "op", vec![COUNTS.spec("counts")]).unwrap();
        let wrong: TableRef<Vec<u8>> = TableRef::new(0);
        tables.get(wrong);
    }

    #[test]
    fn resources_are_built_once_and_failures_are_not_cached() {
        let r = Resources::default();
        let mut builds = 0;
        let a: Arc<String> = r
            .get_or_try_init("m", || {
                builds += 1;
                Ok::<_, ()>("model".to_string())
            })
            .unwrap();
        let b: Arc<String> = r.clone().get_or_try_init("m", || Err(())).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(builds, 1);
        assert!(r.get_or_try_init::<u32, _>("m", || Err("no")).is_err());
        assert_eq!(*r.get_or_try_init::<u32, ()>("m", || Ok(7)).unwrap(), 7);
    }
}
