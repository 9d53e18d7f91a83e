//! Collecting every problem of a job file, not just the first, each with its field path, line
//! and column.
//!
//! serde stops at the first error. We deserialise from the spanned tree (`spanned`), note the
//! error with its path and span, record a fix that gets past it (skip an unknown key, read a
//! bad or missing value as a placeholder) and deserialise again, until a round succeeds. The
//! placeholders are never used: semantic checks (`validate`) run only when the first round
//! succeeds, and their paths are placed by looking them up in the same tree.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::deprecated;
use super::round::{self, Cx, Kind, Seg};
use super::spanned::NodeDe;
use super::{ConfigError, JobConfig};

/// Bounds the rounds (and so the errors reported) for a pathological file.
const MAX_ROUNDS: usize = 64;

/// Parses, deserialises and validates a job: the job and its deprecation warnings, or every
/// error found.
pub(super) fn load(text: &str) -> Result<(JobConfig, Vec<ConfigError>), Vec<ConfigError>> {
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let (line, column) = e.span().map(|s| position(text, s.start)).unzip();
            return Err(vec![ConfigError {
                field: String::new(),
                message: e.message().trim().to_string(),
                line,
                column,
            }]);
        }
    };
    let span = root.span();
    let root = Spanned::new(span, DeValue::Table(root.into_inner()));
    let (job, mut errors, mut warnings) = deserialize_all(&root, text);
    if let Some(job) = &job {
        for mut e in job.validate() {
            let at = round::split(&e.field);
            if let Some(span) = locate(&root, &at) {
                (e.line, e.column) = located(text, &at, span);
            }
            errors.push(e);
        }
        for mut w in job.warnings() {
            let at = round::split(&w.field);
            if let Some(span) = locate(&root, &at) {
                (w.line, w.column) = located(text, &at, span);
            }
            warnings.push(w);
        }
    }
    in_file_order(&mut errors);
    in_file_order(&mut warnings);
    match job {
        Some(job) if errors.is_empty() => Ok((job, warnings)),
        _ => Err(errors),
    }
}

/// File order reads best (serde's order follows the struct); those without a position last.
fn in_file_order(errors: &mut [ConfigError]) {
    errors.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
}

/// Deserialises `root`: the job (only when no structural error was found), the errors and
/// the deprecation warnings.
fn deserialize_all(
    root: &Spanned<DeValue<'_>>,
    text: &str,
) -> (Option<JobConfig>, Vec<ConfigError>, Vec<ConfigError>) {
    let mut cx = Cx::default();
    let mut errors = Vec::new();
    for _ in 0..MAX_ROUNDS {
        cx.deprecated.borrow_mut().clear();
        let e = match JobConfig::deserialize(NodeDe::root(root, &cx)) {
            Ok(job) => {
                let warnings = cx
                    .deprecated
                    .borrow()
                    .iter()
                    .map(|d| {
                        let (line, column) = located(text, &d.path, d.span.clone());
                        ConfigError {
                            field: round::join(&d.path),
                            message: d.renamed.message(),
                            line,
                            column,
                        }
                    })
                    .collect();
                return (errors.is_empty().then_some(job), errors, warnings);
            }
            Err(e) => e,
        };
        let path = e.path.clone().unwrap_or_default();
        if cx.fixes.covers(&path) {
            // An artefact of a placeholder: everything real has been reported.
            break;
        }
        let field = match &e.kind {
            Kind::MissingField(f) => {
                let mut p = path.clone();
                p.push(Seg::Key(f.clone()));
                p
            }
            _ => path.clone(),
        };
        let (line, column) = match e.span {
            Some(span) => located(text, &path, span),
            None => (None, None),
        };
        errors.push(ConfigError {
            field: round::join(&field),
            message: e.message,
            line,
            column,
        });
        if !cx.fixes.apply(&e.kind, &path) {
            break;
        }
    }
    (None, errors, Vec::new())
}

/// The span of the node at `path`, or of its deepest ancestor that exists (a field left at
/// its default is placed at its table); `None` when not even the first key exists. A key that is not found is also looked for under
/// its old spellings, since components name fields by their new names.
fn locate(root: &Spanned<DeValue<'_>>, path: &[Seg]) -> Option<Range<usize>> {
    let mut node = None;
    for seg in path {
        let here = node.unwrap_or(root);
        let next = match (here.get_ref(), seg) {
            (DeValue::Table(t), Seg::Key(k)) => {
                let get = |name: &str| t.iter().find(|(key, _)| key.get_ref() == name);
                get(k)
                    .or_else(|| {
                        deprecated::RENAMED
                            .iter()
                            .filter(|r| r.new == k)
                            .find_map(|r| get(r.old))
                    })
                    .map(|(_, v)| v)
            }
            (DeValue::Array(a), Seg::Index(i)) => a.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = Some(n),
            None => break,
        }
    }
    node.map(|n| n.span())
}

/// Line and column of `span`; none for the document root, whose span is empty.
fn located(text: &str, path: &[Seg], span: Range<usize>) -> (Option<usize>, Option<usize>) {
    if path.is_empty() && span.is_empty() {
        return (None, None);
    }
    let (line, column) = position(text, span.start);
    (Some(line), Some(column))
}

/// 1-based line and column (in characters) of byte `offset`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}
