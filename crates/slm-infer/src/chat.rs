//! A conversation with an instruction-tuned model: what `slm chat` runs.
//!
//! Owns [`ChatSession`]: the history (system prompt and turns), rendering it through the
//! model's chat template (`slm_data::chat`) at every turn, keeping it within the context
//! (the oldest turns are dropped, and the reply says how many), reusing the KV cache for the
//! part of the rendered prompt that did not change since the last turn (so a turn costs only
//! its new tokens), and streaming the answer until an end-of-turn token, a stop string, the
//! token limit, a full context or the caller's interrupt.

use crate::decode::{Decoder, KvType, RunState, SparseUse, TypePlan, WeightType};
use crate::generate::StopReason;
use crate::sampler::{Sampler, SamplerConfig};
use crate::stop::{StopCheck, StopMatcher};
use slm_core::{Error, Result};
use slm_data::chat::{ChatTemplate, Message};
use slm_data::tokenizer::{StreamDecoder, Tokenizer};
use slm_model::Llama;
use std::time::Instant;

/// How a session generates.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// Most tokens in one answer.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Stop strings (not printed), besides the end-of-turn tokens.
    pub stop: Vec<String>,
    /// Token ids that end an answer besides the template's end-of-turn tokens (e.g.
    /// `eos_token_id` of generation_config.json).
    pub stop_tokens: Vec<u32>,
    pub kv: KvType,
    pub weights: TypePlan,
}

impl Default for ChatOptions {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            stop_tokens: Vec::new(),
            kv: KvType::F32,
            weights: TypePlan::uniform(WeightType::F32),
        }
    }
}

/// One answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The answer text (stop string and end-of-turn token excluded).
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    pub stop_reason: StopReason,
    /// The caller's interrupt stopped the answer (it is kept in the history as it stands).
    pub interrupted: bool,
    /// Oldest turns (a user message and its answer count as two) dropped to fit the context
    /// before this answer.
    pub dropped_messages: usize,
    /// Tokens of the rendered prompt, and how many of them the KV cache already held.
    pub prompt_tokens: usize,
    pub reused_tokens: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
}

/// A conversation held in memory with its KV cache.
pub struct ChatSession<'t> {
    engine: Decoder,
    state: RunState,
    tokenizer: &'t dyn Tokenizer,
    template: ChatTemplate,
    opts: ChatOptions,
    sampler: Sampler,
    stop_ids: Vec<u32>,
    system: Option<String>,
    history: Vec<Message>,
    /// The tokens whose keys and values the cache holds, in order from position 0.
    cached: Vec<u32>,
}

impl<'t> ChatSession<'t> {
    /// Packs `model`'s weights for decoding and starts an empty conversation. The answer
    /// stops at the template's end-of-turn tokens ([`ChatTemplate::stop_token_ids`]) and at
    /// `opts.stop_tokens`.
    pub fn new(
        model: &Llama,
        tokenizer: &'t dyn Tokenizer,
        template: ChatTemplate,
        opts: ChatOptions,
    ) -> Result<Self> {
        let sampler = Sampler::new(opts.sampler.clone())?;
        let engine = Decoder::with_plan(model, &opts.weights, SparseUse::Auto)?;
        let state = engine.new_state_with(opts.kv);
        let mut stop_ids = template.stop_token_ids(tokenizer);
        stop_ids.extend(&opts.stop_tokens);
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Ok(Self {
            engine,
            state,
            tokenizer,
            template,
            opts,
            sampler,
            stop_ids,
            system: None,
            history: Vec::new(),
            cached: Vec::new(),
        })
    }

    /// Sets (or clears) the system prompt, kept through [`Self::reset`] and truncation.
    pub fn set_system(&mut self, system: Option<String>) {
        self.system = system.filter(|s| !s.is_empty());
    }

    /// Forgets every turn (the system prompt stays).
    pub fn reset(&mut self) {
        self.history.clear();
    }

    /// The turns so far (without the system prompt).
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// The ids that end an answer.
    pub fn stop_token_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The model's context in tokens.
    pub fn context(&self) -> usize {
        self.engine.config().max_position_embeddings
    }

