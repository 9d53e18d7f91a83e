//! Lookup keys: the record key, or a template over the record's fields.

use std::sync::Arc;

use crate::core::Record;

/// How the lookup key is read from a record.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyTemplate {
    /// The record's partitioning key.
    RecordKey,
    /// One field of the record.
    Field(String),
    /// Literal text and fields joined (`"{region}:{id}"`).
    Template(Vec<Part>),
}

/// A piece of a [`KeyTemplate::Template`].
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// A field value (`{key}` is the record key).
    Field(String),
}

impl KeyTemplate {
    /// Parses a `key` option: `None` for unbalanced braces.
    pub fn parse(text: &str) -> Option<KeyTemplate> {
        if !text.contains('{') && !text.contains('}') {
            return Some(KeyTemplate::Field(text.to_string()));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if rest[..open].contains('}') {
                return None;
            }
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let close = rest[open..].find('}')? + open;
            let name = &rest[open + 1..close];
            if name.is_empty() || name.contains('{') {
                return None;
            }
            parts.push(Part::Field(name.to_string()));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return None;
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Some(match parts.as_slice() {
            [Part::Field(f)] if f == "key" => KeyTemplate::RecordKey,
            _ => KeyTemplate::Template(parts),
        })
    }

    /// The lookup key of `r`, or `None` when a field is missing (or not a scalar).
    pub fn key_of(&self, r: &Record) -> Option<Arc<str>> {
        fn scalar(v: &serde_json::Value) -> Option<String> {
            match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        }
        let object = || -> Option<serde_json::Map<String, serde_json::Value>> {
            serde_json::from_str(r.raw.as_deref()?).ok()
        };
        match self {
            KeyTemplate::RecordKey => Some(Arc::clone(&r.key)),
            KeyTemplate::Field(f) => scalar(object()?.get(f)?).map(Arc::from),
            KeyTemplate::Template(parts) => {
                let obj = if parts
                    .iter()
                    .any(|p| matches!(p, Part::Field(f) if f != "key"))
                {
                    Some(object()?)
                } else {
                    None
                };
                let mut s = String::new();
                for p in parts {
                    match p {
                        Part::Lit(l) => s.push_str(l),
                        Part::Field(f) if f == "key" => s.push_str(&r.key),
                        Part::Field(f) => s.push_str(&scalar(obj.as_ref()?.get(f)?)?),
                    }
                }
                Some(Arc::from(s))
            }
        }
    }
}
