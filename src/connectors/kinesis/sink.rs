//! `type = "kinesis"` sink: PutRecords batches to a Kinesis data stream (at-least-once).
//!
//! - Batches hold at most 500 records and 5 MiB; a record (data + partition key) over 1 MiB
//!   is dead-lettered (reason `too_large`, through the partition's dead-letter sink), never sent.
//! - The partition key is the record key, or the value of `partition_key_field`. A key Kinesis
//!   refuses (empty, or over 256 characters) is dead-lettered (`bad_partition_key`), never sent.
//! - Only the entries PutRecords reports as failed are retried, with exponential backoff:
//!   throttling (ProvisionedThroughputExceeded), InternalFailure and faults of the stream
//!   itself (KMS, access denied); after `max_attempts` the sink fails the job (it restarts from
//!   the last checkpoint). An entry failed for any other code is dead-lettered alone
//!   (`rejected`, with the code and message); the rest of the batch is delivered.
//! - A request Kinesis refuses as a whole as invalid (ValidationException,
//!   InvalidArgumentException: what kinesis-local answers for a bad partition key) is split in
//!   halves until the record at fault is alone; that one is dead-lettered (`rejected`). When
//!   every record of a batch is refused so, the request is at fault, not the records: the job
//!   fails with the service's message.
//! - `aggregate = true` packs records into KPL aggregated records (up to 50 KiB each, the KPL's
//!   default), routed by the first record's partition key.
//! - The buffer is bounded (`max_buffer_records`) and is sent before `write` returns, so a
//!   slow stream slows the partition and, through its channel, the source (backpressure), and
//!   output waits for no checkpoint. `precommit` sends anything left and returns no commits.
//! - Every output record gets `"_source_shard"` and `"_source_sequence"` from its origin:
//!   replay after a restore is deterministic, so duplicates carry identical content and can be
//!   dropped downstream by that pair.

use std::sync::Arc;

use async_trait::async_trait;

use super::client::KinesisApi;
use super::config::KinesisSinkConfig;
use crate::Result;
use crate::connectors::Sink;
use crate::core::record::write_json_str;
use crate::core::{DeadLetter, Record};
use crate::state::checkpoint::Commit;

pub use super::producer::{
    MAX_AGGREGATE_BYTES, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, MAX_PARTITION_KEY_CHARS,
    MAX_RECORD_BYTES, PUT_RETRIES, Producer, Pushed, Rejected, check_partition_key,
};

/// See the module docs.
pub struct KinesisSink {
    cfg: KinesisSinkConfig,
    component: String,
    producer: Producer,
    line: String,
    dead: Vec<DeadLetter>,
}

impl KinesisSink {
    /// The sink instance of `component`.
    pub fn new(cfg: KinesisSinkConfig, component: &str) -> Self {
        let producer = Producer::new(
            &cfg.stream,
            cfg.endpoint_url.as_deref(),
            component,
            cfg.aggregate,
            cfg.max_buffer_records,
            cfg.max_attempts,
        );
        KinesisSink {
            cfg,
            component: component.to_string(),
            producer,
            line: String::new(),
            dead: Vec::new(),
        }
    }

    /// Uses a given client (tests).
    pub fn with_api(mut self, api: Arc<dyn KinesisApi>) -> Self {
        self.producer = self.producer.with_api(api);
        self
    }

    fn partition_key(&self, r: &Record) -> String {
        let Some(field) = &self.cfg.partition_key_field else {
            return r.key.to_string();
        };
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            v => Some(v.to_string()),
        };
        if let Some(f) = r.fields.iter().rev().find(|(n, _)| &**n == field) {
            let mut s = String::new();
            f.1.write_json(&mut s);
            return serde_json::from_str::<serde_json::Value>(&s)
                .ok()
                .and_then(|v| text(&v))
                .unwrap_or(s);
        }
        r.raw
            .as_deref()
            .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok())
            .and_then(|v| v.get(field).and_then(text))
            .unwrap_or_else(|| r.key.to_string())
    }
}

