use super::*;

#[test]
fn formats_and_splits_dates() {
    assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        format_rfc3339_millis(1_709_210_096_789),
        "2024-02-29T12:34:56.789Z"
    );
    assert_eq!(format_rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(utc_date_hour(1_709_210_096_789), (2024, 2, 29, 12));
}

#[test]
fn impossible_dates_are_none() {
    assert_eq!(millis_from_utc(2024, 2, 31, 0, 0, 0, 0), None);
    assert_eq!(millis_from_utc(2023, 2, 29, 0, 0, 0, 0), None);
    assert_eq!(
        millis_from_utc(2024, 2, 29, 12, 34, 56, 789),
        Some(1_709_210_096_789)
    );
}

#[test]
fn agrees_with_a_naive_day_count_over_centuries() {
    // Days from 1600-03-01 to 2400-02-28 stepping a day at a time.
    let mut ms = millis_from_utc(1600, 3, 1, 0, 0, 0, 0).unwrap();
    let end = millis_from_utc(2400, 2, 28, 0, 0, 0, 0).unwrap();
    let (mut y, mut m, mut d) = (1600i16, 3i8, 1i8);
    while ms <= end {
        let (yy, mm, dd, _) = utc_date_hour(ms);
        assert_eq!((yy, mm, dd), (y, m, d));
        d += 1;
        if i64::from(d) > days_in_month(y.into(), m.into()) {
            d = 1;
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
        }
        ms += 86_400_000;
    }
}

/// The hand-written parser this module replaced (from `src/parse.rs` before jiff), kept as
/// the reference: every input it read correctly must keep its time. It accepted impossible
/// days (February 31 became March 2) and offsets like `+99:00`, and panicked on some
/// non-ASCII text, so it is only asked about well-formed dates.
fn old_parse(s: &str) -> Option<i64> {
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded: String = frac[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "" | "Z" | "z" => 0,
        r if (r.starts_with('+') || r.starts_with('-')) && r.len() == 6 && &r[3..4] == ":" => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (r[1..3].parse::<i64>().ok()? * 60 + r[4..6].parse::<i64>().ok()?)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + millis)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    DAYS[(m - 1) as usize] + i64::from(m == 2 && leap)
}

/// A date-time in the old parser's shape, with every part drawn at random.
#[derive(Debug, Clone)]
struct OldShape {
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    sep: char,
    frac: String,
    /// `""`, `Z`, `z` or `±HH:MM`.
    offset: String,
}

impl OldShape {
    fn text(&self) -> String {
        let OldShape {
            y,
            mo,
            d,
            h,
            mi,
            s,
            sep,
            frac,
            offset,
        } = self;
        format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{offset}")
    }
}

