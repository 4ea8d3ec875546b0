//! The teacher writing one sample: sample a continuation of the prompt through the KV cache
//! and score every generated token on the way.
//!
//! It is `slm_infer::generate_with` on the decode engine (same sampler, stop strings and
//! streaming decoder as `slm generate`, so the same seed gives the same tokens) with two of its
//! options set that data generation needs and streaming generation does not:
//!
//! - BOS is a stop token as well as EOS: llama2.c models such as stories260K separate stories
//!   with BOS and never emit EOS, so without it every story runs on into the next one;
//! - it keeps the log-probability of each sampled token under the raw logits (temperature 1,
//!   before any top-k/top-p), whose mean is the teacher perplexity filter's NLL, at no extra
//!   cost ([`teacher_nll`] recomputes it with one forward pass of the candle model, as a
//!   check).
//!
//! [`TeacherEngine`] packs the teacher's weights once and lends each generating thread a run
//! state (KV cache and buffers) per sample.

use candle_core::{DType, Tensor};
use slm_core::{Error, Result};
use slm_data::tokenizer::Tokenizer;
use slm_infer::decode::{Decoder, RunState, WeightType};
use slm_infer::{generate_with, GenerateOptions, StopReason};
use slm_model::Llama;
use std::sync::Mutex;

/// Why the teacher stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// End-of-sequence token.
    Eos,
    /// Beginning-of-sequence token: the start of another document.
    Bos,
    MaxTokens,
    StopString,
    ContextFull,
}

impl Stop {
    pub fn name(self) -> &'static str {
        match self {
            Stop::Eos => "eos",
            Stop::Bos => "bos",
            Stop::MaxTokens => "max_tokens",
            Stop::StopString => "stop_string",
            Stop::ContextFull => "context_full",
        }
    }

    /// The teacher ended the text itself (rather than running into a limit).
    pub fn ended(self) -> bool {
        matches!(self, Stop::Eos | Stop::Bos | Stop::StopString)
    }
}

/// A continuation with its score.
#[derive(Debug, Clone)]
pub struct Continuation {
    /// Prompt tokens (with BOS when added).
    pub prompt_tokens: Vec<u32>,
    /// Generated tokens (the final EOS/BOS not included).
    pub tokens: Vec<u32>,
    /// Generated text, stop string excluded.
    pub text: String,
    pub stop: Stop,
    /// Mean negative log-likelihood (nats) of `tokens` under the raw logits; `None` when
    /// no token was generated.
    pub nll: Option<f64>,
}

/// −log softmax(logits)[t], in f64.
fn token_nll(logits: &[f32], t: u32) -> Result<f64> {
    let x = *logits
        .get(t as usize)
        .ok_or_else(|| Error::invalid(format!("token {t} outside the teacher's vocabulary")))?;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln();
    Ok(lse - x as f64)
}

/// The teacher's decode engine and a pool of run states for the threads that generate.
pub struct TeacherEngine {
    engine: Decoder,
    free: Mutex<Vec<RunState>>,
}

impl TeacherEngine {
    /// Packs `model` for decoding (f32 weights: the samples are the teacher's own).
    pub fn new(model: &Llama) -> Result<Self> {
        Ok(Self {
            engine: Decoder::new(model, WeightType::F32)?,
            free: Mutex::new(Vec::new()),
        })
    }

    /// Continues `prompt` as [`continue_prompt`] does, on a pooled run state.
    pub fn continue_prompt(
        &self,
        tokenizer: &dyn Tokenizer,
        prompt: &str,
        opts: &GenerateOptions,
    ) -> Result<Continuation> {
        // A poisoned pool (a thread panicked while holding it) only costs a fresh state.
        let pooled = self.free.lock().ok().and_then(|mut v| v.pop());
        let mut state = pooled.unwrap_or_else(|| self.engine.new_state());
        let out = continue_prompt_with(&self.engine, &mut state, tokenizer, prompt, opts);
        if let Ok(mut v) = self.free.lock() {
            v.push(state);
        }
        out
    }

