//! Turning raw input (a line, a Kinesis record) into a [`Record`].
//!
//! Three formats: JSON objects, CSV rows under a header, and bare numbers one per line (the
//! UCR/DAMP files). Only the configured key, value and time fields are decoded; everything
//! else in a JSON object is skipped without allocation and kept verbatim in `raw`. Every
//! failure is a [`ParseError`] with a stable reason code: the caller dead-letters the input
//! and goes on.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::event::{Origin, Record};
use crate::partition;

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line or per stream record.
    #[default]
    Json,
    /// Comma-separated values; the first line of each file is the header.
    Csv,
    /// One bare number per line; the key is the stream's name (a file's stem).
    Lines,
}

/// Why an input could not be turned into a record.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseError {
    /// Not valid JSON.
    MalformedJson(String),
    /// Valid JSON, but not an object.
    NotAnObject,
    /// A configured field is absent (or null).
    MissingField(String),
    /// A value field is NaN or infinite.
    NonFinite(String),
    /// A field has the wrong type.
    WrongType(String, &'static str),
    /// The time field is neither RFC 3339 text nor epoch milliseconds.
    BadTime(String),
    /// Longer than the configured limit.
    TooLarge(usize),
    /// Not UTF-8 text.
    InvalidUtf8,
    /// A CSV row with a different number of columns than its header.
    CsvColumns {
        /// Columns in the header.
        expected: usize,
        /// Columns in the row.
        found: usize,
    },
    /// A CSV row arrived before any header.
    CsvNoHeader,
    /// A bare-number line that is not a number.
    NotANumber,
}

impl ParseError {
    /// Stable reason code, used as a metric label and in dead-letter records.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::MalformedJson(_) => "malformed_json",
            ParseError::NotAnObject => "not_an_object",
            ParseError::MissingField(_) => "missing_field",
            ParseError::NonFinite(_) => "non_finite",
            ParseError::WrongType(..) => "wrong_type",
            ParseError::BadTime(_) => "bad_time",
            ParseError::TooLarge(_) => "too_large",
            ParseError::InvalidUtf8 => "invalid_utf8",
            ParseError::CsvColumns { .. } | ParseError::CsvNoHeader => "malformed_csv",
            ParseError::NotANumber => "not_a_number",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::MalformedJson(e) => write!(f, "malformed JSON: {e}"),
            ParseError::NotAnObject => write!(f, "JSON value is not an object"),
            ParseError::MissingField(n) => write!(f, "missing field `{n}`"),
            ParseError::NonFinite(n) => write!(f, "field `{n}` is NaN or infinite"),
            ParseError::WrongType(n, want) => write!(f, "field `{n}` is not {want}"),
            ParseError::BadTime(n) => {
                write!(
                    f,
                    "field `{n}` is neither RFC 3339 time nor epoch milliseconds"
                )
            }
            ParseError::TooLarge(n) => write!(f, "record of {n} bytes is over the size limit"),
            ParseError::InvalidUtf8 => write!(f, "input is not UTF-8 text"),
            ParseError::CsvColumns { expected, found } => {
                write!(f, "CSV row has {found} columns, header has {expected}")
            }
            ParseError::CsvNoHeader => write!(f, "CSV row before any header"),
            ParseError::NotANumber => write!(f, "line is not a number"),
        }
    }
}

impl std::error::Error for ParseError {}

/// What to extract from each input.
#[derive(Debug, Clone)]
pub struct ParserConfig {
    /// Input format.
    pub format: Format,
    /// Key field; `None` means the stream's default key.
    pub key: Option<String>,
    /// Value fields, in order.
    pub values: Vec<String>,
    /// Event-time field.
    pub time: Option<String>,
    /// Key groups of the job (see [`crate::partition`]).
    pub key_groups: u16,
    /// Largest accepted input in bytes.
    pub max_record_bytes: usize,
    /// Hand absent, null or non-finite values on as NaN instead of failing.
    pub pass_missing: bool,
}

