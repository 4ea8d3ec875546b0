//! A teacher behind an OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp's server, Ollama,
//! `slm serve`): each sample is one chat (or, with `raw`, text) completion request, sent by
//! `concurrency` threads at once through `slm_openai::Client` (retries with backoff on 429/5xx,
//! an optional rate limit). Everything that decides a sample still derives from (seed, index):
//! the prompt, and the `seed` field sent with the request, so a server that honours seeds
//! writes the same set again.
//!
//! Each sample records where it came from (endpoint, the model that answered, the sampling
//! settings and seed, the response id). With `top_logprobs` > 0 and a student tokenizer, the
//! teacher's top-k log-probabilities of every generated token are mapped onto the student's
//! vocabulary (a token is matched by its bytes; a token the student does not have, or has
//! twice, makes the sample's top-k unusable, and it is written without) and kept with the
//! sample, for `slm distill cache --samples` to turn into an offline KD cache.

use super::{sample_seed, Sample, Stop};
use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use slm_data::tokenizer::Tokenizer;
use slm_openai::{
    ChatMessage, ChatRequest, Client, CompletionRequest, PromptField, Sampling, StopField,
    TokenLogprob,
};
use std::collections::HashMap;

/// The student-vocabulary view of a sample's teacher distributions: for generated token j,
/// `ids[j]` (the token) and its top-k alternatives with their log-probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    pub ids: Vec<u32>,
    pub top_ids: Vec<Vec<u32>>,
    pub top_logprobs: Vec<Vec<f32>>,
}

/// Token bytes → student id, for the tokens whose bytes are unique in the vocabulary.
#[derive(Debug, Clone)]
pub struct VocabMap {
    ids: HashMap<Vec<u8>, u32>,
    pub vocab_size: usize,
    pub eos: Option<u32>,
}

impl VocabMap {
    pub fn new(tokenizer: &dyn Tokenizer) -> Result<Self> {
        let mut ids: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut twice = std::collections::HashSet::new();
        for id in 0..tokenizer.vocab_size() as u32 {
            // Raw bytes, so tokens holding part of a character match a server's `bytes`;
            // tokens that stand for no text (`<|im_end|>`) by their piece, as servers name them.
            let key = match tokenizer.token_bytes(id) {
                Some(b) if b.is_empty() => match tokenizer.id_to_piece(id) {
                    Some(p) if !p.is_empty() => p.into_bytes(),
                    _ => continue,
                },
                Some(b) => b,
                None => continue,
            };
            if ids.insert(key.clone(), id).is_some() {
                twice.insert(key);
            }
        }
        for k in twice {
            ids.remove(&k);
        }
        Ok(Self {
            ids,
            vocab_size: tokenizer.vocab_size(),
            eos: tokenizer.eos_id(),
        })
    }

    fn id(&self, token: &str, bytes: Option<&[u8]>) -> Option<u32> {
        let key = bytes.unwrap_or(token.as_bytes());
        // vLLM's `return_tokens_as_token_ids` form.
        if let Some(n) = token.strip_prefix("token_id:") {
            return n
                .parse()
                .ok()
                .filter(|&i: &u32| (i as usize) < self.vocab_size);
        }
        self.ids.get(key).copied()
    }

    /// The sample's top-k in student ids; `None` when a generated token does not map. An
    /// alternative that does not map is left out (its probability goes to the tail).
    pub fn map(&self, content: &[TokenLogprob]) -> Option<TopK> {
        let mut top = TopK {
            ids: Vec::with_capacity(content.len()),
            top_ids: Vec::with_capacity(content.len()),
            top_logprobs: Vec::with_capacity(content.len()),
        };
        for t in content {
            top.ids.push(self.id(&t.token, t.bytes.as_deref())?);
            let mut ids = Vec::with_capacity(t.top_logprobs.len());
            let mut lps = Vec::with_capacity(t.top_logprobs.len());
            for a in &t.top_logprobs {
                let Some(id) = self.id(&a.token, a.bytes.as_deref()) else {
                    continue;
                };
                if !ids.contains(&id) && a.logprob.is_finite() {
                    ids.push(id);
                    lps.push(a.logprob);
                }
            }
            if ids.is_empty() {
                return None;
            }
            top.top_ids.push(ids);
            top.top_logprobs.push(lps);
        }
        Some(top)
    }
}

/// A remote teacher and how samples are asked of it.
#[derive(Debug)]
pub struct RemoteTeacher {
    pub client: Client,
    /// The `model` field sent ("" lets the server choose).
    pub model: String,
    /// Chat completions with the prompt as a user turn (the default); false: text completion
    /// of the raw prompt.
    pub chat: bool,
    pub system: Option<String>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Alternatives asked per token (0: none; ≤ 20). Needs `vocab`.
    pub top_logprobs: usize,
    /// Ask for the sampled tokens' log-probabilities (for the teacher-perplexity filters).
    pub logprobs: bool,
    /// The student's vocabulary, for top-k caching.
    pub vocab: Option<VocabMap>,
}

