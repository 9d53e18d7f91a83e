//! Model-based tests: random put/delete/flush/checkpoint/restore sequences against a BTreeMap.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u64),
    Delete(u8),
    Flush,
    CheckpointAndRestore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..16, any::<u64>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u8..16).prop_map(Op::Delete),
        1 => Just(Op::Flush),
        1 => Just(Op::CheckpointAndRestore),
    ]
}

fn run_model(kind: BackendKind, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let mut backend = open_backend(kind, &live, None).unwrap();
    let mut state = KeyedState::<u64>::open(Arc::clone(&backend), "op.t", None)
        .unwrap()
        .with_capacity(4);
    // `flushed` is what a checkpoint must contain; `current` is what reads must see.
    let mut current = BTreeMap::new();
    let mut flushed = BTreeMap::new();
    let mut n = 0;
    for op in ops {
        match op {
            Op::Put(k, v) => {
                *state
                    .get_or_insert_with(k as u16 % 4, &[k], 0, || 0)
                    .unwrap() = v;
                current.insert(k, v);
            }
            Op::Delete(k) => {
                state.remove(k as u16 % 4, &[k]);
                current.remove(&k);
            }
            Op::Flush => {
                let mut batch = WriteBatch::default();
                state.flush(&mut batch).unwrap();
                backend.write(batch).unwrap();
                flushed = current.clone();
            }
            Op::CheckpointAndRestore => {
                n += 1;
                let cp = dir.path().join(format!("cp{n}"));
                backend.checkpoint(&cp).unwrap();
                drop(state);
                drop(backend);
                backend = open_backend(kind, &live, Some(&cp)).unwrap();
                state = KeyedState::open(Arc::clone(&backend), "op.t", None)
                    .unwrap()
                    .with_capacity(4);
                current = flushed.clone();
            }
        }
        for k in 0u8..16 {
            let got = state.get(k as u16 % 4, &[k], 0).unwrap().copied();
            prop_assert_eq!(got, current.get(&k).copied(), "key {}", k);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn memory_backend_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_model(BackendKind::Memory, ops)?;
    }

    #[test]
    fn rocksdb_backend_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(BackendKind::Rocksdb, ops)?;
    }
}

#[test]
fn ttl_expires_entries() {
    let backend: Arc<dyn StateBackend> = Arc::new(MemoryBackend::default());
    let mut s =
        KeyedState::<u64>::open(backend, "t", Some(std::time::Duration::from_millis(100))).unwrap();
    *s.get_or_insert_with(0, b"a", 1000, || 0).unwrap() += 5;
    assert_eq!(s.get(0, b"a", 1050).unwrap(), Some(&5));
    assert_eq!(s.get(0, b"a", 1200).unwrap(), None);
    assert_eq!(*s.get_or_insert_with(0, b"a", 1200, || 1).unwrap(), 1);
}

#[test]
fn map_and_list_state() {
    let backend: Arc<dyn StateBackend> = Arc::new(MemoryBackend::default());
    let mut m = MapState::<u64>::open(Arc::clone(&backend), "m", None).unwrap();
    m.insert(1, b"k", b"x", 0, 3);
    m.insert(1, b"k", b"y", 0, 4);
    m.remove(1, b"k", b"x");
    let mut batch = WriteBatch::default();
    m.flush(&mut batch).unwrap();
    backend.write(batch).unwrap();
    let mut m2 = MapState::<u64>::open(Arc::clone(&backend), "m", None).unwrap();
    assert_eq!(m2.get(1, b"k", b"y", 0).unwrap(), Some(&4));
    assert_eq!(m2.get(1, b"k", b"x", 0).unwrap(), None);

    let mut l = KeyedState::<ListValue<u64>>::open(backend, "l", None).unwrap();
    l.get_or_insert_with(0, b"k", 0, ListValue::default)
        .unwrap()
        .0
        .extend([1, 2, 3]);
    let mut batch = WriteBatch::default();
    l.flush(&mut batch).unwrap();
    let (_, _, bytes) = &batch.ops[0];
    let stored = bytes.as_ref().unwrap();
    assert_eq!(
        ListValue::<u64>::decode(&stored[8..]).unwrap().0,
        vec![1, 2, 3]
    );
}

