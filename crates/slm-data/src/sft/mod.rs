//! Supervised fine-tuning data: instruction files to packed training rows with a loss mask.
//!
//! - `format.rs`: the five row formats (messages, prompt/completion, Alpaca, ShareGPT, text)
//!   read into one [`Example`], refusing rows by `path:line`.
//! - `tokenize.rs`: an example to ids and the mask of trained tokens ([`TrainOn`]): assistant
//!   turns found by rendering conversation prefixes with the chat template.
//! - `pack.rs`: tokenised examples into rows of `seq` positions with per-position segment
//!   starts, so packed examples do not attend to each other ([`Packing`]).
//! - `stream.rs`: seeded, resumable training batches of rows and in-order evaluation batches.
//! - `split.rs`: the seeded train/eval split.
//!
//! [`prepare`] runs them in order for a trainer: read every file, tokenise (in parallel),
//! split off the evaluation examples, pack both parts, and summarise.

mod format;
mod pack;
mod split;
mod stream;
#[cfg(test)]
mod testutil;
mod tokenize;

pub use format::{read_examples, read_source, Example, Format, Location, SourceFile};
pub use pack::{pack, PackStats, Packed, Packing, RowRef, IGNORE_INDEX};
pub use split::split_eval;
pub use stream::{eval_batches, EvalBatch, PackedStream};
pub use tokenize::{tokenize_example, TokenizedExample, TrainOn};

use std::fmt;
use std::path::PathBuf;

use rayon::prelude::*;
use slm_core::{Error, Result};

use crate::chat::ChatTemplate;
use crate::tokenizer::Tokenizer;

/// How [`prepare`] turns files into rows.
#[derive(Debug, Clone, PartialEq)]
pub struct SftOptions {
    pub train_on: TrainOn,
    /// BOS first in every example (usually `Tokenizer::adds_bos()`; never doubled when the
    /// rendered text already starts with it).
    pub add_bos: bool,
    /// Positions per row (the training context).
    pub seq: usize,
    pub packing: Packing,
    /// The input id of padding positions (e.g. EOS).
    pub pad_id: u32,
    /// Share of examples held out for evaluation, in `[0, 1)`.
    pub eval_fraction: f64,
    /// Seeds the evaluation split.
    pub seed: u64,
}

/// One input file as read.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSummary {
    pub path: PathBuf,
    pub format: Format,
    pub rows: usize,
}

/// What [`prepare`] read and built, for the command line to print ([`fmt::Display`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub files: Vec<FileSummary>,
    pub seq: usize,
    pub train: PackStats,
    /// Absent without an evaluation split.
    pub eval: Option<PackStats>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            writeln!(
                f,
                "{}: {}, {} rows",
                file.path.display(),
                file.format,
                file.rows
            )?;
        }
        let part = |f: &mut fmt::Formatter<'_>, name: &str, s: &PackStats| {
            write!(
                f,
                "{name}: {} examples in {} rows of {} positions (fill {:.1}%), {} trained tokens",
                s.examples,
                s.rows,
                self.seq,
                100.0 * s.fill,
                s.trained_tokens
            )?;
            if s.truncated > 0 {
                write!(f, "; {} cut to {} tokens", s.truncated, self.seq + 1)?;
            }
            if s.dropped > 0 {
                write!(
                    f,
                    "; {} dropped (no trained token within the row)",
                    s.dropped
                )?;
            }
            Ok(())
        };
        part(f, "train", &self.train)?;
        if let Some(e) = &self.eval {
            writeln!(f)?;
            part(f, "eval", e)?;
        }
        Ok(())
    }
}

/// Packed training (and evaluation) rows with their summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub train: Packed,
    /// Present when `eval_fraction > 0` held out examples.
    pub eval: Option<Packed>,
    pub summary: Summary,
}

