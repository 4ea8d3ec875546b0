//! Timings as `slm bench` reports them (medians over repetitions): a model's prefill and
//! decode against the machine's memory bandwidth, and training steps. Each returns one JSON
//! object; `*_text` renders it for the console.

use serde_json::{json, Value};
use slm_core::{Error, Result};
use slm_data::tokenizer::Tokenizer;
use slm_infer::bench::{
    median, peak_memory_bytes, stream_triad, time_greedy, time_greedy_batch, weight_bytes_per_token,
};
use slm_infer::decode::{Decoder, KvType, SparseUse, WeightType};
use slm_infer::{generate_from_tokens, GenerateOptions, SamplerConfig};
use slm_model::Llama;
use slm_train::engine::FastModel;
use std::time::Instant;

/// Median triad bandwidth (GB/s) over `reps` passes of 3 × 256 MiB.
pub fn bandwidth(reps: usize) -> f64 {
    median(stream_triad(256 << 20, reps))
}

/// What to time on a model.
#[derive(Debug, Clone)]
pub struct ModelBench {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub reps: usize,
    pub weights: WeightType,
    pub batch: usize,
    pub sparse: SparseUse,
    pub kv: KvType,
    /// The decode engine (true) or the reference candle loop (needs a tokenizer).
    pub fast: bool,
}

impl ModelBench {
    /// Argument errors, before a model is loaded (a large one takes seconds).
    pub fn validate(&self) -> Result<()> {
        if self.prompt_tokens == 0 || self.gen_tokens < 2 || self.reps == 0 || self.batch == 0 {
            return Err(Error::invalid(
                "--prompt-tokens must be ≥ 1, --gen-tokens ≥ 2, --reps ≥ 1 and --batch ≥ 1",
            ));
        }
        if !self.fast
            && (self.batch > 1 || self.kv != KvType::F32 || self.weights != WeightType::F32)
        {
            return Err(Error::invalid(
                "--batch, --kv and --type need --engine fast",
            ));
        }
        Ok(())
    }
}

/// Times prefill and decode of `model` (`spec` names it in the report).
pub fn bench_model(
    model: &Llama,
    tokenizer: Option<&dyn Tokenizer>,
    spec: &str,
    o: &ModelBench,
) -> Result<Value> {
    o.validate()?;
    let cfg = &model.config;
    if o.prompt_tokens + o.gen_tokens > cfg.max_position_embeddings {
        return Err(Error::invalid(format!(
            "--prompt-tokens {} + --gen-tokens {} exceed the model context of {}",
            o.prompt_tokens, o.gen_tokens, cfg.max_position_embeddings
        )));
    }
    // A fixed pseudo-random prompt: the same work on every run and every tool.
    let prompt: Vec<u32> = (0..o.prompt_tokens)
        .map(|i| ((i * 7919 + 13) % cfg.vocab_size) as u32)
        .collect();
    let gen = GenerateOptions {
        max_tokens: o.gen_tokens,
        sampler: SamplerConfig::greedy(),
        stop_at_eos: false,
        ..Default::default()
    };
    let fast = if o.fast {
        Some(Decoder::with_sparse(model, o.weights, o.sparse)?)
    } else {
        None
    };
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for rep in 0..o.reps + 1 {
        let (p, d) = match (&fast, tokenizer) {
            (Some(dec), _) if o.batch > 1 => (
                time_greedy(dec, &prompt, 1, o.kv)?.0,
                time_greedy_batch(dec, &prompt, o.gen_tokens, o.batch, o.kv)?,
            ),
            (Some(dec), _) => time_greedy(dec, &prompt, o.gen_tokens, o.kv)?,
            (None, Some(tok)) => {
                let g = generate_from_tokens(model, tok, prompt.clone(), &gen, &mut |_| Ok(()))?;
                (
                    o.prompt_tokens as f64 / g.prefill_secs.max(1e-9),
                    g.decode_tokens_per_sec(),
                )
            }
            (None, None) => return Err(Error::invalid("the candle engine needs a tokenizer")),
        };
        if rep > 0 {
            // rep 0 warms caches and the allocator
            prefill.push(p);
            decode.push(d);
        }
    }
    let (prefill_tok_s, decode_tok_s) = (median(prefill), median(decode));
    let bytes = fast.as_ref().map_or_else(
        || weight_bytes_per_token(model),
        |d| d.weight_bytes_per_token(),
    );
    // A batched step reads the weights once for all its sequences.
    let achieved = bytes as f64 * decode_tok_s / o.batch as f64 / 1e9;
    let storage = fast.as_ref().map(|d| d.weights.storage());
    let peak = peak_memory_bytes(); // before the triad's arrays
    let bw = bandwidth(5);
    let lower = |x: &dyn std::fmt::Debug| format!("{x:?}").to_lowercase();
    Ok(
        json!({"model": spec, "parameters": model.num_parameters(), "threads": rayon_threads(),
        "engine": if o.fast { "fast" } else { "candle" }, "type": lower(&o.weights), "sparse": lower(&o.sparse),
        "storage": storage, "kv": lower(&o.kv),
        "batch": o.batch, "prompt_tokens": o.prompt_tokens, "gen_tokens": o.gen_tokens, "reps": o.reps,
        "prefill_tok_s": prefill_tok_s, "decode_tok_s": decode_tok_s,
        "weight_bytes_per_token": bytes, "achieved_gb_s": achieved, "bandwidth_gb_s": bw,
        "bandwidth_share": achieved / bw, "ceiling_tok_s": o.batch as f64 * bw * 1e9 / bytes as f64,
        "peak_memory_bytes": peak}),
    )
}

