//! Enrichment throughput and added latency of one `enrich` operator instance (one partition),
//! driven through the public `Operator` API with batches of 256 records:
//!
//! - `cache`: 100 % tier-1 (in-process) hits;
//! - `redis`: 100 % Redis hits (tier 1 off; 10,000 keys preloaded in the local redis-server);
//! - `origin`: 100 % misses served by an HTTP origin in this process that answers after
//!   10 ms (no Redis, tier 1 off, every key distinct), with `capacity` 1 or 100.
//!
//! Each case runs `ordered` and `unordered`. Read criterion's `thrpt` as records/s. The
//! added latency of a record is the time its batch spends in `process` (records leave the
//! operator when their batch is done); `OSPREY_ENRICH_TABLE=1` prints records/s with p50 and
//! p99 of that per case instead of running criterion: `scripts/bench_enrich.sh` does this
//! next to `redis-benchmark -t get`. Needs redis at `OSPREY_REDIS_URL` (scripts/services.sh).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use osprey::core::Record;
use osprey::operators::enrich::{Enrich, config::EnrichConfig};
use osprey::operators::{BuildContext, Context, Operator};
use osprey::state::MemoryBackend;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BATCH: usize = 256;
const REDIS_KEYS: u64 = 10_000;
const PREFIX: &str = "osprey:bench:enrich:";