/// Writes `r` as JSON with `_source_shard` and `_source_sequence` appended.
pub fn render_with_origin(r: &Record, out: &mut String) {
    r.write_json(out);
    if out.ends_with('}') {
        out.pop();
    }
    if !out.trim_end().ends_with('{') {
        out.push(',');
    }
    out.push_str("\"_source_shard\":");
    match r.origin.stream.as_deref() {
        Some(s) => write_json_str(out, s),
        None => out.push_str("null"),
    }
    out.push_str(",\"_source_sequence\":");
    match r.origin.position.as_deref() {
        Some(s) => write_json_str(out, s),
        None => out.push_str("null"),
    }
    out.push('}');
}

#[async_trait]
impl Sink for KinesisSink {
    async fn write(&mut self, records: &[Record]) -> Result<()> {
        let mut queued = 0usize;
        for r in records {
            self.line.clear();
            render_with_origin(r, &mut self.line);
            let pk = self.partition_key(r);
            let pushed = self
                .producer
                .push_from(pk, self.line.as_bytes().to_vec(), r.origin.clone())
                .await?;
            // The partition writes refused records to the dead-letter sink (and counts them).
            let (reason, message) = match pushed {
                Pushed::Queued => {
                    queued += 1;
                    continue;
                }
                Pushed::TooLarge(size) => (
                    "too_large",
                    format!(
                        "output record of {size} bytes (with its partition key) is over Kinesis's {MAX_RECORD_BYTES}-byte limit"
                    ),
                ),
                Pushed::BadKey(why) => ("bad_partition_key", why),
            };
            self.dead.push(DeadLetter {
                reason,
                message,
                data: clip(&self.line),
                origin: r.origin.clone(),
            });
        }
        // Send what this batch left in the buffer: output latency is one batch, not one
        // checkpoint interval (a busy job still sends full 500-record calls).
        self.producer.flush().await?;
        let rejected = self.take_rejected();
        crate::connectors::count_written(&self.component, queued.saturating_sub(rejected));
        Ok(())
    }

    async fn precommit(&mut self, _epoch: u64) -> Result<Vec<Commit>> {
        self.producer.flush().await?;
        self.take_rejected();
        Ok(vec![])
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }
}

impl KinesisSink {
    /// Moves the records PutRecords refused into the dead letters; returns how many.
    fn take_rejected(&mut self) -> usize {
        let rejected = self.producer.take_rejected();
        let n = rejected.len();
        for r in rejected {
            self.dead.push(DeadLetter {
                reason: "rejected",
                message: format!(
                    "PutRecords to {} refused the record: {}",
                    self.cfg.stream, r.message
                ),
                data: clip(&String::from_utf8_lossy(&r.data)),
                origin: r.origin,
            });
        }
        n
    }
}

