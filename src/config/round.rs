//! The state of one deserialisation round: field paths, errors with their kind and
//! position, and the fixes earlier rounds recorded to get past the errors they found.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

use serde::de;

use super::deprecated::Renamed;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A field path from the root of the job file.
pub(super) type Path = Vec<Seg>;

/// `operators[1].trees`.
pub(super) fn join(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The inverse of [`join`] for the paths components report (`redis.url`, `operators[0].m`).
pub(super) fn split(path: &str) -> Path {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(n) = rest[1..end].parse() {
                out.push(Seg::Index(n));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

pub(super) fn child(path: &[Seg], seg: Seg) -> Path {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

/// What kind of problem an error is, which decides how the next round gets past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// A wrong type or value: read the node as a placeholder next time.
    Invalid,
    /// A key the struct does not have (the path ends with it): skip it next time.
    UnknownField,
    /// A required field is absent from the table at the path: supply a placeholder.
    MissingField(String),
}

/// A deserialization error with its position.
#[derive(Debug)]
pub(super) struct DeError {
    /// What is wrong (serde's or toml's wording).
    pub message: String,
    /// How to get past it.
    pub kind: Kind,
    /// The node it arose at; `None` until it leaves the innermost node.
    pub path: Option<Path>,
    /// Byte span of that node (a key's, for an unknown field).
    pub span: Option<Range<usize>>,
}

impl DeError {
    pub(super) fn new(message: String, kind: Kind) -> Self {
        DeError {
            message,
            kind,
            path: None,
            span: None,
        }
    }

    pub(super) fn from_toml(e: toml::de::Error) -> Self {
        DeError {
            span: e.span(),
            ..DeError::new(e.message().to_string(), Kind::Invalid)
        }
    }

    /// Places an error that has no position yet at `path` (the innermost node wins).
    pub(super) fn at(mut self, path: &[Seg], span: Option<Range<usize>>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_vec());
            if self.span.is_none() {
                self.span = span;
            }
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string(), Kind::Invalid)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        // serde's own wording, from its default implementation.
        let message = <de::value::Error as de::Error>::unknown_field(field, expected);
        DeError::new(message.to_string(), Kind::UnknownField)
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(
            format!("missing field `{field}`"),
            Kind::MissingField(field.to_string()),
        )
    }
}

/// How earlier rounds got past the errors they found.
#[derive(Debug, Default)]
pub(super) struct Fixes {
    /// Unknown keys, skipped.
    pub(super) removed: Vec<Path>,
    /// Bad values, read as placeholders.
    pub(super) poisoned: Vec<Path>,
    /// Missing required fields, supplied as placeholders.
    pub(super) added: Vec<Path>,
}

impl Fixes {
    /// Records a fix for an error of `kind` at `path`; false when it was already applied (the
    /// error came back, so another round would not get further).
    pub(super) fn apply(&mut self, kind: &Kind, path: &[Seg]) -> bool {
        let (list, path) = match kind {
            Kind::UnknownField => (&mut self.removed, path.to_vec()),
            Kind::Invalid => (&mut self.poisoned, path.to_vec()),
            Kind::MissingField(f) => (&mut self.added, child(path, Seg::Key(f.clone()))),
        };
        if list.contains(&path) {
            return false;
        }
        list.push(path);
        true
    }

    /// Whether `path` lies inside a placeholder: an error there is an artefact of the
    /// placeholder, not a problem of the job file.
    pub(super) fn covers(&self, path: &[Seg]) -> bool {
        self.poisoned
            .iter()
            .chain(&self.added)
            .any(|p| path.starts_with(p))
    }

    pub(super) fn is_poisoned(&self, path: &[Seg]) -> bool {
        self.poisoned.iter().any(|p| p == path)
    }
}

/// A deprecated key found while deserializing.
#[derive(Debug, Clone)]
pub(super) struct Deprecated {
    /// Path of the key as written.
    pub path: Path,
    /// Span of the key.
    pub span: Range<usize>,
    /// The rename.
    pub renamed: &'static Renamed,
}

/// State shared by the nodes of one round.
#[derive(Debug, Default)]
pub(super) struct Cx {
    /// Fixes of the earlier rounds.
    pub fixes: Fixes,
    /// Deprecated keys seen in this round.
    pub deprecated: RefCell<Vec<Deprecated>>,
}
