//! `type = "kinesis"` sink: PutRecords batches to a Kinesis data stream (at-least-once).
//!
//! - Batches hold at most 500 records and 5 MiB; a record (data + partition key) over 1 MiB
//!   is dead-lettered (reason `too_large`, through the partition's dead-letter sink), never sent.
//! - The partition key is the record key, or the value of `partition_key_field`.
//! - Only the entries PutRecords reports as failed are retried, with exponential backoff;
//!   after `max_attempts` the sink fails the job (it restarts from the last checkpoint).
//! - `aggregate = true` packs records into KPL aggregated records (up to 50 KiB each, the KPL's
//!   default), routed by the first record's partition key.
//! - The buffer is bounded (`max_buffer_records`) and is sent before `write` returns, so a
//!   slow stream slows the partition and, through its channel, the source (backpressure), and
//!   output waits for no checkpoint. `precommit` sends anything left and returns no commits.
//! - Every output record gets `"_source_shard"` and `"_source_sequence"` from its origin:
//!   replay after a restore is deterministic, so duplicates carry identical content and can be
//!   dropped downstream by that pair.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::client::{KinesisApi, PutEntry, SdkKinesis};
use super::config::KinesisSinkConfig;
use super::kpl::{self, SubRecord};
use crate::connectors::Sink;
use crate::core::record::write_json_str;
use crate::core::{Backoff, DeadLetter, Record};
use crate::state::checkpoint::Commit;
use crate::{Error, Result, Retry};

/// Entries PutRecords rejected and osprey sent again.
pub const PUT_RETRIES: &str = "osprey_kinesis_put_retries_total";

/// Largest PutRecords batch, in records.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Largest PutRecords batch, in bytes (data + partition keys).
pub const MAX_BATCH_BYTES: usize = 5 << 20;
/// Largest record (data + partition key).
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Largest KPL aggregate built by the sink.
pub const MAX_AGGREGATE_BYTES: usize = 50 << 10;
/// Between PutRecords attempts for failed entries: 100 ms, 200 ms … up to 5 s.
const PUT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).without_jitter();

/// What [`Producer::push`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Buffered (and possibly sent).
    Queued,
    /// Over 1 MiB with its partition key: not sent. Holds the size.
    TooLarge(usize),
}

/// Batching PutRecords writer shared by the sink and `osprey produce`.
pub struct Producer {
    api: Option<Arc<dyn KinesisApi>>,
    endpoint_url: Option<String>,
    stream: String,
    component: String,
    aggregate: bool,
    max_attempts: u32,
    max_buffer: usize,
    entries: Vec<PutEntry>,
    bytes: usize,
    agg: Vec<SubRecord>,
    agg_bytes: usize,
    retries: prometheus::IntCounter,
}

impl Producer {
    /// A producer writing to `stream`; connects on first send.
    pub fn new(
        stream: &str,
        endpoint_url: Option<&str>,
        component: &str,
        aggregate: bool,
        max_buffer: usize,
        max_attempts: u32,
    ) -> Self {
        let retries = crate::metrics::get()
            .labeled_counter(
                PUT_RETRIES,
                "Kinesis entries rejected by PutRecords and sent again",
                &["component"],
            )
            .with_label_values(&[component]);
        Producer {
            api: None,
            endpoint_url: endpoint_url.map(str::to_string),
            stream: stream.to_string(),
            component: component.to_string(),
            aggregate,
            max_attempts: max_attempts.max(1),
            max_buffer: max_buffer.clamp(1, MAX_BATCH_RECORDS),
            entries: Vec::new(),
            bytes: 0,
            agg: Vec::new(),
            agg_bytes: 0,
            retries,
        }
    }

    /// Uses a given client (tests).
    pub fn with_api(mut self, api: Arc<dyn KinesisApi>) -> Self {
        self.api = Some(api);
        self
    }

    /// Adds one record; sends a batch when the buffer is full.
    pub async fn push(&mut self, partition_key: String, data: Vec<u8>) -> Result<Pushed> {
        let size = partition_key.len() + data.len();
        if size > MAX_RECORD_BYTES {
            return Ok(Pushed::TooLarge(size));
        }
        if self.aggregate {
            let add = kpl::encoded_overhead(&partition_key, data.len());
            if !self.agg.is_empty() && self.agg_bytes + add > MAX_AGGREGATE_BYTES {
                self.seal_aggregate().await?;
            }
            if add + 64 > MAX_AGGREGATE_BYTES {
                // Too big to share an aggregate: send it on its own.
                return self
                    .enqueue(PutEntry {
                        partition_key,
                        data,
                    })
                    .await;
            }
            self.agg_bytes += add;
            self.agg.push(SubRecord {
                partition_key,
                data,
            });
            return Ok(Pushed::Queued);
        }
        self.enqueue(PutEntry {
            partition_key,
            data,
        })
        .await
    }

