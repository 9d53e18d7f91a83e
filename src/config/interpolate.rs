//! `${VAR}` in job files: environment variables substituted into the raw text before it is
//! parsed, with a map back to the original positions so every later error still names the
//! line and column the user wrote.
//!
//! The rules are Vector's (`src/config/vars.rs`), with three differences, each on purpose:
//!
//! - `${NAME}` is the value of `NAME`; unset, it is an error (Vector's `strict_vars`).
//!   `${NAME:-default}` takes `default` when `NAME` is unset or empty, `${NAME-default}`
//!   only when it is unset. `${NAME:?message}` is an error naming `message` when `NAME` is
//!   unset or empty, `${NAME?message}` only when it is unset. A name is letters, digits, `_`
//!   and `.`; a default or message runs to the first `}` and cannot span lines or nest.
//! - `$$` is a literal `$`. A `$` followed by anything but `{` or `$` is kept as written:
//!   `$NAME` without braces is **not** a reference (unlike Vector), so a `$` in a regex, a
//!   price or a shell snippet needs no escape. A `${` that does not form a reference is an
//!   error, since it is almost always a typo for one (`$${` writes it literally).
//! - References in comments are left alone (a comment may mention `${MODEL_DIR}`), which
//!   needs a small TOML lexer: it knows where comments and strings are, nothing more.
//!
//! A value is inserted as raw text: in a basic string (`"…"`) its backslashes are TOML
//! escapes, so a Windows path belongs in a literal string (`'${DIR}'`). A value holding a
//! line break is rejected (Vector does the same): it could inject keys, and keeping every
//! line of the file where it was is what lets positions map back simply (only columns move).

/// The job text with every reference substituted, the problems found, and the way back to
/// positions in the original text.
#[derive(Debug)]
pub(super) struct Interpolated {
    /// The text to parse.
    pub text: String,
    /// Unset variables, rejected values and malformed references.
    pub problems: Vec<Problem>,
    /// Every replacement, in order: where it is in `text` and where it was in the original.
    shifts: Vec<Shift>,
}

/// One reference that could not be substituted.
#[derive(Debug, Clone)]
pub(super) struct Problem {
    /// Where its placeholder is in the interpolated text (to find the field it is in).
    pub at: usize,
    /// Where the reference starts in the original text.
    pub original: usize,
    /// What is wrong.
    pub message: String,
}

/// One replacement: `len` bytes at `at` in the interpolated text stand for `original_len`
/// bytes at `original` in the original.
#[derive(Debug, Clone, Copy)]
struct Shift {
    at: usize,
    len: usize,
    original: usize,
    original_len: usize,
}

impl Interpolated {
    /// The original byte offset of `offset` in the interpolated text. Inside a replacement it
    /// is the start of the reference it replaced.
    pub(super) fn original(&self, offset: usize) -> usize {
        let i = self.shifts.partition_point(|s| s.at <= offset);
        let Some(s) = i.checked_sub(1).map(|i| self.shifts[i]) else {
            return offset;
        };
        if offset < s.at + s.len {
            s.original
        } else {
            s.original + s.original_len + (offset - s.at - s.len)
        }
    }
}

/// Where the lexer is: only comments are skipped, and strings decide the placeholder of an
/// unset variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Code,
    Comment,
    Basic,
    Literal,
    MultiBasic,
    MultiLiteral,
}

