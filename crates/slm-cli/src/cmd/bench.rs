//! `slm bench`: timings, reported as medians over repetitions.

use crate::common::{load_model, load_model_and_tokenizer, ModelArgs};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use slm_infer::bench::{
    median, peak_memory_bytes, stream_triad, time_greedy, time_greedy_batch, weight_bytes_per_token,
};
use slm_infer::decode::{Decoder, KvType, SparseUse, WeightType};
use slm_infer::{generate_from_tokens, GenerateOptions, SamplerConfig};
use slm_train::engine::FastModel;
use std::path::PathBuf;
use std::time::Instant;

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
    /// Weight storage for the decode engine: f32, q8_0, q4_0 or q4_1 (quantised at load,
    /// round-to-nearest).
    #[arg(long = "type", default_value = "f32")]
    pub weight_type: String,
    /// Sequences decoded together (each matrix read once per step for all of them); decode
    /// tok/s is then summed over the batch. Prefill is always one sequence.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// `auto`: a pruned model's f32 matrices are stored sparse where that reads fewer bytes
    /// and runs faster (2:4 pattern → values + 2-bit positions; ≥ 60% zeros → non-zeros with
    /// column offsets); `off`: dense, to time a pruned model against its dense storage.
    #[arg(long, default_value = "auto", value_parser = ["auto", "off"])]
    pub sparse: String,
    /// KV cache storage: f32 (exact) or f16 (half the bytes per cached position, as
    /// llama.cpp's default cache).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    pub kv: String,
    /// `fast`: the decode engine (preallocated KV cache, streaming matrix-vector kernels);
    /// `candle`: the reference generation loop, for comparison.
    #[arg(long, default_value = "fast", value_parser = ["fast", "candle"])]
    pub engine: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Training throughput: forward + backward + AdamW update, tokens/s.
    #[command(
        after_help = "Compare with PyTorch on the same machine: tools/reference/torch_train_bench.py \
(same architecture, batch, sequence and threads).\n\nExample:\n  slm --threads 2 bench train --preset 15m --seq 256 --batch 8"
    )]
    Train(TrainBenchArgs),
}

#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// Size preset.
    #[arg(long, default_value = "4m")]
    pub preset: String,
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

pub fn run(a: BenchArgs) -> Result<()> {
    match a.command {
        Some(BenchCommand::Train(t)) => bench_train(t),
        None if a.model.is_some() => bench_model(&a),
        None if a.bandwidth => {
            let gbs = bandwidth(a.reps.max(5));
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"bandwidth_gb_s": gbs, "threads": rayon::current_num_threads()})
                );
            } else {
                println!(
                    "memory bandwidth (triad, 3 × 256 MiB, {} threads): {gbs:.1} GB/s (median)",
                    rayon::current_num_threads()
                );
            }
            Ok(())
        }
        None => bail!("say what to measure: --model M, --bandwidth, or `slm bench train`"),
    }
}

/// Median triad bandwidth over `reps` passes of 3 × 256 MiB.
fn bandwidth(reps: usize) -> f64 {
    median(stream_triad(256 << 20, reps))
}