/// Sampling settings as sent.
pub struct Settings<'a> {
    pub max_tokens: usize,
    pub sampler: &'a slm_infer::SamplerConfig,
    pub stop: &'a [String],
}

impl RemoteTeacher {
    /// What identifies the teacher in the settings file (a resumed run must match).
    pub fn identity(&self) -> String {
        format!("{} model {:?}", self.client.base(), self.model)
    }

    /// Generates sample `index` of `prompt`.
    pub fn sample(&self, prompt: &str, s: &Settings, index: u64) -> Result<Sample> {
        let seed = sample_seed(s.sampler.seed, index, 1);
        let sampling = Sampling {
            max_tokens: Some(s.max_tokens as u64),
            temperature: Some(s.sampler.temperature),
            top_p: (s.sampler.top_p < 1.0).then_some(s.sampler.top_p),
            top_k: (s.sampler.top_k > 0).then_some(s.sampler.top_k as i64),
            repetition_penalty: (s.sampler.repetition_penalty != 1.0)
                .then_some(s.sampler.repetition_penalty),
            seed: Some(seed),
            stop: (!s.stop.is_empty()).then(|| StopField::Many(s.stop.to_vec())),
            ..Default::default()
        };
        let want_lp = self.logprobs || self.top_logprobs > 0;
        let (text, finish, tokens, content, model, id) =
            if self.chat {
                let mut messages = Vec::new();
                if let Some(sys) = &self.system {
                    messages.push(ChatMessage::new("system", sys));
                }
                messages.push(ChatMessage::new("user", prompt));
                let req = ChatRequest {
                    model: self.model.clone(),
                    messages,
                    sampling,
                    logprobs: want_lp.then_some(true),
                    top_logprobs: (self.top_logprobs > 0).then_some(self.top_logprobs as u32),
                    ..Default::default()
                };
                let r = self.client.chat(&req)?;
                let c = r.choices.into_iter().next().ok_or_else(|| {
                    Error::msg(format!("sample {index}: the answer has no choices"))
                })?;
                let content = c.logprobs.and_then(|l| l.content);
                (
                    c.message.content.unwrap_or_default(),
                    c.finish_reason,
                    r.usage.map(|u| u.completion_tokens as usize),
                    content,
                    r.model,
                    r.id,
                )
            } else {
                let req = CompletionRequest {
                    model: self.model.clone(),
                    prompt: PromptField::Text(prompt.to_string()),
                    sampling,
                    logprobs: want_lp.then_some(self.top_logprobs as u32),
                    echo: None,
                    extra: Default::default(),
                };
                let r = self.client.completion(&req)?;
                let c = r.choices.into_iter().next().ok_or_else(|| {
                    Error::msg(format!("sample {index}: the answer has no choices"))
                })?;
                // The legacy format as the chat one (alternatives best first).
                let content = c.logprobs.map(|l| {
                    l.tokens
                        .iter()
                        .zip(&l.token_logprobs)
                        .enumerate()
                        .map(|(j, (t, &lp))| {
                            let mut top: Vec<slm_openai::TopLogprob> = l
                                .top_logprobs
                                .get(j)
                                .map(|m| {
                                    m.iter()
                                        .map(|(t, &lp)| slm_openai::TopLogprob {
                                            token: t.clone(),
                                            logprob: lp,
                                            bytes: None,
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
                            TokenLogprob {
                                token: t.clone(),
                                logprob: lp,
                                bytes: None,
                                top_logprobs: top,
                            }
                        })
                        .collect::<Vec<_>>()
                });
                (
                    c.text,
                    c.finish_reason,
                    r.usage.map(|u| u.completion_tokens as usize),
                    content,
                    r.model,
                    r.id,
                )
            };
        let stop = match finish.as_deref() {
            Some("length") => Stop::MaxTokens,
            _ => Stop::Eos,
        };
        let nll = content
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|c| -c.iter().map(|t| t.logprob as f64).sum::<f64>() / c.len() as f64);
        let topk = match (&self.vocab, &content) {
            (Some(v), Some(c)) if self.top_logprobs > 0 && !c.is_empty() => v.map(c),
            _ => None,
        };
        let tokens = tokens.or(content.as_ref().map(Vec::len)).unwrap_or(0);
        Ok(Sample {
            index,
            prompt: prompt.to_string(),
            text,
            tokens,
            stop,
            nll,
            provenance: Some(serde_json::json!({
                "endpoint": self.client.base(),
                "model": model,
                "response": id,
                "temperature": s.sampler.temperature,
                "top_p": s.sampler.top_p,
                "top_k": s.sampler.top_k,
                "repetition_penalty": s.sampler.repetition_penalty,
                "max_tokens": s.max_tokens,
                "seed": seed,
                "finish_reason": finish,
            })),
            topk,
        })
    }
}