/// One benchmark case.
#[derive(Clone, Copy)]
struct Param {
    /// Short name: tier and settings.
    slug: &'static str,
    /// Which tier answers.
    tier: Tier,
    /// Max origin lookups in flight.
    capacity: usize,
    /// `ordered` or `unordered`.
    ordered: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Tier {
    Cache,
    Redis,
    Origin,
}

const PARAMS: [Param; 8] = [
    Param {
        slug: "cache/ordered",
        tier: Tier::Cache,
        capacity: 100,
        ordered: true,
    },
    Param {
        slug: "cache/unordered",
        tier: Tier::Cache,
        capacity: 100,
        ordered: false,
    },
    Param {
        slug: "redis/ordered",
        tier: Tier::Redis,
        capacity: 100,
        ordered: true,
    },
    Param {
        slug: "redis/unordered",
        tier: Tier::Redis,
        capacity: 100,
        ordered: false,
    },
    Param {
        slug: "origin10ms/cap1/ordered",
        tier: Tier::Origin,
        capacity: 1,
        ordered: true,
    },
    Param {
        slug: "origin10ms/cap1/unordered",
        tier: Tier::Origin,
        capacity: 1,
        ordered: false,
    },
    Param {
        slug: "origin10ms/cap100/ordered",
        tier: Tier::Origin,
        capacity: 100,
        ordered: true,
    },
    Param {
        slug: "origin10ms/cap100/unordered",
        tier: Tier::Origin,
        capacity: 100,
        ordered: false,
    },
];

fn redis_url() -> String {
    std::env::var("OSPREY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// An HTTP origin answering every `GET …/<key>` with a small JSON object after `delay`.
async fn start_origin(delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut stream = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let key = line
                        .split_whitespace()
                        .nth(1)
                        .and_then(|p| p.rsplit('/').next())
                        .unwrap_or("")
                        .to_string();
                    loop {
                        let mut h = String::new();
                        if stream.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                    }
                    tokio::time::sleep(delay).await;
                    let body = format!(r#"{{"key":"{key}","site":"hall-7","lat":52.1}}"#);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.get_mut().write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/v/{{key}}")
}

/// The reference table of the `cache` case (10,000 keys, JSON lines).
fn table_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join("osprey-bench-enrich-table.jsonl");
    let text: String = (0..REDIS_KEYS)
        .map(|k| format!("{{\"key\":\"s{k}\",\"site\":\"hall-7\",\"lat\":52.1}}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn preload_redis() {
    let mut c = redis::Client::open(redis_url())
        .and_then(|c| c.get_connection())
        .expect("redis reachable at OSPREY_REDIS_URL (run `. scripts/services.sh`)");
    let mut pipe = redis::pipe();
    for k in 0..REDIS_KEYS {
        pipe.cmd("SET")
            .arg(format!("{PREFIX}s{k}"))
            .arg(format!(r#"{{"key":"s{k}","site":"hall-7","lat":52.1}}"#))
            .ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
}

struct Case {
    op: Enrich,
    cx: Context,
    next: u64,
    p: Param,
}

impl Case {
    async fn new(p: Param, origin: &str) -> Case {
        let order = if p.ordered { "ordered" } else { "unordered" };
        let tiers = match p.tier {
            Tier::Cache => format!(
                "[origin]\ntype = \"file\"\npath = \"{}\"\nkey_column = \"key\"\n",
                table_file().display()
            ),
            Tier::Redis => format!(
                "[cache]\nmax_entries = 0\n[redis]\nurl = \"{}\"\nkey_prefix = \"{PREFIX}\"\n",
                redis_url()
            ),
            Tier::Origin => format!(
                "timeout = \"60s\"\n[cache]\nmax_entries = 0\n[origin]\ntype = \"http\"\nurl = \"{origin}\"\n"
            ),
        };
        let text = format!("capacity = {}\norder = \"{order}\"\n{tiers}", p.capacity);
        let cfg: EnrichConfig = toml::from_str(&text).unwrap();
        let bcx = BuildContext {
            partition: 0,
            values: 1,
            value_names: vec!["x".into()],
            has_time: false,
            partitions: 1,
            key_groups: 256,
            resources: Default::default(),
        };
        let mut cx = Context::new(0, Arc::new(MemoryBackend::default()));
        let mut op = Enrich::new(&cfg, &bcx).unwrap();
        cx.open_tables(&op).unwrap();
        op.on_start(&mut cx).await.unwrap();
        let mut case = Case { op, cx, next: 0, p };
        if p.tier == Tier::Cache {
            // The first pass fills tier 1 from the table; from then on every lookup hits it.
            for _ in 0..(REDIS_KEYS as usize).div_ceil(BATCH) {
                case.batch(usize::MAX).await;
            }
        }
        case
    }

    /// Processes one batch of `n` records (`usize::MAX`: a full batch); returns its duration.
    async fn batch(&mut self, n: usize) -> Duration {
        let n = n.min(BATCH);
        let batch: Vec<Record> = (0..n)
            .map(|_| {
                let i = self.next;
                self.next += 1;
                let key = match self.p.tier {
                    // Distinct keys forever: every lookup misses every cache.
                    Tier::Origin => format!("o{i}"),
                    _ => format!("s{}", osprey::core::hash::splitmix64(i) % REDIS_KEYS),
                };
                Record::new(key, vec![i as f64])
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        let t = Instant::now();
        self.op
            .process(batch, &mut self.cx, &mut out)
            .await
            .unwrap();
        let d = t.elapsed();
        assert_eq!(out.len(), n);
        d
    }

    fn batch_len(&self) -> usize {
        // Capacity 1 against a 10 ms origin does 100 records/s: keep its batches short.
        if self.p.tier == Tier::Origin && self.p.capacity == 1 {
            20
        } else {
            BATCH
        }
    }
}

fn criterion_benches(c: &mut Criterion, rt: &tokio::runtime::Runtime, origin: &str) {
    let mut g = c.benchmark_group("osprey::operators::enrich::Enrich");
    g.sample_size(10);
    for p in PARAMS {
        let mut case = rt.block_on(Case::new(p, origin));
        let n = case.batch_len();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(p.slug, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += case.batch(n).await;
                    }
                    total
                })
            })
        });
    }
    g.finish();
}

fn table(rt: &tokio::runtime::Runtime, origin: &str) {
    println!(
        "{:<30} {:>12} {:>10} {:>10} {:>8}",
        "case", "records/s", "p50 ms", "p99 ms", "batch"
    );
    for p in PARAMS {
        let mut case = rt.block_on(Case::new(p, origin));
        let n = case.batch_len();
        let batches = if p.tier == Tier::Origin && p.capacity == 1 {
            15
        } else {
            400
        };
        let mut times: Vec<Duration> = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..batches {
                v.push(case.batch(n).await);
            }
            v
        });
        let total: Duration = times.iter().sum();
        times.sort();
        let q = |f: f64| times[((times.len() - 1) as f64 * f).round() as usize].as_secs_f64() * 1e3;
        println!(
            "{:<30} {:>12.0} {:>10.3} {:>10.3} {:>8}",
            p.slug,
            (n * batches) as f64 / total.as_secs_f64(),
            q(0.5),
            q(0.99),
            n
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    preload_redis();
    let origin = rt.block_on(start_origin(Duration::from_millis(10)));
    if std::env::var_os("OSPREY_ENRICH_TABLE").is_some() {
        table(&rt, &origin);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &rt, &origin);
    c.final_summary();
}