fn bench_model(a: &BenchArgs) -> Result<()> {
    // Arguments first: loading a large model takes seconds.
    if a.prompt_tokens == 0 || a.gen_tokens < 2 || a.reps == 0 || a.batch == 0 {
        bail!("--prompt-tokens must be ≥ 1, --gen-tokens ≥ 2, --reps ≥ 1 and --batch ≥ 1");
    }
    if (a.batch > 1 || a.kv != "f32") && a.engine != "fast" {
        bail!("--batch and --kv need --engine fast");
    }
    let spec = a.model.clone().unwrap_or_default();
    let args = ModelArgs {
        model: spec.clone(),
        tokenizer: a.tokenizer.clone(),
    };
    // The decode engine times token ids: only the candle loop needs a tokenizer.
    let (loaded, tokenizer) = if a.engine == "candle" {
        let (l, t) = load_model_and_tokenizer(&args)?;
        (l, Some(t))
    } else {
        (load_model(&args)?, None)
    };
    let model = &loaded.model;
    let cfg = &model.config;
    if a.prompt_tokens + a.gen_tokens > cfg.max_position_embeddings {
        bail!(
            "--prompt-tokens {} + --gen-tokens {} exceed the model context of {}",
            a.prompt_tokens,
            a.gen_tokens,
            cfg.max_position_embeddings
        );
    }
    // A fixed pseudo-random prompt: the same work on every run and every tool.
    let prompt: Vec<u32> = (0..a.prompt_tokens)
        .map(|i| ((i * 7919 + 13) % cfg.vocab_size) as u32)
        .collect();
    let opts = GenerateOptions {
        max_tokens: a.gen_tokens,
        sampler: SamplerConfig::greedy(),
        stop_at_eos: false,
        ..Default::default()
    };
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    let kv = KvType::parse(&a.kv)?;
    let fast = if a.engine == "fast" {
        let ty = WeightType::parse(&a.weight_type)?;
        Some(Decoder::with_sparse(
            model,
            ty,
            SparseUse::parse(&a.sparse)?,
        )?)
    } else {
        if a.weight_type != "f32" {
            bail!("--type {} needs --engine fast", a.weight_type);
        }
        None
    };
    for rep in 0..a.reps + 1 {
        let (p, d) = match &fast {
            Some(dec) if a.batch > 1 => (
                time_greedy(dec, &prompt, 1, kv)?.0,
                time_greedy_batch(dec, &prompt, a.gen_tokens, a.batch, kv)?,
            ),
            Some(dec) => time_greedy(dec, &prompt, a.gen_tokens, kv)?,
            None => {
                let Some(tokenizer) = &tokenizer else {
                    bail!("the candle engine needs a tokenizer");
                };
                let g = generate_from_tokens(
                    model,
                    tokenizer.as_ref(),
                    prompt.clone(),
                    &opts,
                    &mut |_| Ok(()),
                )?;
                (
                    a.prompt_tokens as f64 / g.prefill_secs.max(1e-9),
                    g.decode_tokens_per_sec(),
                )
            }
        };
        if rep > 0 {
            // rep 0 warms caches and the allocator
            prefill.push(p);
            decode.push(d);
        }
    }
    let (prefill_tok_s, decode_tok_s) = (median(prefill), median(decode));
    let bytes = match &fast {
        Some(dec) => dec.weight_bytes_per_token(),
        None => weight_bytes_per_token(model),
    };
    // A batched step reads the weights once for all its sequences.
    let achieved = bytes as f64 * decode_tok_s / a.batch as f64 / 1e9;
    let storage = fast.as_ref().map(|d| d.weights.storage());
    let peak = peak_memory_bytes(); // before the triad's arrays
    let bw = bandwidth(5);
    let threads = rayon::current_num_threads();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"model": spec, "parameters": model.num_parameters(), "threads": threads,
                "engine": a.engine, "type": a.weight_type, "sparse": a.sparse, "storage": storage, "kv": a.kv,
                "batch": a.batch, "prompt_tokens": a.prompt_tokens, "gen_tokens": a.gen_tokens, "reps": a.reps,
                "prefill_tok_s": prefill_tok_s, "decode_tok_s": decode_tok_s,
                "weight_bytes_per_token": bytes, "achieved_gb_s": achieved, "bandwidth_gb_s": bw,
                "bandwidth_share": achieved / bw, "ceiling_tok_s": a.batch as f64 * bw * 1e9 / bytes as f64,
                "peak_memory_bytes": peak})
        );
    } else {
        println!(
            "{spec}: {:.2}M parameters, {} engine, {} weights, {threads} threads, batch {}, medians of {} runs",
            model.num_parameters() as f64 / 1e6,
            a.engine,
            a.weight_type,
            a.batch,
            a.reps
        );
        if let Some(st) = &storage {
            println!("storage   {st}");
        }
        println!(
            "prefill   {:>9.0} tok/s ({}-token prompt)",
            prefill_tok_s, a.prompt_tokens
        );
        println!(
            "decode    {:>9.1} tok/s ({} tokens × {} sequences)",
            decode_tok_s, a.gen_tokens, a.batch
        );
        println!(
            "weights   {:>9.1} MB read per token → {achieved:.1} GB/s = {:.0}% of {bw:.1} GB/s (ceiling {:.0} tok/s)",
            bytes as f64 / 1e6,
            100.0 * achieved / bw,
            a.batch as f64 * bw * 1e9 / bytes as f64
        );
        if let Some(p) = peak {
            println!("memory    {:>9.1} MB peak resident", p as f64 / 1e6);
        }
    }
    Ok(())
}

fn bench_train(a: TrainBenchArgs) -> Result<()> {
    if a.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let mut cfg = slm_model::preset(&a.preset)?;
    if let Some(v) = a.vocab {
        cfg.vocab_size = v;
    }
    cfg.max_position_embeddings = cfg.max_position_embeddings.max(a.seq);
    let llama = slm_model::Llama::random(cfg.clone(), 1, &candle_core::Device::Cpu)?;
    let mut model = FastModel::from_llama(&llama)?;
    let mut opt = slm_train::optim::AdamW::new(Default::default(), model.flat_params().len());
    let n = a.batch * a.seq;
    let inputs: Vec<u32> = (0..n)
        .map(|i| ((i * 7919 + 13) % cfg.vocab_size) as u32)
        .collect();
    let targets: Vec<u32> = (0..n)
        .map(|i| ((i * 104_729 + 7) % cfg.vocab_size) as u32)
        .collect();
    let mut times = Vec::with_capacity(a.steps);
    for i in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        model.zero_grad();
        model.forward_backward(&inputs, &targets, a.batch, a.seq)?;
        opt.update(&mut model, 1e-4)?;
        if i >= a.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let step = median(times.clone());
    let tok_s = n as f64 / step;
    let threads = rayon::current_num_threads();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"preset": a.preset, "parameters": model.num_parameters(), "vocab": cfg.vocab_size,
                "seq": a.seq, "batch": a.batch, "threads": threads, "steps": a.steps,
                "median_step_s": step, "tokens_per_sec": tok_s,
                "min_step_s": times.iter().cloned().fold(f64::INFINITY, f64::min)})
        );
    } else {
        println!(
            "train step, preset {} ({:.2}M params, vocab {}), batch {} × seq {}, {} threads: median {:.1} ms over {} steps = {:.0} tokens/s",
            a.preset,
            model.num_parameters() as f64 / 1e6,
            cfg.vocab_size,
            a.batch,
            a.seq,
            threads,
            step * 1e3,
            a.steps,
            tok_s
        );
    }
    Ok(())
}
