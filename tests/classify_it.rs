//! Image classification end to end against moto (a local S3 server): photos and bad files
//! are uploaded to a bucket, osprey classifies them and uploads JSON lines to another bucket,
//! and the test reads them back.
//!
//! Needs `OSPREY_S3_ENDPOINT` (moto, started by `scripts/services.sh`) and `OSPREY_SHARED`
//! (models and photos). Under `CI=true` a missing one fails the test; otherwise it says why
//! and returns.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use aws_sdk_s3::Client;

use crate::util;

struct Env {
    endpoint: String,
    shared: PathBuf,
    client: Client,
}

async fn env() -> Option<Env> {
    let shared = util::shared()?;
    let (endpoint, client) = util::moto().await?;
    Some(Env {
        endpoint,
        shared,
        client,
    })
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "osprey-{name}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

async fn put(client: &Client, bucket: &str, key: &str, body: Vec<u8>) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("uploading {key}: {e:?}"));
}

/// Every object under `prefix`: key → bytes.
async fn read_all(client: &Client, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        for o in page.contents() {
            let key = o.key().unwrap().to_string();
            let body = client
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes()
                .to_vec();
            out.insert(key, body);
        }
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    out
}

/// The sample photos, sorted by file name.
fn photos(shared: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(shared.join("images/imagenet-sample"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// A key with a space, an apostrophe and non-ASCII characters, keeping the wnid first.
fn photo_key(file: &str) -> String {
    let (wnid, rest) = file.split_once('_').unwrap();
    format!("photos/{wnid} – it's {rest}")
}

struct Job {
    dir: tempfile::TempDir,
    path: PathBuf,
}

/// `model` and `labels`: file names under `$OSPREY_SHARED/models`, or `s3://` URIs.
fn job(env: &Env, input: &str, output: &str, model: &str, labels: &str, input_name: &str) -> Job {
    let models = env.shared.join("models");
    let locate = |f: &str| match f.starts_with("s3://") {
        true => f.to_string(),
        false => models.join(f).display().to_string(),
    };
    let (model, labels) = (locate(model), locate(labels));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
name = "classify"
[source]
type = "s3"
bucket = "{input}"
prefix = "photos/"
poll_interval = "1s"
stop_when_idle = true
max_object_bytes = 2000000
endpoint_url = "{endpoint}"

[[operators]]
type = "classify_image"
window = "60s"
max_batch = 8
[operators.model]
path = "{model}"
labels = "{labels}"
input = "{input_name}"
endpoint_url = "{endpoint}"

[sink]
type = "s3"
bucket = "{output}"
prefix = "results/"
staging_dir = "{{dir}}/staging"
endpoint_url = "{endpoint}"

[dead_letter]
type = "file"
path = "{{dir}}/dead"

[state]
dir = "{{dir}}/state"

[checkpoint]
interval = "1s"

# Small channels, so that barriers are not queued behind the whole bucket and checkpoints
# complete while images are still being classified (the SIGKILL lands mid-run).
[runtime]
batch_size = 4
channel_capacity = 8

[metrics]
enabled = false
"#,
        endpoint = env.endpoint,
    );
    let path = util::job(dir.path(), "job.toml", &text);
    Job { dir, path }
}

fn osprey_run(job: &Job) -> std::process::Command {
    // OSPREY_TEST_BIN: a copy of the binary, for worktrees that share a target directory (where
    // another checkout's build may replace `target/debug/osprey` mid-test).
    let mut c = match std::env::var_os("OSPREY_TEST_BIN") {
        Some(bin) => {
            let mut c = std::process::Command::new(bin);
            c.env("OSPREY_LOG", "info");
            c
        }
        None => util::osprey(),
    };
    c.args(["run", job.path.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "osprey-test")
        .env("AWS_SECRET_ACCESS_KEY", "osprey-test")
        .env("AWS_REGION", "us-east-1");
    c
}

/// Result lines: key → every result line for it (to see duplicates).
fn results(objects: &BTreeMap<String, Vec<u8>>) -> HashMap<String, Vec<serde_json::Value>> {
    let mut out: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for (key, body) in objects {
        let layout = key
            .strip_prefix("results/dt=")
            .unwrap_or_else(|| panic!("{key}"));
        assert!(
            layout.contains("/hour=") && key.ends_with(".jsonl"),
            "{key}"
        );
        for line in std::str::from_utf8(body).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.entry(v["key"].as_str().unwrap().to_string())
                .or_default()
                .push(v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn efficientnet_accuracy_bad_files_and_sigkill_restart() {
    let Some(env) = env().await else { return };
    let (input, output) = (unique("in"), unique("out"));
    for b in [&input, &output] {
        env.client.create_bucket().bucket(b).send().await.unwrap();
    }
    let photos = photos(&env.shared);
    assert_eq!(photos.len(), 200);
    for p in &photos {
        let file = p.file_name().unwrap().to_str().unwrap();
        put(
            &env.client,
            &input,
            &photo_key(file),
            std::fs::read(p).unwrap(),
        )
        .await;
    }
    let sample = std::fs::read(&photos[0]).unwrap();
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("photos/bad zero.jpg", vec![], "empty"),
        (
            "photos/bad truncated.jpg",
            sample[..sample.len() / 3].to_vec(),
            "corrupt_image",
        ),
        (
            "photos/bad text.jpg",
            b"this is not an image\n".repeat(20),
            "not_an_image",
        ),
        ("photos/bad bomb.png", util::png_bomb(), "too_many_pixels"),
        ("photos/bad huge.jpg", vec![0xFF; 3_000_000], "too_large"),
    ];
    for (k, body, _) in &bad {
        put(&env.client, &input, k, body.clone()).await;
    }

    let job = job(
        &env,
        &input,
        &output,
        "efficientnet_lite0_imagenetnorm.onnx",
        "imagenet_labels.txt",
        "input_imagenet_norm",
    );
    // First run: SIGKILL once a checkpoint has completed (results partly uploaded).
    let mut child = osprey_run(&job)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoints = job.dir.path().join("state/checkpoints");
    let killed = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        // The newest complete checkpoint's epoch (`chk-<epoch>`; `.tmp` ones are partial).
        let newest = std::fs::read_dir(&checkpoints).map_or(0, |rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.strip_prefix("chk-")?.parse::<u64>().ok()
                })
                .max()
                .unwrap_or(0)
        });
        if newest >= 3 {
            child.kill().unwrap();
            child.wait().unwrap();
            break true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let before = results(&read_all(&env.client, &output, "results/").await).len();
    eprintln!("first run killed: {killed}; {before} results uploaded before the kill");

    // Second run: resumes from the last checkpoint and finishes the bucket.
    let out = osprey_run(&job).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let by_key = results(&read_all(&env.client, &output, "results/").await);
    let synsets: Vec<String> =
        std::fs::read_to_string(env.shared.join("models/imagenet_synsets.txt"))
            .unwrap()
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect();
    let reference: HashMap<String, u64> = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("datasets/classify_reference_efficientnet_lite0.csv"),
    )
    .unwrap()
    .lines()
    .skip(1)
    .map(|l| {
        let mut f = l.split(',');
        (
            f.next().unwrap().to_string(),
            f.next().unwrap().parse().unwrap(),
        )
    })
    .collect();
    let (mut correct, mut agree) = (0, 0);
    for p in &photos {
        let file = p.file_name().unwrap().to_str().unwrap();
        let key = photo_key(file);
        let rs = by_key
            .get(&key)
            .unwrap_or_else(|| panic!("no result for {key}"));
        assert_eq!(rs.len(), 1, "{key} classified {} times", rs.len());
        let r = &rs[0];
        assert_eq!(r["bucket"], input.as_str());
        assert!(r["etag"].as_str().is_some_and(|e| !e.is_empty()));
        assert_eq!(r["size"], std::fs::metadata(p).unwrap().len());
        assert!(r["window_start_ms"].as_i64().unwrap() < r["window_end_ms"].as_i64().unwrap());
        assert!(r["latency_ms"].as_i64().is_some());
        assert_eq!(r["model"], "efficientnet_lite0_imagenetnorm");
        let labels = r["labels"].as_array().unwrap();
        assert_eq!(labels.len(), 5);
        let top1 = labels[0]["index"].as_u64().unwrap();
        let wnid = file.split('_').next().unwrap();
        if synsets[top1 as usize] == wnid {
            correct += 1;
        }
        if reference[file] == top1 {
            agree += 1;
        }
    }
    let extra: Vec<_> = by_key
        .iter()
        .filter(|(k, _)| k.starts_with("photos/bad"))
        .collect();
    assert!(extra.is_empty(), "bad files classified: {extra:?}");
    assert_eq!(by_key.len(), 200, "only the photos have results");
    eprintln!("top-1 accuracy {correct}/200; agreement with onnxruntime {agree}/200");
    assert!(correct >= 174, "top-1 accuracy {correct}/200 is under 87%");
    assert!(
        agree >= 198,
        "top-1 equals onnxruntime's on {agree}/200 (< 99%)"
    );

    let dead = util::published_json(&job.dir.path().join("dead"));
    for (key, _, reason) in &bad {
        let hits: Vec<_> = dead
            .iter()
            .filter(|d| d["position"].as_str() == Some(key))
            .collect();
        assert_eq!(hits.len(), 1, "{key}: {dead:?}");
        assert_eq!(hits[0]["reason"], *reason, "{key}: {:?}", hits[0]);
    }
    assert_eq!(dead.len(), bad.len(), "{dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resnet18_random_init_runs_through_the_same_path() {
    let Some(env) = env().await else { return };
    let (input, output) = (unique("in"), unique("out"));
    for b in [&input, &output] {
        env.client.create_bucket().bucket(b).send().await.unwrap();
    }
    let photos = photos(&env.shared);
    for p in photos.iter().take(10) {
        let file = p.file_name().unwrap().to_str().unwrap();
        put(
            &env.client,
            &input,
            &photo_key(file),
            std::fs::read(p).unwrap(),
        )
        .await;
    }
    // The model and its labels come from S3 too.
    let models = env.shared.join("models");
    for f in ["resnet18_random_init.onnx", "imagenet_labels.txt"] {
        let body = std::fs::read(models.join(f)).unwrap();
        put(&env.client, &input, &format!("models/{f}"), body).await;
    }
    let job = job(
        &env,
        &input,
        &output,
        &format!("s3://{input}/models/resnet18_random_init.onnx"),
        &format!("s3://{input}/models/imagenet_labels.txt"),
        "input",
    );
    let out = osprey_run(&job).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_key = results(&read_all(&env.client, &output, "results/").await);
    assert_eq!(by_key.len(), 10);
    for rs in by_key.values() {
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0]["model"], "resnet18_random_init");
        let labels = rs[0]["labels"].as_array().unwrap();
        assert_eq!(labels.len(), 5);
        let p: Vec<f64> = labels
            .iter()
            .map(|l| l["probability"].as_f64().unwrap())
            .collect();
        assert!(p.windows(2).all(|w| w[0] >= w[1]), "{p:?}");
    }
}
