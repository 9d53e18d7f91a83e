//! The command line: validate, checkpoints, unusable checkpoints, help.

use crate::util::*;

#[test]
fn validate_reports_every_error_with_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = job(
        dir.path(),
        "bad.toml",
        r#"name = "x"
colour = "blue"

[source]
type = "file"
path = ""
format = "json"

[runtime]
batch_size = "big"

[checkpoint]
interval = "soon"
keep = 0
"#,
    );
    let out = run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "line 2, column 1: `colour`",
        "line 10, column 14: `runtime.batch_size`",
        "line 13, column 12: `checkpoint.interval`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let syntax = job(dir.path(), "syntax.toml", "[source\ntype = \"file\"\n");
    let out = run(&["validate", syntax.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
    let semantic = job(
        dir.path(),
        "semantic.toml",
        "[source]\ntype = \"file\"\npath = \"\"\n[checkpoint]\nkeep = 0\n[metrics]\naddress = \"x\"\n",
    );
    let out = run(&["validate", semantic.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["`source.path`", "`checkpoint.keep`", "`metrics.address`"] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let ok = job(
        dir.path(),
        "ok.toml",
        "[source]\ntype = \"generator\"\ngenerator = \"sine\"\n",
    );
    assert!(run(&["validate", ok.to_str().unwrap()]).status.success());
    for example in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
        .unwrap()
        .flatten()
    {
        if example.path().extension().is_some_and(|e| e == "toml") {
            // The classify examples find their model and photos under $OSPREY_SHARED.
            let text = std::fs::read_to_string(example.path()).unwrap();
            if text.contains("OSPREY_SHARED") && shared().is_none() {
                continue;
            }
            let out = run(&["validate", example.path().to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{}: {}",
                example.path().display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

// Issue 13: errors inside `type`-tagged sections name their own field, line and column.
#[test]
fn validate_places_errors_inside_tagged_sections() {
    let dir = tempfile::tempdir().unwrap();
    let bad = job(
        dir.path(),
        "tagged.toml",
        r#"[source]
type = "file"
path = 42
format = "jsonn"

[[operators]]
type = "discord"
m = "ten"

[[operators]]
type = "rcf"
trees = -1

[sink]
type = "nowhere"
"#,
    );
    let out = run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        ": 5 error(s)",
        "line 3, column 8: `source.path`",
        "line 4, column 10: `source.format`",
        "line 8, column 5: `operators[0].m`",
        "line 12, column 9: `operators[1].trees`",
        "line 15, column 8: `sink.type`: unknown type `nowhere`, expected one of `stdout`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains("missing field"), "{err}");
}

// Issue 13: old field spellings still load, with a warning naming the field, its line and
// the new name.
#[test]
fn validate_warns_about_old_field_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let old = job(
        dir.path(),
        "old.toml",
        r#"[source]
type = "generator"
generator = "sensors"
count = 10
[record]
key = "sensor_id"
values = ["current_temperature"]
[[operators]]
type = "discord"
m = 4
value = "current_temperature"
[sink]
type = "null"
"#,
    );
    let out = run(&["validate", old.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "warning: line 11, column 1: `operators[0].value`: `value` is deprecated: use `input`"
        ),
        "{err}"
    );
}

// Issue 20: unset variables are reported with their field and line, all at once, beside
// the other errors; `--set` replaces a field, reference and all.
#[test]
fn validate_reports_unset_variables_and_set_fixes_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = job(
        dir.path(),
        "vars.toml",
        r#"name = "vars"

[source]
type = "kinesis"
stream = "${OSPREY_IT_UNSET_STREAM}"
endpoint_url = "${OSPREY_IT_UNSET_ENDPOINT:-http://127.0.0.1:4568}"

[checkpoint]
interval = "${OSPREY_IT_UNSET_INTERVAL:?how often to checkpoint}"
keep = 0
"#,
    );
    let validate = |set: &[&str]| {
        let mut cmd = osprey();
        for var in [
            "OSPREY_IT_UNSET_STREAM",
            "OSPREY_IT_UNSET_ENDPOINT",
            "OSPREY_IT_UNSET_INTERVAL",
        ] {
            cmd.env_remove(var);
        }
        cmd.args(["validate", file.to_str().unwrap()]);
        for s in set {
            cmd.args(["--set", s]);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = validate(&[]);
    assert_eq!(code, Some(2), "{err}");
    for needle in [
        ": 3 error(s)",
        "line 5, column 11: `source.stream`: environment variable `OSPREY_IT_UNSET_STREAM` is not set",
        "line 9, column 13: `checkpoint.interval`: environment variable `OSPREY_IT_UNSET_INTERVAL` is not set: how often to checkpoint",
        "line 10, column 8: `checkpoint.keep`: must keep at least 1 checkpoint",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // One fixed by `--set`, one by another `--set` that also fixes `keep`; an unknown field
    // set on the command line is reported as one.
    let (code, err) = validate(&["source.stream=sensors", "checkpoint.keep=2"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(": 1 error(s)"), "{err}");
    assert!(
        err.contains("line 9, column 13: `checkpoint.interval`"),
        "{err}"
    );
    let (code, err) = validate(&[
        "source.stream=sensors",
        "checkpoint.keep=2",
        "checkpoint.interval=5s",
        "checkpoint.colour=red",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`checkpoint.colour`: unknown field `colour`")
            && err.contains("(set by `--set checkpoint.colour=red`)"),
        "{err}"
    );
    let (code, err) = validate(&[
        "source.stream=sensors",
        "checkpoint.keep=2",
        "checkpoint.interval=5s",
    ]);
    assert_eq!(code, Some(0), "{err}");
}

// Issue 20: `osprey run --set` changes the job that runs.
#[test]
fn run_applies_set_after_interpolation() {
    let dir = tempfile::tempdir().unwrap();
    let file = job(
        dir.path(),
        "count.toml",
        r#"name = "count"
[source]
type = "generator"
generator = "sine"
count = ${OSPREY_IT_UNSET_COUNT}
[sink]
type = "stdout"
[state]
backend = "memory"
dir = "{dir}/data"
[metrics]
enabled = false
"#,
    );
    let out = osprey()
        .env_remove("OSPREY_IT_UNSET_COUNT")
        .args(["run", file.to_str().unwrap(), "--set", "source.count=7"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 7, "{stdout}");
}

#[test]
fn checkpoints_are_listed_and_corruption_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_records(&d.join("input.jsonl"), 50_000, 10);
    let job = job(
        d,
        "j.toml",
        r#"name = "j"
[source]
type = "file"
path = "{dir}/input.jsonl"
[record]
key = "id"
values = ["x"]
[[operators]]
type = "stats"
[sink]
type = "null"
[state]
dir = "{dir}/data"
[metrics]
enabled = false
"#,
    );
    assert!(run(&["run", job.to_str().unwrap()]).status.success());
    let data = d.join("data");
    let out = run(&["checkpoints", "list", data.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("complete") && text.contains("50000"),
        "{text}"
    );
    let out = run(&["checkpoints", "inspect", data.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"records_in\": 50000") && text.contains("stats.stats"),
        "{text}"
    );

    // Running again restores the final checkpoint: nothing left to read, still exit 0.
    let out = run(&["run", job.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Restoring checkpoint"));

    // Corrupt the newest manifest: a clear error, never a silent fresh start.
    let newest = std::fs::read_dir(data.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    let manifest = newest.join("MANIFEST.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("50000", "50001");
    std::fs::write(&manifest, text).unwrap();
    let out = run(&["run", job.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum") && err.contains("--fresh"), "{err}");
    // --fresh starts over.
    assert!(
        run(&["run", job.to_str().unwrap(), "--fresh"])
            .status
            .success()
    );
}

#[test]
fn a_checkpoint_of_another_job_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = job(
        d,
        "a.toml",
        "name = \"a\"\n[source]\ntype = \"generator\"\ngenerator = \"sine\"\ncount = 10\n[[operators]]\ntype = \"stats\"\n[sink]\ntype = \"null\"\n[state]\ndir = \"{dir}/data\"\n[metrics]\nenabled = false\n",
    );
    assert!(run(&["run", a.to_str().unwrap()]).status.success());
    let b = job(
        d,
        "b.toml",
        "name = \"a\"\n[source]\ntype = \"generator\"\ngenerator = \"sine\"\ncount = 10\n[sink]\ntype = \"null\"\n[state]\ndir = \"{dir}/data\"\n[metrics]\nenabled = false\n",
    );
    let out = run(&["run", b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another state layout"));
}

#[test]
fn help_and_version() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["validate", "--help"],
        vec!["checkpoints", "list", "--help"],
    ] {
        let out = run(&args);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
    let out = run(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn metrics_health_and_readiness_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let job = job(
        dir.path(),
        "m.toml",
        &format!(
            "name = \"m\"\n[source]\ntype = \"generator\"\ngenerator = \"sensors\"\nrate = 5000\n[[operators]]\ntype = \"stats\"\n[sink]\ntype = \"null\"\n[state]\ndir = \"{{dir}}/data\"\n[checkpoint]\ninterval = \"200ms\"\n[metrics]\naddress = \"127.0.0.1:{port}\"\n"
        ),
    );
    let mut child = osprey()
        .args(["run", job.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) for readiness and for a checkpoint to complete.
    let mut body = String::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let Some((status, b)) = http_get(port, "/metrics")
            && status.contains("200")
            && b.contains("osprey_checkpoints_total 1")
        {
            body = b;
            break;
        }
    }
    let ready = http_get(port, "/readyz");
    let health = http_get(port, "/healthz");
    let missing = http_get(port, "/nope");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success());
    for name in [
        "osprey_source_records_total{component=\"generator\"}",
        "osprey_operator_records_in_total{operator=\"stats\",partition=\"p000\"}",
        "osprey_sink_records_total",
        "osprey_checkpoint_duration_seconds_bucket",
        "osprey_checkpoint_size_bytes",
        "osprey_checkpoint_age_seconds",
        "osprey_state_size_bytes",
        "osprey_channel_capacity_records{partition=\"p000\"}",
        "osprey_ready 1",
        "process_resident_memory_bytes",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    assert!(ready.unwrap().0.contains("200"));
    assert!(health.unwrap().0.contains("200"));
    assert!(missing.unwrap().0.contains("404"));
}

#[test]
fn the_built_in_demo_prints_flagged_points_every_time() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = osprey()
            .current_dir(dir.path())
            .args(["run", "--no-metrics"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            lines.iter().any(|r| r["t"] == 36_241),
            "the drop is printed: {} lines",
            lines.len()
        );
    }
}
