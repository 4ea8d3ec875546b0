//! `slm export`: write a model in another format (the work is `slm_recipes::export`).

use crate::common::{choice, load_model, ModelArgs};
use anyhow::Result;
use clap::{Args, Subcommand};
use slm_io::gguf::export::GgufType;
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
    /// Weight type (q4_1: 4-bit with a per-block minimum, 5 bits per weight, more accurate than
    /// q4_0; q4_k_m, q5_k_m, q6_k: llama.cpp's k-quant mixes, tensor by tensor as llama-quantize
    /// writes them — see `slm quantize --help`).
    #[arg(long = "type", default_value = "f16",
          value_parser = choice(&["f32", "f16", "q8_0", "q4_0", "q4_1", "q4_k_m", "q5_k_m", "q6_k"], GgufType::parse))]
    pub weight_type: GgufType,
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

pub fn run(cmd: ExportCommand) -> Result<()> {
    match cmd {
        ExportCommand::Hf(a) => {
            let loaded = load_model(&a.model)?;
            slm_recipes::export::export_hf(&loaded, &a.out)?;
            println!(
                "wrote {} ({} parameters)",
                a.out.display(),
                loaded.model.num_parameters()
            );
        }
        ExportCommand::Gguf(a) => {
            let loaded = load_model(&a.model)?;
            let (report, vocab) =
                slm_recipes::export::export_gguf(&loaded, &a.model.model, a.weight_type, &a.out)?;
            println!(
                "wrote {} ({} tensors, {:.1} MB, {} weights{}{})",
                a.out.display(),
                report.tensors,
                report.bytes as f64 / 1e6,
                format!("{:?}", a.weight_type).to_lowercase(),
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
        }
    }
    Ok(())
}
