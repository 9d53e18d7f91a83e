use super::*;

/// The errors of `text` as (field, line, column), in file order.
fn errors(text: &str) -> Vec<(String, Option<usize>, Option<usize>)> {
    JobConfig::from_toml(text)
        .expect_err("the job is invalid")
        .into_iter()
        .map(|e| (e.field, e.line, e.column))
        .collect()
}

fn at(field: &str, line: usize, column: usize) -> (String, Option<usize>, Option<usize>) {
    (field.to_string(), Some(line), Some(column))
}

fn messages(text: &str) -> Vec<String> {
    JobConfig::from_toml(text)
        .expect_err("the job is invalid")
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

// Issue 13: errors inside `type`-tagged sections were placed at the section (or lost), and
// a spurious "missing field `type`" appeared.
#[test]
fn six_errors_in_tagged_sections_each_reported_once_where_they_are() {
    let text = r#"name = "six"

[source]
type = "file"
path = 42
format = "jsonn"

[[operators]]
type = "discord"
m = "ten"

[[operators]]
type = "rcf"
trees = -1
colour = "red"

[sink]
type = "nowhere"
path = "out"
"#;
    assert_eq!(
        errors(text),
        vec![
            at("source.path", 5, 8),
            at("source.format", 6, 10),
            at("operators[0].m", 10, 5),
            at("operators[1].trees", 14, 9),
            at("operators[1].colour", 15, 1),
            at("sink.type", 18, 8),
        ]
    );
    let all = messages(text).join("\n");
    assert!(!all.contains("missing field"), "{all}");
    assert!(
        all.contains(
            "line 18, column 8: `sink.type`: unknown type `nowhere`, expected one of `stdout`, `file`, `null`"
        ),
        "{all}"
    );
    assert!(all.contains("unknown variant `jsonn`"), "{all}");
    assert!(all.contains("invalid value: integer `-1`"), "{all}");
}

#[test]
fn reports_several_errors_with_fields_and_lines() {
    let text = r#"name = "t"
bogus = 1

[source]
type = "file"
path = "x.jsonl"
format = "json"
colour = "red"

[runtime]
key_groups = "many"
batch_size = 0

[checkpoint]
interval = "10 parsecs"
"#;
    assert_eq!(
        errors(text),
        vec![
            at("bogus", 2, 1),
            at("source.colour", 8, 1),
            at("runtime.key_groups", 11, 14),
            at("checkpoint.interval", 15, 12),
        ]
    );
}

#[test]
fn unknown_fields_inside_tagged_sections() {
    let text = r#"
[source]
type = "generator"
generator = "sine"
speed = 3

[[operators]]
type = "stats"
prefix = "a_"
wrong = true

[sink]
type = "stdout"
path = "x"

[dead_letter]
type = "null"
extra = 1
"#;
    assert_eq!(
        errors(text),
        vec![
            at("source.speed", 5, 1),
            at("operators[0].wrong", 10, 1),
            at("sink.path", 14, 1),
            at("dead_letter.extra", 18, 1),
        ]
    );
    let all = messages(text).join("\n");
    assert!(
        all.contains("unknown field `speed`, expected one of"),
        "{all}"
    );
    assert!(
        all.contains("unknown field `path`, there are no fields"),
        "{all}"
    );
}

#[test]
fn a_missing_type_or_required_field_is_one_error_and_the_search_goes_on() {
    let text = r#"
[source]
generator = "sine"

[[operators]]
type = "discord"
history = 100

[[operators]]
type = "rcf"
trees = "many"
"#;
    assert_eq!(
        errors(text),
        vec![
            at("source.type", 2, 1),
            at("operators[0].m", 5, 1),
            at("operators[1].trees", 11, 9),
        ]
    );
    // A file without the required [source] at all: no position to give.
    let errs = JobConfig::from_toml("name = \"x\"\n").unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].field.as_str(), errs[0].line), ("source", None));
}

#[test]
fn nested_tables_of_enrich_and_their_tagged_origin() {
    let text = r#"
[source]
type = "generator"
generator = "sensors"

[[operators]]
type = "enrich"
capacity = "lots"
[operators.cache]
ttl = "forever"
[operators.redis]
url = "redis://127.0.0.1:6379"
colour = 1
[operators.origin]
type = "http"
url = 5

[[operators]]
type = "enrich"
name = "second"
[operators.origin]
type = "ftp"
url = "ftp://x"
"#;
    assert_eq!(
        errors(text),
        vec![
            at("operators[0].capacity", 8, 12),
            at("operators[0].cache.ttl", 10, 7),
            at("operators[0].redis.colour", 13, 1),
            at("operators[0].origin.url", 16, 7),
            at("operators[1].origin.type", 22, 8),
        ]
    );
    let all = messages(text).join("\n");
    assert!(
        all.contains("unknown type `ftp`, expected one of `none`, `http`, `file`, `s3`"),
        "{all}"
    );
    // A unit variant takes no other field.
    let errs = errors(
        "[source]\ntype = \"stdin\"\n[[operators]]\ntype = \"enrich\"\n[operators.origin]\ntype = \"none\"\nurl = \"x\"\n",
    );
    assert_eq!(errs, vec![at("operators[0].origin.url", 7, 1)]);
}

