//! `${VAR}` interpolation and `--set` overrides (issue 20.1).

use std::collections::HashMap;

use super::super::interpolate::interpolate;
use super::super::*;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `text` interpolated with `pairs`: the text, and each problem's message.
fn subst(text: &str, pairs: &[(&str, &str)]) -> (String, Vec<String>) {
    let v = vars(pairs);
    let out = interpolate(text, &|n| v.get(n).cloned());
    let problems = out.problems.iter().map(|p| p.message.clone()).collect();
    (out.text, problems)
}

fn opts(pairs: &[(&str, &str)], set: &[&str]) -> LoadOptions {
    LoadOptions {
        overrides: set.iter().map(|s| s.to_string()).collect(),
        vars: Some(vars(pairs)),
    }
}

/// The job `text` loaded with `pairs` and `set`.
fn load(text: &str, pairs: &[(&str, &str)], set: &[&str]) -> Result<JobConfig, Vec<ConfigError>> {
    JobConfig::parse_with(text, &opts(pairs, set)).map(|l| l.job)
}

/// The errors as (field, line, column, message).
fn problems(
    text: &str,
    pairs: &[(&str, &str)],
    set: &[&str],
) -> Vec<(String, Option<usize>, Option<usize>, String)> {
    load(text, pairs, set)
        .expect_err("the job is invalid")
        .into_iter()
        .map(|e| (e.field, e.line, e.column, e.message))
        .collect()
}

#[test]
fn the_substitution_rules() {
    let set = [("FOO", "dogs"), ("EMPTY", ""), ("JAVA.NAME", "beans")];
    let ok = |text: &str| {
        let (out, problems) = subst(text, &set);
        assert!(problems.is_empty(), "{text}: {problems:?}");
        out
    };
    // Set.
    assert_eq!(ok("a = \"${FOO}\""), "a = \"dogs\"");
    assert_eq!(ok("x${FOO}y${FOO}"), "xdogsydogs");
    assert_eq!(ok("${JAVA.NAME}"), "beans");
    assert_eq!(ok("${EMPTY}"), "");
    // Unset or empty with a default.
    assert_eq!(ok("${NOPE:-cats}"), "cats");
    assert_eq!(ok("${EMPTY:-cats}"), "cats");
    assert_eq!(ok("${FOO:-cats}"), "dogs");
    assert_eq!(ok("${NOPE:-dogs and cats}"), "dogs and cats");
    assert_eq!(ok("${NOPE:-}"), "");
    assert_eq!(
        ok("${NOPE:-http://127.0.0.1:4568}"),
        "http://127.0.0.1:4568"
    );
    // `-` without the colon: only unset takes the default.
    assert_eq!(ok("${NOPE-cats}"), "cats");
    assert_eq!(ok("${EMPTY-cats}"), "");
    // `?` without the colon: only unset is an error.
    assert_eq!(ok("${EMPTY?needed}"), "");
    assert_eq!(ok("${FOO:?needed}"), "dogs");
    // `$$` escapes; a `$` not before `{` or `$` stays, and `$NAME` is not a reference.
    assert_eq!(ok("$${FOO}"), "${FOO}");
    assert_eq!(ok("$$FOO"), "$FOO");
    assert_eq!(ok("price: 5$ and $FOO"), "price: 5$ and $FOO");
    assert_eq!(ok("regex = \"^a+$\""), "regex = \"^a+$\"");
    // Comments are left alone.
    assert_eq!(ok("x = 1 # set ${UNSET}\n"), "x = 1 # set ${UNSET}\n");
    // A `#` inside a string is no comment.
    assert_eq!(ok("x = \"#${FOO}\""), "x = \"#dogs\"");
    assert_eq!(ok("x = '#${FOO}' # ${UNSET}"), "x = '#dogs' # ${UNSET}");
    assert_eq!(
        ok("x = \"\"\"\n# ${FOO}\n\"\"\""),
        "x = \"\"\"\n# dogs\n\"\"\""
    );
    assert_eq!(ok("x = \"a\\\"#${FOO}\""), "x = \"a\\\"#dogs\"");
}

