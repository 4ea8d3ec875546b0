//! `slm inspect`: what a model is made of (the counting is `slm_recipes::inspect`).

use crate::common::{load_model, ModelArgs};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;

#[derive(ClapArgs, Debug)]
#[command(after_help = "Example:\n  slm inspect -m runs/student-2of4 --tensors")]
pub struct Args {
    /// Model: HF directory, HF cache id, .gguf or llama2.c checkpoint.
    #[arg(long, short = 'm', conflicts_with = "model_pos")]
    pub model: Option<String>,
    /// The model, as `slm inspect MODEL`.
    #[arg(value_name = "MODEL")]
    pub model_pos: Option<String>,
    /// Tokenizer for models that carry none (only used to report it).
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// List every tensor with its shape and sparsity.
    #[arg(long)]
    pub tensors: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let Some(model) = a.model.or(a.model_pos) else {
        bail!("give the model: -m MODEL");
    };
    let loaded = load_model(&ModelArgs {
        adapter: None,
        model,
        tokenizer: a.tokenizer,
    })?;
    let s = slm_recipes::inspect::summarize(&loaded)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s.to_json(&loaded))?);
    } else {
        print!("{}", s.to_text(&loaded, a.tensors)?);
    }
    Ok(())
}