#[cfg(feature = "onnx")]
#[test]
fn nested_model_table_of_classify_image() {
    let text = r#"
[source]
type = "dir"
path = "images"

[[operators]]
type = "classify_image"
top_k = "three"
[operators.model]
path = "m.onnx"
mean = [0.5, "x", 0.5]
shape = 1
"#;
    assert_eq!(
        errors(text),
        vec![
            at("operators[0].top_k", 8, 9),
            at("operators[0].model.mean[1]", 11, 14),
            at("operators[0].model.shape", 12, 1),
        ]
    );
}

#[test]
fn the_discord_threshold_is_tagged_by_rule() {
    let text = r#"
[source]
type = "generator"
generator = "sine"

[[operators]]
type = "discord"
m = 10
[operators.threshold]
rule = "static"
k = 3

[[operators]]
type = "discord"
name = "d2"
m = 10
prefix = "d2_"
threshold = { rule = "quantile", q = "high" }
"#;
    assert_eq!(
        errors(text),
        vec![
            // Missing: placed at the table's header.
            at("operators[0].threshold.value", 9, 1),
            at("operators[0].threshold.k", 11, 1),
            at("operators[1].threshold.q", 18, 38),
        ]
    );
}

#[test]
fn dotted_keys_and_inline_tables() {
    let text = r#"name = "dots"
source.type = "file"
source.path = 42
record = { key = "id", values = "x" }
sink = { type = "file", path = "out", max_file_bytes = "big" }
operators = [
  { type = "stats", ttl = 5.5 },
  { type = "rcf", inputs = ["x", 1] },
]
"#;
    assert_eq!(
        errors(text),
        vec![
            at("source.path", 3, 15),
            at("record.values", 4, 33),
            at("sink.max_file_bytes", 5, 56),
            at("operators[0].ttl", 7, 27),
            at("operators[1].inputs[1]", 8, 34),
        ]
    );
}

#[test]
fn syntax_errors_carry_the_line_and_column() {
    let errs = JobConfig::from_toml("name = \"a\"\n[source\ntype = 1\n").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, Some(2), "{errs:?}");
    assert!(errs[0].column.is_some(), "{errs:?}");
}

#[test]
fn semantic_errors_are_all_reported() {
    let text = r#"
[source]
type = "generator"
generator = "sine"
[runtime]
partitions = 0
[checkpoint]
keep = 0
interval = "1s"
[metrics]
address = "nowhere"
"#;
    assert_eq!(
        errors(text),
        vec![
            at("runtime.partitions", 6, 14),
            at("checkpoint.keep", 8, 8),
            at("metrics.address", 11, 11),
        ]
    );
}

#[test]
fn semantic_errors_inside_operators_are_placed_by_the_spans() {
    let text = r#"
[source]
type = "generator"
generator = "sine"

[[operators]]
type = "discord"
m = 1
history = 1

[[operators]]
type = "rcf"
inputs = ["nope"]
prefix = "r_"

[[operators]]
type = "stats"
ttl = "1h"
"#;
    assert_eq!(
        errors(text),
        vec![
            at("operators[0].m", 8, 5),
            at("operators[0].history", 9, 11),
            at("operators[1].inputs", 13, 10),
            // stats.ttl needs record.time: the field exists, so it is placed there.
            at("operators[2].ttl", 18, 7),
        ]
    );
    // A field left at its default is placed at its section.
    let text = "[source]\ntype = \"generator\"\ngenerator = \"sine\"\n\n[[operators]]\ntype = \"stats\"\n[[operators]]\ntype = \"stats\"\n";
    let errs = errors(text);
    assert!(errs.contains(&at("operators[1].prefix", 7, 1)), "{errs:?}");
    assert!(errs.contains(&at("operators[1].name", 7, 1)), "{errs:?}");
}

