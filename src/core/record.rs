//! Records as they flow between components, and how they are written out as JSON.

use std::fmt::Write as _;
use std::sync::Arc;

/// A batch of records: the unit that crosses channels and is handed to operators.
pub type Batch = Vec<Record>;

/// One input record after parsing, plus the fields operators appended to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The partitioning key (a sensor id, a series name …).
    pub key: Arc<str>,
    /// Key group of `key` (see [`crate::core::partition`]); decides the partition and the state slot.
    pub key_group: u16,
    /// The configured value fields, in configuration order.
    pub values: Vec<f64>,
    /// Event time in epoch milliseconds, when the job names a time field.
    pub time_ms: Option<i64>,
    /// The original JSON object text, when the input was an object (JSON or CSV rows).
    pub raw: Option<Box<str>>,
    /// Where the record came from; copied into outputs by sinks that need it.
    pub origin: Origin,
    /// Fields appended by operators, written after the original fields.
    pub fields: Vec<(Arc<str>, Field)>,
    /// The raw bytes of a binary input (an image object), for operators that decode it
    /// themselves. Shared, so cloning a record does not copy the bytes; never written by
    /// sinks. `None` for text inputs.
    pub blob: Option<Arc<[u8]>>,
}

/// Where a record was read: enough to find it again and to drop duplicates downstream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Origin {
    /// Source-specific stream or file name (a Kinesis shard id, a file path).
    pub stream: Option<Arc<str>>,
    /// Position in that stream (a byte offset, a Kinesis sequence number).
    pub position: Option<Box<str>>,
}

/// A value an operator appends to a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A float; non-finite values are written as `null`.
    F64(f64),
    /// An unsigned integer.
    U64(u64),
    /// A signed integer.
    I64(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(Arc<str>),
    /// Any JSON value (top-k labels, attribution maps).
    Json(serde_json::Value),
}

impl Record {
    /// A record with only a key and values; used by generators, tests and benches.
    pub fn new(key: impl Into<Arc<str>>, values: Vec<f64>) -> Self {
        let key = key.into();
        Record {
            key_group: 0,
            key,
            values,
            time_ms: None,
            raw: None,
            origin: Origin::default(),
            fields: Vec::new(),
            blob: None,
        }
    }

    /// Appends an operator field.
    pub fn push_field(&mut self, name: &Arc<str>, value: Field) {
        self.fields.push((Arc::clone(name), value));
    }

    /// Looks up a field appended by an operator.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }

    /// Writes the record as one JSON object (no newline).
    ///
    /// The original object is copied as it arrived and the operator fields are appended after
    /// its last field, so a record passes through osprey without being re-encoded. A record
    /// without an original object is written as `{"key":…,"value":…}`.
    pub fn write_json(&self, out: &mut String) {
        let mut first = match self.raw.as_deref().map(str::trim_end) {
            Some(raw) if raw.ends_with('}') => {
                let body = &raw[..raw.len() - 1];
                out.push_str(body);
                body.trim_end() == "{"
            }
            _ => {
                out.push_str("{\"key\":");
                write_json_str(out, &self.key);
                match self.values.as_slice() {
                    [] => {}
                    [v] => {
                        out.push_str(",\"value\":");
                        write_f64(out, *v);
                    }
                    vs => {
                        out.push_str(",\"values\":[");
                        for (i, v) in vs.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            write_f64(out, *v);
                        }
                        out.push(']');
                    }
                }
                false
            }
        };
        for (name, value) in &self.fields {
            if !first {
                out.push(',');
            }
            first = false;
            write_json_str(out, name);
            out.push(':');
            value.write_json(out);
        }
        out.push('}');
    }
}

impl Field {
    /// Writes the value as JSON.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Field::F64(v) => write_f64(out, *v),
            Field::U64(v) => {
                let _ = write!(out, "{v}");
            }
            Field::I64(v) => {
                let _ = write!(out, "{v}");
            }
            Field::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            Field::Str(s) => write_json_str(out, s),
            Field::Json(v) => out.push_str(&v.to_string()),
        }
    }

    /// The value as a float, when it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Field::F64(v) => Some(*v),
            Field::U64(v) => Some(*v as f64),
            Field::I64(v) => Some(*v as f64),
            _ => None,
        }
    }
}

/// Writes a float the way serde_json does (shortest round-trip form); NaN and ±inf become `null`.
pub fn write_f64(out: &mut String, v: f64) {
    if v.is_finite() {
        // `{:?}` prints the shortest representation that round-trips, like ryu.
        let _ = write!(out, "{v:?}");
    } else {
        out.push_str("null");
    }
}

/// Writes a JSON string literal with the escapes JSON requires.
pub fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_fields_to_original_object() {
        let mut r = Record::new("a", vec![1.0]);
        r.raw = Some("{\"id\":\"a\",\"x\":1} ".into());
        r.push_field(&Arc::from("count"), Field::U64(3));
        let mut s = String::new();
        r.write_json(&mut s);
        assert_eq!(s, "{\"id\":\"a\",\"x\":1,\"count\":3}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["count"], 3);
    }

    #[test]
    fn writes_bare_records_and_escapes() {
        let mut r = Record::new("a\"b\n\u{1}", vec![0.5]);
        r.push_field(&Arc::from("s"), Field::F64(f64::NAN));
        let mut s = String::new();
        r.write_json(&mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["key"], "a\"b\n\u{1}");
        assert_eq!(v["value"], 0.5);
        assert!(v["s"].is_null());
    }

    #[test]
    fn empty_object_gets_no_leading_comma() {
        let mut r = Record::new("k", vec![]);
        r.raw = Some("{ }".into());
        r.push_field(&Arc::from("a"), Field::Bool(true));
        let mut s = String::new();
        r.write_json(&mut s);
        assert_eq!(s, "{ \"a\":true}");
    }
}
