//! Perplexity: the negative log-likelihood of text under the model.
//!
//! Protocols:
//! - windows (SparseGPT/Wanda): the token stream cut into non-overlapping windows of the
//!   context length, the incomplete tail dropped; each window predicts its tokens 2..n.
//! - strided (Hugging Face's perplexity guide): windows of the context length starting every
//!   `stride` tokens, each scoring only the tokens not scored before.
//! - documents: each document tokenised on its own with BOS, scored whole (split into windows
//!   when longer than the context).
//!
//! Log-probabilities are accumulated in f64.

use crate::text::split_documents;
use candle_core::Tensor;
use slm_core::{Error, Result};
use slm_data::tokenizer::Tokenizer;
use slm_model::Llama;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct PplOptions {
    /// Window length; the model context when `None`.
    pub ctx: Option<usize>,
    /// Sliding-window stride (< ctx); non-overlapping windows when `None`.
    pub stride: Option<usize>,
    /// Score each document separately (split on this string), each starting with BOS.
    pub doc_separator: Option<String>,
    /// Prepend BOS to the token stream (or to each document).
    pub add_bos: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PplReport {
    /// Tokens whose probability was scored.
    pub tokens: usize,
    pub windows: usize,
    pub nll_sum: f64,
    pub mean_nll: f64,
    pub ppl: f64,
    pub ctx: usize,
    pub seconds: f64,
    /// Tokens processed (forward) per second.
    pub tokens_per_sec: f64,
}

/// One scoring job: a window of tokens of which positions `score_from..` are scored
/// (position i is predicted from positions < i; position 0 is never scored).
pub(crate) struct Window {
    pub tokens: Vec<u32>,
    pub score_from: usize,
}

/// NLL sum and count of `tokens[score_from..]` given their prefixes, one forward pass.
pub fn window_nll(model: &Llama, tokens: &[u32], score_from: usize) -> Result<(f64, usize)> {
    if tokens.len() < 2 {
        return Ok((0.0, 0));
    }
    let input = Tensor::new(tokens, model.device())?.unsqueeze(0)?; // [1, t]
    let logits = model.forward(&input, None)?.squeeze(0)?; // [t, v]
    let rows = logits.to_vec2::<f32>()?;
    let mut sum = 0.0f64;
    let mut count = 0;
    for i in score_from.max(1)..tokens.len() {
        sum += nll_of(&rows[i - 1], tokens[i])?;
        count += 1;
    }
    Ok((sum, count))
}

/// [`window_nll`] with the forward on the fast engine.
fn window_nll_fast(
    model: &mut slm_model::FlatModel,
    tokens: &[u32],
    score_from: usize,
) -> Result<(f64, usize)> {
    if tokens.len() < 2 {
        return Ok((0.0, 0));
    }
    let v = model.config().vocab_size;
    let logits = model.logits(tokens, 1, tokens.len())?; // [t, v]
    let mut sum = 0.0f64;
    let mut count = 0;
    for i in score_from.max(1)..tokens.len() {
        sum += nll_of(&logits[(i - 1) * v..i * v], tokens[i])?;
        count += 1;
    }
    Ok((sum, count))
}

/// -log softmax(row)[target] in f64.
pub fn nll_of(row: &[f32], target: u32) -> Result<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = row
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    let logit = *row
        .get(target as usize)
        .ok_or_else(|| Error::invalid(format!("token {target} outside the vocabulary")))?
        as f64;
    Ok(lse - logit)
}

fn plan_stream(tokens: &[u32], ctx: usize, stride: Option<usize>) -> Result<Vec<Window>> {
    let mut out = Vec::new();
    match stride {
        None => {
            if tokens.len() < ctx {
                out.push(Window {
                    tokens: tokens.to_vec(),
                    score_from: 1,
                });
            } else {
                for w in tokens.chunks_exact(ctx) {
                    out.push(Window {
                        tokens: w.to_vec(),
                        score_from: 1,
                    });
                }
            }
        }
        Some(stride) => {
            if stride == 0 || stride > ctx {
                return Err(Error::invalid(format!(
                    "stride must be in 1..={ctx}, got {stride}"
                )));
            }
            let mut prev_end = 0usize;
            let mut begin = 0usize;
            while begin < tokens.len() {
                let end = (begin + ctx).min(tokens.len());
                let trg = end - prev_end;
                let w = &tokens[begin..end];
                out.push(Window {
                    tokens: w.to_vec(),
                    score_from: w.len() - trg,
                });
                prev_end = end;
                if end == tokens.len() {
                    break;
                }
                begin += stride;
            }
        }
    }
    Ok(out)
}

