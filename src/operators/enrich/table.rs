//! Reference tables: a whole CSV or JSON-lines text turned into key → value.
//!
//! CSV goes through the `csv` crate, so quoted fields may hold commas, `""` quotes and line
//! breaks; CRLF line ends and a UTF-8 byte-order mark (in JSON lines too) are fine. Which cells become JSON numbers
//! is decided by [`crate::parse::csv::cell_number`], the rule the CSV source uses too.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::FileFormat;
use crate::parse::csv::cell_number;
use crate::{Error, Result};

/// A reference table: key → value.
pub type Table = HashMap<Arc<str>, Arc<serde_json::Value>>;

/// Parses a reference table; `source` names it in errors. Returns the table and the number
/// of rows skipped: a CSV row too short to hold the key column, a JSON line that is not JSON
/// or has no string or number under `key_column`. Blank lines are ignored.
///
/// CSV: the first row is the header; header names and keys are trimmed, other cells are
/// kept as their text unless [`cell_number`] makes them numbers. A row shorter than the
/// header leaves the missing columns out; cells past the header are dropped.
pub fn parse_table(
    text: &str,
    format: FileFormat,
    key_column: &str,
    source: &str,
) -> Result<(Table, usize)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        FileFormat::Csv => parse_csv(text, key_column, source),
        FileFormat::Jsonl => Ok(parse_jsonl(text, key_column)),
    }
}

fn parse_csv(text: &str, key_column: &str, source: &str) -> Result<(Table, usize)> {
    let mut rows = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = rows
        .records()
        // A line of spaces is one cell of spaces to the csv crate; it was always skipped.
        .filter(|r| !matches!(r, Ok(r) if r.len() == 1 && r[0].trim().is_empty()));
    let (mut table, mut skipped) = (Table::new(), 0);
    // Errors cannot happen on in-memory UTF-8 text with a flexible reader; name them anyway.
    let broken = |e: csv::Error| table_error(format!("{source}: unreadable CSV: {e}"));
    let Some(header) = rows.next().transpose().map_err(broken)? else {
        return Ok((table, 0));
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    let Some(key_at) = header.iter().position(|h| h == key_column) else {
        return Err(table_error(format!(
            "{source}: no column `{key_column}` (origin.key_column) in the header"
        )));
    };
    for row in rows {
        let row = row.map_err(broken)?;
        let Some(key) = row.get(key_at) else {
            skipped += 1;
            continue;
        };
        let obj: serde_json::Map<String, serde_json::Value> = header
            .iter()
            .zip(row.iter())
            .map(|(h, c)| {
                let v = cell_number(c).map_or_else(|| c.into(), serde_json::Value::Number);
                (h.clone(), v)
            })
            .collect();
        table.insert(
            Arc::from(key.trim()),
            Arc::new(serde_json::Value::Object(obj)),
        );
    }
    Ok((table, skipped))
}

fn parse_jsonl(text: &str, key_column: &str) -> (Table, usize) {
    let (mut table, mut skipped) = (Table::new(), 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            skipped += 1;
            continue;
        };
        let key = match v.get(key_column) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                skipped += 1;
                continue;
            }
        };
        table.insert(Arc::from(key), Arc::new(v));
    }
    (table, skipped)
}

/// An enrich operator error about a table (loading, parsing, refreshing).
pub(super) fn table_error(message: String) -> Error {
    Error::Operator {
        operator: "enrich".into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::csv::{CELL_CASES, expected_cell};

    fn csv(text: &str) -> (Table, usize) {
        parse_table(text, FileFormat::Csv, "id", "t.csv").unwrap()
    }

    #[test]
    fn cells_follow_the_one_number_rule() {
        let mut text = String::from("id,c,z\n");
        for (i, (cell, _)) in CELL_CASES.iter().enumerate() {
            text.push_str(&format!("k{i},\"{cell}\",z\n"));
        }
        let (table, skipped) = csv(&text);
        assert_eq!((table.len(), skipped), (CELL_CASES.len(), 0));
        for (i, &(cell, want)) in CELL_CASES.iter().enumerate() {
            let row = &table[format!("k{i}").as_str()];
            assert_eq!(row["c"], expected_cell(cell, want), "cell {cell:?}");
        }
        // Unquoted too, with the spaces kept on a string.
        let (table, _) = csv("id,zip,n\na,02134 , 12 \n");
        assert_eq!(table["a"]["zip"], "02134 ");
        assert_eq!(table["a"]["n"], 12);
    }

    #[test]
    fn quotes_line_breaks_bom_and_crlf() {
        let text = "\u{feff}id , site,lat\r\n\
                    1,\"hall \"\"A\"\", north\",40.5\r\n\
                    \r\n\
                    \"2\",\"two\r\nlines\",41\r\n\
                    \x20  \n\
                    3\n\
                    ,empty key,0\n";
        let (table, skipped) = csv(text);
        assert_eq!(skipped, 0);
        assert_eq!(table["1"]["site"], "hall \"A\", north");
        assert_eq!(table["1"]["lat"], 40.5);
        assert_eq!(table["2"]["site"], "two\r\nlines");
        assert_eq!(table["2"]["id"], 2);
        // A short row keeps the columns it has.
        assert_eq!(*table["3"], serde_json::json!({"id": 3}));
        assert_eq!(table[""]["site"], "empty key");
    }

    #[test]
    fn short_rows_are_skipped_and_a_missing_key_column_is_an_error() {
        let (table, skipped) = parse_table("a,id\nx\ny,7\n", FileFormat::Csv, "id", "t").unwrap();
        assert_eq!((table.len(), skipped), (1, 1));
        let err = parse_table("a,b\n1,2\n", FileFormat::Csv, "id", "t.csv").unwrap_err();
        assert!(err.to_string().contains("t.csv: no column `id`"), "{err}");
        assert_eq!(csv("").0.len(), 0);
    }

    #[test]
    fn json_lines() {
        let text = "\u{feff}{\"id\":\"a\",\"v\":1}\n\n{\"id\":2}\nnot json\n{\"v\":3}\n";
        let (table, skipped) = parse_table(text, FileFormat::Jsonl, "id", "t").unwrap();
        assert_eq!((table.len(), skipped), (2, 2));
        assert_eq!(table["a"]["v"], 1);
        assert!(table.contains_key("2"));
    }
}
