//! `slm quantize`: round-to-nearest block quantisation to a GGUF file, with the error it
//! costs per matrix.

use crate::common::{load_model, ModelArgs};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use slm_infer::gguf_export::{self, GgufType};
use slm_infer::quantize::quantize_report;
use std::path::PathBuf;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Types (32-weight blocks with an f16 scale, ggml's layouts, so llama.cpp reads the file):\n  \
q8_0  8.5 bits/weight, near-lossless\n  \
q4_1  5 bits/weight, 4-bit with a per-block minimum (zero point): less error than q4_0\n  \
q4_0  4.5 bits/weight, symmetric 4-bit\n\
Matrices whose rows do not fill 32-value blocks are kept in f16; norms stay f32. `slm generate`, `slm eval` \
and `slm bench` read the file (bench/generate requantise to the same blocks with --type).\n\n\
Examples:\n  slm quantize -m stories260K.bin --tokenizer tok512.bin --type q4_1 --out s260k-q4_1.gguf\n  \
slm quantize -m runs/teacher --type q8_0 --out teacher-q8_0.gguf --json"
)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// q8_0, q4_1 or q4_0.
    #[arg(long = "type", default_value = "q8_0")]
    pub weight_type: String,
    /// Output GGUF file.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let ty = GgufType::parse(&a.weight_type)?;
    if !ty.is_quantised() {
        bail!(
            "--type {} is not a quantised type: use q8_0, q4_1 or q4_0 (slm export gguf writes f32/f16)",
            a.weight_type
        );
    }
    let loaded = load_model(&a.model)?;
    let report = quantize_report(&loaded.model, ty)?;
    let vocab = crate::cmd::export::gguf_vocab(&loaded.tokenizer)?;
    let name = std::path::Path::new(&a.model.model)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "slm".into());
    let written = gguf_export::export_gguf(&loaded.model, &name, vocab.as_ref(), ty, &a.out)?;
    let mut worst: Vec<_> = report.matrices.iter().collect();
    worst.sort_by(|x, y| y.relative_error.total_cmp(&x.relative_error));
    if a.json {
        let matrices: Vec<_> = report
            .matrices
            .iter()
            .map(|m| serde_json::json!({"name": m.name, "values": m.values, "relative_error": m.relative_error}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"out": a.out, "type": a.weight_type, "file_bytes": written.bytes,
                "f32_bytes": report.f32_bytes, "weight_bytes": report.quantized_bytes,
                "overall_relative_error": report.overall_relative_error,
                "kept_f16": written.kept_f16, "matrices": matrices})
        );
        return Ok(());
    }
    println!(
        "wrote {} ({}, {:.1} MB; f32 weights {:.1} MB → {:.1} MB, {:.2}× smaller)",
        a.out.display(),
        a.weight_type,
        written.bytes as f64 / 1e6,
        report.f32_bytes as f64 / 1e6,
        report.quantized_bytes as f64 / 1e6,
        report.f32_bytes as f64 / report.quantized_bytes.max(1) as f64
    );
    println!(
        "relative error ‖W − Ŵ‖²/‖W‖² over all matrices: {:.3e}; largest:",
        report.overall_relative_error
    );
    for m in worst.iter().take(5) {
        println!("  {:<48} {:.3e}", m.name, m.relative_error);
    }
    if !written.kept_f16.is_empty() {
        println!(
            "kept in f16 (rows do not fill 32-value blocks): {}",
            written.kept_f16.join(", ")
        );
    }
    Ok(())
}
