//! CSV rows, split by the `csv` crate (RFC 4180: quoted fields with embedded commas and `""`
//! quotes, CRLF), and the one rule that decides which cells are numbers.
//!
//! The file and stdin sources hand the parser one line at a time, so a row must fit on one
//! line: a quoted field holding a line break arrives as two lines. The first is refused as
//! `malformed_csv` because it ends inside its quotes, which a line of a well-formed file never
//! does, instead of being read as a row with its last field cut; the second is refused too
//! unless it happens to have the header's number of columns (the break was in the first
//! field). Whole-file CSV (the enrichment tables) has no such limit.

use std::io::{Cursor, SeekFrom};

use super::{Found, ParseError, Parser};
use crate::core::Record;
use crate::core::record::write_json_str;
use crate::core::time;

/// The JSON number a CSV cell stands for, or `None` when the cell stays a string.
///
/// A cell is a number when its text, without surrounding whitespace, is a JSON number
/// (RFC 8259: an optional `-`, no leading zeros, no `+`, digits on both sides of a `.`, no
/// `NaN` or `Infinity`) that is finite, and, when it is an integer, fits in 64 bits. So
/// `12`, ` 12 `, `-0`, `1.5` and `1e3` are numbers; `02134` (a ZIP code), `+5`, `.5`, `5.`,
/// `NaN`, `1e999`, an empty cell and integers past 64 bits (account numbers, which a float
/// would silently round) stay strings, with their text unchanged.
///
/// The CSV source and the enrichment tables both use this, so a cell reads the same wherever
/// it comes from.
pub fn cell_number(cell: &str) -> Option<serde_json::Number> {
    let text = cell.trim();
    let n: serde_json::Number = serde_json::from_str(text).ok()?;
    let integer = !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if integer && text.parse::<i64>().is_err() && text.parse::<u64>().is_err() {
        return None;
    }
    Some(n)
}

/// Splits single lines into cells with one reused `csv` reader: building a reader per line
/// would allocate its buffers and state machine for every row.
pub(super) struct RowReader {
    rdr: ::csv::Reader<Cursor<Vec<u8>>>,
    row: ::csv::StringRecord,
}

/// Appended to every line: the newline ends the row, and the NUL after it lets us tell a row
/// that ended at that newline (position just past it) from one whose quotes swallowed it (the
/// reader stops at the end of input, past the NUL). A line never holds a newline itself.
const END: &[u8] = b"\n\0";

impl RowReader {
    pub(super) fn new() -> Self {
        let mut rdr = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(Cursor::new(Vec::new()));
        // With headers known, `seek_raw` never reads a row to find them.
        rdr.set_byte_headers(::csv::ByteRecord::new());
        RowReader {
            rdr,
            row: ::csv::StringRecord::new(),
        }
    }

    /// The cells of one line (without its line break).
    pub(super) fn split(&mut self, line: &str) -> Result<&::csv::StringRecord, ParseError> {
        let buf = self.rdr.get_mut().get_mut();
        buf.clear();
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(END);
        // Cannot fail: the input is in memory, valid UTF-8, and the reader is flexible.
        let read = self
            .rdr
            .seek_raw(SeekFrom::Start(0), ::csv::Position::new())
            .and_then(|()| self.rdr.read_record(&mut self.row));
        if read.is_err() {
            return Err(ParseError::InvalidUtf8);
        }
        let end = self.rdr.position().byte();
        let want = line.len() as u64 + 1;
        if end > want {
            return Err(ParseError::CsvOpenQuote);
        }
        if end < want {
            return Err(ParseError::CsvTwoRows);
        }
        Ok(&self.row)
    }
}

impl Parser {
    /// A row under the current header: the configured fields are decoded, and `raw` becomes
    /// the row as a JSON object (cells as numbers or strings by [`cell_number`]).
    pub(super) fn parse_csv(
        &mut self,
        text: &str,
        default_key: &str,
    ) -> Result<Record, ParseError> {
        let header = self.header.as_ref().ok_or(ParseError::CsvNoHeader)?;
        let cols = self.rows.split(text)?;
        if cols.len() != header.len() {
            return Err(ParseError::CsvColumns {
                expected: header.len(),
                found: cols.len(),
            });
        }
        let mut found = Found::new(self.cfg.values.len());
        let mut raw = String::with_capacity(text.len() + 8 * cols.len());
        raw.push('{');
        for (i, (name, col)) in header.iter().zip(cols).enumerate() {
            if i > 0 {
                raw.push(',');
            }
            write_json_str(&mut raw, name);
            raw.push(':');
            match cell_number(col) {
                Some(_) => raw.push_str(col.trim()),
                None => write_json_str(&mut raw, col),
            }
            if self.cfg.key.as_deref() == Some(name.as_str()) {
                found.key = Some(col.to_string().into());
            }
            if let Some(idx) = self.cfg.values.iter().position(|v| v == name) {
                let v: f64 = col
                    .trim()
                    .parse()
                    .map_err(|_| ParseError::WrongType(name.clone(), "a number"))?;
                found.values[idx] = Some(v);
            }
            if self.cfg.time.as_deref() == Some(name.as_str()) {
                let t = time::parse_time(col, self.cfg.time_unit)
                    .map_err(|e| ParseError::BadTime(name.clone(), e))?;
                found.time = Some(t);
            }
        }
        raw.push('}');
        let mut r = self.finish(found, default_key)?;
        r.raw = Some(raw.into_boxed_str());
        Ok(r)
    }
}

/// Cells and what [`cell_number`] makes of them (`Some(JSON)` for a number, `None` for the
/// cell's own text as a string); the CSV source and the enrichment tables are both tested
/// against this one list.
#[cfg(test)]
pub(crate) const CELL_CASES: &[(&str, Option<&str>)] = &[
    ("12", Some("12")),
    (" 12 ", Some("12")),
    ("0", Some("0")),
    ("-7", Some("-7")),
    ("-0", Some("-0")),
    ("1.5", Some("1.5")),
    ("1e3", Some("1e3")),
    ("-2.5E-3", Some("-2.5E-3")),
    ("18446744073709551615", Some("18446744073709551615")),
    ("-9223372036854775808", Some("-9223372036854775808")),
    ("02134", None),
    ("00", None),
    ("+5", None),
    (".5", None),
    ("5.", None),
    ("", None),
    ("   ", None),
    ("NaN", None),
    ("nan", None),
    ("inf", None),
    ("Infinity", None),
    ("-Infinity", None),
    ("1e999", None),
    ("123456789012345678901234567890", None),
    ("-9223372036854775809", None),
    ("0x10", None),
    ("1_000", None),
    ("1,5", None),
    ("１２", None),
    ("12abc", None),
    ("-", None),
];

/// The JSON value a [`CELL_CASES`] entry stands for.
#[cfg(test)]
pub(crate) fn expected_cell(cell: &str, want: Option<&str>) -> serde_json::Value {
    match want {
        Some(json) => serde_json::from_str(json).expect("a JSON number"),
        None => serde_json::Value::String(cell.to_string()),
    }
}
