//! What a command hands back: its text, its JSON document and its exit status.

use serde_json::Value;

use crate::error::ToolError;

/// How a command ended.
#[derive(Debug)]
pub enum Status {
    /// Success: exit 0.
    Ok,
    /// The command answers "no" (`is-leader` on a follower): exit 1.
    No,
    /// It failed after producing a report (verify found corruption): exit 2.
    Failed(ToolError),
}

/// A command's output.
#[derive(Debug)]
pub struct Outcome {
    /// The readable form, printed without `--json`.
    pub text: String,
    /// The JSON document, printed with `--json`.
    pub json: Value,
    /// The exit status.
    pub status: Status,
}

impl Outcome {
    /// A successful outcome.
    pub fn ok(text: String, json: Value) -> Outcome {
        Outcome {
            text,
            json,
            status: Status::Ok,
        }
    }
}

/// Lays out rows under headers in aligned columns (numbers right-aligned).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let numeric: Vec<bool> = (0..headers.len())
        .map(|i| {
            !rows.is_empty()
                && rows
                    .iter()
                    .all(|r| r[i].parse::<i128>().is_ok() || r[i] == "-")
        })
        .collect();
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            if numeric[i] {
                s.push_str(&format!("{cell:>w$}", w = widths[i]));
            } else {
                s.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `Some(v)` as its text, `None` as `-`.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = table(
            &["a", "name"],
            &[
                vec!["1".into(), "x".into()],
                vec!["100".into(), "long".into()],
            ],
        );
        assert_eq!(t, "  a  name\n  1  x\n100  long\n");
    }
}
