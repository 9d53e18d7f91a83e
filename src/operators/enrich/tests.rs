//! Unit tests of the enrich operator: the cache with paused time, key templates, the retry
//! policy, table loading, and whole batches through file-backed lookups and preloads.

use std::sync::Arc;

use proptest::prelude::*;
use tokio::time::{Duration, Instant};

use super::cache::{Lookup, TtlLru};
use super::config::{EnrichConfig, S3Origin};
use super::*;
use crate::operators::{BuildContext, Context, Operator};
use crate::state::MemoryBackend;

fn found(n: i64) -> Lookup {
    Lookup::Found(Arc::new(serde_json::json!({ "n": n })))
}

// The clock is injected (`now`), so these tests step time by hand: tokio's paused clock
// needs its `test-util` feature, which would rebuild tokio and every crate above it.
#[test]
fn cache_entries_expire_after_their_ttl() {
    let t0 = Instant::now();
    let at = |s| t0 + Duration::from_secs(s);
    let mut c = TtlLru::new(10, Duration::from_secs(60), Duration::from_secs(5));
    c.insert(Arc::from("a"), found(1), t0);
    c.insert(Arc::from("gone"), Lookup::NotFound, t0);
    assert_eq!(c.get("gone", at(4)), Some(Lookup::NotFound));
    assert_eq!(c.get("gone", at(5)), None, "negative TTL is 5 s");
    assert_eq!(c.get("a", at(5)), Some(found(1)));
    assert_eq!(c.get("a", at(60)), None, "positive TTL is 60 s");
    assert!(c.is_empty());
}

#[test]
fn cache_evicts_the_least_recently_used() {
    let mut c = TtlLru::new(2, Duration::from_secs(60), Duration::from_secs(60));
    let now = Instant::now();
    c.insert(Arc::from("a"), found(1), now);
    c.insert(Arc::from("b"), found(2), now);
    assert!(c.get("a", now).is_some()); // b is now the least recently used
    c.insert(Arc::from("c"), found(3), now);
    assert_eq!(c.len(), 2);
    assert!(c.get("b", now).is_none());
    assert!(c.get("a", now).is_some() && c.get("c", now).is_some());
    let mut off = TtlLru::new(0, Duration::from_secs(60), Duration::from_secs(60));
    off.insert(Arc::from("a"), found(1), now);
    assert!(off.is_empty(), "max_entries = 0 disables the cache");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// The cache against a naive model: a list in recency order, no expiry (TTL never hit).
    #[test]
    fn cache_matches_a_naive_lru(cap in 1usize..8, ops in proptest::collection::vec((any::<bool>(), 0u8..12), 1..200)) {
        let now = Instant::now();
        let mut c = TtlLru::new(cap, Duration::from_secs(3600), Duration::from_secs(3600));
        let mut model: Vec<(u8, i64)> = Vec::new(); // least recently used first
        for (i, (insert, k)) in ops.into_iter().enumerate() {
            let key = k.to_string();
            if insert {
                model.retain(|(m, _)| *m != k);
                if model.len() >= cap { model.remove(0); }
                model.push((k, i as i64));
                c.insert(Arc::from(key.as_str()), found(i as i64), now);
            } else {
                let want = model.iter().position(|(m, _)| *m == k).map(|p| {
                    let e = model.remove(p);
                    model.push(e);
                    found(e.1)
                });
                prop_assert_eq!(c.get(&key, now), want);
            }
            prop_assert_eq!(c.len(), model.len());
        }
    }
}

