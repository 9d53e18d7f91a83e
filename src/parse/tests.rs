use super::*;
use proptest::prelude::*;

fn json_parser() -> Parser {
    Parser::new(ParserConfig {
        format: Format::Json,
        key: Some("id".into()),
        values: vec!["x".into()],
        time: Some("ts".into()),
        key_groups: 256,
        max_record_bytes: 1 << 20,
        pass_missing: false,
    })
}

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

#[test]
fn times_round_trip() {
    for ms in [0i64, 1_704_067_201_500, -86_400_000, 951_782_400_000] {
        assert_eq!(parse_time_text(&format_time(ms)), Some(ms));
    }
    assert_eq!(
        parse_time_text("2024-01-01T02:00:00+02:00"),
        Some(1_704_067_200_000)
    );
    assert_eq!(parse_time_text("2024-13-01T00:00:00Z"), None);
}

/// Cases per fuzz property: 2,000 in the regular suite; `OSPREY_FUZZ_CASES=500000 cargo test
/// --lib parse::tests::fuzz` runs the long fuzz (docs/BENCHMARKS.md says how long it ran).
fn fuzz_cases() -> u32 {
    std::env::var("OSPREY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
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
            time: None, key_groups: 8, max_record_bytes: 100, pass_missing: false,
        });
        let _ = p.set_header(header.as_bytes());
        if let Ok(Some(r)) = p.parse(row.into_bytes(), "k", Origin::default()) {
            let raw = r.raw.expect("csv rows keep an object");
            prop_assert!(serde_json::from_str::<serde_json::Value>(&raw).is_ok(), "{}", raw);
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