    async fn seal_aggregate(&mut self) -> Result<()> {
        if self.agg.is_empty() {
            return Ok(());
        }
        let subs = std::mem::take(&mut self.agg);
        self.agg_bytes = 0;
        let partition_key = subs[0].partition_key.clone();
        let data = if subs.len() == 1 {
            subs.into_iter().next().map(|s| s.data).unwrap_or_default()
        } else {
            kpl::encode(&subs)
        };
        self.enqueue(PutEntry {
            partition_key,
            data,
        })
        .await
        .map(|_| ())
    }

    async fn enqueue(&mut self, e: PutEntry) -> Result<Pushed> {
        let size = e.partition_key.len() + e.data.len();
        if !self.entries.is_empty() && self.bytes + size > MAX_BATCH_BYTES {
            self.send().await?;
        }
        self.bytes += size;
        self.entries.push(e);
        if self.entries.len() >= self.max_buffer {
            self.send().await?;
        }
        Ok(Pushed::Queued)
    }

    /// Sends everything buffered (including an open aggregate).
    pub async fn flush(&mut self) -> Result<()> {
        self.seal_aggregate().await?;
        self.send().await
    }

    async fn api(&mut self) -> Arc<dyn KinesisApi> {
        if let Some(a) = &self.api {
            return Arc::clone(a);
        }
        let a: Arc<dyn KinesisApi> = Arc::new(SdkKinesis::new(self.endpoint_url.as_deref()).await);
        self.api = Some(Arc::clone(&a));
        a
    }

    /// Sends the buffered entries, retrying only the failed ones.
    async fn send(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let api = self.api().await;
        let mut todo = std::mem::take(&mut self.entries);
        self.bytes = 0;
        let mut backoff = PUT_BACKOFF.attempts(0);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let why = match api.put_records(&self.stream, &todo).await {
                Ok(codes) => {
                    let before = todo.len();
                    let mut codes = codes.into_iter();
                    let mut first_code = None;
                    todo.retain(|_| match codes.next().flatten() {
                        Some(c) => {
                            first_code.get_or_insert(c);
                            true
                        }
                        None => false,
                    });
                    if todo.is_empty() {
                        return Ok(());
                    }
                    self.retries.inc_by(todo.len() as u64);
                    format!(
                        "{} of {before} entries failed ({})",
                        todo.len(),
                        first_code.unwrap_or_default()
                    )
                }
                Err(e) => e.to_string(),
            };
            if attempt >= self.max_attempts {
                return Err(Error::Sink {
                    component: self.component.clone(),
                    message: format!(
                        "PutRecords to {} failed {attempt} times: {why}",
                        self.stream
                    ),
                    retry: Retry::WithBackoff,
                });
            }
            tracing::debug!(stream = %self.stream, attempt, error = %why, "PutRecords retry.");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

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
        let mut sent = 0usize;
        for r in records {
            self.line.clear();
            render_with_origin(r, &mut self.line);
            let pk = self.partition_key(r);
            match self
                .producer
                .push(pk, self.line.as_bytes().to_vec())
                .await?
            {
                Pushed::Queued => sent += 1,
                Pushed::TooLarge(size) => {
                    // The partition writes it to the dead-letter sink (and counts it).
                    let mut end = self.line.len().min(4096);
                    while !self.line.is_char_boundary(end) {
                        end -= 1;
                    }
                    self.dead.push(DeadLetter {
                        reason: "too_large",
                        message: format!(
                            "output record of {size} bytes (with its partition key) is over Kinesis's {MAX_RECORD_BYTES}-byte limit"
                        ),
                        data: self.line[..end].to_string(),
                        origin: r.origin.clone(),
                    });
                }
            }
        }
        // Send what this batch left in the buffer: output latency is one batch, not one
        // checkpoint interval (a busy job still sends full 500-record calls).
        self.producer.flush().await?;
        crate::connectors::count_written(&self.component, sent);
        Ok(())
    }

    async fn precommit(&mut self, _epoch: u64) -> Result<Vec<Commit>> {
        self.producer.flush().await?;
        Ok(vec![])
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::connectors::kinesis::client::{ApiError, IteratorStart, RecordsPage, ShardInfo};

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