/// A stateful parser: remembers the CSV header and caches key hashes.
pub struct Parser {
    cfg: ParserConfig,
    header: Option<Vec<String>>,
    /// Keys repeat; hashing each one with MD5 per record would cost more than the parse.
    keys: HashMap<Box<str>, (Arc<str>, u16)>,
}

const KEY_CACHE_LIMIT: usize = 1 << 18;

impl Parser {
    /// A parser for one source.
    pub fn new(cfg: ParserConfig) -> Self {
        Parser {
            cfg,
            header: None,
            keys: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ParserConfig {
        &self.cfg
    }

    /// Sets the CSV header from a header line.
    pub fn set_header(&mut self, line: &[u8]) -> Result<(), ParseError> {
        let text = std::str::from_utf8(line).map_err(|_| ParseError::InvalidUtf8)?;
        self.header = Some(split_csv(text.trim_end_matches(['\r', '\n'])));
        Ok(())
    }

    /// Interns a key and computes its key group.
    pub fn key(&mut self, key: &str) -> (Arc<str>, u16) {
        if let Some((k, g)) = self.keys.get(key) {
            return (Arc::clone(k), *g);
        }
        if self.keys.len() >= KEY_CACHE_LIMIT {
            self.keys.clear();
        }
        let arc: Arc<str> = Arc::from(key);
        let g = partition::key_group(key.as_bytes(), self.cfg.key_groups);
        self.keys.insert(key.into(), (Arc::clone(&arc), g));
        (arc, g)
    }

    /// Parses one input. `default_key` is used when the job names no key field (or for
    /// bare numbers). Blank input yields `Ok(None)`.
    pub fn parse(
        &mut self,
        data: Vec<u8>,
        default_key: &str,
        origin: Origin,
    ) -> Result<Option<Record>, ParseError> {
        self.parse_or_return(data, default_key, origin)
            .map_err(|(e, _)| e)
    }

    /// Like [`Parser::parse`], but a failure hands the input back for the dead-letter record.
    pub fn parse_or_return(
        &mut self,
        data: Vec<u8>,
        default_key: &str,
        origin: Origin,
    ) -> Result<Option<Record>, (ParseError, Vec<u8>)> {
        if data.len() > self.cfg.max_record_bytes {
            return Err((ParseError::TooLarge(data.len()), data));
        }
        let text =
            String::from_utf8(data).map_err(|e| (ParseError::InvalidUtf8, e.into_bytes()))?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let parsed = match self.cfg.format {
            Format::Json => self.parse_json(trimmed, default_key),
            Format::Csv => self.parse_csv(trimmed, default_key),
            Format::Lines => self.parse_number(trimmed, default_key),
        };
        let mut record = match parsed {
            Ok(r) => r,
            Err(e) => return Err((e, text.into_bytes())),
        };
        if self.cfg.format == Format::Json {
            // Keep the original text; `trim` may have cut whitespace around it.
            record.raw = Some(if trimmed.len() == text.len() {
                text.into_boxed_str()
            } else {
                trimmed.into()
            });
        }
        record.origin = origin;
        Ok(Some(record))
    }

    fn parse_number(&mut self, text: &str, default_key: &str) -> Result<Record, ParseError> {
        let v: f64 = text.parse().map_err(|_| ParseError::NotANumber)?;
        if !v.is_finite() && !self.cfg.pass_missing {
            return Err(ParseError::NonFinite("value".into()));
        }
        let (key, group) = self.key(default_key);
        let mut r = Record::new(key, vec![v]);
        r.key_group = group;
        Ok(r)
    }

    fn parse_json(&mut self, text: &str, default_key: &str) -> Result<Record, ParseError> {
        let mut found = Found::new(self.cfg.values.len());
        let seed = ObjectSeed {
            cfg: &self.cfg,
            found: &mut found,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let res = seed.deserialize(&mut de).and_then(|()| de.end());
        if let Err(e) = res {
            if let Some(err) = found.error.take() {
                return Err(err);
            }
            if found.not_object {
                return Err(ParseError::NotAnObject);
            }
            // Python's json.dumps writes NaN and Infinity as bare tokens, which are not JSON.
            if text.contains("NaN") || text.contains("Infinity") {
                return Err(ParseError::NonFinite("(some field)".into()));
            }
            return Err(ParseError::MalformedJson(e.to_string()));
        }
        self.finish(found, default_key)
    }

    fn finish(&mut self, found: Found<'_>, default_key: &str) -> Result<Record, ParseError> {
        let key_text;
        let key: &str = match (&self.cfg.key, found.key) {
            (None, _) => default_key,
            (Some(_), Some(k)) => {
                key_text = k;
                &key_text
            }
            (Some(name), None) => return Err(ParseError::MissingField(name.clone())),
        };
        let mut values = Vec::with_capacity(found.values.len());
        for (v, name) in found.values.into_iter().zip(&self.cfg.values) {
            match v {
                Some(v) if v.is_finite() => values.push(v),
                _ if self.cfg.pass_missing => values.push(f64::NAN),
                Some(_) => return Err(ParseError::NonFinite(name.clone())),
                None => return Err(ParseError::MissingField(name.clone())),
            }
        }
        let time_ms = match (&self.cfg.time, found.time) {
            (None, _) => None,
            (Some(_), Some(t)) => Some(t),
            (Some(name), None) => return Err(ParseError::MissingField(name.clone())),
        };
        let (key, group) = self.key(key);
        let mut r = Record::new(key, values);
        r.key_group = group;
        r.time_ms = time_ms;
        Ok(r)
    }

    fn parse_csv(&mut self, text: &str, default_key: &str) -> Result<Record, ParseError> {
        let header = self.header.as_ref().ok_or(ParseError::CsvNoHeader)?;
        let cols = split_csv(text);
        if cols.len() != header.len() {
            return Err(ParseError::CsvColumns {
                expected: header.len(),
                found: cols.len(),
            });
        }
        let mut found = Found::new(self.cfg.values.len());
        let mut raw = String::with_capacity(text.len() + 8 * cols.len());
        raw.push('{');
        for (i, (name, col)) in header.iter().zip(&cols).enumerate() {
            if i > 0 {
                raw.push(',');
            }
            crate::event::write_json_str(&mut raw, name);
            raw.push(':');
            let num = col.trim().parse::<f64>().ok().filter(|v| v.is_finite());
            match num {
                Some(_) if looks_numeric(col) => raw.push_str(col.trim()),
                _ => crate::event::write_json_str(&mut raw, col),
            }
            if self.cfg.key.as_deref() == Some(name.as_str()) {
                found.key = Some(std::borrow::Cow::Borrowed(col.as_str()));
            }
            if let Some(idx) = self.cfg.values.iter().position(|v| v == name) {
                let v: f64 = col
                    .trim()
                    .parse()
                    .map_err(|_| ParseError::WrongType(name.clone(), "a number"))?;
                found.values[idx] = Some(v);
            }
            if self.cfg.time.as_deref() == Some(name.as_str()) {
                found.time =
                    Some(parse_time_text(col).ok_or_else(|| ParseError::BadTime(name.clone()))?);
            }
        }
        raw.push('}');
        let mut r = self.finish(found, default_key)?;
        r.raw = Some(raw.into_boxed_str());
        Ok(r)
    }
}

fn looks_numeric(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        && !s.starts_with('+')
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !(s.len() > 1 && s.starts_with('0') && s.as_bytes()[1].is_ascii_digit())
        && !(s.len() > 2 && s.starts_with("-0") && s.as_bytes()[2].is_ascii_digit())
        && serde_json::from_str::<serde_json::Number>(s).is_ok()
}

/// Splits one CSV line: commas, double-quoted fields with `""` escapes.
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

struct Found<'de> {
    /// Borrowed from the input when the key needs no unescaping (the usual case).
    key: Option<std::borrow::Cow<'de, str>>,
    values: Vec<Option<f64>>,
    time: Option<i64>,
    error: Option<ParseError>,
    not_object: bool,
}

impl Found<'_> {
    fn new(n: usize) -> Self {
        Found {
            key: None,
            values: vec![None; n],
            time: None,
            error: None,
            not_object: false,
        }
    }
}

struct ObjectSeed<'a, 'de> {
    cfg: &'a ParserConfig,
    found: &'a mut Found<'de>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn fail<E: serde::de::Error>(found: &mut Found<'_>, err: ParseError) -> E {
    let msg = err.to_string();
    found.error = Some(err);
    E::custom(msg)
}

impl<'de> Visitor<'de> for ObjectSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let name = name.as_ref();
            if self.cfg.key.as_deref() == Some(name) {
                match map.next_value::<KeyScalar<'de>>()? {
                    KeyScalar::Str(s) => self.found.key = Some(s),
                    KeyScalar::Int(i) => self.found.key = Some(i.to_string().into()),
                    KeyScalar::UInt(i) => self.found.key = Some(i.to_string().into()),
                    KeyScalar::Null => {}
                    _ => {
                        return Err(fail(
                            self.found,
                            ParseError::WrongType(name.into(), "a string or an integer"),
                        ));
                    }
                }
            } else if let Some(i) = self.cfg.values.iter().position(|v| v == name) {
                let v = match map.next_value::<Scalar>()? {
                    Scalar::Float(v) => Some(v),
                    Scalar::Int(v) => Some(v as f64),
                    Scalar::UInt(v) => Some(v as f64),
                    Scalar::Null => None,
                    Scalar::Str(s) => match s.trim().parse::<f64>() {
                        Ok(v) => Some(v),
                        Err(_) => {
                            return Err(fail(
                                self.found,
                                ParseError::WrongType(name.into(), "a number"),
                            ));
                        }
                    },
                    Scalar::Other => {
                        return Err(fail(
                            self.found,
                            ParseError::WrongType(name.into(), "a number"),
                        ));
                    }
                };
                self.found.values[i] = v;
            } else if self.cfg.time.as_deref() == Some(name) {
                let t = match map.next_value::<Scalar>()? {
                    Scalar::Str(s) => parse_time_text(&s),
                    Scalar::Int(v) => Some(v),
                    Scalar::UInt(v) => i64::try_from(v).ok(),
                    Scalar::Float(v) if v.is_finite() => Some(v as i64),
                    Scalar::Null => None,
                    _ => return Err(fail(self.found, ParseError::BadTime(name.into()))),
                };
                match t {
                    Some(t) => self.found.time = Some(t),
                    None => return Err(fail(self.found, ParseError::BadTime(name.into()))),
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.found.not_object = true;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(serde::de::Error::custom("not an object"))
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.found.not_object = true;
        Err(E::custom("not an object"))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_str("")
    }
}

/// A key value: a string borrowed from the input when possible, or an integer.
enum KeyScalar<'de> {
    Str(std::borrow::Cow<'de, str>),
    Int(i64),
    UInt(u64),
    Null,
    Other,
}

impl<'de> Deserialize<'de> for KeyScalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyScalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Str(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Str(std::borrow::Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::UInt(v))
            }
            fn visit_unit<E>(self) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Null)
            }
            fn visit_f64<E>(self, _: f64) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<KeyScalar<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyScalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<KeyScalar<'de>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyScalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON scalar, or a marker for anything else.
enum Scalar {
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Null,
    Other,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses RFC 3339 / ISO-8601 text (`2024-05-01T12:00:00.250Z`, `2024-05-01 12:00:00`,
/// `…+02:00`) or a string of epoch milliseconds into epoch milliseconds. No zone means UTC.
pub fn parse_time_text(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ' || b[10] == b't')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
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
        let f = &frac[..digits];
        let padded: String = f.chars().chain("000".chars()).take(3).collect();
        millis = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "" | "Z" | "z" => 0,
        r if (r.starts_with('+') || r.starts_with('-')) && r.len() == 6 && &r[3..4] == ":" => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            let hh: i64 = r[1..3].parse().ok()?;
            let mm: i64 = r[4..6].parse().ok()?;
            sign * (hh * 60 + mm)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests;
