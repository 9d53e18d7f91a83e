//! Shard bookkeeping, pure (no I/O, no clock): which shards exist, which may be read (parents
//! before children), what has been read and what returned, which are finished, and the
//! checkpointed position. The readers (`polling`, `efo`) feed it records; the source hands out
//! what it buffered, so both ways of reading share one position and one resume rule.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use super::client::{IteratorStart, KinesisRecord, ShardInfo};
use super::config::StartPosition;
use super::kpl;
use crate::connectors::RawItem;
use crate::core::Origin;

/// A position in a shard: sequence number and, inside an aggregated record, sub-sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// Sequence number (decimal digits).
    pub seq: String,
    /// Sub-sequence number, for records de-aggregated from a KPL aggregate.
    pub sub: Option<u64>,
}

impl Pos {
    /// Orders positions: sequence numbers numerically (they are decimal strings of up to 128
    /// bits), then sub-sequence numbers.
    pub fn cmp_key(&self) -> (usize, &str, u64) {
        let digits = self.seq.trim_start_matches('0');
        (digits.len(), digits, self.sub.unwrap_or(0))
    }

    /// `"<sequence>"` or `"<sequence>:<sub-sequence>"`: the items' origin position.
    pub fn text(&self) -> String {
        match self.sub {
            Some(s) => format!("{}:{s}", self.seq),
            None => self.seq.clone(),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        o.insert("seq".into(), self.seq.clone().into());
        if let Some(sub) = self.sub {
            o.insert("sub".into(), sub.into());
        }
        o.into()
    }
}

/// Whether `a` comes after `b` in their shard.
pub fn after(a: &Pos, b: &Pos) -> bool {
    a.cmp_key() > b.cmp_key()
}

struct Shard {
    parents: Vec<String>,
    /// Last record returned by `take`.
    delivered: Option<Pos>,
    /// Last record buffered (≥ `delivered`).
    read: Option<Pos>,
    buffer: VecDeque<(Pos, RawItem)>,
    /// Read to its end: the shard is closed and its reader saw the last record.
    ended: bool,
    /// Listed by a fresh run's first discovery (where `start = "latest"` applies).
    initial: bool,
}

/// What [`Shards::buffer`] added, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffered {
    /// Records buffered (after de-aggregation, without those returned before).
    pub records: u64,
    /// Bytes of the Kinesis records, as they arrived.
    pub bytes: u64,
}

/// Every shard the source knows, and the position (see the module docs of
/// [`super`]: *Position*).
pub struct Shards {
    /// For logs.
    stream: Arc<str>,
    start: StartPosition,
    /// The job's start time for `latest` / `at_timestamp` (epoch ms); kept in the position.
    start_ms: Option<i64>,
    max_record_bytes: usize,
    shards: BTreeMap<Arc<str>, Shard>,
    finished: HashSet<String>,
    /// Positions from the checkpoint, applied when a listing reports the shard.
    restored: HashMap<String, Pos>,
    restored_any: bool,
    listed_once: bool,
    /// Round-robin start for `take`.
    rotate: usize,
    /// A shard finished since the last [`Shards::take_relist`].
    relist: bool,
}

impl Shards {
    /// No shard yet. `start_ms` is the job's start time for `latest` / `at_timestamp`.
    pub fn new(
        stream: &str,
        start: StartPosition,
        start_ms: Option<i64>,
        max_record_bytes: usize,
    ) -> Self {
        Shards {
            stream: Arc::from(stream),
            start,
            start_ms,
            max_record_bytes,
            shards: BTreeMap::new(),
            finished: HashSet::new(),
            restored: HashMap::new(),
            restored_any: false,
            listed_once: false,
            rotate: 0,
            relist: false,
        }
    }

