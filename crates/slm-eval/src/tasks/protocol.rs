//! The harness's language-model calls on the decode engine: `loglikelihood` (HFLM's
//! `_encode_pair` and continuation scoring) and greedy `generate_until`.
//!
//! Tokenisation follows HFLM: no BOS unless asked (`add_bos_token=False`); trailing spaces of
//! the context move to the continuation; `whole = encode(context + continuation)` is split at
//! `len(encode(context))`; an empty context is the BOS (else EOS) token alone.
//!
//! Scoring runs the input `(context + continuation)[:-1]` (left-truncated to the model's
//! context) and sums the log-softmax of each continuation token; `greedy` says every
//! continuation token was the argmax. The KV cache is shared: a [`Session`] remembers which
//! tokens its cache holds, and each request is prefilled only from where its input leaves that
//! prefix (one row earlier, for the logits that predict the first continuation token), so the
//! choices of one question run their context once, and MMLU's few-shot prefix once per
//! subject.

use slm_core::{Error, Result};
use slm_data::tokenizer::Tokenizer;
use slm_infer::decode::{Decoder, RunState};

/// Token ids of `(context, continuation)` as the harness's `_encode_pair` makes them.
pub fn encode_pair(
    tok: &dyn Tokenizer,
    context: &str,
    continuation: &str,
    add_bos: bool,
) -> Result<(Vec<u32>, Vec<u32>)> {
    if context.is_empty() {
        let first = tok
            .bos_id()
            .or(tok.eos_id())
            .ok_or_else(|| Error::invalid("an empty context needs a BOS or EOS token"))?;
        return Ok((vec![first], tok.encode(continuation, false)?));
    }
    let kept = context.trim_end();
    let (context, continuation) = if kept.len() < context.len() {
        (kept, format!("{}{continuation}", &context[kept.len()..]))
    } else {
        (context, continuation.to_string())
    };
    let whole = tok.encode(&format!("{context}{continuation}"), add_bos)?;
    let ctx = tok.encode(context, add_bos)?;
    let cont = whole.get(ctx.len()..).unwrap_or_default().to_vec();
    Ok((ctx, cont))
}

/// A KV cache and the tokens it holds, reused across requests (`states[0]`), and one more
/// state per further choice of a question, filled with a copy of the context's cache.
pub struct Session {
    states: Vec<RunState>,
    cached: Vec<u32>,
    logits: Vec<f32>,
}

impl Session {
    pub fn new(dec: &Decoder) -> Self {
        Self {
            states: vec![dec.new_state()],
            cached: Vec::new(),
            logits: Vec::new(),
        }
    }

    /// Log-likelihoods and greedy flags of several continuations of one context (the choices
    /// of a question): the context runs once (from where it leaves the cached prefix), then
    /// every continuation's rows run together in one pass, each on a copy of the context's
    /// cache ([`Decoder::prefill_scores_multi`]), so each weight is read once for all choices.
    /// Equal to [`Session::loglikelihood`] per continuation, to float rounding.
    pub fn choice_loglikelihoods(
        &mut self,
        dec: &Decoder,
        ctx: &[u32],
        conts: &[Vec<u32>],
    ) -> Result<Vec<(f64, bool)>> {
        let max = dec.config.max_position_embeddings;
        let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
        if ctx.is_empty() || conts.iter().any(Vec::is_empty) || ctx.len() + longest > max {
            // Truncation or an empty request: the general path says what is wrong or cuts.
            return conts
                .iter()
                .map(|c| self.loglikelihood(dec, ctx, c))
                .collect();
        }
        let v = dec.config.vocab_size;
        let n = ctx.len();
        let last = self.run(dec, ctx, n - 1)?[..v].to_vec();
        while self.states.len() < conts.len() {
            self.states.push(dec.new_state());
        }
        let (main, rest) = self.states.split_at_mut(1);
        let mut parts: Vec<(usize, &[u32], usize)> = Vec::new();
        for (i, c) in conts.iter().enumerate() {
            if c.len() > 1 {
                if i > 0 {
                    dec.copy_prefix(&main[0], &mut rest[i - 1], n)?;
                }
                parts.push((i, &c[..c.len() - 1], n));
            }
        }
        if !parts.is_empty() {
            dec.prefill_scores_multi(&mut self.states, &parts, &mut self.logits)?;
        }
        // states[0] now holds choice 0's rows after the context: the cache is the context.
        self.cached.truncate(n);
        let mut out = Vec::with_capacity(conts.len());
        let mut row = 0;
        for c in conts {
            let (mut ll, mut greedy) = log_prob(&last, c[0] as usize);
            for &t in &c[1..] {
                let (lp, top) = log_prob(&self.logits[row * v..(row + 1) * v], t as usize);
                ll += lp;
                greedy &= top;
                row += 1;
            }
            out.push((ll, greedy));
        }
        Ok(out)
    }