#[test]
fn unset_required_newline_and_malformed_references_are_errors() {
    let set = [("FOO", "dogs"), ("EMPTY", ""), ("TWO_LINES", "a\nb = 1")];
    let problems = |text: &str| subst(text, &set).1;
    assert_eq!(
        problems("${NOPE}"),
        ["environment variable `NOPE` is not set (give a default: `${NOPE:-…}`)"]
    );
    assert_eq!(
        problems("${NOPE:?the stream to read}"),
        ["environment variable `NOPE` is not set: the stream to read"]
    );
    assert_eq!(
        problems("${EMPTY:?the stream to read}"),
        ["environment variable `EMPTY` is empty: the stream to read"]
    );
    assert_eq!(
        problems("${NOPE?}"),
        ["environment variable `NOPE` is not set"]
    );
    assert_eq!(
        problems("${TWO_LINES}"),
        ["environment variable `TWO_LINES` holds a line break, which a job file value may not"]
    );
    assert_eq!(problems("${TWO_LINES:-x}").len(), 1);
    assert!(problems("${}")[0].contains("is not a variable reference"));
    assert!(problems("${FOO x}")[0].contains("is not a variable reference"));
    assert!(problems("${FOO\n}")[0].contains("is not closed"));
    // Every problem is reported, and the text still parses: placeholders keep its shape.
    let (text, found) = subst("a = \"${A}\"\nb = ${B}\nc = '${C:-ok}'\n", &set);
    assert_eq!(found.len(), 2);
    assert_eq!(text, "a = \"\"\nb = 0\nc = 'ok'\n");
}

const JOB: &str = r#"name = "interp"

[source]
type = "file"
path = "${INPUT}"                # where the records are
format = "json"

[checkpoint]
interval = "${INTERVAL:-5s}"
keep = ${KEEP:-3}

[metrics]
address = "${ADDRESS:?metrics address, host:port}"
"#;

#[test]
fn a_job_reads_variables_and_defaults() {
    let job = load(
        JOB,
        &[("INPUT", "in.jsonl"), ("ADDRESS", "127.0.0.1:1")],
        &[],
    )
    .unwrap();
    assert_eq!(job.source.type_name(), "file");
    assert_eq!(job.checkpoint.interval.as_std().as_secs(), 5);
    assert_eq!(job.checkpoint.keep, 3);
    assert_eq!(job.metrics.address, "127.0.0.1:1");
    let job = load(
        JOB,
        &[
            ("INPUT", "in.jsonl"),
            ("ADDRESS", "127.0.0.1:1"),
            ("INTERVAL", "250ms"),
            ("KEEP", "7"),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(job.checkpoint.interval.as_std().as_millis(), 250);
    assert_eq!(job.checkpoint.keep, 7);
}

#[test]
fn every_unset_variable_is_reported_with_its_field_and_line_among_other_errors() {
    let at = |found: Vec<(String, Option<usize>, Option<usize>, String)>| -> Vec<String> {
        found
            .into_iter()
            .map(|(f, l, c, m)| format!("{} {} {f}: {m}", l.unwrap(), c.unwrap()))
            .collect()
    };
    // With a validation error.
    assert_eq!(
        at(problems(JOB, &[("KEEP", "0")], &[])),
        [
            "5 9 source.path: environment variable `INPUT` is not set (give a default: `${INPUT:-…}`)",
            "10 8 checkpoint.keep: must keep at least 1 checkpoint",
            "13 12 metrics.address: environment variable `ADDRESS` is not set: metrics address, host:port",
        ]
    );
    // With a structural error (which, as without variables, stops the semantic checks).
    let text = JOB.replace("format = \"json\"", "format = \"json\"\ncolour = \"red\"");
    let found = at(problems(&text, &[("KEEP", "0")], &[]));
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("5 9 source.path: environment variable `INPUT`"));
    assert!(found[1].starts_with("7 1 source.colour: unknown field `colour`"));
    assert!(found[2].starts_with("14 12 metrics.address: environment variable `ADDRESS`"));
}

#[test]
fn a_rejected_value_names_its_field_and_line() {
    let found = problems(JOB, &[("INPUT", "a\nb"), ("ADDRESS", "127.0.0.1:1")], &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0.as_str(), found[0].1), ("source.path", Some(5)));
    assert!(found[0].3.contains("line break"), "{found:?}");
}

#[test]
fn errors_after_interpolation_point_into_the_original_file() {
    // A longer value shifts columns on its line, never lines: the error in `keep`, after a
    // 40-byte value on line 9, is still at line 10, column 8; on its own line the column is
    // the reference's.
    let vars = [
        ("INPUT", "in.jsonl"),
        ("ADDRESS", "127.0.0.1:1"),
        ("INTERVAL", "1000000000000000000000000000000000000ms"),
        ("KEEP", "\"three\""),
    ];
    let found = problems(JOB, &vars, &[]);
    let at: Vec<_> = found
        .iter()
        .map(|(f, l, c, _)| (f.as_str(), *l, *c))
        .collect();
    assert_eq!(
        at,
        [
            ("checkpoint.interval", Some(9), Some(12)),
            ("checkpoint.keep", Some(10), Some(8)),
        ],
        "{found:?}"
    );
    // A TOML syntax error inside a substituted value, and one after it on the same line.
    let text = "name = \"x\"\n\n[source]\ntype = \"generator\"\ngenerator = \"sine\"\n\n[checkpoint]\nkeep = ${KEEP}\n";
    let found = problems(text, &[("KEEP", "3 4")], &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].1, found[0].2), (Some(8), Some(8)), "{found:?}");
    let text = "[source]\ntype = \"${TYPE}\" = oops\n";
    let found = problems(text, &[("TYPE", "generator-with-a-long-name")], &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].1, found[0].2), (Some(2), Some(18)), "{found:?}");
    // With an unset variable as well: both reported, each at its line.
    let text = "[source]\ntype = \"${TYPE}\"\ngenerator = ${GEN}\n[x\n";
    let found = problems(text, &[("TYPE", "generator")], &[]);
    let lines: Vec<_> = found.iter().map(|e| e.1).collect();
    assert_eq!(lines, [Some(3), Some(4)], "{found:?}");
}

