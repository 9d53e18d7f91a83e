//! Turning raw input (a line, a Kinesis record) into a [`Record`].
//!
//! Three formats: JSON objects, CSV rows under a header, and bare numbers one per line (the
//! UCR/DAMP files). Only the configured key, value and time fields are decoded; everything
//! else in a JSON object is skipped without allocation and kept verbatim in `raw`. Every
//! failure is a [`ParseError`] with a stable reason code: the caller dead-letters the input
//! and goes on.
//!
//! - `json`: the object visitor that decodes only the configured fields;
//! - [`csv`]: rows split by the `csv` crate, and the one rule for which cells are
//!   numbers (shared with the enrichment tables);
//! - event times are read by [`crate::core::time::parse_time`].

pub mod csv;
mod json;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::core::partition;
use crate::core::time::{TimeError, TimeUnit};
use crate::core::{Origin, Record};

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line or per stream record.
    #[default]
    Json,
    /// Comma-separated values; the first line of each file is the header. Quoted fields
    /// follow RFC 4180, one row per line (see [`csv`]).
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
    /// The time field is not an event time: its name, and why (including impossible dates
    /// such as February 31).
    BadTime(String, TimeError),
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
    /// A CSV line that ends inside a quoted field (a quoted line break: each line is one row).
    CsvOpenQuote,
    /// A CSV line holding more than one row (a bare carriage return outside quotes).
    CsvTwoRows,
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
            ParseError::BadTime(..) => "bad_time",
            ParseError::TooLarge(_) => "too_large",
            ParseError::InvalidUtf8 => "invalid_utf8",
            ParseError::CsvColumns { .. }
            | ParseError::CsvNoHeader
            | ParseError::CsvOpenQuote
            | ParseError::CsvTwoRows => "malformed_csv",
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
            ParseError::BadTime(n, why) => write!(f, "field `{n}` is not a time: {why}"),
            ParseError::TooLarge(n) => write!(f, "record of {n} bytes is over the size limit"),
            ParseError::InvalidUtf8 => write!(f, "input is not UTF-8 text"),
            ParseError::CsvColumns { expected, found } => {
                write!(f, "CSV row has {found} columns, header has {expected}")
            }
            ParseError::CsvNoHeader => write!(f, "CSV row before any header"),
            ParseError::CsvOpenQuote => write!(
                f,
                "CSV line ends inside a quoted field (rows cannot span lines here)"
            ),
            ParseError::CsvTwoRows => {
                write!(
                    f,
                    "CSV line holds two rows (a carriage return outside quotes)"
                )
            }
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
    /// Unit of numeric event times.
    pub time_unit: TimeUnit,
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
    rows: csv::RowReader,
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
            rows: csv::RowReader::new(),
            keys: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ParserConfig {
        &self.cfg
    }

    /// Sets the CSV header from a header line (a UTF-8 byte-order mark is dropped). On an
    /// error the header is cleared, so the rows under it are dead-lettered rather than read
    /// under the previous file's header.
    pub fn set_header(&mut self, line: &[u8]) -> Result<(), ParseError> {
        self.header = None;
        let text = std::str::from_utf8(line).map_err(|_| ParseError::InvalidUtf8)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let row = self.rows.split(text.trim_end_matches(['\r', '\n']))?;
        self.header = Some(row.iter().map(str::to_string).collect());
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
}

struct Found<'de> {
    /// Borrowed from the input when the key needs no unescaping (the usual case).
    key: Option<std::borrow::Cow<'de, str>>,
    values: Vec<Option<f64>>,
    time: Option<i64>,
    error: Option<ParseError>,
    not_object: bool,
    /// The last object key read (JSON), to name the field a bare `NaN` token stood in.
    last_key: Option<std::borrow::Cow<'de, str>>,
}

impl Found<'_> {
    fn new(n: usize) -> Self {
        Found {
            key: None,
            values: vec![None; n],
            time: None,
            error: None,
            not_object: false,
            last_key: None,
        }
    }
}

#[cfg(test)]
mod tests;
