//! Training tokenizers: byte-level BPE (GPT-2 style, through the `tokenizers` crate) and a
//! character-level vocabulary, both written as a Hugging Face `tokenizer.json`.
//!
//! Special tokens (such as `<|endoftext|>`) take the first ids, in the order given. Byte-level
//! BPE starts from all 256 byte symbols, so any text encodes; the character vocabulary maps
//! characters never seen in training to `<unk>`.

use slm_core::{Error, Result};
use std::collections::BTreeSet;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, DecoderWrapper, ModelWrapper, PreTokenizerWrapper};

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

#[derive(Debug, Clone)]
pub struct BpeTrainOptions {
    pub vocab_size: usize,
    pub min_frequency: u64,
    pub special_tokens: Vec<String>,
}

impl Default for BpeTrainOptions {
    fn default() -> Self {
        Self {
            vocab_size: 4096,
            min_frequency: 2,
            special_tokens: vec!["<|endoftext|>".into()],
        }
    }
}

/// Trains a byte-level BPE on `docs` and returns the tokenizer (save it with [`save`]).
pub fn train_bpe<S: AsRef<str> + Send>(
    docs: impl Iterator<Item = S> + Send,
    opts: &BpeTrainOptions,
) -> Result<tokenizers::Tokenizer> {
    let min = 256 + opts.special_tokens.len();
    if opts.vocab_size < min {
        return Err(Error::invalid(format!(
            "vocabulary size {} is below the {} byte symbols and special tokens",
            opts.vocab_size, min
        )));
    }
    let mut tok = tokenizers::Tokenizer::new(ModelWrapper::BPE(BPE::default()));
    tok.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(
        ByteLevel::default().add_prefix_space(false),
    )));
    tok.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::default())));
    let specials: Vec<AddedToken> = opts
        .special_tokens
        .iter()
        .map(|s| AddedToken::from(s.clone(), true))
        .collect();
    let mut trainer = TrainerWrapper::BpeTrainer(
        BpeTrainerBuilder::new()
            .vocab_size(opts.vocab_size)
            .min_frequency(opts.min_frequency)
            .show_progress(false)
            .special_tokens(specials)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build(),
    );
    tok.train(&mut trainer, docs).map_err(tok_err)?;
    Ok(tok)
}

/// A character-level vocabulary: special tokens, `<unk>`, then every character of `docs`
/// in code-point order.
pub fn train_chars<S: AsRef<str>>(
    docs: impl Iterator<Item = S>,
    special_tokens: &[String],
) -> Result<tokenizers::Tokenizer> {
    let mut chars = BTreeSet::new();
    for d in docs {
        chars.extend(d.as_ref().chars());
    }
    if chars.is_empty() {
        return Err(Error::invalid(
            "no text to build a character vocabulary from",
        ));
    }
    let mut vocab: Vec<(String, u32)> = Vec::new();
    for s in special_tokens.iter().map(String::as_str).chain(["<unk>"]) {
        vocab.push((s.to_string(), vocab.len() as u32));
    }
    for c in chars {
        vocab.push((c.to_string(), vocab.len() as u32));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(
            vocab
                .into_iter()
                .collect::<tokenizers::models::bpe::Vocab>(),
            vec![],
        )
        .unk_token("<unk>".into())
        .build()
        .map_err(tok_err)?;
    let mut tok = tokenizers::Tokenizer::new(ModelWrapper::BPE(bpe));
    tok.with_decoder(Some(DecoderWrapper::Fuse(Fuse::new())));
    let specials: Vec<AddedToken> = special_tokens
        .iter()
        .map(|s| AddedToken::from(s.clone(), true))
        .collect();
    tok.add_special_tokens(&specials);
    Ok(tok)
}

/// Writes `tok` as `tokenizer.json` at `path`.
pub fn save(tok: &tokenizers::Tokenizer, path: &Path) -> Result<()> {
    let json = tok.to_string(true).map_err(tok_err)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{HfTokenizer, Tokenizer};

    const TEXT: &str = "Tom saw a big red ball. Tom was happy. The ball was red and big.\n\
                        Sue saw the ball too. \"Can I play?\" asked Sue. Tom said yes.";

    #[test]
    fn bpe_round_trips_and_loads_back() {
        let docs: Vec<String> = (0..50).map(|i| format!("{TEXT} Story {i}.")).collect();
        let opts = BpeTrainOptions {
            vocab_size: 320,
            ..Default::default()
        };
        let tok = train_bpe(docs.iter(), &opts).unwrap();
        assert!(tok.get_vocab_size(true) <= 320 && tok.get_vocab_size(true) > 260);
        assert_eq!(tok.token_to_id("<|endoftext|>"), Some(0));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        save(&tok, &p).unwrap();
        let ours = HfTokenizer::from_file(&p).unwrap();
        for text in [TEXT, "unseen words: zebra, ünïcödé ✓", " leading space"] {
            let ids = ours.encode(text, false).unwrap();
            assert_eq!(ours.decode(&ids).unwrap(), text);
        }
        // Training merges frequent words: "ball" should be shorter than its 4 bytes.
        assert!(ours.encode(" ball", false).unwrap().len() < 4);
        assert!(train_bpe(
            docs.iter(),
            &BpeTrainOptions {
                vocab_size: 100,
                ..Default::default()
            }
        )
        .is_err());
    }

    #[test]
    fn chars_round_trip_and_unknown_maps_to_unk() {
        let tok = train_chars([TEXT].iter(), &["<|endoftext|>".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        save(&tok, &p).unwrap();
        let ours = HfTokenizer::from_file(&p).unwrap();
        let ids = ours.encode(TEXT, false).unwrap();
        assert_eq!(ids.len(), TEXT.chars().count());
        assert_eq!(ours.decode(&ids).unwrap(), TEXT);
        let unk = ours.token_to_id("<unk>").unwrap();
        assert_eq!(ours.encode("Z", false).unwrap(), vec![unk]);
        assert_eq!(ours.token_to_id("<|endoftext|>"), Some(0));
    }
}