const SMALL: &str = r#"[source]
type = "generator"
generator = "sine"

[[operators]]
type = "discord"
m = 16
"#;

#[test]
fn set_changes_nested_fields_creating_tables() {
    let job = load(
        SMALL,
        &[],
        &[
            "checkpoint.interval=250ms",
            "checkpoint.keep=9",
            "runtime.partitions = 2",
            "name=\"2024\"",
            "metrics.enabled=false",
            "state={ backend = \"memory\" }",
        ],
    )
    .unwrap();
    assert_eq!(job.checkpoint.interval.as_std().as_millis(), 250);
    assert_eq!(job.checkpoint.keep, 9);
    assert_eq!(job.runtime.partitions, Some(2));
    assert_eq!(job.name, "2024");
    assert!(!job.metrics.enabled);
    assert_eq!(job.state.backend, BackendKind::Memory);
    // Into an array element, in both spellings; a later `--set` wins.
    let m = |set: &[&str]| match &load(SMALL, &[], set).unwrap().operators[0] {
        crate::operators::OperatorConfig::Discord(d) => d.m,
        other => panic!("{other:?}"),
    };
    assert_eq!(m(&["operators[0].m=32"]), 32);
    assert_eq!(m(&["operators.0.m=24", "operators[0].m=40"]), 40);
    // After interpolation: an override replaces a reference, which then needs no variable.
    let text = SMALL.replace("m = 16", "m = ${M}");
    assert_eq!(m_of(&load(&text, &[], &["operators[0].m=8"]).unwrap()), 8);
    assert_eq!(problems(&text, &[], &[])[0].0, "operators[0].m");
}

fn m_of(job: &JobConfig) -> usize {
    match &job.operators[0] {
        crate::operators::OperatorConfig::Discord(d) => d.m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn set_of_an_unknown_or_bad_field_is_reported_like_one_in_the_file() {
    let found = problems(
        SMALL,
        &[],
        &[
            "checkpoint.intervl=5s",
            "checkpoint.keep=lots",
            "operators[3].m=1",
            "source.generator.speed=2",
            "no equals sign",
            "a..b=1",
        ],
    );
    let shown: Vec<String> = found
        .iter()
        .map(|(f, l, _, m)| format!("{f} {l:?} {m}"))
        .collect();
    let all = shown.join("\n");
    for needle in [
        "checkpoint.intervl None unknown field `intervl`, expected one of `interval`, `keep`, `dir`, `endpoint_url`, `region` (set by `--set checkpoint.intervl=5s`)",
        "checkpoint.keep None invalid type: string \"lots\", expected usize (set by `--set checkpoint.keep=lots`)",
        "operators[3].m None `operators` has 1 element(s): `--set` cannot add one (in `--set operators[3].m=1`)",
        "source.generator.speed None `source.generator` is a single value, not a table (in `--set source.generator.speed=2`)",
        " None expected PATH=VALUE, as in `checkpoint.interval=5s` (in `--set no equals sign`)",
        " None `a..b` is not a field path like `checkpoint.interval` or `operators[0].window` (in `--set a..b=1`)",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert_eq!(found.len(), 6, "{all}");
    // A path that fails half-way leaves nothing behind.
    let no_ops = SMALL.split("[[operators]]").next().unwrap();
    assert_eq!(
        problems(no_ops, &[], &["operators[0].m=3", "source.generator.x.y=1"]),
        [
            (
                "operators[0].m".to_string(),
                None,
                None,
                "the job has no `operators`: `--set` cannot add list elements (in `--set operators[0].m=3`)".to_string()
            ),
            (
                "source.generator.x.y".to_string(),
                None,
                None,
                "`source.generator` is a single value, not a table (in `--set source.generator.x.y=1`)".to_string()
            ),
        ]
    );
    // A validation error of an overridden value names the override.
    let found = problems(SMALL, &[], &["checkpoint.keep=0"]);
    assert_eq!(
        found,
        [(
            "checkpoint.keep".to_string(),
            None,
            None,
            "must keep at least 1 checkpoint (set by `--set checkpoint.keep=0`)".to_string()
        )]
    );
}
