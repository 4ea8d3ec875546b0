//! `slm data prepare`: documents to train/val token shards.
//!
//! Each document becomes `[BOS] tokens [EOS]` (BOS/EOS when the tokenizer has them; one token
//! when they are the same, as with `<|endoftext|>`). Documents go to the validation shard by a
//! seeded hash of their index, so the split is stable. Tokenisation runs in parallel in chunks;
//! the caller gets progress callbacks. Writes `train.bin`, `val.bin` and `data.json`.

use crate::documents::{read_documents, Split};
use crate::shards::{ShardWriter, TokenWidth};
use crate::tokenizer::Tokenizer;
use rayon::prelude::*;
use slm_core::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub split: Split,
    /// Share held out for validation (of documents, or of tokens with `ValMode::Tail`).
    pub val_fraction: f64,
    pub val_mode: ValMode,
    pub seed: u64,
}

/// How the validation set is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValMode {
    /// Whole documents, picked by a seeded hash of their index.
    RandomDocuments,
    /// The last `val_fraction` of the token stream (nanoGPT's split of tinyshakespeare).
    Tail,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            split: Split::default(),
            val_fraction: 0.05,
            val_mode: ValMode::RandomDocuments,
            seed: 1337,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DataSummary {
    pub train_tokens: u64,
    pub val_tokens: u64,
    pub train_documents: usize,
    pub val_documents: usize,
    pub vocab_size: usize,
    pub token_bytes: usize,
    pub sources: Vec<String>,
}

pub const TRAIN_SHARD: &str = "train.bin";
pub const VAL_SHARD: &str = "val.bin";
pub const SUMMARY: &str = "data.json";

fn is_val(index: usize, seed: u64, fraction: f64) -> bool {
    let mut z = (index as u64)
        .wrapping_add(seed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 31;
    (z as f64 / u64::MAX as f64) < fraction
}

/// Tokenises one document with its boundary tokens: BOS when the model's tokenizer adds it
/// ([`Tokenizer::adds_bos`]), then EOS (once, when BOS and EOS are the same token).
pub fn document_tokens(tok: &dyn Tokenizer, doc: &str) -> Result<Vec<u32>> {
    let mut ids = tok.encode(doc, tok.adds_bos())?;
    if let Some(eos) = tok.eos_id() {
        if tok.bos_id() != Some(eos) || ids.first() != Some(&eos) {
            ids.push(eos);
        }
    }
    Ok(ids)
}

/// Prepares `files` into `out`; `progress(done_docs, total_docs)`.
pub fn prepare(
    files: &[PathBuf],
    tok: &dyn Tokenizer,
    out: &Path,
    opts: &PrepareOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<DataSummary> {
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(Error::invalid(format!(
            "val fraction must be in [0, 1), got {}",
            opts.val_fraction
        )));
    }
    if files.is_empty() {
        return Err(Error::invalid("no input files"));
    }
    let mut docs = Vec::new();
    for f in files {
        docs.extend(read_documents(f, &opts.split)?);
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let width = TokenWidth::for_vocab(tok.vocab_size());
    let mut train = ShardWriter::create(&out.join(TRAIN_SHARD), width)?;
    let mut val = ShardWriter::create(&out.join(VAL_SHARD), width)?;
    // At least one validation document whenever there are two or more.
    let forced_val = docs.len() >= 2
        && opts.val_fraction > 0.0
        && !(0..docs.len()).any(|i| is_val(i, opts.seed, opts.val_fraction));
    let (mut ntrain, mut nval) = (0, 0);
    let total = docs.len();
    if opts.val_mode == ValMode::Tail {
        let mut all = Vec::new();
        for (c, block) in docs.chunks(512).enumerate() {
            let toks: Vec<Result<Vec<u32>>> =
                block.par_iter().map(|d| document_tokens(tok, d)).collect();
            for t in toks {
                all.extend(t?);
            }
            progress((c * 512 + block.len()).min(total), total);
        }
        let cut = all.len() - (all.len() as f64 * opts.val_fraction).round() as usize;
        train.write(&all[..cut])?;
        val.write(&all[cut..])?;
        ntrain = total;
    } else {
        let chunk = 512;
        for (c, block) in docs.chunks(chunk).enumerate() {
            let toks: Vec<Result<Vec<u32>>> =
                block.par_iter().map(|d| document_tokens(tok, d)).collect();
            for (j, t) in toks.into_iter().enumerate() {
                let i = c * chunk + j;
                let t = t?;
                if is_val(i, opts.seed, opts.val_fraction) || (forced_val && i + 1 == total) {
                    val.write(&t)?;
                    nval += 1;
                } else {
                    train.write(&t)?;
                    ntrain += 1;
                }
            }
            progress((c * chunk + block.len()).min(total), total);
        }
    }
    let summary = DataSummary {
        train_tokens: train.finish()?,
        val_tokens: val.finish()?,
        train_documents: ntrain,
        val_documents: nval,
        vocab_size: tok.vocab_size(),
        token_bytes: match width {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        },
        sources: files.iter().map(|f| f.display().to_string()).collect(),
    };
    let p = out.join(SUMMARY);
    std::fs::write(&p, serde_json::to_vec_pretty(&summary)?).map_err(|e| Error::io(&p, e))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::Shard;
    use crate::tokenizer::train::{save, train_chars};
    use crate::tokenizer::HfTokenizer;

    #[test]
    fn prepares_shards_with_boundaries_and_a_stable_split() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..40)
            .map(|i| format!("story number {i} is here.\n\n"))
            .collect();
        let input = dir.path().join("in.txt");
        std::fs::write(&input, &text).unwrap();
        let tk = train_chars([text.as_str()].iter(), &["<|endoftext|>".into()]).unwrap();
        save(&tk, &dir.path().join("tokenizer.json")).unwrap();
        let tok = HfTokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
        let out = dir.path().join("data");
        let opts = PrepareOptions {
            val_fraction: 0.2,
            ..Default::default()
        };
        let s = prepare(&[input.clone()], &tok, &out, &opts, &|_, _| {}).unwrap();
        assert_eq!(s.train_documents + s.val_documents, 40);
        assert!(s.val_documents > 0 && s.train_documents > 20);
        let train = Shard::open(&out.join(TRAIN_SHARD))
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(train.len() as u64, s.train_tokens);
        let eot = tok.token_to_id("<|endoftext|>").unwrap();
        // One <|endoftext|> per document boundary (BOS and EOS are the same token).
        assert_eq!(
            train.iter().filter(|&&t| t == eot).count(),
            s.train_documents
        );
        let again = prepare(
            &[input.clone()],
            &tok,
            &dir.path().join("data2"),
            &opts,
            &|_, _| {},
        )
        .unwrap();
        assert_eq!(again.val_tokens, s.val_tokens);
        // Tail mode: the last 10% of the token stream, in order.
        let tail = PrepareOptions {
            val_fraction: 0.1,
            val_mode: ValMode::Tail,
            split: Split::WholeFile,
            ..Default::default()
        };
        let t = prepare(&[input], &tok, &dir.path().join("data3"), &tail, &|_, _| {}).unwrap();
        let val = Shard::open(&dir.path().join("data3").join(VAL_SHARD))
            .unwrap()
            .to_vec()
            .unwrap();
        let all = document_tokens(&tok, &text).unwrap();
        assert_eq!(t.train_tokens + t.val_tokens, all.len() as u64);
        assert_eq!(val, all[all.len() - val.len()..].to_vec());
    }
}
