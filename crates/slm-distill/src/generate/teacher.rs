//! The teacher writing one sample: sample a continuation of the prompt through the KV cache
//! and score every generated token on the way.
//!
//! This is the loop of `slm_infer::generate_from_tokens` (same sampler, stop strings and
//! streaming decoder, so the same seed gives the same tokens) with two additions that data
//! generation needs and streaming generation does not:
//!
//! - it stops at the beginning-of-sequence token as well as at end-of-sequence: llama2.c
//!   models such as stories260K separate stories with BOS and never emit EOS, so without
//!   this every story runs on into the next one;
//! - it keeps the log-probability of each sampled token under the raw logits (temperature 1,
//!   before any top-k/top-p), whose mean is the teacher perplexity filter's NLL, at no extra
//!   cost ([`teacher_nll`] recomputes it with one forward pass, as a check).

use candle_core::{DType, Tensor};
use slm_core::{Error, Result};
use slm_data::tokenizer::{StreamDecoder, Tokenizer};
use slm_infer::stop::{StopCheck, StopMatcher};
use slm_infer::{GenerateOptions, Sampler};
use slm_model::Llama;

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

/// Row `i` of logits [1, t, v] as a vector.
fn row(logits: &Tensor, i: usize) -> Result<Vec<f32>> {
    Ok(logits
        .narrow(1, i, 1)?
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?)
}

/// Continues `prompt`: sampling as `opts` says, stopping at EOS, BOS, a stop string,
/// `opts.max_tokens` or the context's end.
pub fn continue_prompt(
    model: &Llama,
    tokenizer: &dyn Tokenizer,
    prompt: &str,
    opts: &GenerateOptions,
) -> Result<Continuation> {
    let prompt_tokens = tokenizer.encode(prompt, opts.add_bos)?;
    let ctx = model.config.max_position_embeddings;
    if prompt_tokens.is_empty() {
        return Err(Error::invalid(
            "the prompt is empty and the tokenizer has no BOS token to start from",
        ));
    }
    if prompt_tokens.len() >= ctx {
        return Err(Error::invalid(format!(
            "the prompt has {} tokens; the teacher's context is {ctx}",
            prompt_tokens.len()
        )));
    }
    let mut sampler = Sampler::new(opts.sampler.clone())?;
    let device = model.device();
    let (bos, eos) = (tokenizer.bos_id(), tokenizer.eos_id());
    let mut cache = model.new_cache();
    let mut stops = StopMatcher::new(opts.stop.clone());
    let mut decoder = StreamDecoder::new(tokenizer);
    for &t in &prompt_tokens {
        decoder.push(t)?; // prime the decoder so spacing after the prompt is right
    }
    let input = Tensor::new(prompt_tokens.as_slice(), device)?.unsqueeze(0)?; // [1, t]
    let mut logits = row(
        &model.forward(&input, Some(&mut cache))?,
        prompt_tokens.len() - 1,
    )?;
    let mut history = prompt_tokens.clone();
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut nll = 0.0f64;
    let mut stop = Stop::MaxTokens;
    while tokens.len() < opts.max_tokens {
        let next = sampler.sample(&logits, &history)?;
        if opts.stop_at_eos && Some(next) == eos {
            stop = Stop::Eos;
            break;
        }
        if Some(next) == bos {
            stop = Stop::Bos;
            break;
        }
        nll += token_nll(&logits, next)?;
        tokens.push(next);
        history.push(next);
        if let Some(piece) = decoder.push(next)? {
            match stops.push(&piece) {
                StopCheck::Continue(s) => text.push_str(&s),
                StopCheck::Stop(s) => {
                    text.push_str(&s);
                    stop = Stop::StopString;
                    break;
                }
            }
        }
        if tokens.len() >= opts.max_tokens {
            break;
        }
        if history.len() >= ctx {
            stop = Stop::ContextFull;
            break;
        }
        let input = Tensor::new(&[next], device)?.unsqueeze(0)?; // [1, 1]
        logits = row(&model.forward(&input, Some(&mut cache))?, 0)?;
    }
    if stop != Stop::StopString {
        let rest = decoder.finish()?.unwrap_or_default();
        match stops.push(&rest) {
            StopCheck::Stop(s) => text.push_str(&s),
            StopCheck::Continue(s) => {
                text.push_str(&s);
                text.push_str(&stops.finish());
            }
        }
    }
    let nll = (!tokens.is_empty()).then(|| nll / tokens.len() as f64);
    Ok(Continuation {
        prompt_tokens,
        tokens,
        text,
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