fn rayon_threads() -> usize {
    rayon::current_num_threads()
}

/// [`bench_model`]'s report for the console.
pub fn model_text(v: &Value) -> String {
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut s = format!(
        "{}: {:.2}M parameters, {} engine, {} weights, {} threads, batch {}, medians of {} runs\n",
        v["model"].as_str().unwrap_or(""),
        f("parameters") / 1e6,
        v["engine"].as_str().unwrap_or(""),
        v["type"].as_str().unwrap_or(""),
        v["threads"],
        v["batch"],
        v["reps"]
    );
    if let Some(st) = v["storage"].as_str() {
        s += &format!("storage   {st}\n");
    }
    s += &format!(
        "prefill   {:>9.0} tok/s ({}-token prompt)\n",
        f("prefill_tok_s"),
        v["prompt_tokens"]
    );
    s += &format!(
        "decode    {:>9.1} tok/s ({} tokens × {} sequences)\n",
        f("decode_tok_s"),
        v["gen_tokens"],
        v["batch"]
    );
    s += &format!(
        "weights   {:>9.1} MB read per token → {:.1} GB/s = {:.0}% of {:.1} GB/s (ceiling {:.0} tok/s)\n",
        f("weight_bytes_per_token") / 1e6, f("achieved_gb_s"), 100.0 * f("bandwidth_share"), f("bandwidth_gb_s"), f("ceiling_tok_s")
    );
    if let Some(p) = v["peak_memory_bytes"].as_f64() {
        s += &format!("memory    {:>9.1} MB peak resident\n", p / 1e6);
    }
    s
}

/// What to time in training: forward + backward + AdamW update of a random model.
#[derive(Debug, Clone)]
pub struct TrainBench {
    pub preset: String,
    pub vocab: Option<usize>,
    pub seq: usize,
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
}

/// Training step timings (median over `steps` after `warmup`).
pub fn bench_train(o: &TrainBench) -> Result<Value> {
    if o.steps == 0 {
        return Err(Error::invalid("--steps must be at least 1"));
    }
    let mut cfg = slm_model::preset(&o.preset)?;
    if let Some(v) = o.vocab {
        cfg.vocab_size = v;
    }
    cfg.max_position_embeddings = cfg.max_position_embeddings.max(o.seq);
    let llama = Llama::random(cfg.clone(), 1, &candle_core::Device::Cpu)?;
    let mut model = FastModel::from_llama(&llama)?;
    let mut opt = slm_train::optim::AdamW::new(Default::default(), model.flat_params().len());
    let n = o.batch * o.seq;
    let inputs: Vec<u32> = (0..n)
        .map(|i| ((i * 7919 + 13) % cfg.vocab_size) as u32)
        .collect();
    let targets: Vec<u32> = (0..n)
        .map(|i| ((i * 104_729 + 7) % cfg.vocab_size) as u32)
        .collect();
    let mut times = Vec::with_capacity(o.steps);
    for i in 0..o.warmup + o.steps {
        let t0 = Instant::now();
        model.zero_grad();
        model.forward_backward(&inputs, &targets, o.batch, o.seq)?;
        opt.update(&mut model, 1e-4)?;
        if i >= o.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let step = median(times.clone());
    Ok(
        json!({"preset": o.preset, "parameters": model.num_parameters(), "vocab": cfg.vocab_size,
        "seq": o.seq, "batch": o.batch, "threads": rayon_threads(), "steps": o.steps,
        "median_step_s": step, "tokens_per_sec": n as f64 / step,
        "min_step_s": times.iter().cloned().fold(f64::INFINITY, f64::min)}),
    )
}

/// [`bench_train`]'s report for the console.
pub fn train_text(v: &Value) -> String {
    format!(
        "train step, preset {} ({:.2}M params, vocab {}), batch {} × seq {}, {} threads: median {:.1} ms over {} steps = {:.0} tokens/s",
        v["preset"].as_str().unwrap_or(""), v["parameters"].as_f64().unwrap_or(0.0) / 1e6, v["vocab"], v["batch"], v["seq"],
        v["threads"], v["median_step_s"].as_f64().unwrap_or(0.0) * 1e3, v["steps"], v["tokens_per_sec"].as_f64().unwrap_or(0.0)
    )
}
