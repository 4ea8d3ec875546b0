//! Text generation: prefill the prompt through the KV cache, then decode one token at a
//! time, streaming text to the caller as it forms.
//!
//! Stops at `max_tokens`, at the end-of-sequence token (or another stop token), at a stop
//! string or when the model context is full, and reports which, with timings for prefill and
//! decode. [`generate_with`] runs on a decode engine and state the caller keeps, so a caller
//! generating many texts (data distillation) packs the weights once.

use crate::decode::{Decoder, KvType, RunState, SparseUse, TypePlan, WeightType};
use crate::sampler::{Sampler, SamplerConfig};
use crate::stop::{StopCheck, StopMatcher};
use slm_core::{Error, Result};
use slm_data::tokenizer::{StreamDecoder, Tokenizer};
use slm_model::Llama;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    /// Prepend the tokenizer's BOS token to the prompt.
    pub add_bos: bool,
    /// Stop when the model emits its end-of-sequence token.
    pub stop_at_eos: bool,
    /// Other tokens that end the generation as EOS does (not included in the output): a
    /// llama2.c model's BOS, which starts the next story.
    pub stop_tokens: Vec<u32>,
    /// Keep each generated token's log-probability under the raw logits (temperature 1,
    /// before top-k/top-p) in [`Generation::logprobs`].
    pub logprobs: bool,
    /// Storage of the decode engine's KV cache.
    pub kv: KvType,
    /// Storage of the decode engine's linear weights (quantised at load, or the file's own
    /// types: [`TypeChoice::plan`](crate::decode::TypeChoice::plan)).
    pub weights: TypePlan,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            add_bos: true,
            stop_at_eos: true,
            stop_tokens: Vec::new(),
            logprobs: false,
            kv: KvType::F32,
            weights: TypePlan::uniform(WeightType::F32),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    Eos,
    /// One of [`GenerateOptions::stop_tokens`].
    StopToken(u32),
    StopString,
    ContextFull,
}

#[derive(Debug, Clone)]
pub struct Generation {
    /// Prompt tokens (with BOS when added).
    pub prompt_tokens: Vec<u32>,
    /// Generated tokens (the EOS token is not included).
    pub tokens: Vec<u32>,
    /// Generated text, stop string excluded.
    pub text: String,
    pub stop_reason: StopReason,
    /// ln p(token) of each generated token under the raw logits, when asked for
    /// ([`GenerateOptions::logprobs`]); empty otherwise.
    pub logprobs: Vec<f32>,
    pub prefill_secs: f64,
    pub decode_secs: f64,
}

impl Generation {
    /// Decode speed: generated tokens per second after the first (which came from prefill).
    pub fn decode_tokens_per_sec(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1);
        if self.decode_secs > 0.0 {
            n as f64 / self.decode_secs
        } else {
            0.0
        }
    }
}

/// Generates a continuation of `prompt`, calling `on_text` with each piece of new text.
pub fn generate(
    model: &Llama,
    tokenizer: &dyn Tokenizer,
    prompt: &str,
    opts: &GenerateOptions,
    on_text: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<Generation> {
    let prompt_tokens = tokenizer.encode(prompt, opts.add_bos)?;
    generate_from_tokens(model, tokenizer, prompt_tokens, opts, on_text)
}

/// As [`generate`], from already tokenised input.
pub fn generate_from_tokens(
    model: &Llama,
    tokenizer: &dyn Tokenizer,
    prompt_tokens: Vec<u32>,
    opts: &GenerateOptions,
    on_text: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<Generation> {
    // The decode engine (preallocated KV cache, streaming matrix-vector products); the
    // candle model stays the reference its tests compare with.
    let engine = Decoder::with_plan(model, &opts.weights, SparseUse::Auto)?;
    let mut state = engine.new_state_with(opts.kv);
    generate_with(&engine, &mut state, tokenizer, prompt_tokens, opts, on_text)
}

/// As [`generate_from_tokens`], on `engine` with `state` (any earlier contents are
/// overwritten; `opts.weights` and `opts.kv` are the engine's and the state's business here).
pub fn generate_with(
    engine: &Decoder,
    state: &mut RunState,
    tokenizer: &dyn Tokenizer,
    prompt_tokens: Vec<u32>,
    opts: &GenerateOptions,
    on_text: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<Generation> {
    let ctx = engine.config().max_position_embeddings;
    if prompt_tokens.is_empty() {
        return Err(Error::invalid(
            "the prompt is empty and the tokenizer has no BOS token to start from",
        ));
    }
    if prompt_tokens.len() >= ctx {
        return Err(Error::invalid(format!(
            "the prompt has {} tokens; the model context is {ctx}",
            prompt_tokens.len()
        )));
    }
    let mut sampler = Sampler::new(opts.sampler.clone())?;
    let eos = tokenizer.eos_id();
    let mut stops = StopMatcher::new(opts.stop.clone());
    let mut decoder = StreamDecoder::new(tokenizer);
    for &t in &prompt_tokens {
        decoder.push(t)?; // prime the decoder so spacing after the prompt is right
    }

    let t0 = Instant::now();
    let mut logits = engine.prefill(state, &prompt_tokens, 0)?.to_vec();
    let prefill_secs = t0.elapsed().as_secs_f64();

    let mut history = prompt_tokens.clone();
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut logprobs = Vec::new();
    let mut stop_reason = StopReason::MaxTokens;
    let t1 = Instant::now();
    while tokens.len() < opts.max_tokens {
        let next = sampler.sample(&logits, &history)?;
        if opts.stop_at_eos && Some(next) == eos {
            stop_reason = StopReason::Eos;
            break;
        }
        if opts.stop_tokens.contains(&next) {
            stop_reason = StopReason::StopToken(next);
            break;
        }
        if opts.logprobs {
            logprobs.push(log_prob(&logits, next)?);
        }
        tokens.push(next);
        history.push(next);
        if let Some(piece) = decoder.push(next)? {
            if stops.emit(&piece, on_text, &mut text)? {
                stop_reason = StopReason::StopString;
                break;
            }
        }
        if tokens.len() >= opts.max_tokens {
            break;
        }
        if history.len() >= ctx {
            stop_reason = StopReason::ContextFull;
            break;
        }
        logits.copy_from_slice(engine.forward(state, next, history.len() - 1)?);
    }
    if stop_reason != StopReason::StopString {
        let rest = decoder.finish()?.unwrap_or_default();
        let tail = match stops.push(&rest) {
            StopCheck::Stop(s) => s,
            StopCheck::Continue(s) => s + &stops.finish(),
        };
        on_text(&tail)?;
        text.push_str(&tail);
    }
    let decode_secs = t1.elapsed().as_secs_f64();
    Ok(Generation {
        prompt_tokens,
        tokens,
        text,
        stop_reason,
        logprobs,
        prefill_secs,
        decode_secs,
    })
}

/// ln softmax(logits)[token], computed in f64.
fn log_prob(logits: &[f32], token: u32) -> Result<f32> {
    let x = *logits.get(token as usize).ok_or_else(|| {
        Error::msg(format!(
            "token {token} is outside the {} logits",
            logits.len()
        ))
    })? as f64;
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    Ok((x - max - sum.ln()) as f32)
}
