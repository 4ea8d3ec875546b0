//! `slm export`: write a model in another format.

use crate::common::{load_model, ModelArgs};
use anyhow::Result;
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
    /// A GGUF file for llama.cpp and Ollama: f32, f16, q8_0, q4_0 or q4_1 weights and the
    /// vocabulary (llama2.c tokenizer.bin → SentencePiece, tokenizer.json BPE → gpt2, or the
    /// source GGUF's own).
    #[command(
        after_help = "q/k rows are permuted to llama.cpp's interleaved RoPE layout; norms stay f32; a quantised matrix \
whose rows do not fill 32-value blocks is kept in f16. Check it with llama.cpp itself (docs/PERFORMANCE.md).\n\n\
Examples:\n  slm export gguf -m stories260K.bin --tokenizer tok512.bin --type q8_0 --out stories260K-q8_0.gguf\n  \
slm export gguf -m runs/quickstart/model --type f16 --out quickstart.gguf"
    )]
    Gguf(GgufArgs),
}

#[derive(Args, Debug)]
pub struct GgufArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Weight type: f32, f16, q8_0, q4_0, q4_1 (q4_1: 4-bit with a per-block minimum, 5 bits per weight, more accurate than q4_0).
    #[arg(long = "type", default_value = "f16")]
    pub weight_type: String,
    /// Output file.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct HfArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output directory (created; files in it are replaced).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

/// The vocabulary a GGUF export carries, with a warning when the model has none.
pub fn gguf_vocab(source: &TokenizerSource) -> Result<Option<slm_io::GgufVocab>> {
    let vocab = slm_data::tokenizer::export::gguf_vocab(source)?;
    if vocab.is_none() {
        eprintln!(
            "warning: no tokenizer found; the GGUF will carry no vocabulary (give --tokenizer)"
        );
    }
    Ok(vocab)
}

pub fn run(cmd: ExportCommand) -> Result<()> {
    match cmd {
        ExportCommand::Hf(a) => export_hf(a),
        ExportCommand::Gguf(a) => export_gguf(a),
    }
}

fn export_hf(args: HfArgs) -> Result<()> {
    let loaded = load_model(&args.model)?;
    // A GGUF's vocabulary goes in as vocab.gguf.json, which slm reads back (transformers
    // does not: it wants a tokenizer.json).
    let mut extra = loaded.tokenizer.files()?;
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

fn export_gguf(a: GgufArgs) -> Result<()> {
    use slm_io::gguf::export::GgufType;
    let ty = GgufType::parse(&a.weight_type)?;
    let loaded = crate::common::load_model(&a.model)?;
    let vocab = gguf_vocab(&loaded.tokenizer)?;
    let name = std::path::Path::new(&a.model.model)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "slm".into());
    let report = slm_model::save_gguf(&loaded.model, &name, vocab.as_ref(), ty, &a.out)?;
    println!(
        "wrote {} ({} tensors, {:.1} MB, {} weights{}{})",
        a.out.display(),
        report.tensors,
        report.bytes as f64 / 1e6,
        a.weight_type,
        vocab
            .as_ref()
            .map(|v| format!(", {} vocabulary of {} tokens", v.model, v.tokens.len()))
            .unwrap_or_default(),
        if report.kept_f16.is_empty() {
            String::new()
        } else {
            format!("; kept in f16: {}", report.kept_f16.join(", "))
        }
    );
    Ok(())
}
