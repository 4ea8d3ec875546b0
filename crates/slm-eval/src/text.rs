//! Reading evaluation text the way published perplexity numbers were computed.
//!
//! WikiText-2 raw files are joined as SparseGPT and Wanda do with Hugging Face datasets:
//! each line of the file is one dataset row (blank lines become empty rows, other lines keep
//! their newline) and the rows are joined with "\n\n". Other text is used as it is, or split
//! into documents on a separator such as `<|endoftext|>`.

use slm_core::{error::IoContext, Error, Result};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// WikiText when the file is named `wiki.*.raw` (or `wiki.*.tokens`), plain otherwise.
    Auto,
    WikiText,
    Plain,
}

/// The rows of a WikiText file as Hugging Face `datasets` yields them, joined with "\n\n".
pub fn wikitext_join(raw: &str) -> String {
    let rows: Vec<&str> = raw
        .split_inclusive('\n')
        .map(|line| if line.trim().is_empty() { "" } else { line })
        .collect();
    rows.join("\n\n")
}

pub fn is_wikitext_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("wiki.") && (name.ends_with(".raw") || name.ends_with(".tokens"))
}

/// Reads `path` as UTF-8 and applies the evaluation protocol of `format`.
pub fn read_eval_text(path: &Path, format: TextFormat) -> Result<String> {
    let bytes = std::fs::read(path).with_path(path)?;
    let raw = String::from_utf8(bytes).map_err(|e| {
        Error::format(
            path,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    if raw.trim().is_empty() {
        return Err(Error::format(path, "the file is empty"));
    }
    let wiki = match format {
        TextFormat::WikiText => true,
        TextFormat::Plain => false,
        TextFormat::Auto => is_wikitext_name(path),
    };
    Ok(if wiki { wikitext_join(&raw) } else { raw })
}

/// Splits text into trimmed, non-empty documents on `separator`.
pub fn split_documents<'a>(text: &'a str, separator: &str) -> Vec<&'a str> {
    text.split(separator)
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wikitext_rows_match_hf_datasets() {
        let raw = " \n = Title = \n \n Body text .\n";
        // rows: "", " = Title = \n", "", " Body text .\n"
        assert_eq!(
            wikitext_join(raw),
            "\n\n = Title = \n\n\n\n\n Body text .\n"
        );
        assert!(is_wikitext_name(Path::new("/x/wiki.test.raw")));
        assert!(!is_wikitext_name(Path::new("/x/stories.txt")));
    }

    #[test]
    fn documents_split_and_trim() {
        let t = "a b\n<|endoftext|>\n c \n<|endoftext|>\n\n";
        assert_eq!(split_documents(t, "<|endoftext|>"), vec!["a b", "c"]);
    }
}