    /// Takes a checkpointed [`Shards::position`] back. `Err` names the part that is malformed.
    pub fn restore(&mut self, position: &serde_json::Value) -> Result<(), &'static str> {
        if let Some(shards) = position.get("shards") {
            let map = shards.as_object().ok_or("shards")?;
            for (id, p) in map {
                let seq = p
                    .get("seq")
                    .and_then(serde_json::Value::as_str)
                    .ok_or("seq")?;
                let sub = p.get("sub").and_then(serde_json::Value::as_u64);
                let pos = Pos {
                    seq: seq.to_string(),
                    sub,
                };
                self.restored.insert(id.clone(), pos);
            }
        }
        if let Some(f) = position.get("finished") {
            for id in f.as_array().ok_or("finished")? {
                self.finished
                    .insert(id.as_str().ok_or("finished")?.to_string());
            }
        }
        if let Some(ms) = position.get("start_ms").and_then(serde_json::Value::as_i64) {
            self.start_ms = Some(ms);
        } else if position.get("shards").is_some() {
            self.start_ms = None;
        }
        self.restored_any = true;
        Ok(())
    }

    /// Per shard the last record returned, the finished shards and the start time.
    pub fn position(&self) -> serde_json::Value {
        let mut shards = serde_json::Map::new();
        for (id, s) in &self.shards {
            if let Some(p) = &s.delivered {
                shards.insert(id.to_string(), p.to_json());
            }
        }
        // Restored positions of shards not listed yet stay in the checkpoint.
        for (id, p) in &self.restored {
            shards.insert(id.clone(), p.to_json());
        }
        let mut finished: Vec<&String> = self.finished.iter().collect();
        finished.sort();
        let mut pos = serde_json::json!({ "shards": shards, "finished": finished });
        if let Some(ms) = self.start_ms {
            pos["start_ms"] = ms.into();
        }
        pos
    }

    /// Adds the shards of a ListShards answer that are new; forgets finished shards it no
    /// longer reports (past retention: an unlisted parent counts as finished).
    pub fn apply_listing(&mut self, listed: Vec<ShardInfo>) {
        let initial = !self.listed_once && !self.restored_any;
        self.listed_once = true;
        let ids: HashSet<&str> = listed.iter().map(|s| s.id.as_str()).collect();
        self.finished.retain(|id| ids.contains(id.as_str()));
        for s in listed {
            if self.finished.contains(&s.id) || self.shards.contains_key(s.id.as_str()) {
                continue;
            }
            let pos = self.restored.remove(&s.id);
            tracing::info!(stream = %self.stream, shard = %s.id, parents = ?s.parents, resume = ?pos.as_ref().map(Pos::text), "Found shard.");
            let shard = Shard {
                parents: s.parents,
                delivered: pos.clone(),
                read: pos,
                buffer: VecDeque::new(),
                ended: false,
                initial,
            };
            self.shards.insert(Arc::from(s.id.as_str()), shard);
        }
    }

    /// The shards to read now: not read to their end, and every parent finished. In id order.
    pub fn readable(&self) -> Vec<Arc<str>> {
        self.shards
            .iter()
            .filter(|(_, s)| !s.ended && s.parents.iter().all(|p| !self.shards.contains_key(&**p)))
            .map(|(id, _)| Arc::clone(id))
            .collect()
    }

    /// Whether shard `id` holds records not returned yet.
    pub fn is_buffered(&self, id: &str) -> bool {
        self.shards.get(id).is_some_and(|s| !s.buffer.is_empty())
    }

    /// Where reading shard `id` starts: after the last record read (at it, inside an
    /// aggregate), else at the configured start. Polling and enhanced fan-out start alike,
    /// so checkpoints are interchangeable between the two.
    pub fn start_of(&self, id: &str) -> IteratorStart {
        let shard = self.shards.get(id);
        match shard.and_then(|s| s.read.as_ref()) {
            Some(Pos { seq, sub: Some(_) }) => IteratorStart::AtSequence(seq.clone()),
            Some(Pos { seq, sub: None }) => IteratorStart::AfterSequence(seq.clone()),
            None if shard.is_some_and(|s| s.initial) && self.start == StartPosition::Latest => {
                IteratorStart::Latest
            }
            None => match self.start_ms {
                Some(ms) => IteratorStart::AtTimestamp(ms),
                None => IteratorStart::TrimHorizon,
            },
        }
    }

    /// Buffers the records of a GetRecords page or subscription event for shard `id`:
    /// de-aggregated, without those read before (a resume inside an aggregate). `None` when
    /// the shard is unknown.
    pub fn buffer(&mut self, id: &Arc<str>, records: Vec<KinesisRecord>) -> Option<Buffered> {
        let max_bytes = self.max_record_bytes;
        let shard = self.shards.get_mut(id)?;
        let mut counted = Buffered {
            records: 0,
            bytes: 0,
        };
        for r in records {
            counted.bytes += r.data.len() as u64;
            let subs = match kpl::decode(&r.data) {
                Ok(None) => vec![(None, r.partition_key, r.data)],
                Ok(Some(subs)) => subs
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| (Some(i as u64), s.partition_key, s.data))
                    .collect(),
                Err(e) => {
                    // Handed on as it is: the parser dead-letters it with its reason.
                    tracing::warn!(shard = %id, sequence = %r.sequence, error = %e, "Bad aggregated record.");
                    vec![(None, r.partition_key, r.data)]
                }
            };
            for (sub, pk, mut data) in subs {
                let pos = Pos {
                    seq: r.sequence.clone(),
                    sub,
                };
                if shard.read.as_ref().is_some_and(|last| !after(&pos, last)) {
                    continue; // read before (a resume inside an aggregate)
                }
                counted.records += 1;
                let too_large = (data.len() > max_bytes).then(|| {
                    let len = data.len();
                    data.truncate(max_bytes.min(4096));
                    len
                });
                let item = RawItem {
                    data,
                    stream: Arc::from(pk),
                    origin: Origin {
                        stream: Some(Arc::clone(id)),
                        position: Some(pos.text().into_boxed_str()),
                    },
                    header: false,
                    too_large,
                    record: None,
                };
                shard.read = Some(pos.clone());
                shard.buffer.push_back((pos, item));
            }
        }
        Some(counted)
    }

    /// Shard `id` was read to its end (its reader saw the last record). It finishes once its
    /// buffer is handed out. `false` when the shard is unknown.
    pub fn end(&mut self, id: &str) -> bool {
        match self.shards.get_mut(id) {
            Some(s) => {
                s.ended = true;
                true
            }
            None => false,
        }
    }

    /// Hands out up to `max` buffered items, shards in turn, and retires the shards read to
    /// their end and handed out (their children become readable).
    pub fn take(&mut self, max: usize) -> Vec<RawItem> {
        let mut out = Vec::new();
        let n = self.shards.len();
        if n > 0 {
            let keys: Vec<Arc<str>> = self.shards.keys().cloned().collect();
            self.rotate = (self.rotate + 1) % n;
            for i in 0..n {
                if out.len() >= max {
                    break;
                }
                let Some(shard) = self.shards.get_mut(&keys[(self.rotate + i) % n]) else {
                    continue;
                };
                while out.len() < max {
                    let Some((pos, item)) = shard.buffer.pop_front() else {
                        break;
                    };
                    shard.delivered = Some(pos);
                    out.push(item);
                }
            }
        }
        let done: Vec<Arc<str>> = self
            .shards
            .iter()
            .filter(|(_, s)| s.ended && s.buffer.is_empty())
            .map(|(id, _)| Arc::clone(id))
            .collect();
        for id in done {
            tracing::info!(stream = %self.stream, shard = %id, "Shard finished.");
            self.shards.remove(&id);
            self.finished.insert(id.to_string());
            self.relist = true;
        }
        out
    }

    /// Whether a shard finished since the last call: its children may be listed already,
    /// but those that are not should be looked for soon.
    pub fn take_relist(&mut self) -> bool {
        std::mem::take(&mut self.relist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, parents: &[&str]) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn rec(seq: &str, data: &[u8]) -> KinesisRecord {
        KinesisRecord {
            sequence: seq.into(),
            partition_key: "k".into(),
            data: data.to_vec(),
        }
    }

    fn shards() -> Shards {
        Shards::new("s", StartPosition::TrimHorizon, None, 100)
    }

    #[test]
    fn children_become_readable_once_their_parents_are_handed_out() {
        let mut s = shards();
        s.apply_listing(vec![info("a", &[]), info("b", &[]), info("c", &["a", "b"])]);
        assert_eq!(s.readable(), [Arc::from("a"), Arc::from("b")]);
        let a: Arc<str> = Arc::from("a");
        s.buffer(&a, vec![rec("1", b"x")]).unwrap();
        assert!(s.end("a"));
        // Ended but its record is still buffered: not finished yet.
        assert_eq!(s.readable(), [Arc::from("b")]);
        assert!(!s.take_relist());
        assert_eq!(s.take(10).len(), 1);
        assert!(s.take_relist());
        assert!(!s.take_relist());
        assert_eq!(s.readable(), [Arc::from("b")]);
        s.end("b");
        assert!(s.take(10).is_empty());
        assert_eq!(s.readable(), [Arc::from("c")]);
        assert_eq!(s.position()["finished"], serde_json::json!(["a", "b"]));
        // A finished shard no longer listed is forgotten.
        s.apply_listing(vec![info("b", &[]), info("c", &["a", "b"])]);
        assert_eq!(s.position()["finished"], serde_json::json!(["b"]));
    }

    #[test]
    fn positions_round_trip_and_resume_inside_an_aggregate() {
        let mut s = Shards::new("s", StartPosition::Latest, Some(7), 100);
        s.apply_listing(vec![info("a", &[])]);
        assert_eq!(s.start_of("a"), IteratorStart::Latest);
        let a: Arc<str> = Arc::from("a");
        let subs: Vec<kpl::SubRecord> = (0..3)
            .map(|i| kpl::SubRecord {
                partition_key: format!("p{i}"),
                data: vec![b'0' + i],
            })
            .collect();
        let got = s.buffer(&a, vec![rec("5", &kpl::encode(&subs))]).unwrap();
        assert_eq!(got.records, 3);
        assert_eq!(s.start_of("a"), IteratorStart::AtSequence("5".into()));
        let items = s.take(2);
        assert_eq!(items[1].origin.position.as_deref(), Some("5:1"));
        let pos = s.position();
        assert_eq!(
            pos["shards"]["a"],
            serde_json::json!({"seq": "5", "sub": 1})
        );
        assert_eq!(pos["start_ms"], 7);

        let mut again = Shards::new("s", StartPosition::Latest, None, 100);
        again.restore(&pos).unwrap();
        // Restored positions are kept until a listing reports the shard.
        assert_eq!(again.position(), pos);
        again.apply_listing(vec![info("a", &[]), info("new", &[])]);
        assert_eq!(again.start_of("new"), IteratorStart::AtTimestamp(7));
        // The aggregate is read again; its first two records are skipped.
        let got = again.buffer(&a, vec![rec("5", &kpl::encode(&subs)), rec("6", b"z")]);
        assert_eq!(got.map(|b| b.records), Some(2));
        let rest: Vec<String> = again
            .take(10)
            .iter()
            .map(|i| i.origin.position.as_deref().unwrap().to_string())
            .collect();
        assert_eq!(rest, ["5:2", "6"]);
        assert_eq!(
            again.start_of("a"),
            IteratorStart::AfterSequence("6".into())
        );
        assert_eq!(
            again.restore(&serde_json::json!({"shards": {"a": {}}})),
            Err("seq")
        );
    }

    #[test]
    fn oversized_records_are_cut_and_marked() {
        let mut s = Shards::new("s", StartPosition::TrimHorizon, None, 4);
        s.apply_listing(vec![info("a", &[])]);
        let a: Arc<str> = Arc::from("a");
        let got = s.buffer(&a, vec![rec("1", b"123456")]).unwrap();
        assert_eq!(
            got,
            Buffered {
                records: 1,
                bytes: 6
            }
        );
        let item = &s.take(1)[0];
        assert_eq!(
            (item.data.as_slice(), item.too_large),
            (&b"1234"[..], Some(6))
        );
        assert!(s.buffer(&Arc::from("unknown"), vec![]).is_none());
    }
}