    /// Continues already tokenised input (a prompt rendered through a chat template), as
    /// [`continue_tokens_with`] does, on a pooled run state.
    pub fn continue_tokens(
        &self,
        tokenizer: &dyn Tokenizer,
        prompt_tokens: Vec<u32>,
        opts: &GenerateOptions,
    ) -> Result<Continuation> {
        let pooled = self.free.lock().ok().and_then(|mut v| v.pop());
        let mut state = pooled.unwrap_or_else(|| self.engine.new_state());
        let out = continue_tokens_with(&self.engine, &mut state, tokenizer, prompt_tokens, opts);
        if let Ok(mut v) = self.free.lock() {
            v.push(state);
        }
        out
    }
}

/// Continues `prompt`: sampling as `opts` says, stopping at EOS, BOS, a stop string,
/// `opts.max_tokens` or the context's end (packs `model` for this one call; many calls
/// should share a [`TeacherEngine`]).
pub fn continue_prompt(
    model: &Llama,
    tokenizer: &dyn Tokenizer,
    prompt: &str,
    opts: &GenerateOptions,
) -> Result<Continuation> {
    TeacherEngine::new(model)?.continue_prompt(tokenizer, prompt, opts)
}

/// [`continue_prompt`] on `engine` with `state`.
pub fn continue_prompt_with(
    engine: &Decoder,
    state: &mut RunState,
    tokenizer: &dyn Tokenizer,
    prompt: &str,
    opts: &GenerateOptions,
) -> Result<Continuation> {
    let prompt_tokens = tokenizer.encode(prompt, opts.add_bos)?;
    continue_tokens_with(engine, state, tokenizer, prompt_tokens, opts)
}

/// [`continue_prompt_with`] from already tokenised input.
pub fn continue_tokens_with(
    engine: &Decoder,
    state: &mut RunState,
    tokenizer: &dyn Tokenizer,
    prompt_tokens: Vec<u32>,
    opts: &GenerateOptions,
) -> Result<Continuation> {
    let mut opts = opts.clone();
    opts.logprobs = true;
    let bos = tokenizer.bos_id();
    if let Some(b) = bos {
        if !opts.stop_tokens.contains(&b) {
            opts.stop_tokens.push(b);
        }
    }
    let g = generate_with(engine, state, tokenizer, prompt_tokens, &opts, &mut |_| {
        Ok(())
    })?;
    let stop = match g.stop_reason {
        StopReason::Eos => Stop::Eos,
        StopReason::StopToken(t) if Some(t) == bos => Stop::Bos,
        // A caller's own stop token ends the text as EOS does.
        StopReason::StopToken(_) => Stop::Eos,
        StopReason::MaxTokens => Stop::MaxTokens,
        StopReason::StopString => Stop::StopString,
        StopReason::ContextFull => Stop::ContextFull,
    };
    let nll = (!g.logprobs.is_empty())
        .then(|| -g.logprobs.iter().map(|&l| l as f64).sum::<f64>() / g.logprobs.len() as f64);
    Ok(Continuation {
        prompt_tokens: g.prompt_tokens,
        tokens: g.tokens,
        text: g.text,
        stop,
        nll,
    })
}

/// The teacher's mean negative log-likelihood (nats) of `tokens` following `prompt_tokens`,
/// from one forward pass over the whole sequence (log-softmax at temperature 1).
pub fn teacher_nll(model: &Llama, prompt_tokens: &[u32], tokens: &[u32]) -> Result<Option<f64>> {
    if tokens.is_empty() {
        return Ok(None);
    }
    if prompt_tokens.is_empty() {
        return Err(Error::invalid(
            "teacher perplexity needs at least one prompt token",
        ));
    }
    let mut ids = prompt_tokens.to_vec();
    ids.extend_from_slice(tokens);
    ids.pop(); // the last token is predicted, never an input
    let ctx = model.config.max_position_embeddings;
    if ids.len() > ctx {
        return Err(Error::invalid(format!(
            "{} tokens exceed the teacher's context of {ctx}",
            ids.len()
        )));
    }
    let input = Tensor::new(ids.as_slice(), model.device())?.unsqueeze(0)?; // [1, t]
    let logits = model.forward(&input, None)?; // [1, t, v]
    let rows = logits
        .squeeze(0)?
        .narrow(0, prompt_tokens.len() - 1, tokens.len())? // [tokens, v]
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?;
    let mut total = 0.0f64;
    for (r, &t) in rows.iter().zip(tokens) {
        total += token_nll(r, t)?;
    }
    Ok(Some(total / tokens.len() as f64))
}
