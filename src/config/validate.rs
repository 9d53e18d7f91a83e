//! Collecting every structural error of a job file, not just the first.
//!
//! serde stops at the first problem. We deserialise, note the error with its field path,
//! remove that field from the TOML tree and try again, until the tree deserialises or no
//! more progress can be made. A missing required field cannot be removed, so it ends the
//! loop; semantic checks run only once the structure is sound.

use super::{ConfigError, JobConfig};

const MAX_ROUNDS: usize = 64;

/// Deserialises `table`, returning the job (when the structure is sound) and the errors found.
pub(super) fn deserialize_all(
    mut table: toml::Table,
    _text: &str,
) -> (Option<JobConfig>, Vec<ConfigError>) {
    let mut errors: Vec<ConfigError> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, JobConfig>(value) {
            Ok(job) => return (errors.is_empty().then_some(job), errors),
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                // toml appends "in `field`" context lines; the field is reported separately.
                let message = e
                    .inner()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let mut segments = split_path(&path);
                // An unknown field is reported at its parent; name the field itself.
                if let Some(name) =
                    backticked(&message).filter(|_| message.starts_with("unknown field"))
                {
                    let already = matches!(segments.last(), Some(Seg::Key(k)) if k == name);
                    if !already {
                        segments.push(Seg::Key(name.to_string()));
                    }
                }
                let field = join_path(&segments);
                let missing = message.starts_with("missing field");
                let err = ConfigError::new(
                    if missing {
                        let name = backticked(&message).unwrap_or_default();
                        if field.is_empty() {
                            name.to_string()
                        } else {
                            format!("{field}.{name}")
                        }
                    } else {
                        field.clone()
                    },
                    message.clone(),
                );
                let repeated = errors.contains(&err);
                if !repeated {
                    errors.push(err);
                }
                if missing || repeated || !remove(&mut table, &segments) {
                    return (None, errors);
                }
            }
        }
    }
    (None, errors)
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn split_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(Seg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                if let Ok(n) = rest[1..end].parse() {
                    out.push(Seg::Index(n));
                }
                rest = &rest[end + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

fn join_path(segments: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segments {
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

/// Removes the value at `path`; if the path does not resolve, removes its deepest existing
/// ancestor entry. Returns false when nothing could be removed.
fn remove(table: &mut toml::Table, path: &[Seg]) -> bool {
    fn walk(value: &mut toml::Value, path: &[Seg]) -> bool {
        match (value, path) {
            (_, []) => false,
            (toml::Value::Table(t), [Seg::Key(k), rest @ ..]) => {
                if rest.is_empty() || !t.get_mut(k).is_some_and(|v| walk(v, rest)) {
                    t.remove(k).is_some()
                } else {
                    true
                }
            }
            (toml::Value::Array(a), [Seg::Index(i), rest @ ..]) if *i < a.len() => {
                if rest.is_empty() || !walk(&mut a[*i], rest) {
                    a.remove(*i);
                }
                true
            }
            _ => false,
        }
    }
    let mut root = toml::Value::Table(std::mem::take(table));
    let removed = walk(&mut root, path);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    removed
}

/// Finds the 1-based line of a dotted field path (`source.path`, `operators[1].m`) in a
/// job file, by following table headers. Good enough for error messages; `None` if unsure.
pub fn find_line(text: &str, field: &str) -> Option<usize> {
    let segs = split_path(field);
    if segs.is_empty() {
        return None;
    }
    // Header we expect the field under, and how many times that header must have been seen.
    let (header, index, key): (String, usize, Option<String>) = match segs.as_slice() {
        [Seg::Key(k)] => (String::new(), 0, Some(k.clone())),
        [Seg::Key(t), Seg::Index(i), Seg::Key(k), ..] => (t.clone(), *i, Some(k.clone())),
        [Seg::Key(t), Seg::Index(i)] => (t.clone(), *i, None),
        [Seg::Key(t), Seg::Key(k), ..] => (t.clone(), 0, Some(k.clone())),
        _ => return None,
    };
    let mut current = String::new();
    let mut seen = 0usize;
    let mut header_line = None;
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            let name = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            if name == header {
                if l.starts_with("[[") {
                    seen += 1;
                    current = if seen == index + 1 {
                        name
                    } else {
                        String::new()
                    };
                } else {
                    current = name;
                }
                if current == header {
                    header_line = Some(n + 1);
                }
            } else {
                current = format!("\u{0}{name}");
            }
            continue;
        }
        if current == header
            && let Some(k) = &key
        {
            let lhs = l.split('=').next().unwrap_or("").trim().trim_matches('"');
            if l.contains('=') && lhs == k {
                return Some(n + 1);
            }
            // Dotted form at top level: `source.path = …`.
            if header.is_empty() && lhs.starts_with(&format!("{k}.")) {
                return Some(n + 1);
            }
        }
    }
    header_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_several_errors_with_fields_and_lines() {
        let text = r#"name = "t"
bogus = 1

[source]
type = "file"
path = "x.jsonl"
format = "json"
colour = "red"

[runtime]
key_groups = "many"
batch_size = 0

[checkpoint]
interval = "10 parsecs"
"#;
        let errs = JobConfig::from_toml(text).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"bogus"), "{errs:?}");
        assert!(fields.contains(&"source.colour"), "{errs:?}");
        assert!(fields.contains(&"runtime.key_groups"), "{errs:?}");
        assert!(fields.contains(&"checkpoint.interval"), "{errs:?}");
        let line_of = |f: &str| errs.iter().find(|e| e.field == f).and_then(|e| e.line);
        assert_eq!(line_of("bogus"), Some(2));
        assert_eq!(line_of("source.colour"), Some(8));
        assert_eq!(line_of("runtime.key_groups"), Some(11));
        assert_eq!(line_of("checkpoint.interval"), Some(15));
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let errs = JobConfig::from_toml("name = \"a\"\n[source\ntype = 1\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(2), "{errs:?}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let text = r#"
[source]
type = "generator"
generator = "sine"
[runtime]
partitions = 0
[checkpoint]
keep = 0
interval = "1s"
[metrics]
address = "nowhere"
"#;
        let errs = JobConfig::from_toml(text).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for f in ["runtime.partitions", "checkpoint.keep", "metrics.address"] {
            assert!(fields.contains(&f), "{f} missing in {errs:?}");
        }
    }

    #[test]
    fn finds_lines_in_arrays_of_tables() {
        let text = "[[operators]]\ntype = \"a\"\n[[operators]]\ntype = \"b\"\nm = 3\n";
        assert_eq!(find_line(text, "operators[1].m"), Some(5));
        assert_eq!(find_line(text, "operators[0].type"), Some(2));
    }
}
