use super::*;
use crate::core::time::{format_rfc3339_millis, parse_time};
use proptest::prelude::*;

fn json_parser() -> Parser {
    json_parser_in(TimeUnit::Millis)
}

fn json_parser_in(time_unit: TimeUnit) -> Parser {
    Parser::new(ParserConfig {
        format: Format::Json,
        key: Some("id".into()),
        values: vec!["x".into()],
        time: Some("ts".into()),
        time_unit,
        key_groups: 256,
        max_record_bytes: 1 << 20,
        pass_missing: false,
    })
}

/// A CSV parser under the header `header`, key `id`, value `x`, time `ts`.
fn csv_parser(header: &str, time_unit: TimeUnit) -> Parser {
    let mut p = Parser::new(ParserConfig {
        format: Format::Csv,
        key: Some("id".into()),
        values: vec!["x".into()],
        time: Some("ts".into()),
        time_unit,
        key_groups: 16,
        max_record_bytes: 1 << 16,
        pass_missing: false,
    });
    p.set_header(header.as_bytes()).unwrap();
    p
}

const UNITS: [TimeUnit; 4] = [
    TimeUnit::Seconds,
    TimeUnit::Millis,
    TimeUnit::Micros,
    TimeUnit::Nanos,
];

fn parse(p: &mut Parser, s: &str) -> Result<Option<Record>, ParseError> {
    p.parse(s.as_bytes().to_vec(), "dflt", Origin::default())
}

