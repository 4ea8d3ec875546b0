//! `slm tokenizer`: train a tokenizer.

use anyhow::Result;
use clap::{Args, Subcommand};
use slm_data::documents::{expand_inputs, read_documents, Split};
use slm_data::tokenizer::train::{save, train_bpe, train_chars, BpeTrainOptions};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum TokenizerCommand {
    /// Train byte-level BPE or a character vocabulary; writes tokenizer.json.
    #[command(
        after_help = "Examples:\n  slm tokenizer train corpus/*.txt --vocab-size 4096 --out runs/tok/tokenizer.json\n  \
slm tokenizer train input.txt --kind char --out runs/shakespeare/tokenizer.json"
    )]
    Train(TrainArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Text files, folders or globs to learn from.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// bpe (byte-level, GPT-2 style) or char.
    #[arg(long, default_value = "bpe", value_parser = ["bpe", "char"])]
    pub kind: String,
    /// Vocabulary size for BPE (including the 256 byte symbols and special tokens).
    #[arg(long, default_value_t = 4096)]
    pub vocab_size: usize,
    /// Minimum pair frequency for a BPE merge.
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,
    /// Special tokens, given the first ids (repeatable).
    #[arg(long = "special", default_values_t = vec!["<|endoftext|>".to_string()])]
    pub special_tokens: Vec<String>,
    /// Output tokenizer.json path.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

pub fn run(cmd: TokenizerCommand) -> Result<()> {
    match cmd {
        TokenizerCommand::Train(a) => run_train(a),
    }
}

pub fn run_train(a: TrainArgs) -> Result<()> {
    let files = expand_inputs(&a.inputs)?;
    let mut docs = Vec::new();
    for f in &files {
        docs.extend(read_documents(f, &Split::default())?);
    }
    let tok = if a.kind == "char" {
        train_chars(docs.iter(), &a.special_tokens)?
    } else {
        let opts = BpeTrainOptions {
            vocab_size: a.vocab_size,
            min_frequency: a.min_frequency,
            special_tokens: a.special_tokens.clone(),
        };
        train_bpe(docs.iter(), &opts)?
    };
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    save(&tok, &a.out)?;
    println!(
        "trained a {} tokenizer on {} documents: {} tokens -> {}",
        a.kind,
        docs.len(),
        tok.get_vocab_size(true),
        a.out.display()
    );
    Ok(())
}