/// Reads `files`, tokenises every example (conversations need `template`), holds out
/// `opts.eval_fraction` of the examples, and packs both parts. An example that cannot be
/// tokenised is an error naming its file and row; no trainable row at all is an error.
pub fn prepare(
    files: &[PathBuf],
    tok: &dyn Tokenizer,
    template: Option<&ChatTemplate>,
    opts: &SftOptions,
) -> Result<Prepared> {
    if files.is_empty() {
        return Err(Error::invalid("no fine-tuning data files given"));
    }
    let mut summaries = Vec::with_capacity(files.len());
    let mut tokenized = Vec::new();
    for path in files {
        let src = read_source(path)?;
        let done: Vec<TokenizedExample> = src
            .examples
            .par_iter()
            .zip(&src.locations)
            .map(|(ex, loc)| {
                tokenize_example(ex, tok, template, opts.train_on, opts.add_bos)
                    .map_err(|e| loc.error(path, e))
            })
            .collect::<Result<_>>()?;
        tokenized.extend(done);
        summaries.push(FileSummary {
            path: path.clone(),
            format: src.format,
            rows: src.examples.len(),
        });
    }
    let (train, eval) = split_eval(tokenized, opts.eval_fraction, opts.seed)?;
    let train = pack(&train, opts.seq, opts.packing, opts.pad_id)?;
    if train.rows() == 0 {
        return Err(Error::invalid(format!(
            "no training example has a trained token within {} tokens ({} dropped){}",
            opts.seq + 1,
            train.stats.dropped,
            if opts.train_on == TrainOn::Completion {
                "; is the loss on the right tokens?"
            } else {
                ""
            }
        )));
    }
    let eval = if eval.is_empty() {
        None
    } else {
        Some(pack(&eval, opts.seq, opts.packing, opts.pad_id)?)
    };
    let summary = Summary {
        files: summaries,
        seq: opts.seq,
        train: train.stats,
        eval: eval.as_ref().map(|e| e.stats),
    };
    Ok(Prepared {
        train,
        eval,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::testutil::{ByteTok, CHATML};
    use super::*;

    #[test]
    fn prepare_reads_tokenises_splits_and_packs() {
        let dir = tempfile::tempdir().unwrap();
        let chat = dir.path().join("chat.jsonl");
        let mut text = String::new();
        for k in 0..20 {
            text.push_str(&format!(
                "{{\"messages\": [{{\"role\": \"user\", \"content\": \"q{k}\"}}, {{\"role\": \"assistant\", \"content\": \"a{k}\"}}]}}\n"
            ));
        }
        std::fs::write(&chat, text).unwrap();
        let plain = dir.path().join("plain.json");
        std::fs::write(
            &plain,
            r#"[{"prompt": "1+1=", "completion": "2"}, {"text": "x"}]"#,
        )
        .unwrap();
        let tok = ByteTok::default();
        let t = ChatTemplate::new(CHATML, "chatml").unwrap();
        let opts = SftOptions {
            train_on: TrainOn::Completion,
            add_bos: false,
            seq: 64,
            packing: Packing::On,
            pad_id: ByteTok::EOS,
            eval_fraction: 0.1,
            seed: 1,
        };
        // The second file mixes formats: refused with its element.
        let e = prepare(&[chat.clone(), plain.clone()], &tok, Some(&t), &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain.json: element 2"), "{e}");
        std::fs::write(&plain, r#"[{"prompt": "1+1=", "completion": "2"}]"#).unwrap();
        let p = prepare(&[chat.clone(), plain.clone()], &tok, Some(&t), &opts).unwrap();
        assert_eq!(p.summary.files.len(), 2);
        assert_eq!(p.summary.files[0].format, Format::Messages);
        assert_eq!(p.summary.files[0].rows, 20);
        assert_eq!(p.summary.files[1].format, Format::PromptCompletion);
        let eval = p.eval.as_ref().unwrap();
        assert_eq!(p.train.stats.examples + eval.stats.examples, 21);
        assert_eq!(eval.stats.examples, 2);
        assert!(p.train.rows() < 19, "packed: {}", p.train.rows());
        let shown = p.summary.to_string();
        assert!(shown.contains("chat.jsonl: messages, 20 rows"), "{shown}");
        assert!(shown.contains("train: 19 examples"), "{shown}");
        assert!(shown.contains("eval: 2 examples"), "{shown}");
        assert_eq!(
            prepare(&[chat.clone(), plain.clone()], &tok, Some(&t), &opts).unwrap(),
            p
        );

        // Conversations need a template: the error names the first row.
        let e = prepare(std::slice::from_ref(&chat), &tok, None, &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("chat.jsonl:1:"), "{e}");
        assert!(e.contains("--chat-template"), "{e}");
        // Rows too short for any trained token.
        let tiny = SftOptions {
            seq: 2,
            ..opts.clone()
        };
        let e = prepare(&[chat], &tok, Some(&t), &tiny)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no training example"), "{e}");
        assert!(prepare(&[], &tok, Some(&t), &opts).is_err());
    }
}
