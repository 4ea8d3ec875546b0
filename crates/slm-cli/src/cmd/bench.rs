//! `slm bench`: timings, reported as medians over repetitions.

use crate::common::{choice, load_model, load_model_and_tokenizer, ModelArgs};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use slm_infer::decode::{KvType, SparseUse, TypeChoice, TypePlan, WeightType};
use slm_recipes::bench::{self as lib, ModelBench, TrainBench};
use slm_train::finetune::BaseType;
use std::path::PathBuf;

/// `slm bench --model M`, `slm bench --bandwidth`, or `slm bench train ...`.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Decode is memory-bound: at batch 1 each generated token reads every weight once, so \
achieved GB/s = weight bytes per token × decode tokens/s, and the ceiling is the machine's bandwidth \
(--bandwidth, a STREAM-style triad) ÷ weight bytes per token.\n\nExamples:\n  \
slm --threads 2 bench --bandwidth\n  \
slm --threads 2 bench --model stories15M.gguf --json\n  \
slm --threads 2 bench --model model-q4_0.gguf --type q4_0 --kv f16 --batch 4\n  \
slm --threads 2 bench train --preset 15m"
)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Time prefill and decode of this model.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Tokenizer file for models that carry none.
    #[arg(long, requires = "model")]
    pub tokenizer: Option<PathBuf>,
    /// Measure this machine's memory bandwidth (STREAM-style triad).
    #[arg(long)]
    pub bandwidth: bool,
    /// Prompt tokens for the prefill timing.
    #[arg(long, default_value_t = 256)]
    pub prompt_tokens: usize,
    /// Generated tokens for the decode timing.
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Timed repetitions (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    #[command(flatten)]
    pub types: crate::common::TypeArgs,
    /// Sequences decoded together (each matrix read once per step for all of them); decode
    /// tok/s is then summed over the batch. Prefill is always one sequence.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// `auto`: a pruned model's f32 matrices are stored sparse where that reads fewer bytes
    /// and runs faster (2:4 pattern → values + 2-bit positions; ≥ 60% zeros → non-zeros with
    /// column offsets); `off`: dense, to time a pruned model against its dense storage.
    #[arg(long, default_value = "auto", value_parser = choice(&["auto", "off"], SparseUse::parse))]
    pub sparse: SparseUse,
    /// KV cache storage: f32 (exact) or f16 (half the bytes per cached position, as
    /// llama.cpp's default cache).
    #[arg(long, default_value = "f32", value_parser = choice(&["f32", "f16"], KvType::parse))]
    pub kv: KvType,
    /// `fast`: the decode engine (preallocated KV cache, streaming matrix-vector kernels);
    /// `candle`: the reference generation loop, for comparison.
    #[arg(long, default_value = "fast", action = clap::ArgAction::Set, value_parser = choice(&["fast", "candle"], |s| Ok(s == "fast")))]
    pub engine: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Training throughput: forward + backward + AdamW update, tokens/s.
    #[command(
        after_help = "Prints tokens/s and memory: the weights, the activations, and the process's peak \
resident memory (loading included). Compare with PyTorch on the same machine: \
tools/reference/torch_train_bench.py (presets) and tools/reference/bench_finetune.py (a real model: \
full, LoRA and QLoRA against transformers + peft, interleaved).\n\nExamples:\n  \
slm --threads 2 bench train --preset 15m --seq 256 --batch 8\n  \
slm --threads 2 bench train -m SmolLM2-135M-Instruct.Q4_1.gguf --batch 4 --seq 256 --lora-rank 8 --base-type q4_0"
    )]
    Train(TrainBenchArgs),
}

#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// Size preset (a random model).
    #[arg(long, default_value = "4m")]
    pub preset: String,
    /// A real model instead of a preset: a Hugging Face directory, .gguf or llama2.c file.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Train LoRA adapters of this rank (alpha 2 × rank, every linear) on a frozen base.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// How LoRA's frozen base is held: f32, or q8_0 / q4_0 blocks (QLoRA).
    #[arg(long, default_value = "f32", value_parser = choice(&["f32", "q8_0", "q4_0"], BaseType::parse))]
    pub base_type: BaseType,
    /// Recompute each block's activations in the backward instead of keeping them.
    #[arg(long)]
    pub activation_checkpointing: bool,
    /// Override the preset's vocabulary size.
    #[arg(long)]
    pub vocab: Option<usize>,
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Prints `v` as JSON or through `text`.
fn print(v: serde_json::Value, json: bool, text: fn(&serde_json::Value) -> String) {
    if json {
        println!("{v}");
    } else {
        print!("{}", text(&v).trim_end());
        println!();
    }
}

pub fn run(a: BenchArgs) -> Result<()> {
    match (a.command, &a.model) {
        (Some(BenchCommand::Train(t)), _) => {
            let o = TrainBench {
                preset: t.preset,
                model: t.model,
                lora_rank: t.lora_rank,
                base_type: t.base_type,
                activation_checkpointing: t.activation_checkpointing,
                vocab: t.vocab,
                seq: t.seq,
                batch: t.batch,
                steps: t.steps,
                warmup: t.warmup,
            };
            print(lib::bench_train(&o)?, t.json, lib::train_text);
        }
        (None, Some(spec)) => {
            let o = ModelBench {
                prompt_tokens: a.prompt_tokens,
                gen_tokens: a.gen_tokens,
                reps: a.reps,
                weights: match a.types.weight_type {
                    TypeChoice::Fixed(ty) => TypePlan::uniform(ty),
                    // Resolved from the file once it is loaded.
                    TypeChoice::Auto => TypePlan::uniform(WeightType::F32),
                },
                batch: a.batch,
                sparse: a.sparse,
                kv: a.kv,
                fast: a.engine,
            };
            o.validate()?; // before loading the model: a large one takes seconds
            let args = ModelArgs {
                adapter: None,
                model: spec.clone(),
                tokenizer: a.tokenizer.clone(),
            };
            // The decode engine times token ids: only the candle loop needs a tokenizer.
            let (loaded, tok) = if o.fast {
                (load_model(&args)?, None)
            } else {
                let (l, t) = load_model_and_tokenizer(&args)?;
                (l, Some(t))
            };
            // The candle loop runs f32 only; the decode engine takes the file's own types.
            let mut o = o;
            if o.fast {
                o.weights = a.types.plan(&loaded)?;
            }
            print(
                lib::bench_model(&loaded.model, tok.as_deref(), spec, &o)?,
                a.json,
                lib::model_text,
            );
        }
        (None, None) if a.bandwidth => {
            let gbs = lib::bandwidth(a.reps.max(5));
            let threads = rayon::current_num_threads();
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"bandwidth_gb_s": gbs, "threads": threads})
                );
            } else {
                println!("memory bandwidth (triad, 3 × 256 MiB, {threads} threads): {gbs:.1} GB/s (median)");
            }
        }
        (None, None) => bail!("say what to measure: --model M, --bandwidth, or `slm bench train`"),
    }
    Ok(())
}
