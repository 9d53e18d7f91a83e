//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The osprey binary built for this test run (`OSPREY_TEST_BIN` overrides it, for a target
/// directory shared by several checkouts, where another build can replace the binary).
pub fn osprey() -> Command {
    let bin =
        std::env::var_os("OSPREY_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_osprey").into());
    let mut c = Command::new(bin);
    c.env("OSPREY_LOG", "info");
    c
}

/// Runs the binary to completion.
pub fn run(args: &[&str]) -> Output {
    osprey().args(args).output().expect("osprey binary runs")
}

/// Writes a job file into `dir` and returns its path. `{dir}` in the text becomes `dir`.
pub fn job(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text.replace("{dir}", &dir.display().to_string())).unwrap();
    path
}

/// Published part files of a file sink, in name order.
pub fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.file_name()
                            .unwrap()
                            .to_string_lossy()
                            .starts_with("part-")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The concatenation of a file sink's published part files, in name order.
pub fn published(dir: &Path) -> Vec<u8> {
    parts(dir)
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// Published lines parsed as JSON.
pub fn published_json(dir: &Path) -> Vec<serde_json::Value> {
    String::from_utf8(published(dir))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l}: {e}")))
        .collect()
}

/// SplitMix64, for deterministic test data.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes `n` JSON records over `keys` keys (`{"id":"k…","x":…,"seq":…}`).
pub fn write_records(path: &Path, n: u64, keys: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let r = mix(i);
        let key = r % keys;
        let x = (mix(r) >> 11) as f64 / (1u64 << 53) as f64 * 100.0;
        writeln!(f, r#"{{"id":"k{key}","x":{x:.3},"seq":{i}}}"#).unwrap();
    }
    f.flush().unwrap();
}

/// An S3 client for moto (`OSPREY_S3_ENDPOINT`) and its endpoint, or `None` (outside CI) when
/// no credentials are set or nothing answers.
#[cfg(feature = "s3")]
pub async fn moto() -> Option<(String, aws_sdk_s3::Client)> {
    let endpoint =
        std::env::var("OSPREY_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5010".into());
    let why = if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // The operator takes credentials from the standard chain, like production.
        Some("AWS_ACCESS_KEY_ID is not set".to_string())
    } else {
        None
    };
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "osprey-test",
            "osprey-test",
            None,
            None,
            "test",
        ))
        .endpoint_url(&endpoint)
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    let why = match why {
        Some(w) => Some(w),
        None => client
            .list_buckets()
            .send()
            .await
            .err()
            .map(|e| format!("no S3 server at {endpoint} ({e})")),
    };
    if let Some(why) = why {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{why} under CI=true (run `. scripts/services.sh`)"
        );
        eprintln!("skipping: {why} (run `. scripts/services.sh`)");
        return None;
    }
    Some((endpoint, client))
}

/// Every key under `prefix` in `bucket`.
#[cfg(feature = "s3")]
pub async fn s3_keys(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
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
        out.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            out.sort();
            return out;
        }
    }
}

/// One object's bytes.
#[cfg(feature = "s3")]
pub async fn s3_get(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let obj = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    obj.body.collect().await.unwrap().into_bytes().to_vec()
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of metric `name` served at `addr` (summed over its label sets), or `None` if
/// the endpoint is not reachable or does not have it.
pub fn scrape(addr: &str, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let values: Vec<f64> = body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once('}')?.1,
                None => rest,
            };
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// `$OSPREY_SHARED` (the models, photos and datasets beside the repository), or `None` with a
/// message; under `CI=true` a missing folder fails the test.
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("OSPREY_SHARED").map(PathBuf::from);
    match dir {
        Some(d) if d.is_dir() => Some(d),
        other => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "OSPREY_SHARED must name the shared data under CI=true (got {other:?})"
            );
            eprintln!("skipping: OSPREY_SHARED is not set or not a folder ({other:?})");
            None
        }
    }
}

/// A PNG whose header claims 50,000 × 50,000 pixels (a decompression bomb's header): a real
/// 1×1 PNG with its IHDR size (and CRC) rewritten.
#[cfg(feature = "onnx")]
pub fn png_bomb() -> Vec<u8> {
    let img = image::DynamicImage::ImageLuma8(image::GrayImage::new(1, 1));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    let mut png = out.into_inner();
    png[16..20].copy_from_slice(&50_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&50_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// CRC-32 (the PNG chunk checksum).
#[cfg(feature = "onnx")]
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A plain HTTP GET against the metrics endpoint: (status line, body).
pub fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}
