//! `slm export`: write a model in another format.

use crate::common::{load_model, ModelArgs};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use slm_io::TokenizerSource;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// A Hugging Face directory (config.json, model.safetensors, tokenizer) that transformers,
    /// llama.cpp's converter and slm read.
    #[command(
        after_help = "Example:\n  slm export hf -m stories260K.bin --tokenizer tok512.bin --out runs/stories260K-hf"
    )]
    Hf(HfArgs),
}

#[derive(Args, Debug)]
pub struct HfArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory (created; files in it are replaced).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

pub fn run(cmd: ExportCommand) -> Result<()> {
    match cmd {
        ExportCommand::Hf(a) => export_hf(a),
    }
}

fn export_hf(args: HfArgs) -> Result<()> {
    let loaded = load_model(&args.model)?;
    let mut extra: Vec<(&str, Vec<u8>)> = Vec::new();
    match &loaded.tokenizer {
        TokenizerSource::HfJson(p) => {
            extra.push(("tokenizer.json", std::fs::read(p).with_context(|| p.display().to_string())?))
        }
        TokenizerSource::Llama2c(p) => {
            extra.push(("tokenizer.bin", std::fs::read(p).with_context(|| p.display().to_string())?))
        }
        TokenizerSource::Gguf(_) => eprintln!(
            "note: the GGUF's embedded vocabulary is not written as tokenizer.json; pass --tokenizer when using the export"
        ),
        TokenizerSource::None => {}
    }
    if let Some(g) = &loaded.generation_config {
        extra.push(("generation_config.json", serde_json::to_vec_pretty(g)?));
    }
    let meta = serde_json::json!({
        "parent": loaded.source.display().to_string(),
        "stage": "export",
        "from_format": format!("{:?}", loaded.format),
    });
    extra.push(("slm.json", serde_json::to_vec_pretty(&meta)?));
    slm_model::save(&loaded.model, &args.out, &extra)?;
    println!(
        "wrote {} ({} parameters)",
        args.out.display(),
        loaded.model.num_parameters()
    );
    Ok(())
}