/// The first 4 KiB of `text` (what a dead letter keeps of an output record).
fn clip(text: &str) -> String {
    let mut end = text.len().min(4096);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::connectors::kinesis::client::{
        ApiError, IteratorStart, PutEntry, RecordsPage, ShardInfo,
    };
    use crate::connectors::kinesis::kpl;

    /// Records every PutRecords call; fails every other entry of the first `fail_rounds` calls.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<Vec<PutEntry>>>,
        fail_rounds: Mutex<u32>,
    }

    #[async_trait]
    impl KinesisApi for Recorder {
        async fn list_shards(&self, _: &str) -> std::result::Result<Vec<ShardInfo>, ApiError> {
            Ok(vec![])
        }
        async fn get_shard_iterator(
            &self,
            _: &str,
            _: &str,
            _: &IteratorStart,
        ) -> std::result::Result<String, ApiError> {
            Err(ApiError::Other("unused".into()))
        }
        async fn get_records(&self, _: &str, _: i32) -> std::result::Result<RecordsPage, ApiError> {
            Err(ApiError::Other("unused".into()))
        }
        async fn put_records(
            &self,
            _: &str,
            entries: &[PutEntry],
        ) -> std::result::Result<Vec<Option<String>>, ApiError> {
            self.calls.lock().unwrap().push(entries.to_vec());
            let mut f = self.fail_rounds.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Ok((0..entries.len())
                    .map(|i| (i % 2 == 0).then(|| "ProvisionedThroughputExceededException".into()))
                    .collect());
            }
            Ok(vec![None; entries.len()])
        }
    }

    fn cfg(extra: &str) -> KinesisSinkConfig {
        toml::from_str(&format!("stream = \"out\"\n{extra}")).unwrap()
    }

    fn rec(i: u64) -> Record {
        let mut r = Record::new(format!("k{}", i % 4), vec![i as f64]);
        r.raw = Some(format!("{{\"id\":\"k{}\",\"x\":{i}}}", i % 4).into());
        r.origin.stream = Some("shardId-1".into());
        r.origin.position = Some(format!("{i}").into());
        r
    }

    #[tokio::test]
    async fn batches_retry_only_failed_entries_and_flush_on_precommit() {
        let api = Arc::new(Recorder::default());
        *api.fail_rounds.lock().unwrap() = 1;
        let mut sink = KinesisSink::new(cfg(""), "p000").with_api(api.clone());
        let recs: Vec<Record> = (0..1203).map(rec).collect();
        sink.write(&recs).await.unwrap();
        let sent_before: usize = api.calls.lock().unwrap().iter().map(Vec::len).sum();
        assert!(sent_before >= 1000, "full batches go out during write");
        sink.precommit(1).await.unwrap();
        let calls = api.calls.lock().unwrap();
        assert!(calls.iter().all(|c| c.len() <= MAX_BATCH_RECORDS));
        // First call 500 entries, 250 failed and were sent again alone.
        assert_eq!(calls[0].len(), 500);
        assert_eq!(calls[1].len(), 250);
        let total: usize = calls.iter().map(Vec::len).sum();
        assert_eq!(total, 1203 + 250);
        let first: serde_json::Value = serde_json::from_slice(&calls[0][1].data).unwrap();
        assert_eq!(first["_source_shard"], "shardId-1");
        assert_eq!(first["_source_sequence"], "1");
        assert_eq!(first["x"], 1);
        assert_eq!(calls[0][1].partition_key, "k1");
    }

    #[tokio::test]
    async fn too_large_records_are_not_sent() {
        let api = Arc::new(Recorder::default());
        let mut sink = KinesisSink::new(cfg(""), "p001").with_api(api.clone());
        let mut big = rec(0);
        big.raw = Some(format!("{{\"s\":\"{}\"}}", "x".repeat(MAX_RECORD_BYTES)).into());
        sink.write(&[big, rec(1)]).await.unwrap();
        sink.precommit(1).await.unwrap();
        let calls = api.calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].len(), 1);
        let dead = sink.take_dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, "too_large");
        assert_eq!(dead[0].origin.position.as_deref(), Some("0"));
        assert!(sink.take_dead_letters().is_empty());
    }

    #[tokio::test]
    async fn aggregation_packs_records_and_decodes_back() {
        let api = Arc::new(Recorder::default());
        let mut sink =
            KinesisSink::new(cfg("aggregate = true\npartition_key_field = \"x\""), "p002")
                .with_api(api.clone());
        let recs: Vec<Record> = (0..3000).map(rec).collect();
        sink.write(&recs).await.unwrap();
        sink.precommit(1).await.unwrap();
        let calls = api.calls.lock().unwrap();
        let entries: Vec<&PutEntry> = calls.iter().flatten().collect();
        assert!(entries.len() < 100, "{} entries", entries.len());
        let mut xs = Vec::new();
        for e in entries {
            assert!(e.data.len() <= MAX_AGGREGATE_BYTES);
            for s in kpl::decode(&e.data).unwrap().unwrap() {
                let v: serde_json::Value = serde_json::from_slice(&s.data).unwrap();
                assert_eq!(s.partition_key, v["x"].to_string());
                xs.push(v["x"].as_u64().unwrap());
            }
        }
        assert_eq!(xs, (0..3000).collect::<Vec<_>>());
    }

    /// Refuses a whole request holding an entry keyed `invalid` (as Kinesis does with a
    /// ValidationException), fails entries keyed `poison` for good and throttles entries keyed
    /// `slow` on their first attempt.
    #[derive(Default)]
    struct Picky {
        calls: Mutex<Vec<Vec<PutEntry>>>,
        throttled: Mutex<bool>,
    }

    #[async_trait]
    impl KinesisApi for Picky {
        async fn list_shards(&self, _: &str) -> std::result::Result<Vec<ShardInfo>, ApiError> {
            Ok(vec![])
        }
        async fn get_shard_iterator(
            &self,
            _: &str,
            _: &str,
            _: &IteratorStart,
        ) -> std::result::Result<String, ApiError> {
            Err(ApiError::Other("unused".into()))
        }
        async fn get_records(&self, _: &str, _: i32) -> std::result::Result<RecordsPage, ApiError> {
            Err(ApiError::Other("unused".into()))
        }
        async fn put_records(
            &self,
            _: &str,
            entries: &[PutEntry],
        ) -> std::result::Result<Vec<Option<String>>, ApiError> {
            if entries.iter().any(|e| e.partition_key == "invalid") {
                return Err(ApiError::Invalid(
                    "PutRecords stream out: ValidationException: 1 validation error".into(),
                ));
            }
            self.calls.lock().unwrap().push(entries.to_vec());
            let mut throttled = self.throttled.lock().unwrap();
            let first = !*throttled;
            *throttled |= entries.iter().any(|e| e.partition_key == "slow");
            Ok(entries
                .iter()
                .map(|e| match e.partition_key.as_str() {
                    "poison" => Some("InvalidArgumentException: no such record".into()),
                    "slow" if first => {
                        Some("ProvisionedThroughputExceededException: Rate exceeded".into())
                    }
                    _ => None,
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn refused_records_are_dead_lettered_alone_and_the_rest_delivered() {
        let api = Arc::new(Picky::default());
        let mut sink =
            KinesisSink::new(cfg("partition_key_field = \"pk\""), "p000").with_api(api.clone());
        let pks = ["a", "invalid", "b", "poison", "slow", "", "c", "d"];
        let recs: Vec<Record> = pks
            .iter()
            .enumerate()
            .map(|(i, pk)| {
                let mut r = rec(i as u64);
                r.raw = Some(format!("{{\"pk\":\"{pk}\",\"x\":{i}}}").into());
                r
            })
            .collect();
        sink.write(&recs).await.unwrap();
        let delivered: Vec<String> = api
            .calls
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|e| e.partition_key.clone())
            .collect();
        for pk in ["a", "b", "c", "d"] {
            assert_eq!(
                delivered.iter().filter(|d| *d == pk).count(),
                1,
                "{delivered:?}"
            );
        }
        assert_eq!(
            delivered.iter().filter(|d| *d == "slow").count(),
            2,
            "retried"
        );
        let mut dead = sink.take_dead_letters();
        dead.sort_by_key(|d| d.origin.position.clone());
        let got: Vec<(&str, Option<&str>)> = dead
            .iter()
            .map(|d| (d.reason, d.origin.position.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("rejected", Some("1")),
                ("rejected", Some("3")),
                ("bad_partition_key", Some("5")),
            ]
        );
        assert!(
            dead[0].message.contains("ValidationException"),
            "{}",
            dead[0].message
        );
        assert!(
            dead[1].message.contains("InvalidArgumentException"),
            "{}",
            dead[1].message
        );
        assert!(
            dead[0].data.contains("\"pk\":\"invalid\""),
            "{}",
            dead[0].data
        );
        // Every record refused as invalid: the request is wrong, the job stops.
        let mut all_bad: Vec<Record> = (0..3).map(rec).collect();
        for r in &mut all_bad {
            r.raw = Some("{\"pk\":\"invalid\"}".into());
        }
        let err = sink.write(&all_bad).await.unwrap_err().to_string();
        assert!(
            err.contains("refused every record") && err.contains("ValidationException"),
            "{err}"
        );
    }

    #[test]
    fn partition_keys_are_checked_in_characters() {
        assert!(check_partition_key("").is_some());
        assert!(check_partition_key(&"é".repeat(256)).is_none());
        assert!(
            check_partition_key(&"k".repeat(257))
                .unwrap()
                .contains("257")
        );
    }

    #[test]
    fn origin_fields_on_empty_objects() {
        let mut r = Record::new("k", vec![]);
        r.raw = Some("{}".into());
        let mut s = String::new();
        render_with_origin(&r, &mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert!(v["_source_shard"].is_null());
    }
}
