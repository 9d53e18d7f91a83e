//! `--set PATH=VALUE`: a field of the job set from the command line, applied to the parsed
//! tree after interpolation, so it is checked exactly like a field written in the file (an
//! unknown field, a wrong type and a failed validation read the same, with a note naming the
//! `--set` instead of a line).
//!
//! `PATH` is the field's dotted path, as errors name it: `checkpoint.interval`,
//! `operators[0].window`; `operators.0.window` is the same field. Tables on the way that the
//! file does not have are created; array elements must exist (`--set` changes an operator,
//! it does not add one). Keys are bare: letters, digits, `_` and `-`.
//!
//! `VALUE` is read as a TOML value when it is one (`5`, `true`, `"text"`, `[1, 2]`,
//! `{ type = "memory" }`), else taken as a string: `--set source.stream=sensors` and
//! `--set checkpoint.interval=5s` need no quotes, but a string that looks like a number or a
//! boolean does (`--set 'name="2024"'`).

use std::borrow::Cow;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::round::{Path, Seg, join};

/// The overrides of one load: their values, parsed into one document whose spans come after
/// the job text's, so a span tells which `--set` a value came from.
#[derive(Debug)]
pub(super) struct Overrides {
    /// Every `--set` as given.
    pub args: Vec<String>,
    /// The path of each, `None` when it could not be read.
    pub paths: Vec<Option<Path>>,
    /// `v<i> = <value>` lines after `after` bytes of padding.
    doc: String,
    /// Where each override's line is in `doc`.
    ranges: Vec<Range<usize>>,
    /// Overrides that could not be read: (index, what is wrong).
    pub bad: Vec<(usize, String)>,
}

impl Overrides {
    /// Reads `args` (each `PATH=VALUE`) for a job text of `after` bytes.
    pub(super) fn new(args: &[String], after: usize) -> Overrides {
        let mut out = Overrides {
            args: args.to_vec(),
            paths: Vec::new(),
            doc: " ".repeat(after),
            ranges: Vec::new(),
            bad: Vec::new(),
        };
        out.doc.push('\n');
        for (i, arg) in args.iter().enumerate() {
            let start = out.doc.len();
            match read(arg) {
                Ok((path, value)) => {
                    out.paths.push(Some(path));
                    out.doc.push_str(&format!("v{i} = {value}\n"));
                }
                Err(e) => {
                    out.paths.push(None);
                    out.bad.push((i, e));
                }
            }
            out.ranges.push(start..out.doc.len());
        }
        out
    }

    /// Which override `offset` (past the job text) falls in.
    pub(super) fn at(&self, offset: usize) -> Option<usize> {
        self.ranges.iter().position(|r| r.contains(&offset))
    }

    /// Sets every readable override in `root`: (index, what is wrong) for those that cannot
    /// be set.
    pub(super) fn apply<'i>(&'i self, root: &mut Spanned<DeValue<'i>>) -> Vec<(usize, String)> {
        let mut bad = Vec::new();
        let mut values = match DeTable::parse(&self.doc) {
            Ok(t) => t.into_inner(),
            // Each value was checked alone, so this is not expected; report rather than panic.
            Err(e) => {
                return (0..self.args.len())
                    .filter(|i| self.paths[*i].is_some())
                    .map(|i| (i, e.message().to_string()))
                    .collect();
            }
        };
        // In the order given, so a later `--set` of the same field wins.
        for (i, path) in self.paths.iter().enumerate() {
            let (Some(path), Some(value)) = (path, values.remove(format!("v{i}").as_str())) else {
                continue;
            };
            // On a copy: a path that fails half-way must not leave the tables it created.
            let mut copy = root.clone();
            match set(&mut copy, path, &[], value, &self.ranges[i]) {
                Ok(()) => *root = copy,
                Err(e) => bad.push((i, e)),
            }
        }
        bad
    }
}

/// The path and the TOML text of the value of `PATH=VALUE`.
fn read(arg: &str) -> Result<(Path, String), String> {
    let (path, value) = arg
        .split_once('=')
        .ok_or("expected PATH=VALUE, as in `checkpoint.interval=5s`")?;
    let path = parse_path(path.trim())?;
    let value = value.trim();
    let is_toml = !value.contains(['\n', '\r'])
        && DeTable::parse(&format!("v = {value}")).is_ok_and(|t| t.get_ref().len() == 1);
    let text = if is_toml {
        value.to_string()
    } else {
        toml::Value::String(value.to_string()).to_string()
    };
    Ok((path, text))
}

/// `operators[0].window` or `operators.0.window`.
fn parse_path(text: &str) -> Result<Path, String> {
    let bad = || {
        format!("`{text}` is not a field path like `checkpoint.interval` or `operators[0].window`")
    };
    let mut path = Vec::new();
    for part in text.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            path.push(Seg::Index(key.parse().map_err(|_| bad())?));
        } else if key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !key.is_empty()
        {
            path.push(Seg::Key(key.to_string()));
        } else {
            return Err(bad());
        }
        while !rest.is_empty() {
            let end = rest.find(']').ok_or_else(bad)?;
            let index = rest[1..end].parse().map_err(|_| bad())?;
            path.push(Seg::Index(index));
            rest = &rest[end + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(bad());
            }
        }
    }
    Ok(path)
}

/// Sets `path` (below `done`) in `node` to `value`; tables missing on the way are created
/// with the override's span.
fn set<'i>(
    node: &mut Spanned<DeValue<'i>>,
    path: &[Seg],
    done: &[Seg],
    value: Spanned<DeValue<'i>>,
    span: &Range<usize>,
) -> Result<(), String> {
    let Some((seg, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    let here = if done.is_empty() {
        "the job".to_string()
    } else {
        format!("`{}`", join(done))
    };
    let mut next = done.to_vec();
    next.push(seg.clone());
    match (node.get_mut(), seg) {
        (DeValue::Table(t), Seg::Key(k)) => {
            if t.get(k.as_str()).is_none() {
                if let Some(Seg::Index(_)) = rest.first() {
                    return Err(format!(
                        "the job has no `{}`: `--set` cannot add list elements",
                        join(&next)
                    ));
                }
                // Replaced by the value, or filled by the rest of the path.
                let empty = Spanned::new(span.clone(), DeValue::Table(DeTable::new()));
                t.insert(Spanned::new(span.clone(), Cow::Owned(k.clone())), empty);
            }
            let child = t.get_mut(k.as_str()).expect("the key was just inserted");
            set(child, rest, &next, value, span)
        }
        (DeValue::Array(a), Seg::Index(i)) => {
            let len = a.len();
            let child = a
                .get_mut(*i)
                .ok_or_else(|| format!("{here} has {len} element(s): `--set` cannot add one"))?;
            set(child, rest, &next, value, span)
        }
        (DeValue::Table(_), Seg::Index(i)) => {
            Err(format!("{here} is a table, not a list: no [{i}]"))
        }
        (DeValue::Array(_), Seg::Key(k)) => Err(format!(
            "{here} is a list: name an element, as in `{}[0].{k}`",
            join(done)
        )),
        _ => Err(format!("{here} is a single value, not a table")),
    }
}