/// Issue 14.11: expired entries are deleted from the backend by the sweep, not only read as
/// absent; live and cached entries stay, and every other key group is left alone.
#[test]
fn r14_11_sweep_deletes_expired_entries() {
    for kind in [BackendKind::Memory, BackendKind::Rocksdb] {
        let dir = tempfile::tempdir().unwrap();
        let backend = open_backend(kind, &dir.path().join("live"), None).unwrap();
        let ttl = Some(std::time::Duration::from_millis(100));
        let mut state = KeyedState::<u64>::open(Arc::clone(&backend), "op.t", ttl).unwrap();
        // Key group 1: "old" at t=0, "new" at t=950; key group 2: "other" at t=0.
        state.insert(1, b"old", 0, 1);
        state.insert(1, b"new", 950, 2);
        state.insert(2, b"other", 0, 3);
        let mut batch = WriteBatch::default();
        state.flush(&mut batch).unwrap();
        backend.write(batch).unwrap();
        // A fresh view (nothing cached) that has seen t=1000.
        let mut view = KeyedState::<u64>::open(Arc::clone(&backend), "op.t", ttl).unwrap();
        assert_eq!(view.get(1, b"new", 1000).unwrap(), Some(&2));
        let mut batch = WriteBatch::default();
        assert_eq!(view.sweep(1, &mut batch).unwrap(), 1, "{kind:?}");
        backend.write(batch).unwrap();
        let table = backend.open_table("op.t").unwrap();
        assert_eq!(backend.get(table, &state_key(1, b"old")).unwrap(), None);
        assert!(backend.get(table, &state_key(1, b"new")).unwrap().is_some());
        assert!(
            backend
                .get(table, &state_key(2, b"other"))
                .unwrap()
                .is_some()
        );
        // Without a TTL nothing is swept.
        let mut keep = KeyedState::<u64>::open(Arc::clone(&backend), "op.t", None).unwrap();
        let _ = keep.get(2, b"other", 10_000).unwrap();
        let mut batch = WriteBatch::default();
        assert_eq!(keep.sweep(2, &mut batch).unwrap(), 0);
    }
}

/// Issue 14.11: an epoch that touches far more keys than the cache holds keeps at most
/// `capacity` entries in memory; the rest waits in the spill table, and the barrier's flush
/// moves all of it into the table. A snapshot taken mid-epoch restores without it.
#[test]
fn r14_11_a_new_key_per_record_stays_within_the_cache() {
    for kind in [BackendKind::Memory, BackendKind::Rocksdb] {
        let dir = tempfile::tempdir().unwrap();
        let backend = open_backend(kind, &dir.path().join("live"), None).unwrap();
        let mut s = KeyedState::<u64>::open(Arc::clone(&backend), "op.t", None)
            .unwrap()
            .with_capacity(10);
        let key = |i: u64| (i as u16 % 8, i.to_be_bytes());
        for i in 0..1_000u64 {
            let (g, k) = key(i);
            *s.get_or_insert_with(g, &k, 0, || 0).unwrap() += i + 1;
            assert!(s.cached() <= 10, "{kind:?}: {} cached", s.cached());
        }
        // Read back within the epoch: from the spill.
        for i in (0..1_000u64).step_by(97) {
            let (g, k) = key(i);
            assert_eq!(s.get(g, &k, 0).unwrap(), Some(&(i + 1)), "{kind:?} key {i}");
        }
        let spill = backend.open_table("op.t~spill").unwrap();
        let mid = dir.path().join("mid");
        backend.checkpoint(&mid).unwrap();
        assert!(!backend.scan_prefix(spill, &[]).unwrap().is_empty());
        let mut batch = WriteBatch::default();
        s.flush(&mut batch).unwrap();
        backend.write(batch).unwrap();
        assert!(
            backend.scan_prefix(spill, &[]).unwrap().is_empty(),
            "{kind:?}"
        );
        let table = backend.open_table("op.t").unwrap();
        let stored: usize = (0..8u16)
            .map(|g| backend.scan_prefix(table, &g.to_be_bytes()).unwrap().len())
            .sum();
        assert_eq!(stored, 1_000, "{kind:?}");
        let mut again = KeyedState::<u64>::open(Arc::clone(&backend), "op.t", None).unwrap();
        let (g, k) = key(500);
        assert_eq!(again.get(g, &k, 0).unwrap(), Some(&501));
        // The mid-epoch snapshot: nothing was flushed yet, so nothing is there.
        drop((s, again, backend));
        let restored = open_backend(kind, &dir.path().join("live2"), Some(&mid)).unwrap();
        let mut r = KeyedState::<u64>::open(Arc::clone(&restored), "op.t", None).unwrap();
        assert_eq!(
            r.get(g, &k, 0).unwrap(),
            None,
            "{kind:?}: spill leaked into a restore"
        );
    }
}

/// Issue 14.11: the TTL sweep never deletes a key whose newer value is in the spill table
/// (the spill moves into the table before the sweep's deletes are written).
#[test]
fn r14_11_the_sweep_skips_spilled_keys() {
    let backend: Arc<dyn StateBackend> = Arc::new(MemoryBackend::default());
    let ttl = Some(std::time::Duration::from_millis(500));
    let mut s = KeyedState::<u64>::open(Arc::clone(&backend), "t", ttl)
        .unwrap()
        .with_capacity(2);
    *s.get_or_insert_with(0, b"old", 0, || 0).unwrap() = 1;
    let mut batch = WriteBatch::default();
    s.flush(&mut batch).unwrap();
    backend.write(batch).unwrap();
    // Next epoch: `old` is rewritten at t=1000, then spilled by two other keys.
    *s.get_or_insert_with(0, b"old", 1000, || 0).unwrap() = 2;
    for k in [b"k1", b"k2"] {
        *s.get_or_insert_with(0, k, 1000, || 0).unwrap() = 3;
    }
    let mut batch = WriteBatch::default();
    assert_eq!(s.sweep(0, &mut batch).unwrap(), 0);
    s.flush(&mut batch).unwrap();
    backend.write(batch).unwrap();
    let mut again = KeyedState::<u64>::open(backend, "t", ttl).unwrap();
    assert_eq!(again.get(0, b"old", 1000).unwrap(), Some(&2));
}
