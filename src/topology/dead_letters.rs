//! What the runtime does with dead letters: the record written to the dead-letter sink, the
//! log line per reason, and the dead letter a contained panic becomes.

use std::any::Any;

use crate::core::{DeadLetter, Record};

/// The most of an input a dead letter keeps (its first bytes, as lossy UTF-8).
pub const DEAD_LETTER_DATA: usize = 4096;

/// Turns a dead letter into the record written to the dead-letter sink.
///
/// Deterministic content only (no wall-clock time), so a replay after a restore writes the
/// same bytes an uninterrupted run would.
pub fn dead_letter_record(component: &str, dl: &DeadLetter, bytes: Option<usize>) -> Record {
    use crate::core::record::write_json_str;
    let mut raw = String::with_capacity(128 + dl.data.len().min(DEAD_LETTER_DATA));
    raw.push_str("{\"reason\":");
    write_json_str(&mut raw, dl.reason);
    raw.push_str(",\"error\":");
    write_json_str(&mut raw, &dl.message);
    raw.push_str(",\"component\":");
    write_json_str(&mut raw, component);
    if let Some(s) = &dl.origin.stream {
        raw.push_str(",\"stream\":");
        write_json_str(&mut raw, s);
    }
    if let Some(p) = &dl.origin.position {
        raw.push_str(",\"position\":");
        write_json_str(&mut raw, p);
    }
    let mut end = dl.data.len().min(DEAD_LETTER_DATA);
    while !dl.data.is_char_boundary(end) {
        end -= 1;
    }
    raw.push_str(",\"data\":");
    write_json_str(&mut raw, &dl.data[..end]);
    raw.push_str(",\"bytes\":");
    raw.push_str(&bytes.unwrap_or(dl.data.len()).to_string());
    raw.push('}');
    let mut r = Record::new("dead_letter", vec![]);
    r.raw = Some(raw.into_boxed_str());
    r
}

/// The reasons in `dead`, in order of first appearance, each with its count and first
/// message: one log line per reason, so the logs count every reason (issue 14.15).
pub(super) fn by_reason<'a>(
    dead: impl IntoIterator<Item = &'a DeadLetter>,
) -> Vec<(&'static str, usize, &'a str)> {
    let mut out: Vec<(&'static str, usize, &'a str)> = Vec::new();
    for dl in dead {
        match out.iter_mut().find(|(r, _, _)| *r == dl.reason) {
            Some((_, n, _)) => *n += 1,
            None => out.push((dl.reason, 1, &dl.message)),
        }
    }
    out
}

/// Logs one warning per reason in `dead` for `component`.
pub(super) fn log<'a>(component: &str, dead: impl IntoIterator<Item = &'a DeadLetter>) {
    for (reason, count, first) in by_reason(dead) {
        tracing::warn!(component, reason, count, error = %first, "Dead-lettered input.");
    }
}

/// The dead letter for `record`, whose processing by `component` panicked with `payload`.
pub(super) fn panicked(component: &str, payload: &(dyn Any + Send), record: &Record) -> DeadLetter {
    let message = crate::core::panic::report(component, payload);
    DeadLetter::of_record(crate::core::panic::INTERNAL_ERROR, message, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl(reason: &'static str, message: &str) -> DeadLetter {
        DeadLetter {
            reason,
            message: message.into(),
            data: String::new(),
            origin: Default::default(),
        }
    }

    /// Issue 14.15: a batch with several reasons logs each with its own count, not the
    /// first reason with the batch's count.
    #[test]
    fn a_batch_is_counted_per_reason() {
        let dead = [
            dl("malformed_json", "m1"),
            dl("non_finite", "n1"),
            dl("malformed_json", "m2"),
            dl("bad_time", "t1"),
            dl("non_finite", "n2"),
        ];
        assert_eq!(
            by_reason(&dead),
            vec![
                ("malformed_json", 2, "m1"),
                ("non_finite", 2, "n1"),
                ("bad_time", 1, "t1")
            ]
        );
    }
}
