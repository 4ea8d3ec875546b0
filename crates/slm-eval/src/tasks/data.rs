//! Reading evaluation files: JSON Lines, CSV and TSV (RFC 4180 quoting, as Python's `csv`
//! reads them), each row kept with the file and line it came from so that a missing or
//! malformed field is reported as `file:line: ...`.

use serde_json::{Map, Value};
use slm_core::{Error, Result};
use std::path::{Path, PathBuf};

/// One document: its fields and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub fields: Value,
    pub file: PathBuf,
    /// 1-based line of the row's start.
    pub line: usize,
}

impl Doc {
    /// The error for this document: `file:line: msg`.
    pub fn error(&self, msg: impl std::fmt::Display) -> Error {
        Error::format(&self.file, format!("line {}: {msg}", self.line))
    }

    /// The field `name` (a dotted path such as `question.stem` reaches into objects).
    pub fn get(&self, name: &str) -> Result<&Value> {
        let mut v = &self.fields;
        for part in name.split('.') {
            v = match v {
                Value::Object(m) => m.get(part),
                Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            }
            .ok_or_else(|| self.error(format!("field `{name}` is missing")))?;
        }
        Ok(v)
    }

    /// The field `name` as text (numbers and booleans written as Python's `str` would).
    pub fn text(&self, name: &str) -> Result<String> {
        match self.get(name)? {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(if *b { "True" } else { "False" }.to_string()),
            other => Err(self.error(format!("field `{name}` is not text: {other}"))),
        }
    }

    /// The field `name` as a list of texts.
    pub fn texts(&self, name: &str) -> Result<Vec<String>> {
        match self.get(name)? {
            Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(self.error(format!("field `{name}` holds a non-text {other}"))),
                })
                .collect(),
            other => Err(self.error(format!("field `{name}` is not a list: {other}"))),
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Every non-empty line of a JSON Lines file.
pub fn read_jsonl(path: &Path) -> Result<Vec<Doc>> {
    let text = read(path)?;
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Value = serde_json::from_str(line)
            .map_err(|e| Error::format(path, format!("line {}: not JSON: {e}", i + 1)))?;
        docs.push(Doc {
            fields,
            file: path.to_path_buf(),
            line: i + 1,
        });
    }
    Ok(docs)
}

/// Rows of a delimited file (`,` or `\t`) with Python `csv`'s default dialect: fields in
/// double quotes may hold the delimiter, newlines and doubled quotes. Each row with the line
/// it starts on.
pub fn read_delimited(path: &Path, delim: char) -> Result<Vec<(usize, Vec<String>)>> {
    let text = read(path)?;
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let (mut line, mut row_line) = (1usize, 1usize);
    let mut in_quotes = false;
    let mut at_field_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                in_quotes = true;
                at_field_start = false;
            }
            c if c == delim => {
                row.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                if !(row.len() == 1 && row[0].is_empty()) {
                    rows.push((row_line, std::mem::take(&mut row)));
                }
                row.clear();
                line += 1;
                row_line = line;
                at_field_start = true;
            }
            _ => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if in_quotes {
        return Err(Error::format(
            path,
            format!("line {row_line}: a quoted field is never closed"),
        ));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push((row_line, row));
    }
    Ok(rows)
}

/// A delimited file with a header row as documents keyed by the header's names.
pub fn read_table(path: &Path, delim: char) -> Result<Vec<Doc>> {
    let mut rows = read_delimited(path, delim)?.into_iter();
    let Some((_, header)) = rows.next() else {
        return Ok(Vec::new());
    };
    rows.map(|(line, r)| {
        if r.len() != header.len() {
            return Err(Error::format(
                path,
                format!(
                    "line {line}: {} fields where the header has {}",
                    r.len(),
                    header.len()
                ),
            ));
        }
        let m: Map<String, Value> = header
            .iter()
            .cloned()
            .zip(r.into_iter().map(Value::String))
            .collect();
        Ok(Doc {
            fields: Value::Object(m),
            file: path.to_path_buf(),
            line,
        })
    })
    .collect()
}

/// Documents of a file by its extension: `.jsonl`, `.csv` or `.tsv` (with a header row).
pub fn read_docs(path: &Path) -> Result<Vec<Doc>> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") | Some("json") => read_jsonl(path),
        Some("csv") => read_table(path, ','),
        Some("tsv") => read_table(path, '\t'),
        _ => Err(Error::format(
            path,
            "unknown data format: use .jsonl, .csv or .tsv",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_newlines_and_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "q,a\n\"x, \"\"y\"\"\nz\",1\nplain,2\n").unwrap();
        let rows = read_delimited(&p, ',').unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1],
            (2, vec!["x, \"y\"\nz".to_string(), "1".to_string()])
        );
        assert_eq!(rows[2].0, 4);
        let docs = read_table(&p, ',').unwrap();
        assert_eq!(docs[1].text("a").unwrap(), "2");
        let err = docs[1].text("b").unwrap_err().to_string();
        assert!(
            err.contains("a.csv") && err.contains("line 4") && err.contains("`b`"),
            "{err}"
        );
        std::fs::write(&p, "q\n\"open\n").unwrap();
        assert!(read_delimited(&p, ',').is_err());
    }

    #[test]
    fn jsonl_dotted_fields_and_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        std::fs::write(&p, "{\"question\":{\"stem\":\"s\",\"n\":[1,2]}}\n\n{bad\n").unwrap();
        let err = read_jsonl(&p).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        std::fs::write(
            &p,
            "{\"question\":{\"stem\":\"s\",\"n\":[1,2]},\"b\":true}\n",
        )
        .unwrap();
        let d = &read_jsonl(&p).unwrap()[0];
        assert_eq!(d.text("question.stem").unwrap(), "s");
        assert_eq!(d.text("question.n.1").unwrap(), "2");
        assert_eq!(d.text("b").unwrap(), "True");
        assert_eq!(d.texts("question.n").unwrap(), ["1", "2"]);
    }
}
