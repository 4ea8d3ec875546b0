//! Reading training documents from `.txt` and `.jsonl` files, folders and globs.
//!
//! `.txt`: split on a separator (such as `<|endoftext|>`) when the file contains it, else on
//! blank lines. `.jsonl`: one object per line with a `text` field, or chat `messages`
//! (rendered as `role: content` lines). Empty, binary (NUL bytes) or non-UTF-8 input is an
//! error naming the file and byte offset.

use slm_core::{error::IoContext, Error, Result};
use std::path::{Path, PathBuf};

/// How `.txt` files are cut into documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// The separator when the file contains it, blank lines otherwise.
    Auto(String),
    BlankLines,
    Separator(String),
    /// The whole file is one document.
    WholeFile,
}

impl Default for Split {
    fn default() -> Self {
        Split::Auto("<|endoftext|>".into())
    }
}

/// Expands files, folders (recursively: `.txt`, `.jsonl`) and glob patterns, sorted.
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for spec in inputs {
        let p = Path::new(spec);
        if p.is_dir() {
            walk(p, &mut out)?;
        } else if p.is_file() {
            out.push(p.to_path_buf());
        } else if spec.contains(['*', '?', '[']) {
            let paths =
                glob::glob(spec).map_err(|e| Error::invalid(format!("bad glob `{spec}`: {e}")))?;
            let mut n = 0;
            for entry in paths {
                let path = entry.map_err(|e| Error::invalid(e.to_string()))?;
                if path.is_file() {
                    out.push(path);
                    n += 1;
                }
            }
            if n == 0 {
                return Err(Error::invalid(format!("`{spec}` matches no file")));
            }
        } else {
            return Err(Error::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_path(dir)? {
        let path = entry.with_path(dir)?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("txt" | "jsonl")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads `path` as UTF-8 text, rejecting empty, binary and non-UTF-8 files.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_path(path)?;
    text_from_bytes(path, bytes)
}

pub fn text_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<String> {
    if let Some(off) = bytes.iter().position(|&b| b == 0) {
        return Err(Error::format(
            path,
            format!("binary file: NUL byte at offset {off}"),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::format(
            path,
            format!(
                "not UTF-8: invalid byte at offset {}",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    if text.trim().is_empty() {
        return Err(Error::format(path, "the file is empty"));
    }
    Ok(text)
}

/// Splits text into trimmed, non-empty documents.
pub fn split_text(text: &str, split: &Split) -> Vec<String> {
    let on_blank = |t: &str| -> Vec<String> {
        let mut docs = Vec::new();
        let mut cur = String::new();
        for line in t.lines() {
            if line.trim().is_empty() {
                if !cur.trim().is_empty() {
                    docs.push(cur.trim().to_string());
                }
                cur.clear();
            } else {
                cur.push_str(line);
                cur.push('\n');
            }
        }
        if !cur.trim().is_empty() {
            docs.push(cur.trim().to_string());
        }
        docs
    };
    let on_sep = |t: &str, sep: &str| -> Vec<String> {
        t.split(sep)
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(String::from)
            .collect()
    };
    match split {
        Split::Auto(sep) if text.contains(sep.as_str()) => on_sep(text, sep),
        Split::Auto(_) | Split::BlankLines => on_blank(text),
        Split::Separator(sep) => on_sep(text, sep),
        Split::WholeFile => vec![text.to_string()],
    }
}

/// Documents of a `.jsonl` file: `text` fields, or chat `messages` rendered as lines.
pub fn jsonl_documents(path: &Path, text: &str) -> Result<Vec<String>> {
    let mut docs = Vec::new();
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            Error::format(
                path,
                format!("line {} (byte offset {start}): invalid JSON: {e}", i + 1),
            )
        })?;
        if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
            if !t.trim().is_empty() {
                docs.push(t.trim().to_string());
            }
        } else if let Some(msgs) = v.get("messages").and_then(|m| m.as_array()) {
            let mut s = String::new();
            for m in msgs {
                let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("user");
                let content = m.get("content").and_then(|c| c.as_str()).unwrap_or("");
                s.push_str(&format!("{role}: {content}\n"));
            }
            docs.push(s.trim_end().to_string());
        } else {
            return Err(Error::format(
                path,
                format!(
                    "line {} (byte offset {start}): no `text` string or `messages` array",
                    i + 1
                ),
            ));
        }
    }
    if docs.is_empty() {
        return Err(Error::format(path, "no documents"));
    }
    Ok(docs)
}

/// All documents of one input file.
pub fn read_documents(path: &Path, split: &Split) -> Result<Vec<String>> {
    let text = read_text(path)?;
    if path.extension().and_then(|e| e.to_str()) == Some("jsonl") {
        jsonl_documents(path, &text)
    } else {
        Ok(split_text(&text, split))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_separator_or_blank_lines() {
        let t = "a\nb\n<|endoftext|>\nc\n\n<|endoftext|>";
        assert_eq!(split_text(t, &Split::default()), vec!["a\nb", "c"]);
        let t = "one\ntwo\n\n\nthree\n";
        assert_eq!(split_text(t, &Split::default()), vec!["one\ntwo", "three"]);
    }

    #[test]
    fn bad_files_are_named_with_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.txt");
        std::fs::write(&p, b"hello \xff world").unwrap();
        let e = read_text(&p).unwrap_err().to_string();
        assert!(e.contains("bad.txt") && e.contains("offset 6"), "{e}");
        std::fs::write(&p, b"ab\0cd").unwrap();
        assert!(read_text(&p)
            .unwrap_err()
            .to_string()
            .contains("NUL byte at offset 2"));
        std::fs::write(&p, b"  \n\n").unwrap();
        assert!(read_text(&p).unwrap_err().to_string().contains("empty"));
        let j = dir.path().join("d.jsonl");
        std::fs::write(&j, "{\"text\": \"hi\"}\n{\"messages\": [{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n{oops\n").unwrap();
        let e = read_documents(&j, &Split::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3"), "{e}");
        std::fs::write(&j, "{\"text\": \"hi\"}\n{\"messages\": [{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n").unwrap();
        assert_eq!(
            read_documents(&j, &Split::default()).unwrap(),
            vec!["hi", "user: q\nassistant: a"]
        );
    }

    #[test]
    fn expands_folders_and_globs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for f in ["a.txt", "sub/b.jsonl", "sub/c.bin"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let got = expand_inputs(&[dir.path().display().to_string()]).unwrap();
        assert_eq!(got.len(), 2);
        let g = format!("{}/sub/*.jsonl", dir.path().display());
        assert_eq!(expand_inputs(&[g]).unwrap().len(), 1);
        assert!(expand_inputs(&[format!("{}/none*.txt", dir.path().display())]).is_err());
        assert!(expand_inputs(&["/no/such/file.txt".into()]).is_err());
    }
}
