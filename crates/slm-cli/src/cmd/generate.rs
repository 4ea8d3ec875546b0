//! `slm generate`: stream a continuation of a prompt.

use crate::common::{choice, load_model_and_tokenizer, ModelArgs};
use anyhow::Result;
use clap::Args as ClapArgs;
use slm_infer::decode::{KvType, WeightType};
use slm_infer::{generate, GenerateOptions, SamplerConfig};
use std::io::Write;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  slm generate -m stories260K.bin --tokenizer tok512.bin --prompt \"Once upon a time\" --temperature 0\n  slm generate -m runs/teacher --prompt \"Tom had a\" --top-p 0.9 --seed 7 --stop \"THE END\""
)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text to continue (empty: start from the BOS token).
    #[arg(long, short = 'p', default_value = "")]
    pub prompt: String,
    /// Maximum number of new tokens.
    #[arg(long, short = 'n', default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, short = 't', default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Penalise tokens already in the text (1.0 = off; 1.1–1.3 typical).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Random seed (same seed, same text).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop when this string appears (repeatable); it is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
    #[command(flatten)]
    pub bos: crate::common::BosArgs,
    /// Keep going past the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Do not print the prompt before the generated text.
    #[arg(long)]
    pub no_echo: bool,
    /// Print timing (prefill and decode tokens/s) to stderr at the end.
    #[arg(long)]
    pub stats: bool,
    /// KV cache storage: f32 (exact) or f16 (half the memory and bytes read per cached
    /// position, as llama.cpp's default; logits change slightly).
    #[arg(long, default_value = "f32", value_parser = choice(&["f32", "f16"], KvType::parse))]
    pub kv: KvType,
    /// Weight storage while decoding: f32, or q8_0 / q4_1 / q4_0 blocks quantised at load
    /// (a file from `slm quantize` loads as its dequantised values; the same type gives back
    /// the same blocks).
    #[arg(long = "type", default_value = "f32",
          value_parser = choice(&["f32", "q8_0", "q4_1", "q4_0"], WeightType::parse))]
    pub weight_type: WeightType,
}

pub fn run(args: Args) -> Result<()> {
    let mut opts = GenerateOptions {
        max_tokens: args.max_tokens,
        sampler: SamplerConfig {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            repetition_penalty: args.repetition_penalty,
            seed: args.seed,
        },
        stop: args.stop.clone(),
        add_bos: true, // set from --bos/--no-bos and the tokenizer below
        stop_at_eos: !args.ignore_eos,
        kv: args.kv,
        weights: args.weight_type,
        ..Default::default()
    };
    // Every argument error before any output.
    opts.sampler.validate()?;
    let (loaded, tokenizer) = load_model_and_tokenizer(&args.model)?;
    opts.add_bos = args.bos.add_bos(tokenizer.as_ref());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !args.no_echo {
        write!(out, "{}", args.prompt)?;
        out.flush()?;
    }
    let gen = generate(
        &loaded.model,
        tokenizer.as_ref(),
        &args.prompt,
        &opts,
        &mut |s| {
            write!(out, "{s}")
                .and_then(|_| out.flush())
                .map_err(|e| slm_core::Error::msg(e.to_string()))
        },
    )?;
    writeln!(out)?;
    if args.stats {
        eprintln!(
            "prompt {} tokens, prefill {:.1} tok/s; generated {} tokens, decode {:.1} tok/s; stop: {:?}",
            gen.prompt_tokens.len(),
            gen.prompt_tokens.len() as f64 / gen.prefill_secs.max(1e-9),
            gen.tokens.len(),
            gen.decode_tokens_per_sec(),
            gen.stop_reason
        );
    }
    Ok(())
}
