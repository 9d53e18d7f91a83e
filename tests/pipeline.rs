//! Malformed input never crashes the worker or loses good records.

use std::collections::HashMap;

use crate::util::*;

#[test]
fn bad_input_is_dead_lettered_and_good_records_flow() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut input: Vec<u8> = Vec::new();
    let mut good = 0;
    let mut bad: Vec<&str> = Vec::new();
    for i in 0..2000 {
        match i % 200 {
            17 => {
                input.extend_from_slice(b"{\"id\":\"k1\",\"x\":1,\n");
                bad.push("malformed_json");
            }
            33 => {
                input.extend_from_slice(b"{\"id\":\"k2\"}\n");
                bad.push("missing_field");
            }
            51 => {
                input.extend_from_slice(b"{\"id\":\"k3\",\"x\":NaN}\n");
                bad.push("non_finite");
            }
            77 => {
                input.extend_from_slice(b"{\"id\":\"k3\",\"x\":\"inf\"}\n");
                bad.push("non_finite");
            }
            99 => {
                input.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x7b, b'\n']);
                bad.push("invalid_utf8");
            }
            123 => {
                input.extend_from_slice(b"[1,2,3]\n");
                bad.push("not_an_object");
            }
            _ => {
                input
                    .extend_from_slice(format!("{{\"id\":\"k{}\",\"x\":{i}}}\n", i % 7).as_bytes());
                good += 1;
            }
        }
        if i == 1000 {
            // A 10 MB line in the middle.
            input.extend_from_slice(b"{\"id\":\"huge\",\"pad\":\"");
            input.extend(std::iter::repeat_n(b'x', 10 << 20));
            input.extend_from_slice(b"\"}\n");
            bad.push("too_large");
        }
    }
    // No newline at the end, and a record there.
    input.extend_from_slice(b"{\"id\":\"last\",\"x\":1}");
    good += 1;
    std::fs::write(d.join("in.jsonl"), input).unwrap();
    let job = job(
        d,
        "job.toml",
        r#"name = "bad"
[source]
type = "file"
path = "{dir}/in.jsonl"
[record]
key = "id"
values = ["x"]
[[operators]]
type = "stats"
[sink]
type = "file"
path = "{dir}/out"
[dead_letter]
type = "file"
path = "{dir}/dlq"
[state]
dir = "{dir}/data"
[metrics]
enabled = false
"#,
    );
    let out = run(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = published_json(&d.join("out"));
    assert_eq!(results.len(), good, "every good record is processed");
    // Per-key counts run 1..n without gaps: nothing lost or doubled.
    let mut counts: HashMap<String, u64> = HashMap::new();
    for r in &results {
        let c = counts
            .entry(r["id"].as_str().unwrap().to_string())
            .or_default();
        *c += 1;
        assert_eq!(r["count"].as_u64().unwrap(), *c);
    }
    let dead = published_json(&d.join("dlq"));
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    let mut want: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
    reasons.sort();
    want.sort();
    assert_eq!(reasons, want);
    for r in &dead {
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(r["stream"].as_str().unwrap().ends_with("in.jsonl"));
        assert!(r["position"].as_str().unwrap().parse::<u64>().is_ok());
    }
    let huge = dead.iter().find(|r| r["reason"] == "too_large").unwrap();
    assert!(huge["bytes"].as_u64().unwrap() > 10 << 20);
    assert!(huge["data"].as_str().unwrap().len() <= 4096);
}

#[test]
fn csv_and_bare_number_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("series.txt"), "1\n2\nnan\n3\n").unwrap();
    let job_lines = job(
        d,
        "lines.toml",
        r#"name = "lines"
[source]
type = "file"
path = "{dir}/series.txt"
format = "lines"
[[operators]]
type = "stats"
[sink]
type = "file"
path = "{dir}/out-lines"
[state]
dir = "{dir}/data-lines"
backend = "memory"
[metrics]
enabled = false
"#,
    );
    let out = run(&["run", job_lines.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = published_json(&d.join("out-lines"));
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2]["key"], "series");
    assert_eq!(rows[2]["mean"], 2.0);

    std::fs::write(
        d.join("t.csv"),
        "timestamp,value\n2014-04-01 00:00:00,20.5\n2014-04-01 00:05:00,oops\n",
    )
    .unwrap();
    let job_csv = job(
        d,
        "csv.toml",
        r#"name = "csv"
[source]
type = "file"
path = "{dir}/t.csv"
format = "csv"
[record]
values = ["value"]
time = "timestamp"
[sink]
type = "file"
path = "{dir}/out-csv"
[state]
dir = "{dir}/data-csv"
[metrics]
enabled = false
"#,
    );
    let out = run(&["run", job_csv.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = published_json(&d.join("out-csv"));
    assert_eq!(
        rows,
        vec![serde_json::json!({"timestamp": "2014-04-01 00:00:00", "value": 20.5})]
    );
    let dead = published_json(&d.join("data-csv/dead-letter"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["reason"], "wrong_type");
}

/// Issue 14.1 (See: `issues show 14`): a `record.time` holding a non-ASCII character inside
/// its offset used to panic the source task (exit 1, none of the good records around it
/// written). Now it is one `bad_time` dead letter naming the field, and the job goes on.
#[test]
fn r14_1_non_ascii_time_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const BAD: &str = "2024-01-01T00:00:00+0é00";
    let mut input = String::new();
    let mut good = Vec::new();
    for i in 0..300 {
        if i == 150 {
            input.push_str(&format!("{{\"id\":\"k1\",\"x\":1,\"ts\":\"{BAD}\"}}\n"));
        }
        let ts = format!("2024-01-01T00:{:02}:{:02}+01:00", i / 60, i % 60);
        input.push_str(&format!(
            "{{\"id\":\"k{}\",\"x\":{i},\"ts\":\"{ts}\"}}\n",
            i % 3
        ));
        good.push(i);
    }
    std::fs::write(d.join("in.jsonl"), input).unwrap();
    let job = job(
        d,
        "job.toml",
        r#"name = "unicode-time"
[source]
type = "file"
path = "{dir}/in.jsonl"
[record]
key = "id"
values = ["x"]
time = "ts"
[sink]
type = "file"
path = "{dir}/out"
[dead_letter]
type = "file"
path = "{dir}/dlq"
[state]
dir = "{dir}/data"
[metrics]
enabled = false
"#,
    );
    let out = run(&["run", job.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut xs: Vec<i64> = published_json(&d.join("out"))
        .iter()
        .map(|r| r["x"].as_i64().unwrap())
        .collect();
    xs.sort();
    assert_eq!(xs, good, "every good record is in the output, once");
    let dead = published_json(&d.join("dlq"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "bad_time");
    let error = dead[0]["error"].as_str().unwrap();
    assert!(error.starts_with("field `ts` is not a time"), "{error}");
    assert!(dead[0]["data"].as_str().unwrap().contains(BAD));
}