fn old_shape() -> impl Strategy<Value = OldShape> {
    let offset = prop_oneof![
        Just(String::new()),
        Just("Z".to_string()),
        Just("z".to_string()),
        (any::<bool>(), 0i64..24, 0i64..60)
            .prop_map(|(neg, h, m)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
    ];
    let frac = prop_oneof![Just(String::new()), "\\.[0-9]{1,14}"];
    (0i64..=9999, 1i64..=12, 0i64..24, 0i64..60, 0i64..=60)
        .prop_flat_map(move |(y, mo, h, mi, s)| {
            let days = 1..=days_in_month(y, mo);
            (
                Just((y, mo, h, mi, s)),
                days,
                prop::sample::select(vec!['T', 't', ' ']),
            )
        })
        .prop_flat_map(move |(t, d, sep)| (Just((t, d, sep)), frac.clone(), offset.clone()))
        .prop_map(|(((y, mo, h, mi, s), d, sep), frac, offset)| OldShape {
            y,
            mo,
            d,
            h,
            mi,
            s,
            sep,
            frac,
            offset,
        })
}

use proptest::prelude::*;

/// `text` with `c` put at character position `at` (modulo the length), replacing the
/// character there or inserted before it: the near misses that a check indexing text by byte
/// would slice inside (issue 14.1). Shared with the parser's fuzz.
pub(crate) fn splice_char(text: &str, c: char, at: prop::sample::Index, replace: bool) -> String {
    let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    if starts.is_empty() {
        return c.to_string();
    }
    let i = starts[at.index(starts.len())];
    let rest = if replace {
        &text[i + text[i..].chars().next().map_or(0, char::len_utf8)..]
    } else {
        &text[i..]
    };
    format!("{}{c}{rest}", &text[..i])
}

/// A well-formed time of the old parser's shape with one arbitrary character spliced in.
pub(crate) fn spliced_time() -> impl Strategy<Value = String> {
    (
        old_shape(),
        any::<char>(),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(shape, c, at, replace)| splice_char(&shape.text(), c, at, replace))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Everything the old parser read (real dates) reads to the same millisecond; 9999-12-31
    /// late with a negative offset is past jiff's range and the one exception.
    #[test]
    fn agrees_with_the_old_parser(shape in old_shape()) {
        let text = shape.text();
        let old = old_parse(&text).expect("the old parser read this shape");
        match parse_time(&text, TimeUnit::Millis) {
            Ok(new) => prop_assert_eq!(new, old, "{}", text),
            Err(e) => prop_assert!(shape.y == 9999 && shape.mo == 12 && shape.d >= 30, "{text}: {e}"),
        }
    }

    /// Integers mean the same in every unit as before in milliseconds, scaled.
    #[test]
    fn integers_scale_by_unit(v in -1_000_000_000_000i64..1_000_000_000_000) {
        prop_assert_eq!(parse_time(&v.to_string(), TimeUnit::Millis), Ok(v));
        prop_assert_eq!(old_parse(&v.to_string()), Some(v));
        prop_assert_eq!(parse_time(&v.to_string(), TimeUnit::Seconds), Ok(v * 1000));
        prop_assert_eq!(parse_time(&v.to_string(), TimeUnit::Micros), Ok(v.div_euclid(1000)));
        prop_assert_eq!(parse_time(&v.to_string(), TimeUnit::Nanos), Ok(v.div_euclid(1_000_000)));
    }

    /// Any text, any unit: a time or an error, never a panic.
    #[test]
    fn any_text_is_a_time_or_an_error(
        s in any::<String>(),
        near in "[0-9]{4}-[0-9]{2}-[0-9]{2}[T t][0-9]{2}:[0-9]{2}:[0-9]{2}\\PC{0,12}",
        spliced in spliced_time(),
        unit in prop::sample::select(vec![
            TimeUnit::Seconds, TimeUnit::Millis, TimeUnit::Micros, TimeUnit::Nanos,
        ]),
    ) {
        for text in [&s, &near, &spliced] {
            if let Err(e) = parse_time(text, unit) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

/// Days the old parser rolled into the next month are rejected, naming the day.
#[test]
fn impossible_days_are_rejected() {
    for y in [1900, 2000, 2023, 2024, 2100] {
        for mo in 1..=12 {
            for d in days_in_month(y, mo) + 1..=31 {
                let text = format!("{y:04}-{mo:02}-{d:02}T00:00:00Z");
                assert!(old_parse(&text).is_some(), "{text}");
                let err = parse_time(&text, TimeUnit::Millis).unwrap_err().to_string();
                assert!(err.contains("'day'"), "{text}: {err}");
            }
        }
    }
}

#[test]
fn accepted_forms() {
    let day = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    let ok = |s: &str| parse_time(s, TimeUnit::Millis).unwrap_or_else(|e| panic!("{s}: {e}"));
    for (text, ms) in [
        ("2024-01-01T00:00:00Z", day),
        ("2024-01-01t00:00:00z", day),
        ("2024-01-01 00:00:00", day),
        (" 2024-01-01T00:00:00Z\n", day),
        ("2024-01-01T02:00:00+02:00", day),
        ("2024-01-01T02:00:00+0200", day),
        ("2024-01-01T02:00:00+02", day),
        ("2023-12-31T22:00:00-02:00", day),
        ("2024-01-01T00:00:00-00:00", day),
        ("2024-01-01", day),
        ("2024-01-01T00", day),
        ("2024-01-01T00:00", day),
        ("20240101T000000Z", day),
        ("+002024-01-01T00:00:00Z", day),
        ("2024-01-01T00:00:00.25Z", day + 250),
        ("2024-01-01T00:00:00,25Z", day + 250),
        ("2024-01-01T00:00:00.999999Z", day + 999),
        ("2024-01-01T00:00:00.1239999999999Z", day + 123),
        ("2023-12-31T23:59:60Z", day),
        ("2023-12-31T23:59:60.5Z", day + 500),
        ("1969-12-31T23:59:59.9995Z", -1),
        ("2024-02-29T12:34:56.789Z", 1_709_210_096_789),
        ("1704067200000", day),
        ("+1704067200000", day),
        ("-86400000", -86_400_000),
    ] {
        assert_eq!(ok(text), ms, "{text}");
    }
    let s = |t: &str| parse_time(t, TimeUnit::Seconds);
    assert_eq!(s("1704067200"), Ok(day));
    assert_eq!(s("1704067200.123"), Ok(day + 123));
    assert_eq!(s("1704067200.5"), Ok(day + 500));
    assert_eq!(s("-0.5"), Ok(-500));
    assert_eq!(
        parse_time("1704067200123456", TimeUnit::Micros),
        Ok(day + 123)
    );
    assert_eq!(
        parse_time("1704067200123456789", TimeUnit::Nanos),
        Ok(day + 123)
    );
    assert_eq!(parse_time("-1", TimeUnit::Nanos), Ok(-1));
    assert_eq!(parse_time("1000.9", TimeUnit::Millis), Ok(1000));
    // Text times ignore the unit.
    assert_eq!(s("2024-01-01T00:00:00Z"), Ok(day));
}

#[test]
fn rejected_forms_say_why() {
    let err = |s: &str, unit| parse_time(s, unit).unwrap_err().to_string();
    let ms = TimeUnit::Millis;
    for (text, why) in [
        (
            "2024-02-31T00:00:00Z",
            "'day' for `2024-02` is invalid, must be in range `1..=29`",
        ),
        (
            "2023-02-29T00:00:00Z",
            "'day' for `2023-02` is invalid, must be in range `1..=28`",
        ),
        ("2024-04-31", "'day' for `2024-04` is invalid"),
        (
            "2024-01-01T24:00:00Z",
            "'hour' is not in the required range of 0..=23",
        ),
        ("2024-01-01T00:60:00Z", "minute"),
        ("2024-13-01T00:00:00Z", "'month'"),
        ("2024-01-01T00:00:00+99:00", "offset"),
        ("2024-01-01T00:00:00Z trailing", "unparsed input"),
        (
            "yesterday",
            "not an epoch number or RFC 3339 / ISO 8601 time",
        ),
        ("", "not an epoch number or RFC 3339 / ISO 8601 time"),
        ("NaN", "not an epoch number"),
        ("inf", "not an epoch number"),
        ("2024-01-01T00:00:00+01:00[Europe/Paris]", "annotations"),
        ("9999-12-31T23:59:59Z", "outside the supported range"),
    ] {
        let e = err(text, ms);
        assert!(e.contains(why), "{text}: {e}");
    }
    assert!(err("9223372036854775807", TimeUnit::Seconds).contains("time_unit = \"s\""));
    assert!(err("1e300", ms).contains("out of range"));
    // The old parser sliced inside this `é` and panicked.
    assert!(parse_time("2024-01-01T00:00:00+aé00", ms).is_err());
}

/// Issue 14.1: a non-ASCII character inside the offset (the exact input that panicked the
/// source task) is an error naming the text, not a panic.
#[test]
fn r14_1_non_ascii_offset_is_an_error() {
    for unit in [TimeUnit::Seconds, TimeUnit::Millis] {
        let err = parse_time("2024-01-01T00:00:00+0é00", unit).unwrap_err();
        assert!(matches!(err, TimeError::Text(_)), "{err:?}");
    }
}

/// Issue 14.1: every character position of well-formed timestamps, replaced by or followed by
/// characters of each UTF-8 length, reads to a time or an error, never a panic.
#[test]
fn r14_1_non_ascii_at_every_position() {
    for base in [
        "2024-01-01T00:00:00+01:00",
        "2024-01-01T00:00:00.1234567890123Z",
        "2023-12-31T23:59:60,5-0200",
        "20240101T000000Z",
        "1704067200.5",
    ] {
        for c in ['é', '€', '𝄞', '\u{feff}', '\u{0}'] {
            for (i, _) in base.char_indices() {
                let replaced = format!("{}{c}{}", &base[..i], &base[i + 1..]);
                let inserted = format!("{}{c}{}", &base[..i], &base[i..]);
                for text in [replaced, inserted] {
                    for unit in [TimeUnit::Seconds, TimeUnit::Nanos] {
                        let _ = parse_time(&text, unit);
                    }
                }
            }
        }
    }
}

#[test]
fn float_units() {
    assert_eq!(
        TimeUnit::Millis.millis_from_float(-1.5),
        Some(-1),
        "truncated, as before"
    );
    assert_eq!(TimeUnit::Seconds.millis_from_float(1.123), Some(1123));
    assert_eq!(TimeUnit::Seconds.millis_from_float(-1.0006), Some(-1001));
    assert_eq!(TimeUnit::Micros.millis_from_float(1999.0), Some(1));
    assert_eq!(TimeUnit::Nanos.millis_from_float(-1.0), Some(-1));
    assert_eq!(TimeUnit::Millis.millis_from_float(f64::NAN), None);
    assert_eq!(TimeUnit::Millis.millis_from_float(9.3e18), None);
    assert_eq!(TimeUnit::Seconds.millis_from_int(i64::MAX), None);
}

#[test]
fn time_unit_config_spelling() {
    #[derive(serde::Deserialize)]
    struct C {
        u: TimeUnit,
    }
    for unit in [
        TimeUnit::Seconds,
        TimeUnit::Millis,
        TimeUnit::Micros,
        TimeUnit::Nanos,
    ] {
        let c: C = toml::from_str(&format!("u = \"{}\"", unit.as_str())).unwrap();
        assert_eq!(c.u, unit);
    }
    assert!(toml::from_str::<C>("u = \"seconds\"").is_err());
}

#[test]
fn record_time_unit_needs_a_time_field() {
    use crate::core::RecordConfig;
    let record = |text: &str| toml::from_str::<RecordConfig>(text).unwrap();
    let r = record("time = \"ts\"\ntime_unit = \"s\"");
    assert_eq!((r.time_unit(), r.validate()), (TimeUnit::Seconds, vec![]));
    assert_eq!(record("time = \"ts\"").time_unit(), TimeUnit::Millis);
    let errors = record("time_unit = \"us\"").validate();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "record.time_unit");
    assert!(toml::from_str::<RecordConfig>("time = \"ts\"\ntime_unit = \"sec\"").is_err());
}
