//! Timings as `slm bench` reports them (medians over repetitions): a model's prefill and
//! decode against the machine's memory bandwidth, and training steps. Each returns one JSON
//! object; `*_text` renders it for the console.

use serde_json::{json, Value};
use slm_core::{Error, Result};
use slm_data::tokenizer::Tokenizer;
use slm_infer::bench::{
    median, peak_memory_bytes, stream_triad, time_greedy, time_greedy_batch, weight_bytes_per_token,
};
use slm_infer::decode::{Decoder, KvType, SparseUse, TypePlan, WeightType};
use slm_infer::{generate_from_tokens, GenerateOptions, SamplerConfig};
use slm_model::Llama;
use slm_train::engine::FastModel;
use slm_train::finetune::BaseType;
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
    pub weights: TypePlan,
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
            && (self.batch > 1
                || self.kv != KvType::F32
                || !self.weights.is_uniform(WeightType::F32))
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
        Some(Decoder::with_plan(model, &o.weights, o.sparse)?)
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
        "engine": if o.fast { "fast" } else { "candle" }, "type": o.weights.describe(), "sparse": lower(&o.sparse),
        "storage": storage, "kv": lower(&o.kv),
        "batch": o.batch, "prompt_tokens": o.prompt_tokens, "gen_tokens": o.gen_tokens, "reps": o.reps,
        "prefill_tok_s": prefill_tok_s, "decode_tok_s": decode_tok_s,
        "weight_bytes_per_token": bytes, "achieved_gb_s": achieved, "bandwidth_gb_s": bw,
        "bandwidth_share": achieved / bw, "ceiling_tok_s": o.batch as f64 * bw * 1e9 / bytes as f64,
        "peak_memory_bytes": peak,
        "kernels": {"quantised": slm_kernels::quant_x8::group_path().name(), "f32": slm_kernels::simd::f32_path().name(),
            "attention": slm_kernels::attention_decode::kernel_name(model.config.head_dim)}}),
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
    if let (Some(q), Some(f), Some(a)) = (
        v["kernels"]["quantised"].as_str(),
        v["kernels"]["f32"].as_str(),
        v["kernels"]["attention"].as_str(),
    ) {
        s += &format!("kernels   quantised {q}, f32 {f}, attention {a}\n");
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

/// What to time in training: forward + backward + AdamW update, of a random model of a
/// preset size or of a real model (full, LoRA, or LoRA on a quantised base).
#[derive(Debug, Clone)]
pub struct TrainBench {
    pub preset: String,
    /// A model to load instead of the preset (its own vocabulary and sizes).
    pub model: Option<String>,
    pub vocab: Option<usize>,
    pub seq: usize,
    pub batch: usize,
    pub steps: usize,
    pub warmup: usize,
    /// Train LoRA adapters of this rank (alpha 2·rank, every linear) on a frozen base.
    pub lora_rank: Option<usize>,
    /// How the frozen base is held (q8_0 / q4_0: QLoRA; needs `lora_rank`).
    pub base_type: BaseType,
    /// Recompute activations in the backward (see `FastModel::set_activation_checkpointing`).
    pub activation_checkpointing: bool,
}

/// Training step timings (median over `steps` after `warmup`) and the process's peak
/// resident memory (loading included: run one configuration per process).
pub fn bench_train(o: &TrainBench) -> Result<Value> {
    if o.steps == 0 {
        return Err(Error::invalid("--steps must be at least 1"));
    }
    if o.base_type != BaseType::F32 && o.lora_rank.is_none() {
        return Err(Error::invalid(
            "--base-type is how LoRA's frozen base is held: add --lora-rank R",
        ));
    }
    let (mut model, name) = match &o.model {
        Some(spec) => {
            if o.vocab.is_some() {
                return Err(Error::invalid(
                    "--vocab is for presets; a model has its own",
                ));
            }
            let loaded = slm_model::load(spec, None)
                .map_err(|e| Error::msg(format!("loading `{spec}`: {e}")))?;
            (train_model(&loaded.model, o)?, spec.clone())
        }
        None => {
            let mut cfg = slm_model::preset(&o.preset)?;
            if let Some(v) = o.vocab {
                cfg.vocab_size = v;
            }
            cfg.max_position_embeddings = cfg.max_position_embeddings.max(o.seq);
            let llama = Llama::random(cfg, 1, &candle_core::Device::Cpu)?;
            (train_model(&llama, o)?, o.preset.clone())
        }
    };
    model.set_activation_checkpointing(o.activation_checkpointing);
    let cfg = model.config().clone();
    if o.seq > cfg.max_position_embeddings {
        return Err(Error::invalid(format!(
            "--seq {} is beyond the model context of {}",
            o.seq, cfg.max_position_embeddings
        )));
    }
    let mut opt = slm_train::optim::AdamW::new(Default::default(), model.trainable_values());
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
    // With SLM_ENGINE_PROFILE set: seconds per phase over all steps (warm-up included).
    let profile: Vec<Value> = slm_train::engine::profile_report()
        .into_iter()
        .map(|(phase, secs, calls)| json!({"phase": phase, "seconds": secs, "calls": calls}))
        .collect();
    let mut mode = match (o.lora_rank, model.base_kind()) {
        (None, _) => "full".to_string(),
        (Some(_), None) => "lora".to_string(),
        (Some(_), Some(k)) => format!("qlora-{}", format!("{k:?}").to_lowercase()),
    };
    if o.activation_checkpointing {
        mode += " + checkpointing";
    }
    Ok(
        json!({"preset": name, "mode": mode, "parameters": model.num_parameters(),
        "trainable": model.lora().map_or(model.num_parameters(), |l| l.num_parameters()), "vocab": cfg.vocab_size,
        "seq": o.seq, "batch": o.batch, "threads": rayon_threads(), "steps": o.steps,
        "median_step_s": step, "tokens_per_sec": n as f64 / step,
        "min_step_s": times.iter().cloned().fold(f64::INFINITY, f64::min),
        "weight_bytes": model.weight_bytes(), "activation_bytes": model.activation_bytes(),
        "peak_memory_bytes": peak_memory_bytes(), "profile": profile}),
    )
}

/// The training engine for `llama` as `o` asks (full, LoRA, or LoRA on a quantised base).
fn train_model(llama: &Llama, o: &TrainBench) -> Result<FastModel> {
    let Some(rank) = o.lora_rank else {
        return FastModel::from_llama(llama);
    };
    let spec = slm_train::engine::lora::LoraSpec {
        rank,
        alpha: 2.0 * rank as f64,
        dropout: 0.0,
        rslora: false,
        targets: slm_core::LinearRole::ALL.to_vec(),
    };
    match o.base_type.block_kind() {
        Some(kind) => {
            let tensors = llama.tensors().into_iter().collect();
            FastModel::with_quantized_base(&llama.config, &tensors, kind, spec, 1)
        }
        None => {
            let mut m = FastModel::from_llama(llama)?;
            m.attach_lora(spec, 1)?;
            Ok(m)
        }
    }
}

/// [`bench_train`]'s report for the console.
pub fn train_text(v: &Value) -> String {
    format!(
        "train step ({}), {} ({:.2}M params, {:.2}M trained, vocab {}), batch {} × seq {}, {} threads: median {:.1} ms over {} steps = {:.0} tokens/s\n\
         memory: {:.1} MB weights, {:.1} MB activations and scratch, {:.1} MB peak resident",
        v["mode"].as_str().unwrap_or(""), v["preset"].as_str().unwrap_or(""), v["parameters"].as_f64().unwrap_or(0.0) / 1e6,
        v["trainable"].as_f64().unwrap_or(0.0) / 1e6, v["vocab"], v["batch"], v["seq"],
        v["threads"], v["median_step_s"].as_f64().unwrap_or(0.0) * 1e3, v["steps"], v["tokens_per_sec"].as_f64().unwrap_or(0.0),
        v["weight_bytes"].as_f64().unwrap_or(0.0) / 1e6, v["activation_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        v["peak_memory_bytes"].as_f64().unwrap_or(0.0) / 1e6
    )
}
