//! What several subcommands share: loading a model with its tokenizer, thread settings.

use anyhow::{Context, Result};
use clap::Args;
use slm_data::tokenizer::Tokenizer;
use slm_model::LoadedLlama;
use std::path::PathBuf;

/// `--model` and `--tokenizer`, flattened into every command that reads a model.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a Hugging Face directory, an HF cache id (org/name), a .gguf file or a llama2.c
    /// checkpoint (.bin).
    #[arg(long, short = 'm')]
    pub model: String,
    /// Tokenizer file for models that carry none (llama2.c tokenizer.bin, or tokenizer.json).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// Sets the number of threads candle and rayon use; call before any tensor work.
pub fn set_threads(n: usize) {
    std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
}

pub fn load_model(args: &ModelArgs) -> Result<LoadedLlama> {
    slm_model::load(&args.model, args.tokenizer.as_deref())
        .with_context(|| format!("loading model `{}`", args.model))
}

pub fn load_model_and_tokenizer(args: &ModelArgs) -> Result<(LoadedLlama, Box<dyn Tokenizer>)> {
    let loaded = load_model(args)?;
    let tokenizer = slm_data::tokenizer::load_tokenizer(&loaded.tokenizer).with_context(|| {
        format!(
            "loading the tokenizer of `{}` (pass --tokenizer PATH for models without one)",
            args.model
        )
    })?;
    if tokenizer.vocab_size() > loaded.model.config.vocab_size {
        anyhow::bail!(
            "the tokenizer has {} tokens but the model's vocabulary is {}: wrong --tokenizer?",
            tokenizer.vocab_size(),
            loaded.model.config.vocab_size
        );
    }
    Ok((loaded, tokenizer))
}