#[test]
fn key_templates_parse_and_extract() {
    assert_eq!(KeyTemplate::parse("{key}"), Some(KeyTemplate::RecordKey));
    assert_eq!(
        KeyTemplate::parse("device"),
        Some(KeyTemplate::Field("device".into()))
    );
    assert!(KeyTemplate::parse("{a").is_none());
    assert!(KeyTemplate::parse("a}").is_none());
    assert!(KeyTemplate::parse("{}").is_none());
    let mut r = Record::new("k1", vec![1.0]);
    r.raw = Some(r#"{"region":"eu","id":7,"nested":{}}"#.into());
    let t = KeyTemplate::parse("{region}:{id}/{key}").unwrap();
    assert_eq!(t.key_of(&r).as_deref(), Some("eu:7/k1"));
    assert_eq!(
        KeyTemplate::parse("id").unwrap().key_of(&r).as_deref(),
        Some("7")
    );
    assert!(KeyTemplate::parse("nested").unwrap().key_of(&r).is_none());
    assert!(KeyTemplate::parse("missing").unwrap().key_of(&r).is_none());
}

#[test]
fn backoff_doubles_with_jitter_and_is_capped() {
    let p = RetryPolicy {
        retries: 5,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        timeout: Duration::from_secs(1),
    };
    for seed in 0..100 {
        let d0 = p.delay(0, seed);
        assert!(d0 >= Duration::from_millis(5) && d0 < Duration::from_millis(10));
        let d2 = p.delay(2, seed);
        assert!(d2 >= Duration::from_millis(20) && d2 < Duration::from_millis(40));
        assert!(p.delay(10, seed) < Duration::from_millis(50));
    }
    assert_eq!(p.delay(1, 7), p.delay(1, 7), "deterministic");
}

fn table_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("sites.csv");
    let mut text = String::from("sensor_id,site,lat\n");
    for i in 1..=50 {
        text.push_str(&format!("{i},\"site {i}, hall\",{}.5\n", 40 + i % 10));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn config(toml_text: &str) -> EnrichConfig {
    let cfg: EnrichConfig = toml::from_str(toml_text).unwrap();
    assert!(
        cfg.validate(&Default::default()).is_empty(),
        "{:?}",
        cfg.validate(&Default::default())
    );
    cfg
}

fn bcx(partition: usize, partitions: usize) -> BuildContext {
    BuildContext {
        partition,
        values: 1,
        value_names: vec!["x".into()],
        has_time: false,
        partitions,
        key_groups: 64,
        resources: Default::default(),
    }
}

fn context(partition: usize) -> Context {
    Context::new(partition, Arc::new(MemoryBackend::default()))
}

fn record(key: &str) -> Record {
    let mut r = Record::new(key, vec![1.0]);
    r.key_group = crate::core::partition::key_group(key.as_bytes(), 64);
    r.raw = Some(format!(r#"{{"sensor_id":{key}}}"#).into());
    r
}

#[tokio::test]
async fn file_origin_merges_and_leaves_unknown_keys_unenriched() {
    let dir = tempfile::tempdir().unwrap();
    let path = table_file(dir.path());
    let cfg = config(&format!(
        "name = \"e1\"\nfield = \"loc\"\n[origin]\ntype = \"file\"\npath = \"{}\"\nkey_column = \"sensor_id\"\n",
        path.display()
    ));
    let mut op = Enrich::new(&cfg, &bcx(0, 1)).unwrap();
    let mut cx = context(0);
    cx.open_tables(&op).unwrap();
    op.on_start(&mut cx).await.unwrap();
    let batch: Vec<Record> = ["3", "99", "3", "50"].iter().map(|k| record(k)).collect();
    let mut out = Vec::new();
    op.process(batch, &mut cx, &mut out).await.unwrap();
    assert_eq!(out.len(), 4);
    let keys: Vec<&str> = out.iter().map(|r| &*r.key).collect();
    assert_eq!(keys, ["3", "99", "3", "50"], "ordered by default");
    let Some(Field::Json(v)) = out[0].field("loc") else {
        panic!("merged: {:?}", out[0].fields)
    };
    assert_eq!(v["site"], "site 3, hall");
    assert_eq!(v["lat"], 43.5);
    assert_eq!(v["sensor_id"], 3);
    assert!(out[1].field("loc").is_none(), "unknown key: no field");
    assert!(cx.dead_letters.is_empty());
    // Metrics compliance: the lookups are counted by tier and outcome.
    let text = crate::metrics::get().render();
    for line in [
        r#"osprey_enrich_lookups_total{operator="e1",outcome="miss",partition="p000",tier="cache"} 3"#,
        r#"osprey_enrich_lookups_total{operator="e1",outcome="hit",partition="p000",tier="origin"} 2"#,
        r#"osprey_enrich_lookups_total{operator="e1",outcome="miss",partition="p000",tier="origin"} 1"#,
        r#"osprey_enrich_table_entries{operator="e1",partition="p000"} 50"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(text.contains(BATCH_LATENCY));
}

#[tokio::test]
async fn missing_lookup_key_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let path = table_file(dir.path());
    let cfg = config(&format!(
        "key = \"device\"\n[origin]\ntype = \"file\"\npath = \"{}\"\nkey_column = \"sensor_id\"\n",
        path.display()
    ));
    let mut op = Enrich::new(&cfg, &bcx(0, 1)).unwrap();
    let mut cx = context(0);
    cx.open_tables(&op).unwrap();
    op.on_start(&mut cx).await.unwrap();
    let mut out = Vec::new();
    op.process(vec![record("1")], &mut cx, &mut out)
        .await
        .unwrap();
    assert!(out.is_empty());
    assert_eq!(cx.dead_letters.len(), 1);
    assert_eq!(cx.dead_letters[0].reason, "missing_lookup_key");
}

#[tokio::test]
async fn partitioned_preload_keeps_only_owned_keys_in_keyed_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = table_file(dir.path());
    let text = format!(
        "mode = \"preload\"\npartitioned = true\n[origin]\ntype = \"file\"\npath = \"{}\"\nkey_column = \"sensor_id\"\n",
        path.display()
    );
    let cfg = config(&text);
    let mut total = 0;
    for p in 0..2 {
        let mut op = Enrich::new(&cfg, &bcx(p, 2)).unwrap();
        let mut cx = context(p);
        cx.open_tables(&op).unwrap();
        op.on_start(&mut cx).await.unwrap();
        let Preloaded::Keyed { keys, .. } = &op.preloaded else {
            panic!("keyed")
        };
        total += keys.len();
        // Records routed here: the keys this partition owns all resolve.
        let batch: Vec<Record> = (1..=50)
            .map(|i| record(&i.to_string()))
            .filter(|r| crate::core::partition::partition_of(r.key_group, 64, 2) == p)
            .collect();
        let n = batch.len();
        let mut out = Vec::new();
        op.process(batch, &mut cx, &mut out).await.unwrap();
        assert_eq!(out.len(), n);
        assert!(out.iter().all(|r| r.field("enrichment").is_some()));
        op.on_checkpoint(
            crate::operators::Barrier {
                epoch: 1,
                then_stop: false,
            },
            &mut cx,
        )
        .await
        .unwrap();
        // What the runtime does after `on_checkpoint`: flush the declared tables.
        cx.tables.flush(&mut cx.writes).unwrap();
        assert_eq!(
            cx.writes.len(),
            keys_len(&op),
            "the table is written to state"
        );
    }
    assert_eq!(total, 50, "each key kept by exactly one partition");
}

fn keys_len(op: &Enrich) -> usize {
    match &op.preloaded {
        Preloaded::Keyed { keys, .. } => keys.len(),
        _ => 0,
    }
}

#[tokio::test]
async fn preload_refresh_swaps_the_table_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    std::fs::write(&path, "{\"id\":\"1\",\"v\":1}\n").unwrap();
    let cfg = config(&format!(
        "mode = \"preload\"\nrefresh = \"50ms\"\n[origin]\ntype = \"file\"\npath = \"{}\"\nkey_column = \"id\"\n",
        path.display()
    ));
    let mut op = Enrich::new(&cfg, &bcx(0, 1)).unwrap();
    let mut cx = context(0);
    cx.open_tables(&op).unwrap();
    op.on_start(&mut cx).await.unwrap();
    let mut out = Vec::new();
    op.process(vec![Record::new("1", vec![])], &mut cx, &mut out)
        .await
        .unwrap();
    let Some(Field::Json(v)) = out[0].field("enrichment") else {
        panic!()
    };
    assert_eq!(v["v"], 1);
    std::fs::write(&path, "{\"id\":\"1\",\"v\":2}\n").unwrap();
    // A reload may have read the old file just before the write: wait for one that has v=2.
    let mut v = serde_json::Value::Null;
    for _ in 0..100 {
        let rx = &mut op.refresh.as_mut().unwrap().0;
        // Waits for a background reload (no time assertion: the bound only avoids a hang).
        tokio::time::timeout(Duration::from_secs(60), rx.changed())
            .await
            .unwrap()
            .unwrap();
        // `changed` marked it seen; mark it unseen again so `process` installs it.
        rx.mark_changed();
        let mut out = Vec::new();
        op.process(vec![Record::new("1", vec![])], &mut cx, &mut out)
            .await
            .unwrap();
        let Some(Field::Json(got)) = out[0].field("enrichment") else {
            panic!()
        };
        v = got.clone();
        if v["v"] == 2 {
            break;
        }
    }
    assert_eq!(v["v"], 2, "the reloaded table is used");
}

#[test]
fn config_validation_reports_bad_combinations() {
    let cfg: EnrichConfig = toml::from_str(
        "capacity = 0\nmode = \"preload\"\n[origin]\ntype = \"http\"\nurl = \"ftp://x/{key}\"\n",
    )
    .unwrap();
    let fields: Vec<String> = cfg
        .validate(&Default::default())
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(fields, ["capacity", "origin.url", "origin"]);
    assert!(toml::from_str::<EnrichConfig>("bogus = 1").is_err());
}

#[test]
fn s3_origin_and_redis_tls_options_are_validated() {
    let fields = |text: &str| -> Vec<String> {
        toml::from_str::<EnrichConfig>(text)
            .unwrap()
            .validate(&Default::default())
            .into_iter()
            .map(|e| e.field)
            .collect()
    };
    let s3 = |uri: &str| format!("[origin]\ntype = \"s3\"\nuri = \"{uri}\"\nkey_column = \"id\"\n");
    assert!(fields(&s3("s3://bucket/t/sites.csv")).is_empty());
    assert!(
        fields(&format!(
            "mode = \"preload\"\npartitioned = true\n{}",
            s3("s3://b/k")
        ))
        .is_empty()
    );
    for bad in [
        "s3://bucket",
        "s3://bucket/",
        "s3:///key",
        "https://b/k",
        "bucket/key",
    ] {
        assert_eq!(fields(&s3(bad)), ["origin.uri"], "{bad}");
    }
    let origin = |cfg: &str| -> S3Origin {
        let OriginConfig::S3(o) = toml::from_str::<EnrichConfig>(cfg).unwrap().origin else {
            panic!("s3 origin")
        };
        o
    };
    assert_eq!(
        origin(&s3("s3://b/dir/t.jsonl")).bucket_and_key(),
        Some(("b", "dir/t.jsonl"))
    );
    let redis = |url: &str, extra: &str| format!("[redis]\nurl = \"{url}\"\n{extra}");
    assert!(
        fields(&redis(
            "rediss://:pw@h:6380",
            "tls_ca_file = \"ca.pem\"\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n"
        ))
        .is_empty()
    );
    assert_eq!(
        fields(&redis(
            "redis://h:6379",
            "tls_ca_file = \"ca.pem\"\ntls_insecure = true\n"
        )),
        ["redis.tls_ca_file", "redis.tls_insecure"]
    );
    assert_eq!(
        fields(&redis("rediss://h:6380", "tls_cert_file = \"c.pem\"\n")),
        ["redis.tls_cert_file"]
    );
}

#[cfg(feature = "redis")]
#[test]
fn unreadable_tls_files_fail_the_build_naming_the_option() {
    let cfg =
        config("[redis]\nurl = \"rediss://127.0.0.1:1\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n");
    let Err(e) = Enrich::new(&cfg, &bcx(0, 1)) else {
        panic!("a missing CA file is an error")
    };
    assert!(e.to_string().contains("redis.tls_ca_file"), "{e}");
    // A PEM file without a certificate is refused too.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let cfg = config(&format!(
        "[redis]\nurl = \"rediss://127.0.0.1:1\"\ntls_ca_file = \"{}\"\n",
        ca.display()
    ));
    let Err(e) = Enrich::new(&cfg, &bcx(0, 1)) else {
        panic!("a CA file without certificates is an error")
    };
    assert!(e.to_string().contains("tls_ca_file"), "{e}");
}

#[test]
fn table_values_round_trip_through_state_encoding() {
    let v = TableValue(Arc::new(serde_json::json!({"a": [1, 2], "b": "x"})));
    let mut buf = Vec::new();
    v.encode(&mut buf);
    assert_eq!(TableValue::decode(&buf).unwrap(), v);
    assert!(TableValue::decode(&[9]).is_err());
}

#[cfg(feature = "redis")]
#[test]
fn a_rustls_crypto_provider_is_installed_for_redis_tls() {
    // Building a rediss:// tier installs aws-lc-rs as the process default (idempotent), so the
    // redis crate's `ClientConfig::builder()` cannot panic for want of a provider.
    let cfg = config("[redis]\nurl = \"rediss://127.0.0.1:1\"\n");
    Enrich::new(&cfg, &bcx(0, 1)).unwrap();
    Enrich::new(&cfg, &bcx(0, 1)).unwrap();
    let provider = rustls::crypto::CryptoProvider::get_default().expect("installed");
    assert!(!provider.cipher_suites.is_empty());
}
