//! The shape of the source tree, checked (issue 13): the layers import only downwards, and no
//! source file outside tests grows past the size a reader can hold in their head.

use std::path::{Path, PathBuf};

/// The longest a non-test source file may be.
const MAX_LINES: usize = 600;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn files_under(sub: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&src().join(sub), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// Test files: `tests.rs`, `tests/…`, and golden tables included by tests.
fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
        || path.components().any(|c| c.as_os_str() == "tests")
}

/// Lines of `text` before its inline `#[cfg(test)] mod tests` block.
fn code_lines(text: &str) -> usize {
    let mut n = 0;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|l| l.trim_start().starts_with("mod tests {"))
        {
            break;
        }
        n += 1;
    }
    n
}

#[test]
fn no_source_file_is_over_the_limit() {
    let over: Vec<String> = files_under("")
        .into_iter()
        .filter(|(p, _)| !is_test_file(p))
        .filter_map(|(p, text)| {
            let n = code_lines(&text);
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(
        over.is_empty(),
        "split these files (at most {MAX_LINES} lines before their tests): {over:#?}"
    );
}

/// `use crate::<module>` and `crate::<module>::` paths in a file's code (comments, doc
/// links included, are not imports).
fn crate_imports(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let mut found = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '{')
            .collect();
        found.push(name);
    }
    found
}

fn assert_imports_only(layer: &str, allowed: &[&str]) {
    let mut bad = Vec::new();
    for (path, text) in files_under(layer) {
        for m in crate_imports(&text) {
            let module = m.trim_end_matches('{');
            if !allowed.contains(&module) && module != "Result" && module != "Error" {
                bad.push(format!("{} imports crate::{module}", path.display()));
            }
        }
    }
    bad.sort();
    bad.dedup();
    assert!(
        bad.is_empty(),
        "{layer} reaches outside {allowed:?}: {bad:#?}"
    );
}

#[test]
fn core_imports_nothing_above_it() {
    assert_imports_only("core", &["core"]);
}

#[test]
fn detectors_are_pure() {
    assert_imports_only("detectors", &["core", "detectors"]);
}

#[test]
fn components_do_not_import_the_job_file_loader() {
    for layer in ["connectors", "operators", "detectors", "state", "core"] {
        for (path, text) in files_under(layer) {
            assert!(
                !crate_imports(&text).iter().any(|m| m == "config"),
                "{} imports crate::config; components take their types from crate::core",
                path.display()
            );
        }
    }
}
