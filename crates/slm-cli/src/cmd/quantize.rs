//! `slm quantize`: block quantisation to a GGUF file — round-to-nearest, or GPTQ with
//! calibration text — with the error it costs per matrix.

use crate::cmd::prune::{progress_bar, CalibText};
use crate::common::{load_model, load_model_and_tokenizer, ModelArgs};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use slm_compress::{gptq_model, GptqConfig, GptqReport};
use slm_infer::quantize::quantize_report_against;
use slm_io::gguf::export::GgufType;
use std::path::PathBuf;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Types (32-weight blocks with an f16 scale, ggml's layouts, so llama.cpp reads the file):\n  \
q8_0  8.5 bits/weight, near-lossless\n  \
q4_1  5 bits/weight, 4-bit with a per-block minimum (zero point): less error than q4_0\n  \
q4_0  4.5 bits/weight, symmetric 4-bit\n\
Matrices whose rows do not fill 32-value blocks are kept in f16; norms stay f32. `slm generate`, `slm eval` \
and `slm bench` read the file (bench/generate requantise to the same blocks with --type).\n\n\
--gptq rounds the block linears with GPTQ (Frantar et al. 2023): column by column, each rounding error \
spread over the columns not yet rounded, using the inputs each layer sees on --calib text, so the layer's \
output moves less than with round-to-nearest. Same file format and speed; it costs a calibration pass \
(seconds for small models, minutes for 100M+). Embeddings and the head are rounded to nearest.\n\n\
Examples:\n  slm quantize -m stories260K.bin --tokenizer tok512.bin --type q4_1 --out s260k-q4_1.gguf\n  \
slm quantize -m stories260K.bin --tokenizer tok512.bin --type q4_0 --gptq --calib tinystories_train.txt --out s260k-gptq.gguf\n  \
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
    /// Round the block linears with GPTQ (needs --calib) instead of to nearest.
    #[arg(long)]
    pub gptq: bool,
    /// Calibration for --gptq: text like the model's own use works best.
    #[command(flatten)]
    pub calib: CalibText,
    /// GPTQ dampening, as a fraction of the mean diagonal of XᵀX.
    #[arg(long, default_value_t = 0.01)]
    pub damp: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let ty = GgufType::parse(&a.weight_type)?;
    let Some(kind) = ty.block_kind() else {
        bail!(
            "--type {} is not a quantised type: use q8_0, q4_1 or q4_0 (slm export gguf writes f32/f16)",
            a.weight_type
        );
    };
    if a.gptq && a.calib.calib.is_none() {
        bail!("--gptq needs calibration text: give --calib FILE");
    }
    if !a.gptq && a.calib.calib.is_some() {
        bail!("--calib is only used by --gptq (round-to-nearest needs no data)");
    }
    if !a.damp.is_finite() || a.damp < 0.0 {
        bail!("--damp must be ≥ 0, got {}", a.damp);
    }
    let (loaded, gptq) = match &a.calib.calib {
        Some(path) if a.gptq => {
            let (mut loaded, tok) = load_model_and_tokenizer(&a.model)?;
            let windows = a.calib.windows(path, &loaded.model, tok.as_ref())?;
            let tokens: usize = windows.iter().map(|w| w.len()).sum();
            let c = &loaded.model.config;
            let widest = c.hidden_size.max(c.intermediate_size).max(c.q_dim());
            if tokens < 2 * widest {
                eprintln!(
                    "warning: {tokens} calibration tokens for layer inputs up to {widest} wide: with fewer \
                     tokens than about twice the width XᵀX is (nearly) singular and GPTQ fits the \
                     calibration text rather than the model's use; raise --nsamples or --seqlen"
                );
            }
            let reference = loaded.model.clone();
            let mut cfg = GptqConfig::new(kind);
            cfg.options.damp = a.damp;
            let bar = progress_bar("gptq", "blocks");
            let report = gptq_model(&mut loaded.model, &windows, &cfg, &mut |_, d, t| {
                bar.set_length(t as u64);
                bar.set_position(d as u64);
            })?;
            bar.finish_and_clear();
            (loaded, Some((reference, report)))
        }
        _ => (load_model(&a.model)?, None),
    };
    let report = match &gptq {
        Some((reference, _)) => quantize_report_against(reference, &loaded.model, ty)?,
        None => quantize_report_against(&loaded.model, &loaded.model, ty)?,
    };
    let vocab = crate::cmd::export::gguf_vocab(&loaded.tokenizer)?;
    let name = std::path::Path::new(&a.model.model)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "slm".into());
    let written = slm_model::save_gguf(&loaded.model, &name, vocab.as_ref(), ty, &a.out)?;
    let gptq = gptq.map(|(_, r)| r);
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
            serde_json::json!({"out": a.out, "type": a.weight_type, "method": if gptq.is_some() { "gptq" } else { "rtn" },
                "file_bytes": written.bytes,
                "f32_bytes": report.f32_bytes, "weight_bytes": report.quantized_bytes,
                "overall_relative_error": report.overall_relative_error,
                "kept_f16": written.kept_f16, "matrices": matrices, "gptq": gptq})
        );
        return Ok(());
    }
    println!(
        "wrote {} ({}{}, {:.1} MB; f32 weights {:.1} MB → {:.1} MB, {:.2}× smaller)",
        a.out.display(),
        a.weight_type,
        if gptq.is_some() { ", GPTQ" } else { "" },
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
    if let Some(g) = &gptq {
        print_gptq(g);
    }
    if !written.kept_f16.is_empty() {
        println!(
            "kept in f16 (rows do not fill 32-value blocks): {}",
            written.kept_f16.join(", ")
        );
    }
    Ok(())
}

/// The GPTQ summary: output error against round-to-nearest, per role and overall.
fn print_gptq(g: &GptqReport) {
    let n = g.tensors.len().max(1) as f64;
    let mean_gptq = g.tensors.iter().map(|t| t.rel_error_gptq).sum::<f64>() / n;
    let mean_rtn = g.tensors.iter().map(|t| t.rel_error_rtn).sum::<f64>() / n;
    println!(
        "GPTQ on {} linears ({} windows, {} tokens, {:.1} s): mean output error ‖XWᵀ − XŴᵀ‖²/‖XWᵀ‖² {:.3e} vs {:.3e} round-to-nearest ({:.2}×)",
        g.tensors.len(),
        g.calib_windows,
        g.calib_tokens,
        g.seconds,
        mean_gptq,
        mean_rtn,
        if mean_gptq > 0.0 { mean_rtn / mean_gptq } else { 0.0 }
    );
    if !g.skipped_roles.is_empty() {
        println!(
            "  not GPTQ'd (rows do not fill 32-value blocks): {}",
            g.skipped_roles.join(", ")
        );
    }
}
