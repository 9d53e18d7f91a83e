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