    /// The conversation as the template renders it, with the opening of the next answer.
    pub fn render(&self) -> Result<String> {
        self.template.render(&self.messages(), true)
    }

    fn messages(&self) -> Vec<Message> {
        let mut all = Vec::with_capacity(self.history.len() + 1);
        if let Some(s) = &self.system {
            all.push(Message::system(s.clone()));
        }
        all.extend(self.history.iter().cloned());
        all
    }

    /// Adds the user's `text`, answers it, streaming text to `on_text` as it forms, and adds
    /// the answer to the history. `interrupted` is polled before every token; when it returns
    /// true the answer stops there. On an error the history is left as it was.
    pub fn send(
        &mut self,
        text: &str,
        on_text: &mut dyn FnMut(&str) -> Result<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Reply> {
        let before = self.history.clone();
        self.history.push(Message::user(text));
        let reply = self.answer(on_text, interrupted);
        if reply.is_err() {
            // The history as it was: no turn dropped, the failed message taken back.
            self.history = before;
        }
        reply
    }

    /// Room kept free for the answer when fitting the history into the context.
    fn answer_room(&self) -> usize {
        self.opts.max_tokens.clamp(1, self.context() / 2)
    }

    /// Renders and tokenises the history, dropping the oldest turns until it fits.
    fn fitted_prompt(&mut self) -> Result<(Vec<u32>, usize)> {
        let ctx = self.context();
        let room = self.answer_room();
        let mut dropped = 0;
        loop {
            let text = self.render()?;
            let tokens = self.tokenizer.encode(&text, false)?;
            if tokens.len() + room <= ctx {
                return Ok((tokens, dropped));
            }
            // Drop the oldest exchange: the first message, and the answer after it when the
            // first is a user message; never the message being answered.
            if self.history.len() <= 1 {
                return Err(Error::invalid(format!(
                    "the conversation needs {} tokens with the system prompt and this message, \
                     and {room} more are kept for the answer; the model context is {ctx}: \
                     shorten the message (or --system, or --max-tokens)",
                    tokens.len()
                )));
            }
            let n = if self.history.len() > 2 && self.history[1].role != "user" {
                2
            } else {
                1
            };
            self.history.drain(..n);
            dropped += n;
        }
    }

    fn answer(
        &mut self,
        on_text: &mut dyn FnMut(&str) -> Result<()>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Reply> {
        let ctx = self.context();
        let (prompt, dropped_messages) = self.fitted_prompt()?;
        if prompt.is_empty() {
            return Err(Error::invalid("the chat template rendered an empty prompt"));
        }
        // Reuse the cached prefix; at least one token runs to give the next logits.
        let mut reuse = self
            .cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count();
        if reuse == prompt.len() {
            reuse -= 1;
        }
        let t0 = Instant::now();
        let mut logits = self
            .engine
            .prefill(&mut self.state, &prompt[reuse..], reuse)?
            .to_vec();
        let prefill_secs = t0.elapsed().as_secs_f64();
        self.cached = prompt.clone();

        let mut decoder = StreamDecoder::new(self.tokenizer);
        // Prime the decoder with the end of the prompt so spacing at the start is right.
        for &t in &prompt[prompt.len().saturating_sub(8)..] {
            decoder.push(t)?;
        }
        let mut stops = StopMatcher::new(self.opts.stop.clone());
        let mut history = prompt.clone();
        let mut text = String::new();
        let mut n = 0;
        let mut stop_reason = StopReason::MaxTokens;
        let mut was_interrupted = false;
        let t1 = Instant::now();
        while n < self.opts.max_tokens {
            if interrupted() {
                was_interrupted = true;
                break;
            }
            let next = self.sampler.sample(&logits, &history)?;
            if self.stop_ids.contains(&next) {
                stop_reason = if self.tokenizer.eos_id() == Some(next) {
                    StopReason::Eos
                } else {
                    StopReason::StopToken(next)
                };
                break;
            }
            n += 1;
            history.push(next);
            if let Some(piece) = decoder.push(next)? {
                if stops.emit(&piece, on_text, &mut text)? {
                    stop_reason = StopReason::StopString;
                    break;
                }
            }
            if n >= self.opts.max_tokens {
                break;
            }
            if history.len() >= ctx {
                stop_reason = StopReason::ContextFull;
                break;
            }
            logits.copy_from_slice(self.engine.forward(
                &mut self.state,
                next,
                history.len() - 1,
            )?);
            self.cached.push(next);
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
        self.history
            .push(Message::assistant(text.trim().to_string()));
        Ok(Reply {
            text,
            tokens: n,
            stop_reason,
            interrupted: was_interrupted,
            dropped_messages,
            prompt_tokens: prompt.len(),
            reused_tokens: reuse,
            prefill_secs,
            decode_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::tiny_llama;
    use slm_data::tokenizer::Llama2cTokenizer;

    /// A character-level llama2.c-style vocabulary with ChatML's two control pieces.
    fn tokenizer() -> Llama2cTokenizer {
        let mut pieces: Vec<Vec<u8>> =
            vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
        for b in 0u8..=255 {
            pieces.push(format!("<0x{b:02X}>").into_bytes());
        }
        for c in " abcdefghijklmnopqrstuvwxyz\n|<>_".chars() {
            pieces.push(c.to_string().into_bytes());
        }
        let scores = vec![0.0; pieces.len()];
        Llama2cTokenizer::from_pieces(pieces, scores).unwrap()
    }

    const TEMPLATE: &str = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

    fn session<'t>(
        tok: &'t Llama2cTokenizer,
        context: usize,
        max_tokens: usize,
    ) -> ChatSession<'t> {
        let model = tiny_llama(tok.vocab_size(), true, false, context, 3);
        let template = ChatTemplate::new(TEMPLATE, "test").unwrap();
        let opts = ChatOptions {
            max_tokens,
            sampler: SamplerConfig::greedy(),
            ..Default::default()
        };
        ChatSession::new(&model, tok, template, opts).unwrap()
    }

    #[test]
    fn turns_reuse_the_cache_and_answers_match_a_fresh_session() {
        let tok = tokenizer();
        let mut s = session(&tok, 512, 6);
        s.set_system(Some("be kind".into()));
        let r1 = s.send("hello", &mut |_| Ok(()), &|| false).unwrap();
        assert_eq!(r1.reused_tokens, 0);
        let r2 = s.send("and then", &mut |_| Ok(()), &|| false).unwrap();
        assert!(r2.reused_tokens > r1.prompt_tokens / 2, "{r2:?}");
        assert_eq!(s.history().len(), 4);

        // The same conversation rendered from scratch gives the same second answer.
        let mut fresh = session(&tok, 512, 6);
        fresh.set_system(Some("be kind".into()));
        fresh.history = s.history()[..3].to_vec();
        let r = fresh.answer(&mut |_| Ok(()), &|| false).unwrap();
        assert_eq!(r.reused_tokens, 0);
        assert_eq!(r.text, r2.text);
    }

    #[test]
    fn oldest_turns_are_dropped_to_fit_and_interrupt_stops() {
        let tok = tokenizer();
        let mut s = session(&tok, 96, 8);
        let mut dropped = 0;
        for i in 0..8 {
            let r = s
                .send(&format!("turn number {i} here"), &mut |_| Ok(()), &|| false)
                .unwrap();
            assert!(r.prompt_tokens + 8 <= 96, "{r:?}");
            dropped += r.dropped_messages;
        }
        assert!(dropped >= 2, "{dropped}");
        assert_eq!(s.history()[0].role, "user");
        let long = "x".repeat(200);
        let err = s.send(&long, &mut |_| Ok(()), &|| false).unwrap_err();
        assert!(err.to_string().contains("context"), "{err}");
        assert_eq!(s.history().last().unwrap().role, "assistant");

        let r = s.send("stop now", &mut |_| Ok(()), &|| true).unwrap();
        assert!(r.interrupted);
        assert_eq!(r.tokens, 0);
        s.reset();
        assert!(s.history().is_empty());
    }
}