#[test]
fn old_spellings_load_with_a_warning_naming_field_line_and_new_name() {
    let text = r#"
[source]
type = "generator"
generator = "sensors"

[record]
key = "sensor_id"
values = ["current_temperature", "x"]

[[operators]]
type = "discord"
m = 16
value = "x"
prefix = "d_"

[[operators]]
type = "rcf"
fields = ["x"]
prefix = "r_"

[[operators]]
type = "stats"
field = 1

[[operators]]
type = "enrich"
field = "loc"
error_field = "loc_error"
"#;
    let loaded = JobConfig::parse(text).expect("old spellings still load");
    let warnings: Vec<(String, Option<usize>, Option<usize>)> = loaded
        .warnings
        .iter()
        .map(|w| (w.field.clone(), w.line, w.column))
        .collect();
    assert_eq!(
        warnings,
        vec![
            at("operators[0].value", 13, 1),
            at("operators[1].fields", 18, 1),
            at("operators[2].field", 23, 1),
            at("operators[3].field", 27, 1),
            at("operators[3].error_field", 28, 1),
        ]
    );
    assert_eq!(
        loaded.warnings[0].to_string(),
        "line 13, column 1: `operators[0].value`: `value` is deprecated: use `input`"
    );
    assert!(loaded.warnings[2].message.contains("use `input`"));
    let ops = &loaded.job.operators;
    let OperatorConfig::Discord(d) = &ops[0] else {
        panic!()
    };
    assert_eq!(d.input.as_deref(), Some("x"));
    let OperatorConfig::Rcf(r) = &ops[1] else {
        panic!()
    };
    assert_eq!(r.inputs, ["x"]);
    let OperatorConfig::Stats(s) = &ops[2] else {
        panic!()
    };
    assert_eq!(
        s.input_index(&["current_temperature".into(), "x".into()]),
        1
    );
    let OperatorConfig::Enrich(e) = &ops[3] else {
        panic!()
    };
    assert_eq!(
        (e.output.as_str(), e.error_output.as_str()),
        ("loc", "loc_error")
    );

    // The new spellings load without warnings.
    let new = text
        .replace("value = \"x\"", "input = \"x\"")
        .replace("fields = ", "inputs = ")
        .replace("field = 1", "input = \"x\"")
        .replace("error_field = ", "error_output = ")
        .replace("field = \"loc\"", "output = \"loc\"");
    let loaded = JobConfig::parse(&new).expect("new spellings load");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn a_semantic_error_on_a_renamed_field_is_placed_at_its_old_spelling() {
    let text = "[source]\ntype = \"generator\"\ngenerator = \"sine\"\n[[operators]]\ntype = \"discord\"\nm = 10\nvalue = \"nope\"\n";
    assert_eq!(errors(text), vec![at("operators[0].input", 7, 9)]);
}

#[test]
fn other_deserializers_still_read_tagged_enums() {
    // `toml::from_str` buffers the tagged table (no positions), with the same result.
    let op: crate::operators::OperatorConfig =
        toml::from_str("type = \"discord\"\nm = 12\nvalue = \"v\"\n").unwrap();
    let crate::operators::OperatorConfig::Discord(d) = op else {
        panic!("{op:?}")
    };
    assert_eq!((d.m, d.input.as_deref()), (12, Some("v")));
    let e = toml::from_str::<crate::operators::OperatorConfig>("type = \"nope\"\n").unwrap_err();
    assert!(e.message().contains("unknown variant `nope`"), "{e}");
    let e = toml::from_str::<crate::operators::OperatorConfig>("type = \"stats\"\nbad = 1\n")
        .unwrap_err();
    assert!(e.message().contains("unknown field `bad`"), "{e}");
    let e = toml::from_str::<crate::operators::OperatorConfig>("m = 1\n").unwrap_err();
    assert!(e.message().contains("missing field `type`"), "{e}");
    let origin: crate::operators::enrich::config::OriginConfig =
        toml::from_str("type = \"none\"\n").unwrap();
    assert!(matches!(
        origin,
        crate::operators::enrich::config::OriginConfig::None
    ));
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = "[source]\ntype = \"generator\"\ngenerator = \"sine\"\nrecord = { key = \"ü\", time = 5 }\n";
    // `record` inside [source]: an unknown field of the generator.
    assert_eq!(errors(text), vec![at("source.record", 4, 1)]);
    let text = "record = { key = \"ü\", time = 5 }\n[source]\ntype = \"generator\"\ngenerator = \"sine\"\n";
    assert_eq!(errors(text), vec![at("record.time", 1, 30)]);
}

#[test]
fn s3_checkpoints_with_local_output_load_with_a_warning() {
    let text = r#"[source]
type = "stdin"
[sink]
type = "file"
path = "out"
[checkpoint]
dir = "s3://bucket/jobs/a/"
endpoint_url = "http://127.0.0.1:5010"
"#;
    let loaded = JobConfig::parse(text).unwrap();
    let fields: Vec<&str> = loaded.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        ["sink.path", "dead_letter.path"],
        "{:?}",
        loaded.warnings
    );
    assert_eq!(loaded.warnings[0].line, Some(5));
    assert!(loaded.warnings[0].message.contains("does not survive"));
    let spec = loaded.job.checkpoint_store();
    assert_eq!(
        spec.s3_location(),
        Some(("bucket".to_string(), "jobs/a/".to_string()))
    );
    // Local checkpoints: no warning.
    let local =
        JobConfig::parse("[source]\ntype = \"stdin\"\n[sink]\ntype = \"file\"\npath = \"out\"\n")
            .unwrap();
    assert!(local.warnings.is_empty(), "{:?}", local.warnings);
}

#[test]
fn s3_checkpoint_dir_needs_a_bucket_and_s3_settings_need_s3() {
    let msgs = messages("[source]\ntype = \"stdin\"\n[checkpoint]\ndir = \"s3:///x/\"\n");
    assert!(
        msgs.iter().any(|m| m.contains("needs a bucket")),
        "{msgs:?}"
    );
    let msgs = messages(
        "[source]\ntype = \"stdin\"\n[checkpoint]\ndir = \"/tmp/c\"\nregion = \"eu-west-1\"\n",
    );
    assert!(
        msgs.iter().any(|m| m.contains("only to an s3://")),
        "{msgs:?}"
    );
}

mod interpolation;