/// The scoring windows of `text` under `opts` for a model of context `model_ctx`, and the
/// window length used.
pub(crate) fn plan_windows(
    model_ctx: usize,
    tokenizer: &dyn Tokenizer,
    text: &str,
    opts: &PplOptions,
) -> Result<(Vec<Window>, usize)> {
    let ctx = opts.ctx.unwrap_or(model_ctx);
    if ctx < 2 || ctx > model_ctx {
        return Err(Error::invalid(format!(
            "--ctx must be in 2..={model_ctx}, got {ctx}"
        )));
    }
    let windows = match &opts.doc_separator {
        Some(sep) => {
            let mut w = Vec::new();
            for doc in split_documents(text, sep) {
                let toks = tokenizer.encode(doc, opts.add_bos)?;
                // Long documents: consecutive windows, each scoring its own tokens.
                w.extend(plan_stream(&toks, ctx, Some(ctx))?);
            }
            w
        }
        None => plan_stream(&tokenizer.encode(text, opts.add_bos)?, ctx, opts.stride)?,
    };
    if windows.iter().all(|w| w.tokens.len() < 2) {
        return Err(Error::invalid(
            "the text is shorter than two tokens: nothing to score",
        ));
    }
    Ok((windows, ctx))
}

/// Perplexity of `text`; `progress(done, total)` is called after each window.
pub fn perplexity(
    model: &Llama,
    tokenizer: &dyn Tokenizer,
    text: &str,
    opts: &PplOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PplReport> {
    let (windows, ctx) = plan_windows(model.config.max_position_embeddings, tokenizer, text, opts)?;
    let t0 = Instant::now();
    // The shared flat forward (`slm_model::flat`): same numbers as the candle model
    // to ~1e-5, several times faster; scoring stays in f64 as in `window_nll`.
    let mut fast = slm_model::FlatModel::from_llama(model)?;
    let (mut nll_sum, mut count, mut processed) = (0.0f64, 0usize, 0usize);
    for (i, w) in windows.iter().enumerate() {
        let (s, c) = window_nll_fast(&mut fast, &w.tokens, w.score_from)?;
        nll_sum += s;
        count += c;
        processed += w.tokens.len();
        progress(i + 1, windows.len());
    }
    let seconds = t0.elapsed().as_secs_f64();
    let mean_nll = nll_sum / count.max(1) as f64;
    Ok(PplReport {
        tokens: count,
        windows: windows.len(),
        nll_sum,
        mean_nll,
        ppl: mean_nll.exp(),
        ctx,
        seconds,
        tokens_per_sec: processed as f64 / seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_overlapping_windows_drop_the_tail() {
        let toks: Vec<u32> = (0..10).collect();
        let w = plan_stream(&toks, 4, None).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].tokens, vec![4, 5, 6, 7]);
    }

    #[test]
    fn strided_windows_score_each_token_once() {
        let toks: Vec<u32> = (0..10).collect();
        let w = plan_stream(&toks, 4, Some(2)).unwrap();
        // Every token except the first is scored exactly once.
        let mut scored = [0; 10];
        let mut begin = 0;
        for win in &w {
            for i in win.score_from.max(1)..win.tokens.len() {
                scored[win.tokens[i] as usize] += 1;
            }
            assert_eq!(win.tokens[0] as usize, begin);
            begin += 2;
        }
        let begin0 = w[0].score_from;
        assert_eq!(begin0, 0);
        assert_eq!(&scored[1..], &[1; 9]);
        assert!(plan_stream(&toks, 4, Some(5)).is_err());
    }

    #[test]
    fn fast_window_nll_equals_the_candle_one() {
        let mut cfg = slm_model::preset("260k").unwrap();
        cfg.vocab_size = 40;
        cfg.max_position_embeddings = 32;
        let model = Llama::random(cfg, 3, &candle_core::Device::Cpu).unwrap();
        let mut fast = slm_model::FlatModel::from_llama(&model).unwrap();
        let tokens: Vec<u32> = (0..29).map(|i| (i * 11 % 40) as u32).collect();
        for from in [1, 5, 28] {
            let (a, n) = window_nll(&model, &tokens, from).unwrap();
            let (b, m) = window_nll_fast(&mut fast, &tokens, from).unwrap();
            assert_eq!(n, m);
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "from {from}: {a} vs {b}"
            );
        }
        assert_eq!(
            window_nll_fast(&mut fast, &tokens[..1], 1).unwrap(),
            (0.0, 0)
        );
    }

    #[test]
    fn nll_of_uniform_is_log_vocab() {
        let row = vec![0.3f32; 8];
        assert!((nll_of(&row, 3).unwrap() - (8f64).ln()).abs() < 1e-12);
        assert!(nll_of(&row, 8).is_err());
    }
}