#[test]
fn parses_json_fields_and_keeps_raw() {
    let mut p = json_parser();
    let r = parse(
        &mut p,
        r#"{"id":"s1","x":2.5,"ts":"2024-01-01T00:00:01.5Z","other":[1,{"a":2}]}"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(&*r.key, "s1");
    assert_eq!(r.values, vec![2.5]);
    assert_eq!(r.time_ms, Some(1_704_067_201_500));
    assert!(r.raw.as_deref().unwrap().contains("other"));
    assert_eq!(r.key_group, partition::key_group(b"s1", 256));
    let r = parse(&mut p, r#"{"id":7,"x":"3","ts":1000}"#)
        .unwrap()
        .unwrap();
    assert_eq!((&*r.key, r.values[0], r.time_ms), ("7", 3.0, Some(1000)));
}

/// Issue 14.15: a bare `NaN` or `Infinity` token names the field it stood in.
#[test]
fn a_bare_nan_token_names_its_field() {
    let mut p = json_parser();
    for (input, field) in [
        (r#"{"id":"a","x":NaN,"ts":1}"#, "x"),
        (r#"{"id":"a","x":1,"other":-Infinity,"ts":1}"#, "other"),
    ] {
        let err = parse(&mut p, input).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("field `{field}` is NaN or infinite")
        );
    }
}

#[test]
fn bad_inputs_have_reasons() {
    let mut p = json_parser();
    let cases = [
        (r#"{"id":"a","x":1"#, "malformed_json"),
        (r#"[1,2]"#, "not_an_object"),
        (r#""str""#, "not_an_object"),
        (r#"{"x":1,"ts":1}"#, "missing_field"),
        (r#"{"id":"a","ts":1}"#, "missing_field"),
        (r#"{"id":"a","x":null,"ts":1}"#, "missing_field"),
        (r#"{"id":"a","x":NaN,"ts":1}"#, "non_finite"),
        (r#"{"id":"a","x":"inf","ts":1}"#, "non_finite"),
        (r#"{"id":"a","x":true,"ts":1}"#, "wrong_type"),
        (r#"{"id":[1],"x":1,"ts":1}"#, "wrong_type"),
        (r#"{"id":"a","x":1,"ts":"yesterday"}"#, "bad_time"),
        (r#"{"id":"a","x":1,"ts":1} trailing"#, "malformed_json"),
        (r#"{"id":"a","x":1e999,"ts":1}"#, "malformed_json"),
    ];
    for (input, reason) in cases {
        let err = parse(&mut p, input).unwrap_err();
        assert_eq!(err.reason(), reason, "{input}: {err}");
    }
    assert_eq!(
        p.parse(vec![0xff, 0xfe, b'{'], "k", Origin::default())
            .unwrap_err()
            .reason(),
        "invalid_utf8"
    );
    let big = format!(
        r#"{{"id":"a","x":1,"ts":1,"pad":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    assert_eq!(parse(&mut p, &big).unwrap_err().reason(), "too_large");
    assert_eq!(parse(&mut p, "   ").unwrap(), None);
}

#[test]
fn csv_rows_become_objects() {
    let mut p = Parser::new(ParserConfig {
        format: Format::Csv,
        key: Some("sensor".into()),
        values: vec!["temp".into()],
        time: Some("timestamp".into()),
        time_unit: TimeUnit::Millis,
        key_groups: 16,
        max_record_bytes: 1024,
        pass_missing: false,
    });
    assert_eq!(parse(&mut p, "a,b").unwrap_err().reason(), "malformed_csv");
    p.set_header(b"timestamp,sensor,temp,note\n").unwrap();
    let r = parse(&mut p, "2014-04-01 00:00:00,s9,71.5,\"hot, \"\"very\"\"\"")
        .unwrap()
        .unwrap();
    assert_eq!(&*r.key, "s9");
    assert_eq!(r.values, vec![71.5]);
    assert_eq!(r.time_ms, Some(1_396_310_400_000));
    let v: serde_json::Value = serde_json::from_str(r.raw.as_deref().unwrap()).unwrap();
    assert_eq!(v["temp"], 71.5);
    assert_eq!(v["note"], "hot, \"very\"");
    assert_eq!(parse(&mut p, "1,2").unwrap_err().reason(), "malformed_csv");
    assert_eq!(
        parse(&mut p, "2014-04-01 00:00:00,s9,warm,x")
            .unwrap_err()
            .reason(),
        "wrong_type"
    );
}

#[test]
fn bare_numbers_use_the_stream_key() {
    let mut p = Parser::new(ParserConfig {
        format: Format::Lines,
        key: None,
        values: vec![],
        time: None,
        time_unit: TimeUnit::Millis,
        key_groups: 16,
        max_record_bytes: 64,
        pass_missing: false,
    });
    let r = p
        .parse(b" 4.25\r\n".to_vec(), "bourke", Origin::default())
        .unwrap()
        .unwrap();
    assert_eq!((&*r.key, r.values.as_slice()), ("bourke", &[4.25][..]));
    assert_eq!(parse(&mut p, "nan").unwrap_err().reason(), "non_finite");
    assert_eq!(parse(&mut p, "-inf").unwrap_err().reason(), "non_finite");
    assert_eq!(parse(&mut p, "4,2").unwrap_err().reason(), "not_a_number");
}

/// Issue 14.1: the timestamp that panicked the source task (a non-ASCII character inside the
/// offset) is a `bad_time` naming its field, in JSON and in CSV, as text or in the key and
/// value fields; the records around it still parse.
#[test]
fn r14_1_non_ascii_offset_is_bad_time() {
    const TS: &str = "2024-01-01T00:00:00+0é00";
    for unit in UNITS {
        let mut p = json_parser_in(unit);
        let err = parse(&mut p, &format!(r#"{{"id":"a","x":1,"ts":"{TS}"}}"#)).unwrap_err();
        assert_eq!(err.reason(), "bad_time");
        assert!(
            err.to_string().starts_with("field `ts` is not a time"),
            "{err}"
        );
        let r = parse(&mut p, &format!(r#"{{"id":"{TS}","x":1,"ts":5}}"#))
            .unwrap()
            .unwrap();
        assert_eq!(&*r.key, TS);
        let err = parse(&mut p, &format!(r#"{{"id":"a","x":"{TS}","ts":5}}"#)).unwrap_err();
        assert_eq!(err.reason(), "wrong_type");
        let mut c = csv_parser("id,x,ts", unit);
        let err = parse(&mut c, &format!("a,1,{TS}")).unwrap_err();
        assert_eq!(err.reason(), "bad_time");
        assert!(
            err.to_string().starts_with("field `ts` is not a time"),
            "{err}"
        );
        let r = parse(&mut c, "a,1,5").unwrap().unwrap();
        assert_eq!(r.values, vec![1.0]);
    }
}

#[test]
fn times_round_trip() {
    let ms_unit = TimeUnit::Millis;
    for ms in [0i64, 1_704_067_201_500, -86_400_000, 951_782_400_000] {
        assert_eq!(parse_time(&format_rfc3339_millis(ms), ms_unit), Ok(ms));
    }
    assert_eq!(
        parse_time("2024-01-01T02:00:00+02:00", ms_unit),
        Ok(1_704_067_200_000)
    );
    assert!(parse_time("2024-13-01T00:00:00Z", ms_unit).is_err());
}

#[test]
fn impossible_times_are_bad_time_with_a_message() {
    let mut p = json_parser();
    for (ts, why) in [
        ("2024-02-31T00:00:00Z", "'day' for `2024-02` is invalid"),
        ("2023-02-29T12:00:00Z", "'day' for `2023-02` is invalid"),
        ("2024-01-01T24:00:00Z", "'hour'"),
    ] {
        let line = format!(r#"{{"id":"a","x":1,"ts":"{ts}"}}"#);
        let err = parse(&mut p, &line).unwrap_err();
        assert_eq!(err.reason(), "bad_time", "{ts}");
        let msg = err.to_string();
        assert!(msg.starts_with("field `ts` is not a time: "), "{msg}");
        assert!(msg.contains(why), "{msg}");
    }
    let mut c = csv_parser("id,x,ts", TimeUnit::Millis);
    let err = parse(&mut c, "a,1,2024-02-30 00:00:00").unwrap_err();
    assert_eq!(err.reason(), "bad_time");
    assert!(err.to_string().contains("'day' for `2024-02`"), "{err}");
    for ts in ["null", "true", "[1]", "{}", "18446744073709551615", "1e300"] {
        let line = format!(r#"{{"id":"a","x":1,"ts":{ts}}}"#);
        assert_eq!(
            parse(&mut p, &line).unwrap_err().reason(),
            "bad_time",
            "{ts}"
        );
    }
}

#[test]
fn numeric_times_follow_the_unit() {
    let day = 1_704_067_200_000;
    // (JSON `ts`, CSV cell, unit, time_ms)
    let cases = [
        ("1704067200000", "1704067200000", TimeUnit::Millis, day),
        ("1704067200000.9", "1704067200000.9", TimeUnit::Millis, day),
        ("1704067200", "1704067200", TimeUnit::Seconds, day),
        (
            "1704067200.25",
            "1704067200.25",
            TimeUnit::Seconds,
            day + 250,
        ),
        (
            "1704067200250000",
            "1704067200250000",
            TimeUnit::Micros,
            day + 250,
        ),
        (
            "1704067200250000000",
            "1704067200250000000",
            TimeUnit::Nanos,
            day + 250,
        ),
        (r#""1704067200""#, "\"1704067200\"", TimeUnit::Seconds, day),
        (
            r#""2024-01-01T00:00:00Z""#,
            "2024-01-01T00:00:00Z",
            TimeUnit::Seconds,
            day,
        ),
    ];
    for (json, cell, unit, want) in cases {
        let mut p = json_parser_in(unit);
        let line = format!(r#"{{"id":"a","x":1,"ts":{json}}}"#);
        let r = parse(&mut p, &line).unwrap().unwrap();
        assert_eq!(r.time_ms, Some(want), "{json} in {unit:?}");
        let mut c = csv_parser("id,x,ts", unit);
        let r = parse(&mut c, &format!("a,1,{cell}")).unwrap().unwrap();
        assert_eq!(r.time_ms, Some(want), "{cell} in {unit:?}");
    }
    let mut p = json_parser_in(TimeUnit::Seconds);
    let err = parse(&mut p, r#"{"id":"a","x":1,"ts":9223372036854775807}"#).unwrap_err();
    assert_eq!(err.reason(), "bad_time");
    assert!(err.to_string().contains("time_unit = \"s\""), "{err}");
}

#[test]
fn csv_quoting_bom_and_crlf() {
    let mut p = csv_parser("\u{feff}id,x,ts,note\r\n", TimeUnit::Millis);
    let r = parse(&mut p, r#""a,b",1.5,7,"say ""hi"", then go""#)
        .unwrap()
        .unwrap();
    assert_eq!(&*r.key, "a,b");
    assert_eq!((r.values[0], r.time_ms), (1.5, Some(7)));
    let v: serde_json::Value = serde_json::from_str(r.raw.as_deref().unwrap()).unwrap();
    assert_eq!(v["note"], r#"say "hi", then go"#);
    assert_eq!(
        v["id"], "a,b",
        "the BOM is not part of the first column's name"
    );
    let r = parse(&mut p, "k,2,8,x\r").unwrap().unwrap();
    assert_eq!(r.values, vec![2.0]);
    // A quoted line break cannot arrive whole from a line source: both halves are refused.
    let first = parse(&mut p, r#"k,2,8,"two"#).unwrap_err();
    assert_eq!(first, ParseError::CsvOpenQuote);
    assert_eq!(first.reason(), "malformed_csv");
    let second = parse(&mut p, r#"lines""#).unwrap_err();
    assert_eq!(second.reason(), "malformed_csv");
    assert_eq!(
        parse(&mut p, "k,2,8,x\ry,3,9,z").unwrap_err(),
        ParseError::CsvTwoRows
    );
    // A quote inside an unquoted cell is a character, as before.
    let r = parse(&mut p, r#"k,2,8,5" pipe"#).unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(r.raw.as_deref().unwrap()).unwrap();
    assert_eq!(v["note"], r#"5" pipe"#);
}

#[test]
fn a_failed_header_is_not_replaced_by_the_previous_one() {
    let mut p = csv_parser("id,x,ts", TimeUnit::Millis);
    assert!(p.set_header(b"id,x,\"ts").is_err());
    assert_eq!(parse(&mut p, "a,1,2").unwrap_err(), ParseError::CsvNoHeader);
}

#[test]
fn csv_cells_follow_the_one_number_rule() {
    // The cell sits mid-row: the source trims the ends of a line.
    let mut p = csv_parser("id,c,x,ts", TimeUnit::Millis);
    for &(cell, want) in csv::CELL_CASES {
        let cell_in_row = if cell.contains(',') {
            format!("\"{cell}\"")
        } else {
            cell.into()
        };
        let r = parse(&mut p, &format!("k,{cell_in_row},1,1"))
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(r.raw.as_deref().unwrap()).unwrap();
        assert_eq!(v["c"], csv::expected_cell(cell, want), "cell {cell:?}");
    }
}

/// Cases per fuzz property: 2,000 in the regular suite; `OSPREY_FUZZ_CASES=500000 cargo test
/// --lib parse::tests::fuzz` runs the long fuzz (docs/BENCHMARKS.md says how long it ran).
fn fuzz_cases() -> u32 {
    std::env::var("OSPREY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Arbitrary Unicode, or text that is nearly a number or a time, so that the fuzz reaches the
/// paths past the first field too.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "-?[0-9]{1,20}(\\.[0-9]{0,4})?([eE][+-]?[0-9]{1,3})?",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[T t][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{0,12})?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?",
        "\\PC{0,3}2024-02-2[0-9]T[0-9]{2}:00:00\\PC{0,3}",
        crate::core::time::tests::spliced_time(),
    ]
}

/// A parser of `format` whose key, value and time fields have the given names.
fn named_parser(format: Format, names: &[String; 3], unit: TimeUnit) -> Parser {
    Parser::new(ParserConfig {
        format,
        key: Some(names[0].clone()),
        values: vec![names[1].clone()],
        time: Some(names[2].clone()),
        time_unit: unit,
        key_groups: 64,
        max_record_bytes: 1 << 16,
        pass_missing: false,
    })
}

/// A CSV cell that reads back as exactly `text`: quoted, quotes doubled.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// What a record decoded from (key, value text, time text) must hold, field by field: the
/// key verbatim, the value as Rust reads the trimmed text, the time as [`parse_time`] reads
/// it. `Err` when some field is not decodable; the parser must then fail too.
fn expected_fields(key: &str, x: &str, ts: &str, unit: TimeUnit) -> Result<(String, f64, i64), ()> {
    let v: f64 = x.trim().parse().map_err(|_| ())?;
    let t = parse_time(ts, unit).map_err(|_| ())?;
    if v.is_finite() {
        Ok((key.to_string(), v, t))
    } else {
        Err(())
    }
}

proptest! {
    // The parser fuzz: arbitrary bytes and mangled JSON never panic, and every input is either
    // a record or an error with a reason.
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]
    #[test]
    fn fuzz_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut p = json_parser();
        match p.parse(data, "k", Origin::default()) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.reason().is_empty()),
        }
    }

    #[test]
    fn fuzz_mangled_json(
        id in "[a-z0-9]{0,4}",
        x in any::<f64>(),
        cut in 0usize..64,
        junk in "[\\[\\]{}\":,0-9a-zA-Z .-]{0,12}",
    ) {
        let full = format!(r#"{{"id":"{id}","x":{x},"ts":{cut}}}"#);
        let mangled = format!("{}{junk}", &full[..cut.min(full.len())]);
        for input in [full, mangled] {
            let mut p = json_parser();
            let _ = p.parse(input.into_bytes(), "k", Origin::default());
        }
    }

    #[test]
    fn fuzz_csv_lines(header in "[a-z,\"]{0,20}", row in "[a-z0-9,\". -]{0,40}") {
        let mut p = Parser::new(ParserConfig {
            format: Format::Csv, key: Some("a".into()), values: vec!["b".into()],
            time: None, time_unit: TimeUnit::Millis, key_groups: 8, max_record_bytes: 100,
            pass_missing: false,
        });
        let _ = p.set_header(header.as_bytes());
        if let Ok(Some(r)) = p.parse(row.into_bytes(), "k", Origin::default()) {
            let raw = r.raw.expect("csv rows keep an object");
            prop_assert!(serde_json::from_str::<serde_json::Value>(&raw).is_ok(), "{}", raw);
        }
    }

    /// Arbitrary Unicode in the key, the value and the time, as well-formed JSON and spliced
    /// in raw (unescaped), in every time unit.
    #[test]
    fn fuzz_unicode_json(
        key in cell(),
        x in cell(),
        ts in cell(),
        unit in prop::sample::select(UNITS.to_vec()),
    ) {
        let mut p = json_parser_in(unit);
        let obj = serde_json::json!({"id": key, "x": x, "ts": ts});
        let spliced = format!(r#"{{"id":"{key}","x":{x},"ts":"{ts}"}}"#);
        let bare = format!(r#"{{"id":{key},"x":"{x}","ts":{ts}}}"#);
        for input in [obj.to_string(), spliced, bare] {
            match p.parse(input.into_bytes(), "k", Origin::default()) {
                Ok(_) => {}
                Err(e) => prop_assert!(!e.reason().is_empty() && !e.to_string().is_empty()),
            }
        }
    }

    /// Arbitrary Unicode cells, quoted (with `""` escapes) or bare, under a Unicode header:
    /// a record whose `raw` is a JSON object, or an error with a reason.
    #[test]
    fn fuzz_unicode_csv(
        cells in proptest::collection::vec((cell(), any::<bool>()), 3),
        extra in any::<String>(),
        unit in prop::sample::select(UNITS.to_vec()),
    ) {
        let mut p = csv_parser("id,x,ts", unit);
        // A header that fails (an open quote) clears it: the rows then fail too.
        let _ = p.set_header(format!("id,x,ts,{}", extra.replace('\n', " ")).as_bytes());
        let row: Vec<String> = cells
            .iter()
            .map(|(c, quoted)| {
                if *quoted {
                    format!("\"{}\"", c.replace('"', "\"\""))
                } else {
                    c.clone()
                }
            })
            .collect();
        let row = format!("{},x", row.join(","));
        for line in row.split('\n') {
            match p.parse(line.as_bytes().to_vec(), "k", Origin::default()) {
                Ok(Some(r)) => {
                    let raw = r.raw.expect("csv rows keep an object");
                    let v = serde_json::from_str::<serde_json::Value>(&raw);
                    prop_assert!(v.is_ok_and(|v| v.is_object()), "{}", raw);
                }
                Ok(None) => {}
                Err(e) => prop_assert!(!e.reason().is_empty() && !e.to_string().is_empty()),
            }
        }
    }

    /// Issue 14.1: arbitrary Unicode in the configured field names as well as in the key,
    /// value and time, JSON and CSV: the record holds exactly what each field decodes to on
    /// its own, or the input fails with a reason; never a panic.
    #[test]
    fn fuzz_unicode_field_names(
        names in [any::<String>(), any::<String>(), any::<String>()],
        key in cell(),
        x in cell(),
        ts in cell(),
        unit in prop::sample::select(UNITS.to_vec()),
    ) {
        // One line per record: a line source never hands the parser a line break.
        let names = names.map(|n| n.replace(['\n', '\r'], " "));
        let (key, x, ts) = (key.replace('\n', " "), x.replace('\n', " "), ts.replace('\n', " "));
        prop_assume!(names[0] != names[1] && names[1] != names[2] && names[0] != names[2]);
        let want = expected_fields(&key, &x, &ts, unit);
        let mut map = serde_json::Map::new();
        for (name, value) in names.iter().zip([&key, &x, &ts]) {
            map.insert(name.clone(), serde_json::Value::String(value.clone()));
        }
        let json = serde_json::Value::Object(map).to_string();
        let mut j = named_parser(Format::Json, &names, unit);
        let mut c = named_parser(Format::Csv, &names, unit);
        let header = names.iter().map(|n| quoted(n)).collect::<Vec<_>>().join(",");
        let row = [&key, &x, &ts].map(|v| quoted(v)).join(",");
        let csv_header = c.set_header(header.as_bytes());
        prop_assert!(csv_header.is_ok(), "{header}: {csv_header:?}");
        for (format, got) in [
            ("json", j.parse(json.clone().into_bytes(), "k", Origin::default())),
            ("csv", c.parse(row.clone().into_bytes(), "k", Origin::default())),
        ] {
            match (got, &want) {
                (Ok(Some(r)), Ok((k, v, t))) => {
                    prop_assert_eq!(&*r.key, k.as_str(), "{}", format);
                    prop_assert_eq!(r.values[0], *v, "{}", format);
                    prop_assert_eq!(r.time_ms, Some(*t), "{}", format);
                }
                (Err(e), Err(())) => {
                    prop_assert!(!e.reason().is_empty() && !e.to_string().is_empty());
                }
                (got, want) => prop_assert!(false, "{format}: {got:?}, want {want:?}: {json}"),
            }
        }
    }

    #[test]
    fn good_records_round_trip(id in "[a-zA-Z0-9_-]{1,12}", x in -1e12f64..1e12) {
        let mut p = json_parser();
        let line = format!(r#"{{"id":"{id}","x":{x},"ts":5}}"#);
        let r = p.parse(line.into_bytes(), "k", Origin::default()).unwrap().unwrap();
        prop_assert_eq!(&*r.key, id.as_str());
        prop_assert_eq!(r.values[0], x);
    }
}