    /// Runs `input` from `from` (at most the length of the prefix it shares with the cache)
    /// and returns the logits rows `from..input.len()`.
    fn run(&mut self, dec: &Decoder, input: &[u32], from: usize) -> Result<&[f32]> {
        let shared = self
            .cached
            .iter()
            .zip(input)
            .take_while(|(a, b)| a == b)
            .count();
        let start = from.min(shared);
        self.cached.truncate(start);
        // Rows before `from` only fill the cache: no output head over the vocabulary for them
        // (on SmolLM2 the head is a fifth of the model's multiply-adds per row).
        if from > start {
            dec.prefill(&mut self.states[0], &input[start..from], start)?;
        }
        dec.prefill_scores(&mut self.states[0], &input[from..], from, &mut self.logits)?;
        self.cached.extend_from_slice(&input[start..]);
        Ok(&self.logits)
    }

    /// Log-likelihood of `cont` after `ctx` and whether greedy decoding would produce it.
    pub fn loglikelihood(
        &mut self,
        dec: &Decoder,
        ctx: &[u32],
        cont: &[u32],
    ) -> Result<(f64, bool)> {
        if cont.is_empty() {
            return Err(Error::invalid("a continuation with no tokens"));
        }
        let max = dec.config.max_position_embeddings;
        let mut whole: Vec<u32> = ctx.iter().chain(cont).copied().collect();
        if whole.len() > max + 1 {
            whole.drain(..whole.len() - (max + 1));
        }
        whole.pop();
        let first = whole.len() + 1 - cont.len();
        let v = dec.config.vocab_size;
        let rows = self.run(dec, &whole, first - 1)?;
        let mut ll = 0f64;
        let mut greedy = true;
        for (row, &t) in rows.chunks_exact(v).zip(cont) {
            let (lp, top) = log_prob(row, t as usize);
            ll += lp;
            greedy &= top;
        }
        Ok((ll, greedy))
    }

    /// Greedy generation after `ctx`: at most `max_new` tokens, stopping at a token of
    /// `stop_ids` or once the decoded text holds one of `until` (the text is cut there).
    pub fn generate(
        &mut self,
        dec: &Decoder,
        tok: &dyn Tokenizer,
        ctx: &[u32],
        max_new: usize,
        stop_ids: &[u32],
        until: &[&str],
    ) -> Result<(Vec<u32>, String)> {
        let max = dec.config.max_position_embeddings;
        if ctx.is_empty() || ctx.len() >= max {
            return Err(Error::invalid(format!(
                "a generation context of {} tokens (the model holds {max})",
                ctx.len()
            )));
        }
        let v = dec.config.vocab_size;
        let rows = self.run(dec, ctx, ctx.len() - 1)?;
        let mut next = argmax(&rows[..v]);
        let mut out = Vec::new();
        let mut pos = ctx.len();
        loop {
            if stop_ids.contains(&next) {
                break;
            }
            out.push(next);
            let text = tok.decode(&out)?;
            if until.iter().any(|u| text.contains(u)) || out.len() >= max_new || pos + 1 >= max {
                break;
            }
            let logits = dec.forward(&mut self.states[0], next, pos)?;
            next = argmax(logits);
            pos += 1;
        }
        // The cache now holds ctx + out[..out.len() - 1] (the last token was never run).
        self.cached = ctx.to_vec();
        self.cached
            .extend_from_slice(&out[..out.len().saturating_sub(1)]);
        let mut text = tok.decode(&out)?;
        for u in until {
            if let Some(i) = text.find(u) {
                text.truncate(i);
            }
        }
        Ok((out, text))
    }
}

/// First index of the largest logit (numpy/torch argmax ties).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best as u32
}

/// log_softmax(row)[t] and whether t is the row's argmax.
fn log_prob(row: &[f32], t: usize) -> (f64, bool) {
    let top = argmax(row) as usize;
    let m = row[top] as f64;
    let z: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
    (row[t] as f64 - m - z.ln(), top == t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prob_and_argmax() {
        let row = [1.0f32, 3.0, 2.0, 3.0];
        assert_eq!(argmax(&row), 1);
        let (lp, top) = log_prob(&row, 1);
        let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
        assert!((lp - (3.0 - z.ln())).abs() < 1e-12);
        assert!(top);
        assert!(!log_prob(&row, 2).1);
    }
}