/// Substitutes every reference in `text`, looking variables up with `var`.
pub(super) fn interpolate(text: &str, var: &dyn Fn(&str) -> Option<String>) -> Interpolated {
    let mut out = Interpolated {
        text: String::with_capacity(text.len()),
        problems: Vec::new(),
        shifts: Vec::new(),
    };
    let bytes = text.as_bytes();
    let mut lex = Lex::Code;
    // Text up to `copied` is in `out.text`.
    let (mut i, mut copied) = (0, 0);
    while i < bytes.len() {
        let rest = &bytes[i..];
        match (lex, bytes[i]) {
            (Lex::Comment, b'\n') => lex = Lex::Code,
            (Lex::Comment, _) => {}
            (Lex::Code, b'#') => lex = Lex::Comment,
            (Lex::Code, b'"') if rest.starts_with(b"\"\"\"") => {
                lex = Lex::MultiBasic;
                i += 2;
            }
            (Lex::Code, b'"') => lex = Lex::Basic,
            (Lex::Code, b'\'') if rest.starts_with(b"'''") => {
                lex = Lex::MultiLiteral;
                i += 2;
            }
            (Lex::Code, b'\'') => lex = Lex::Literal,
            // An escape: the next character cannot end the string (`\"`).
            (Lex::Basic | Lex::MultiBasic, b'\\') => i += 1,
            (Lex::Basic, b'"') | (Lex::Literal, b'\'') => lex = Lex::Code,
            (Lex::Basic | Lex::Literal, b'\n') => lex = Lex::Code,
            (Lex::MultiBasic, b'"') if rest.starts_with(b"\"\"\"") => {
                lex = Lex::Code;
                // `""""` and `"""""` end with one or two quotes of content.
                i += 2 + rest[3..].iter().take(2).take_while(|&&b| b == b'"').count();
            }
            (Lex::MultiLiteral, b'\'') if rest.starts_with(b"'''") => {
                lex = Lex::Code;
                i += 2 + rest[3..]
                    .iter()
                    .take(2)
                    .take_while(|&&b| b == b'\'')
                    .count();
            }
            (_, b'$') => {
                if let Some((len, value)) = reference(&text[i + 1..], var) {
                    out.text.push_str(&text[copied..i]);
                    let at = out.text.len();
                    let value = value.unwrap_or_else(|message| {
                        out.problems.push(Problem {
                            at,
                            original: i,
                            message,
                        });
                        // Keeps the file parseable, so the field the reference is in can be
                        // named: an empty string inside a string, a number elsewhere.
                        if lex == Lex::Code { "0" } else { "" }.to_string()
                    });
                    out.shifts.push(Shift {
                        at,
                        len: value.len(),
                        original: i,
                        original_len: len,
                    });
                    out.text.push_str(&value);
                    i += len;
                    copied = i;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.text.push_str(&text[copied..]);
    out
}

/// The reference whose `$` precedes `rest`: its length in the original and its value or
/// what is wrong with it; `None` for a `$` that stays as written.
fn reference(
    rest: &str,
    var: &dyn Fn(&str) -> Option<String>,
) -> Option<(usize, Result<String, String>)> {
    if rest.starts_with('$') {
        return Some((2, Ok("$".to_string())));
    }
    let body = rest.strip_prefix('{')?;
    let line_end = body.find(['\n', '\r']).unwrap_or(body.len());
    let Some(close) = body[..line_end].find('}') else {
        let shown: String = body[..line_end].chars().take(40).collect();
        return Some((
            2 + line_end,
            Err(format!(
                "`${{{shown}` is not closed by `}}` on its line (write `$${{` for a literal `${{`)"
            )),
        ));
    };
    let len = 2 + close + 1;
    Some((len, value_of(&body[..close], var)))
}

/// The value of the reference `${inner}`.
fn value_of(inner: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let name_len = inner
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
        .count();
    let name = &inner[..name_len];
    let (op, arg) = match split_op(&inner[name_len..]) {
        Some(op) if !name.is_empty() => op,
        _ => {
            return Err(format!(
                "`${{{inner}}}` is not a variable reference: write `${{NAME}}`, `${{NAME:-default}}` or `${{NAME:?message}}`, or `$${{` for a literal `${{`"
            ));
        }
    };
    let value = var(name);
    let missing = match op {
        Op::Plain | Op::Default { or_empty: false } | Op::Require { or_empty: false } => {
            value.is_none()
        }
        Op::Default { or_empty: true } | Op::Require { or_empty: true } => {
            value.as_deref().is_none_or(str::is_empty)
        }
    };
    let value = match (op, missing) {
        (Op::Plain, true) => {
            return Err(format!(
                "environment variable `{name}` is not set (give a default: `${{{name}:-…}}`)"
            ));
        }
        (Op::Default { .. }, true) => return Ok(arg.to_string()),
        (Op::Require { .. }, true) => {
            let what = if value.is_none() {
                "is not set"
            } else {
                "is empty"
            };
            return Err(if arg.is_empty() {
                format!("environment variable `{name}` {what}")
            } else {
                format!("environment variable `{name}` {what}: {arg}")
            });
        }
        (_, false) => value.unwrap_or_default(),
    };
    if value.contains(['\n', '\r']) {
        return Err(format!(
            "environment variable `{name}` holds a line break, which a job file value may not"
        ));
    }
    Ok(value)
}

/// What follows the name.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `${NAME}`.
    Plain,
    /// `${NAME:-default}` (`or_empty`) or `${NAME-default}`.
    Default { or_empty: bool },
    /// `${NAME:?message}` (`or_empty`) or `${NAME?message}`.
    Require { or_empty: bool },
}

/// The operator and its argument; `None` when the text after the name is not one.
fn split_op(after: &str) -> Option<(Op, &str)> {
    let ops = [
        (":-", Op::Default { or_empty: true }),
        ("-", Op::Default { or_empty: false }),
        (":?", Op::Require { or_empty: true }),
        ("?", Op::Require { or_empty: false }),
    ];
    if after.is_empty() {
        return Some((Op::Plain, ""));
    }
    ops.into_iter()
        .find_map(|(prefix, op)| after.strip_prefix(prefix).map(|arg| (op, arg)))
}
