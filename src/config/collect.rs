//! Collecting every problem of a job file, not just the first, each with its field path, line
//! and column.
//!
//! serde stops at the first error. We deserialise from the spanned tree (`spanned`), note the
//! error with its path and span, record a fix that gets past it (skip an unknown key, read a
//! bad or missing value as a placeholder) and deserialise again, until a round succeeds. The
//! placeholders are never used: semantic checks (`validate`) run only when the first round
//! succeeds, and their paths are placed by looking them up in the same tree.
//!
//! A `${VAR}` that could not be substituted left a placeholder in the text (`interpolate`):
//! its error names the field it is in, and errors inside that field are the placeholder's, so
//! they are dropped, and `validate` still runs when they were the only ones. A `--set` value
//! has a span past the job text (`overrides`): its errors name the `--set`, not a line.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::deprecated;
use super::interpolate::{self, Interpolated, Problem};
use super::overrides::Overrides;
use super::round::{self, Cx, Kind, Path, Seg};
use super::spanned::NodeDe;
use super::{ConfigError, JobConfig, LoadOptions};

/// Bounds the rounds (and so the errors reported) for a pathological file.
const MAX_ROUNDS: usize = 64;

/// Interpolates, parses, overrides, deserialises and validates a job: the job and its
/// deprecation warnings, or every error found.
pub(super) fn load(
    text: &str,
    opts: &LoadOptions,
) -> Result<(JobConfig, Vec<ConfigError>), Vec<ConfigError>> {
    let env = |name: &str| std::env::var(name).ok();
    let map = |name: &str| opts.vars.as_ref().and_then(|m| m.get(name).cloned());
    let var: &dyn Fn(&str) -> Option<String> = if opts.vars.is_some() { &map } else { &env };
    let interp = interpolate::interpolate(text, var);
    let overrides = Overrides::new(&opts.overrides, interp.text.len());
    let src = Source {
        text,
        interp: &interp,
        overrides: &overrides,
    };
    let mut errors: Vec<ConfigError> = overrides
        .bad
        .iter()
        .map(|(i, why)| src.override_error(*i, why))
        .collect();
    let root = match DeTable::parse(&interp.text) {
        Ok(root) => root,
        Err(e) => {
            let mut syntax = ConfigError::new("", e.message().trim());
            if let Some(span) = e.span() {
                src.place_offset(&mut syntax, span.start);
            }
            errors.push(syntax);
            errors.extend(interp.problems.iter().map(|p| src.problem(&[], p)));
            in_file_order(&mut errors);
            return Err(errors);
        }
    };
    let span = root.span();
    let mut root = Spanned::new(span, DeValue::Table(root.into_inner()));
    // The field of each reference that failed, named before an override replaces it.
    let mut problems: Vec<(Path, &Problem)> = interp
        .problems
        .iter()
        .map(|p| (field_at(&root, p.at).unwrap_or_default(), p))
        .collect();
    for (i, why) in overrides.apply(&mut root) {
        errors.push(src.override_error(i, &why));
    }
    problems.retain(|(path, _)| {
        !overrides
            .paths
            .iter()
            .flatten()
            .any(|set| path.starts_with(set))
    });
    // Errors inside a field whose reference failed are the placeholder's, not the user's.
    let skip: Vec<Path> = problems
        .iter()
        .map(|(path, _)| path.clone())
        .filter(|p| !p.is_empty())
        .collect();
    let skipped = |field: &str| {
        let at = round::split(field);
        skip.iter().any(|s| at.starts_with(s))
    };
    errors.extend(problems.iter().map(|(path, p)| src.problem(path, p)));
    let (job, structural, mut warnings) = deserialize_all(&root, &src, &skip);
    errors.extend(structural);
    if let Some(job) = &job {
        for mut e in job.validate() {
            if skipped(&e.field) {
                continue;
            }
            let at = round::split(&e.field);
            if let Some(span) = locate(&root, &at) {
                src.place(&mut e, &at, span);
            }
            errors.push(e);
        }
        for mut w in job.warnings() {
            let at = round::split(&w.field);
            if let Some(span) = locate(&root, &at) {
                src.place(&mut w, &at, span);
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

/// The original text and the way back to it from the tree's spans.
struct Source<'a> {
    text: &'a str,
    interp: &'a Interpolated,
    overrides: &'a Overrides,
}

impl Source<'_> {
    /// Sets the line and column of the node at `path` with `span` (in the interpolated text),
    /// or, for a value set by `--set`, says so. Nothing for the document root, whose span is
    /// empty.
    fn place(&self, e: &mut ConfigError, path: &[Seg], span: Range<usize>) {
        if !(path.is_empty() && span.is_empty()) {
            self.place_offset(e, span.start);
        }
    }

    /// As [`Source::place`], for byte `offset` of the interpolated text or of the overrides.
    fn place_offset(&self, e: &mut ConfigError, offset: usize) {
        // The overrides' document starts past the job text and a newline.
        if offset > self.interp.text.len() {
            if let Some(i) = self.overrides.at(offset) {
                e.message = format!("{} (set by `--set {}`)", e.message, self.overrides.args[i]);
            }
            return;
        }
        let (line, column) = position(self.text, self.interp.original(offset));
        (e.line, e.column) = (Some(line), Some(column));
    }

    /// The error of a reference that failed, in the field at `path`.
    fn problem(&self, path: &[Seg], p: &Problem) -> ConfigError {
        let (line, column) = position(self.text, p.original);
        ConfigError {
            field: round::join(path),
            message: p.message.clone(),
            line: Some(line),
            column: Some(column),
        }
    }

    /// The error of `--set` number `i`, which could not be read or set.
    fn override_error(&self, i: usize, why: &str) -> ConfigError {
        let field = self.overrides.paths[i]
            .as_deref()
            .map(round::join)
            .unwrap_or_default();
        ConfigError::new(
            field,
            format!("{why} (in `--set {}`)", self.overrides.args[i]),
        )
    }
}

/// File order reads best (serde's order follows the struct); those without a position last.
fn in_file_order(errors: &mut [ConfigError]) {
    errors.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
}

/// Deserialises `root`: the job (only when no structural error was found), the errors and
/// the deprecation warnings.
/// Errors inside a path of `skip` are dropped (but got past).
fn deserialize_all(
    root: &Spanned<DeValue<'_>>,
    src: &Source<'_>,
    skip: &[Path],
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
                        let mut w = ConfigError::new(round::join(&d.path), d.renamed.message());
                        src.place(&mut w, &d.path, d.span.clone());
                        w
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
        if !skip.iter().any(|s| field.starts_with(s)) {
            let mut error = ConfigError::new(round::join(&field), e.message);
            if let Some(span) = e.span {
                src.place(&mut error, &path, span);
            }
            errors.push(error);
        }
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

/// The path of the innermost value or key whose span holds `offset`.
fn field_at(node: &Spanned<DeValue<'_>>, offset: usize) -> Option<Path> {
    let under = |seg: Seg, mut rest: Path| {
        rest.insert(0, seg);
        rest
    };
    let found = match node.get_ref() {
        DeValue::Table(t) => t.iter().find_map(|(k, v)| {
            let inner =
                field_at(v, offset).or_else(|| k.span().contains(&offset).then(Vec::new))?;
            Some(under(Seg::Key(k.get_ref().to_string()), inner))
        }),
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| Some(under(Seg::Index(i), field_at(v, offset)?))),
        _ => None,
    };
    // A leaf, or an inline table or array whose brackets hold the offset between items.
    found.or_else(|| node.span().contains(&offset).then(Vec::new))
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
