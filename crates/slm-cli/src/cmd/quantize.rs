//! `slm quantize`: block quantisation to a GGUF file — round-to-nearest, llama.cpp's k-quant
//! mixes (q4_k_m, q5_k_m, q6_k), or GPTQ with calibration text — with the error it costs per
//! matrix. The work is `slm_recipes::quantize`.

use crate::common::{choice, load_model, load_model_and_tokenizer, number, CalibText, ModelArgs};
use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use slm_io::gguf::export::GgufType;
use slm_recipes::quantize::{quantize_to_gguf, QuantizeOptions};
use std::path::PathBuf;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Types (ggml's block layouts, so llama.cpp reads the file; bits per weight include the scales):\n  \
q8_0    8.5 bits/weight, near-lossless\n  \
q4_1    5 bits/weight, 4-bit with a per-block minimum (zero point): less error than q4_0\n  \
q4_0    4.5 bits/weight, symmetric 4-bit\n\
These three: 32-weight blocks with an f16 scale, rounded to nearest; matrices whose rows do not fill \
32-value blocks are kept in f16.\n\n\
k-quant mixes, written as llama.cpp's `llama-quantize` writes them (same per-tensor types, same bytes; \
no importance matrix):\n  \
q4_k_m  ~4.9 bits/weight: Q4_K (4.5 bits: 256-value super-blocks of eight 32-value sub-blocks, each \
with a 6-bit scale and minimum found by a weighted least-squares search); Q6_K for the output matrix \
(or the tied token embedding) and for attn_v and ffn_down in the first and last eighth of the layers \
and every third layer between\n  \
q5_k_m  ~5.7 bits/weight: the same with Q5_K (5.5 bits) as the base type\n  \
q6_k    6.56 bits/weight: Q6_K (16 sub-blocks of 16 with 8-bit scales) throughout\n\
Rows that do not fill 256-value blocks fall back as llama.cpp's do: Q4_K → Q5_0, Q5_K → Q5_1, \
Q6_K → Q8_0 (a tied embedding or output of such width: Q8_0), f16 below 32. The report lists each \
matrix's type.\n\n\
Norms stay f32. `slm generate`, `slm eval` and `slm bench` read the file (bench/generate requantise \
to their blocks with --type). f32/f16 files: `slm export gguf`.\n\n\
--gptq rounds the block linears with GPTQ (Frantar et al. 2023): column by column, each rounding error \
spread over the columns not yet rounded, using the inputs each layer sees on --calib text, so the layer's \
output moves less than with round-to-nearest. Same file format and speed; it costs a calibration pass \
(seconds for small models, minutes for 100M+). Embeddings and the head are rounded to nearest. \
q8_0, q4_1 and q4_0 only (not the k-quant mixes).\n\n\
Examples:\n  slm quantize -m stories260K.bin --tokenizer tok512.bin --type q4_1 --out s260k-q4_1.gguf\n  \
slm quantize -m SmolLM2-135M-Instruct.gguf --type q4_k_m --out smollm2-q4_k_m.gguf\n  \
slm quantize -m stories260K.bin --tokenizer tok512.bin --type q4_0 --gptq --calib tinystories_train.txt --out s260k-gptq.gguf\n  \
slm quantize -m runs/teacher --type q8_0 --out teacher-q8_0.gguf --json"
)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long = "type", default_value = "q8_0",
          value_parser = choice(&["q8_0", "q4_1", "q4_0", "q4_k_m", "q5_k_m", "q6_k"], GgufType::parse))]
    pub weight_type: GgufType,
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
    #[arg(long, default_value_t = 0.01, value_parser = number(|v: f64| v >= 0.0 && v.is_finite(), "≥ 0"))]
    pub damp: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.gptq && a.calib.calib.is_none() {
        bail!("--gptq needs calibration text: give --calib FILE");
    }
    if !a.gptq && a.calib.calib.is_some() {
        bail!("--calib is only used by --gptq (round-to-nearest needs no data)");
    }
    let o = QuantizeOptions {
        ty: a.weight_type,
        gptq: a.gptq.then(|| a.calib.spec()),
        damp: a.damp,
    };
    o.validate()?;
    let (loaded, tok) = if a.gptq {
        let (l, t) = load_model_and_tokenizer(&a.model)?;
        (l, Some(t))
    } else {
        (load_model(&a.model)?, None)
    };
    let outcome = quantize_to_gguf(
        loaded,
        &a.model.model,
        tok.as_deref(),
        &o,
        &a.out,
        &mut |w| eprintln!("warning: {w}"),
    )?;
    let ty = a.weight_type.name();
    if a.json {
        println!("{}", outcome.to_json(&a.out, ty));
    } else {
        outcome
            .summary(&a.out, ty)
            .iter()
            .for_each(|l| println!("{l}"));
    }
    Ok(())
}
