//! The decode engine: one token at a time over a preallocated KV cache, in the llama2.c
//! split of [`Config`](slm_model::LlamaConfig) / [`Weights`] / [`RunState`].
//!
//! Per token (d = hidden, e = head_dim, h heads, g kv heads):
//! ```text
//! x    = embed[token]                              [d]
//! per block:
//!   xn   = rmsnorm(x)·w_attn
//!   qkv  = Wqkv·xn (+ b)                           [(h+2g)·e], RoPE on q and k at `pos`
//!   k, v → cache[layer][pos]
//!   att  = softmax(q·Kᵀ/√e)·V per head (GQA: head i reads kv head i/(h/g))   [h·e]
//!   x   += Wo·att
//!   xn   = rmsnorm(x)·w_ffn
//!   x   += Wdown·(silu(gate)·up),  gate|up = Wgu·xn
//! logits = W_head·(rmsnorm(x)·w_final)             [vocab]
//! ```
//! Every buffer lives in [`RunState`], sized once for the model's context: the loop
//! allocates nothing. Matrix-vector products stream each weight once, split over the current
//! rayon pool by output rows (`slm_kernels::matvec`, `slm_kernels::quant`).

mod weights;

pub use weights::{
    LayerWeights, Matrix, SparseUse, TypeChoice, TypePlan, WeightType, Weights,
    OFFSETS_MIN_SPARSITY,
};

use rayon::prelude::*;
use slm_core::{Error, Result};
use slm_kernels::attention::{attention_fwd_lse, AttnShape};
use slm_kernels::attention_decode::{self, Cache, DecodeAttn};
use slm_kernels::par::on_pool;
use slm_kernels::quant::QK;
use slm_kernels::quant_x8::QuantActs;
use slm_kernels::rmsnorm::rmsnorm_fwd;
use slm_kernels::swiglu::swiglu_fwd;
use slm_model::rope::RopeTables;
use slm_model::{Llama, LlamaConfig};

/// Activations and the KV cache of one sequence.
#[derive(Debug, Clone)]
pub struct RunState {
    x: Vec<f32>,
    xn: Vec<f32>,
    /// Output of a matrix product added into `x`.
    delta: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    /// Attention scores of every head over the positions so far, [heads, context].
    scores: Vec<f32>,
    gu: Vec<f32>,
    act: Vec<f32>,
    logits: Vec<f32>,
    rstd: [f32; 1],
    /// Activation quantised for quantised matrices.
    xq: QuantActs,
    /// [layers, context, kv_dim] each.
    cache: KvCache,
    /// Row buffers for prefill chunks, sized on first use.
    prefill: Prefill,
}

/// How the KV cache stores keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvType {
    /// Exact: decoding equals the full forward to float rounding.
    #[default]
    F32,
    /// Half the bytes per cached position (llama.cpp's default); attention reads keys and
    /// values rounded to f16.
    F16,
}

impl KvType {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            other => Err(Error::invalid(format!(
                "unknown KV cache type `{other}`: use f32 or f16"
            ))),
        }
    }
}

/// Keys and values of every layer and position, [layers, context, kv_dim] each.
#[derive(Debug, Clone)]
enum KvCache {
    F32 {
        k: Vec<f32>,
        v: Vec<f32>,
    },
    /// f16 bits.
    F16 {
        k: Vec<u16>,
        v: Vec<u16>,
    },
}

impl KvCache {
    fn new(ty: KvType, len: usize) -> Self {
        match ty {
            KvType::F32 => Self::F32 {
                k: vec![0.0; len],
                v: vec![0.0; len],
            },
            KvType::F16 => Self::F16 {
                k: vec![0; len],
                v: vec![0; len],
            },
        }
    }

    /// Writes one position's keys and values at offset `at`.
    fn store(&mut self, at: usize, keys: &[f32], vals: &[f32]) {
        let n = keys.len();
        match self {
            Self::F32 { k, v } => {
                k[at..at + n].copy_from_slice(keys);
                v[at..at + n].copy_from_slice(vals);
            }
            Self::F16 { k, v } => {
                let to16 = |d: &mut [u16], s: &[f32]| {
                    d.iter_mut()
                        .zip(s)
                        .for_each(|(d, &x)| *d = half::f16::from_f32(x).to_bits())
                };
                to16(&mut k[at..at + n], keys);
                to16(&mut v[at..at + n], vals);
            }
        }
    }

    /// `len` values from offset `at` (one layer's first positions).
    fn view(&self, at: usize, len: usize) -> Cache<'_> {
        match self {
            Self::F32 { k, v } => Cache::F32 {
                keys: &k[at..at + len],
                vals: &v[at..at + len],
            },
            Self::F16 { k, v } => Cache::F16 {
                keys: &k[at..at + len],
                vals: &v[at..at + len],
            },
        }
    }
}

/// Activations of a chunk of up to `rows` prompt positions (prefill).
#[derive(Debug, Clone, Default)]
struct Prefill {
    rows: usize,
    x: Vec<f32>,
    xn: Vec<f32>,
    delta: Vec<f32>,
    rstd: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    gu: Vec<f32>,
    act: Vec<f32>,
    xq: QuantActs,
    y_t: Vec<f32>,
    /// [heads, rows] log-sum-exps of the whole-chunk causal attention.
    lse: Vec<f32>,
}

impl Prefill {
    /// Grows the buffers to hold `rows` rows of `c`'s activations (kept if large enough).
    fn reserve(&mut self, c: &LlamaConfig, rows: usize) {
        if self.rows >= rows {
            return;
        }
        let (d, q_dim, kv, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        let widest_in = d.max(q_dim).max(inter);
        let widest_out = (q_dim + 2 * kv).max(2 * inter).max(d);
        *self = Prefill {
            rows,
            x: vec![0.0; rows * d],
            xn: vec![0.0; rows * d],
            delta: vec![0.0; rows * d],
            rstd: vec![0.0; rows],
            qkv: vec![0.0; rows * (q_dim + 2 * kv)],
            att: vec![0.0; rows * q_dim],
            gu: vec![0.0; rows * 2 * inter],
            act: vec![0.0; rows * inter],
            xq: QuantActs::with_capacity(rows * widest_in.div_ceil(QK)),
            y_t: vec![0.0; rows * widest_out],
            lse: vec![0.0; rows * c.num_attention_heads],
        };
    }
}

/// Activations of one batched decoding step ([`Decoder::forward_batch`]), sized on first use.
#[derive(Debug, Clone, Default)]
pub struct BatchScratch {
    rows: Prefill,
    /// [batch, vocab]
    logits: Vec<f32>,
}

/// What the rows of one multi-row pass are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// Consecutive positions of one sequence; `from_zero` when they start at position 0.
    Prefill { from_zero: bool },
    /// One new position of each of the batch's sequences.
    Batch,
    /// Rows of several sequences, several rows each: row r belongs to `states[seq[r]]`.
    Multi,
}

/// Prompt positions per prefill chunk.
pub const PREFILL_CHUNK: usize = 256;

/// A model ready to decode (see the module documentation).
#[derive(Debug, Clone)]
pub struct Decoder {
    pub config: LlamaConfig,
    pub weights: Weights,
    /// RoPE tables [context, head_dim/2] (`slm_model::rope::RopeTables`, shared with the
    /// flat forward).
    rope: RopeTables,
}

impl RunState {
    /// The next-token logits [vocab] of the last step.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
}

impl Decoder {
    /// Packs `model` for decoding with linear weights stored as `ty` (pruned f32 matrices
    /// sparse where that pays, [`SparseUse::Auto`]).
    pub fn new(model: &Llama, ty: WeightType) -> Result<Self> {
        Self::with_sparse(model, ty, SparseUse::Auto)
    }

    /// As [`Decoder::new`] with the sparse storage chosen by `sparse`.
    pub fn with_sparse(model: &Llama, ty: WeightType, sparse: SparseUse) -> Result<Self> {
        Self::with_plan(model, &TypePlan::uniform(ty), sparse)
    }

    /// Packs `model` with each matrix stored as `plan` says (`--type auto`: a quantised
    /// file at its own types) and the sparse storage chosen by `sparse`.
    pub fn with_plan(model: &Llama, plan: &TypePlan, sparse: SparseUse) -> Result<Self> {
        Ok(Self {
            weights: Weights::from_llama(model, plan, sparse)?,
            config: model.config.clone(),
            rope: RopeTables::new(&model.config),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Buffers and an empty KV cache for one sequence of up to the model's context.
    pub fn new_state(&self) -> RunState {
        self.new_state_with(KvType::F32)
    }

    /// [`Decoder::new_state`] with the KV cache stored as `kv_type`.
    pub fn new_state_with(&self, kv_type: KvType) -> RunState {
        let c = &self.config;
        let (d, q, kv) = (c.hidden_size, c.q_dim(), c.kv_dim());
        let ctx = c.max_position_embeddings;
        let widest = d.max(c.intermediate_size).max(q);
        RunState {
            x: vec![0.0; d],
            xn: vec![0.0; d],
            delta: vec![0.0; d],
            qkv: vec![0.0; q + 2 * kv],
            att: vec![0.0; q],
            scores: vec![0.0; c.num_attention_heads * ctx],
            gu: vec![0.0; 2 * c.intermediate_size],
            act: vec![0.0; c.intermediate_size],
            logits: vec![0.0; c.vocab_size],
            rstd: [0.0],
            xq: QuantActs::with_capacity(widest.div_ceil(QK)),
            cache: KvCache::new(kv_type, c.num_hidden_layers * ctx * kv),
            prefill: Prefill::default(),
        }
    }

    /// Bytes of weights one decode step reads.
    pub fn weight_bytes_per_token(&self) -> usize {
        self.weights.bytes_per_token()
    }

    /// RoPE (Hugging Face "rotate half") on `heads` vectors of `e` values at `pos`.
    fn rope(&self, v: &mut [f32], heads: usize, pos: usize) {
        let e = self.config.head_dim;
        let half = e / 2;
        let (cos, sin) = (
            &self.rope.cos[pos * half..(pos + 1) * half],
            &self.rope.sin[pos * half..(pos + 1) * half],
        );
        for h in v[..heads * e].chunks_exact_mut(e) {
            let (a, b) = h.split_at_mut(half);
            for i in 0..half {
                let (x0, x1) = (a[i], b[i]);
                a[i] = x0 * cos[i] - x1 * sin[i];
                b[i] = x1 * cos[i] + x0 * sin[i];
            }
        }
    }

    /// Runs the prompt `tokens` at positions `start..start + len` in chunks of
    /// [`PREFILL_CHUNK`] rows, each matrix applied to a whole chunk at once (weights read once
    /// per chunk), filling the KV cache; returns the logits after the last token.
    pub fn prefill<'s>(
        &self,
        s: &'s mut RunState,
        tokens: &[u32],
        start: usize,
    ) -> Result<&'s [f32]> {
        self.prefill_rows(s, tokens, start, None)?;
        self.logits(s)
    }

    /// As [`Decoder::prefill`], but writes the next-token logits of **every** row into `out`
    /// ([tokens.len(), vocab], resized): row r holds the logits after `tokens[..=r]`. The last
    /// row is also left in the state ([`RunState::logits`]).
    ///
    /// The cache is indexed by position, so scoring several continuations of one context is
    /// a prefill of the context at 0.., then one `prefill_scores` per continuation at the
    /// context's length: each overwrites the previous continuation's entries, and no row reads
    /// a position after its own.
    pub fn prefill_scores(
        &self,
        s: &mut RunState,
        tokens: &[u32],
        start: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let v = self.config.vocab_size;
        out.resize(tokens.len() * v, 0.0);
        self.prefill_rows(s, tokens, start, Some(out))?;
        if let Some(last) = out.len().checked_sub(v) {
            s.logits.copy_from_slice(&out[last..]);
        }
        Ok(())
    }

    /// The chunk loop of [`Decoder::prefill`]: leaves the last row's residual stream in `s.x`
    /// and, with `all`, every row's logits in `all` ([tokens.len(), vocab]).
    fn prefill_rows(
        &self,
        s: &mut RunState,
        tokens: &[u32],
        start: usize,
        all: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        on_pool(|| self.prefill_rows_on_pool(s, tokens, start, all))
    }

    fn prefill_rows_on_pool(
        &self,
        s: &mut RunState,
        tokens: &[u32],
        start: usize,
        mut all: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        let c = &self.config;
        let (d, v) = (c.hidden_size, c.vocab_size);
        let ctx = c.max_position_embeddings;
        if tokens.is_empty() {
            return Err(Error::invalid("prefill needs at least one token"));
        }
        if start + tokens.len() > ctx {
            return Err(Error::invalid(format!(
                "positions {start}..{} go beyond the context of {ctx} tokens",
                start + tokens.len()
            )));
        }
        self.check_tokens(tokens)?;
        // The chunk scratch lives in the state; take it out so the rows can borrow the cache.
        let mut rows = std::mem::take(&mut s.prefill);
        rows.reserve(c, PREFILL_CHUNK.min(tokens.len()));
        let mut result = Ok(());
        for (ci, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            let pos0 = start + ci * PREFILL_CHUNK;
            let positions: Vec<usize> = (pos0..pos0 + chunk.len()).collect();
            let kind = Rows::Prefill {
                from_zero: pos0 == 0,
            };
            result = self.forward_rows(&mut rows, std::slice::from_mut(s), kind, chunk, &positions);
            if result.is_err() {
                break;
            }
            let n = chunk.len();
            s.x.copy_from_slice(&rows.x[(n - 1) * d..n * d]);
            if let Some(out) = all.as_deref_mut() {
                result = self.head_rows(&mut rows, n, &mut out[ci * PREFILL_CHUNK * v..][..n * v]);
                if result.is_err() {
                    break;
                }
            }
        }
        s.prefill = rows;
        result
    }

    /// Copies the keys and values of positions `0..n` from `from` into `to` (both states of
    /// this decoder, same KV type): `to` continues `from`'s first `n` tokens.
    pub fn copy_prefix(&self, from: &RunState, to: &mut RunState, n: usize) -> Result<()> {
        let c = &self.config;
        let (ctx, kv) = (c.max_position_embeddings, c.kv_dim());
        if n > ctx {
            return Err(Error::invalid(format!(
                "{n} positions in a context of {ctx}"
            )));
        }
        let span = |l: usize| l * ctx * kv..l * ctx * kv + n * kv;
        match (&from.cache, &mut to.cache) {
            (KvCache::F32 { k, v }, KvCache::F32 { k: k2, v: v2 }) => {
                for l in 0..c.num_hidden_layers {
                    k2[span(l)].copy_from_slice(&k[span(l)]);
                    v2[span(l)].copy_from_slice(&v[span(l)]);
                }
            }
            (KvCache::F16 { k, v }, KvCache::F16 { k: k2, v: v2 }) => {
                for l in 0..c.num_hidden_layers {
                    k2[span(l)].copy_from_slice(&k[span(l)]);
                    v2[span(l)].copy_from_slice(&v[span(l)]);
                }
            }
            _ => return Err(Error::invalid("states with different KV cache types")),
        }
        Ok(())
    }

    /// Several sequences' rows in one pass, each matrix read once for all of them: sequence
    /// i is `parts[i].1` at positions `parts[i].2..` of `states[parts[i].0]` (whose cache
    /// must hold the positions before). Writes every row's logits into `out` ([rows, vocab],
    /// in the order of `parts`). Scoring the choices of a question: copy the context's cache
    /// into one state per choice ([`Decoder::copy_prefix`]), then one pass for all choices.
    pub fn prefill_scores_multi(
        &self,
        states: &mut [RunState],
        parts: &[(usize, &[u32], usize)],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        on_pool(|| self.prefill_scores_multi_on_pool(states, parts, out))
    }

    fn prefill_scores_multi_on_pool(
        &self,
        states: &mut [RunState],
        parts: &[(usize, &[u32], usize)],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let c = &self.config;
        let v = c.vocab_size;
        let ctx = c.max_position_embeddings;
        let (mut tokens, mut positions, mut seq_of) = (Vec::new(), Vec::new(), Vec::new());
        for &(si, toks, start) in parts {
            if si >= states.len() {
                return Err(Error::invalid(format!("state {si} of {}", states.len())));
            }
            if start + toks.len() > ctx {
                return Err(Error::invalid(format!(
                    "positions {start}..{} go beyond the context of {ctx} tokens",
                    start + toks.len()
                )));
            }
            tokens.extend_from_slice(toks);
            positions.extend(start..start + toks.len());
            seq_of.extend(std::iter::repeat_n(si, toks.len()));
        }
        if tokens.is_empty() {
            return Err(Error::invalid("prefill needs at least one token"));
        }
        self.check_tokens(&tokens)?;
        out.resize(tokens.len() * v, 0.0);
        let mut rows = std::mem::take(&mut states[0].prefill);
        rows.reserve(c, PREFILL_CHUNK.min(tokens.len()));
        let mut result = Ok(());
        for (ci, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            let r0 = ci * PREFILL_CHUNK;
            let n = chunk.len();
            result = self
                .forward_rows_of(
                    &mut rows,
                    states,
                    Rows::Multi,
                    chunk,
                    &positions[r0..r0 + n],
                    &seq_of[r0..r0 + n],
                )
                .and_then(|_| self.head_rows(&mut rows, n, &mut out[r0 * v..(r0 + n) * v]));
            if result.is_err() {
                break;
            }
        }
        states[0].prefill = rows;
        result
    }

    /// Final norm and output head on the first `n` rows of `rows.x`: logits [n, vocab].
    fn head_rows(&self, rows: &mut Prefill, n: usize, out: &mut [f32]) -> Result<()> {
        let c = &self.config;
        let (d, v) = (c.hidden_size, c.vocab_size);
        let w = &self.weights;
        let (x, xn, rstd) = (&rows.x[..n * d], &mut rows.xn[..n * d], &mut rows.rstd[..n]);
        rmsnorm_fwd(xn, rstd, x, &w.final_norm, n, c.rms_norm_eps as f32)?;
        if rows.y_t.len() < n * v {
            rows.y_t.resize(n * v, 0.0);
        }
        w.lm_head
            .matmul(xn, n, None, &mut rows.xq, &mut rows.y_t[..n * v], out)
    }

    /// Final norm and output head on the state's residual stream `x`: the next-token logits.
    fn logits<'s>(&self, s: &'s mut RunState) -> Result<&'s [f32]> {
        let w = &self.weights;
        let eps = self.config.rms_norm_eps as f32;
        rmsnorm_fwd(&mut s.xn, &mut s.rstd, &s.x, &w.final_norm, 1, eps)?;
        w.lm_head.matvec(&s.xn, None, &mut s.xq, &mut s.logits)?;
        Ok(&s.logits)
    }

    /// One decoding step for a batch of sequences: `tokens[i]` at `positions[i]` of the
    /// sequence whose cache is `states[i]` (each must hold positions 0..positions[i]). Every
    /// matrix is read once for the whole batch; each state's logits are left in it
    /// ([`RunState::logits`]). `scratch` holds the batch's activations between calls.
    pub fn forward_batch(
        &self,
        scratch: &mut BatchScratch,
        states: &mut [RunState],
        tokens: &[u32],
        positions: &[usize],
    ) -> Result<()> {
        on_pool(|| self.forward_batch_on_pool(scratch, states, tokens, positions))
    }

    fn forward_batch_on_pool(
        &self,
        scratch: &mut BatchScratch,
        states: &mut [RunState],
        tokens: &[u32],
        positions: &[usize],
    ) -> Result<()> {
        let c = &self.config;
        let (d, v) = (c.hidden_size, c.vocab_size);
        let n = states.len();
        if tokens.len() != n || positions.len() != n {
            return Err(Error::invalid(format!(
                "batch of {n} states with {} tokens and {} positions",
                tokens.len(),
                positions.len()
            )));
        }
        if n == 0 {
            return Ok(());
        }
        if let Some(&p) = positions.iter().find(|&&p| p >= c.max_position_embeddings) {
            return Err(Error::invalid(format!(
                "position {p} is beyond the context of {} tokens",
                c.max_position_embeddings
            )));
        }
        self.check_tokens(tokens)?;
        let rows = &mut scratch.rows;
        rows.reserve(c, n);
        self.forward_rows(rows, states, Rows::Batch, tokens, positions)?;
        let w = &self.weights;
        let (x, xn, rstd) = (&rows.x[..n * d], &mut rows.xn[..n * d], &mut rows.rstd[..n]);
        rmsnorm_fwd(xn, rstd, x, &w.final_norm, n, c.rms_norm_eps as f32)?;
        scratch.logits.resize(n * v, 0.0);
        if rows.y_t.len() < n * v {
            rows.y_t.resize(n * v, 0.0);
        }
        // [n, vocab]
        w.lm_head.matmul(
            xn,
            n,
            None,
            &mut rows.xq,
            &mut rows.y_t[..n * v],
            &mut scratch.logits,
        )?;
        for (st, l) in states.iter_mut().zip(scratch.logits.chunks_exact(v)) {
            st.logits.copy_from_slice(l);
        }
        Ok(())
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        let v = self.config.vocab_size;
        match tokens.iter().find(|&&t| t as usize >= v) {
            Some(bad) => Err(Error::invalid(format!(
                "token {bad} is outside the vocabulary of {v}"
            ))),
            None => Ok(()),
        }
    }

    /// The blocks for `tokens.len()` rows at once: row r is `tokens[r]` at `positions[r]` of
    /// the sequence `kind` says (`states[0]` for a prefill chunk, `states[r]` in a batch),
    /// whose cache receives its keys and values. Leaves the rows' residual streams in `p.x`
    /// [n, d].
    fn forward_rows(
        &self,
        p: &mut Prefill,
        states: &mut [RunState],
        kind: Rows,
        tokens: &[u32],
        positions: &[usize],
    ) -> Result<()> {
        self.forward_rows_of(p, states, kind, tokens, positions, &[])
    }

    /// [`Decoder::forward_rows`] with `seq_of[r]`, the state of row r, for [`Rows::Multi`].
    fn forward_rows_of(
        &self,
        p: &mut Prefill,
        states: &mut [RunState],
        kind: Rows,
        tokens: &[u32],
        positions: &[usize],
        seq_of: &[usize],
    ) -> Result<()> {
        let seq = |r: usize| match kind {
            Rows::Prefill { .. } => 0,
            Rows::Batch => r,
            Rows::Multi => seq_of[r],
        };
        let c = &self.config;
        let d = c.hidden_size;
        let (h, g) = (c.num_attention_heads, c.num_key_value_heads);
        let (q_dim, kv, inter) = (c.q_dim(), c.kv_dim(), c.intermediate_size);
        let ctx = c.max_position_embeddings;
        let eps = c.rms_norm_eps as f32;
        let w = &self.weights;
        let n = tokens.len();
        let (x, xn, delta) = (&mut p.x[..n * d], &mut p.xn[..n * d], &mut p.delta[..n * d]);
        let rstd = &mut p.rstd[..n];
        for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
            row.copy_from_slice(&w.embed[t as usize * d..(t as usize + 1) * d]);
        }
        for (l, lw) in w.layers.iter().enumerate() {
            // qkv [n, q+2kv]
            rmsnorm_fwd(xn, rstd, x, &lw.attn_norm, n, eps)?;
            let qkv = &mut p.qkv[..n * (q_dim + 2 * kv)];
            lw.wqkv
                .matmul(xn, n, lw.bqkv.as_deref(), &mut p.xq, &mut p.y_t, qkv)?;
            let layer = l * ctx * kv;
            for (r, row) in qkv.chunks_exact_mut(q_dim + 2 * kv).enumerate() {
                let (pos, st) = (positions[r], &mut states[seq(r)]);
                let (q, rest) = row.split_at_mut(q_dim);
                let (k, vv) = rest.split_at_mut(kv);
                self.rope(q, h, pos);
                self.rope(k, g, pos);
                st.cache.store(layer + pos * kv, k, vv);
            }
            // att [n, q]
            let att = &mut p.att[..n * q_dim];
            match kind {
                // Positions 0..n of one sequence: causal self-attention over the chunk's own
                // rows (blocked kernel, heads in parallel).
                Rows::Prefill { from_zero: true } => {
                    let shape = AttnShape {
                        batch: 1,
                        seq: n,
                        heads: h,
                        kv_heads: g,
                        head_dim: c.head_dim,
                    };
                    attention_fwd_lse(att, &mut p.lse[..h * n], qkv, None, shape)?;
                }
                // A later chunk: each row queries the cache (its keys and values are stored
                // above), rows in parallel, each task with its own score scratch.
                Rows::Prefill { from_zero: false } => {
                    let cache = &states[0].cache;
                    att.par_chunks_mut(q_dim)
                        .zip(qkv.par_chunks(q_dim + 2 * kv))
                        .enumerate()
                        .try_for_each_init(
                            || vec![0f32; h * ctx],
                            |scores, (r, (out, row))| {
                                let view = cache.view(layer, (positions[r] + 1) * kv);
                                self.attend(&row[..q_dim], view, scores, out)
                            },
                        )?;
                }
                // Rows of several sequences: each row queries its own sequence's cache.
                Rows::Multi => {
                    let states = &*states;
                    att.par_chunks_mut(q_dim)
                        .zip(qkv.par_chunks(q_dim + 2 * kv))
                        .enumerate()
                        .try_for_each_init(
                            || vec![0f32; h * ctx],
                            |scores, (r, (out, row))| {
                                let view =
                                    states[seq_of[r]].cache.view(layer, (positions[r] + 1) * kv);
                                self.attend(&row[..q_dim], view, scores, out)
                            },
                        )?;
                }
                // One row per sequence: each uses its own state's cache and score buffer (no
                // allocation per step).
                Rows::Batch => {
                    att.par_chunks_mut(q_dim)
                        .zip(qkv.par_chunks(q_dim + 2 * kv))
                        .zip(states.par_iter_mut())
                        .enumerate()
                        .try_for_each(|(r, ((out, row), st))| {
                            let view = st.cache.view(layer, (positions[r] + 1) * kv);
                            self.attend(&row[..q_dim], view, &mut st.scores, out)
                        })?;
                }
            }
            lw.wo.matmul(att, n, None, &mut p.xq, &mut p.y_t, delta)?;
            x.iter_mut().zip(delta.iter()).for_each(|(a, b)| *a += b);
            rmsnorm_fwd(xn, rstd, x, &lw.ffn_norm, n, eps)?;
            // gate|up [n, 2·inter]
            let gu = &mut p.gu[..n * 2 * inter];
            lw.wgu.matmul(xn, n, None, &mut p.xq, &mut p.y_t, gu)?;
            let act = &mut p.act[..n * inter];
            swiglu_fwd(act, gu, n, inter)?;
            lw.wdown
                .matmul(act, n, None, &mut p.xq, &mut p.y_t, delta)?;
            x.iter_mut().zip(delta.iter()).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }

    /// Causal attention of one position: `q` [h·e] against the cached keys/values of
    /// positions 0..=pos (`cache` [pos+1, g·e] each); `scores` [h·(pos+1)] is scratch;
    /// writes `out` [h·e] (`slm_kernels::attention_decode`, heads in parallel).
    fn attend(
        &self,
        q: &[f32],
        cache: Cache<'_>,
        scores: &mut [f32],
        out: &mut [f32],
    ) -> Result<()> {
        let c = &self.config;
        let shape = DecodeAttn {
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
        };
        attention_decode::attend_cache(shape, q, cache, scores, out)
    }

    /// Runs `token` at position `pos` (the cache must hold positions 0..pos of this
    /// sequence) and returns the next-token logits [vocab].
    pub fn forward<'s>(&self, s: &'s mut RunState, token: u32, pos: usize) -> Result<&'s [f32]> {
        on_pool(|| self.forward_on_pool(&mut *s, token, pos))?;
        Ok(&s.logits)
    }

    fn forward_on_pool(&self, s: &mut RunState, token: u32, pos: usize) -> Result<()> {
        let c = &self.config;
        let d = c.hidden_size;
        let (h, g) = (c.num_attention_heads, c.num_key_value_heads);
        let (q_dim, kv) = (c.q_dim(), c.kv_dim());
        let ctx = c.max_position_embeddings;
        if pos >= ctx {
            return Err(Error::invalid(format!(
                "position {pos} is beyond the context of {ctx} tokens"
            )));
        }
        let t = token as usize;
        if t >= c.vocab_size {
            return Err(Error::invalid(format!(
                "token {token} is outside the vocabulary of {}",
                c.vocab_size
            )));
        }
        let w = &self.weights;
        s.x.copy_from_slice(&w.embed[t * d..(t + 1) * d]);
        for (l, lw) in w.layers.iter().enumerate() {
            rmsnorm_fwd(
                &mut s.xn,
                &mut s.rstd,
                &s.x,
                &lw.attn_norm,
                1,
                c.rms_norm_eps as f32,
            )?;
            lw.wqkv
                .matvec(&s.xn, lw.bqkv.as_deref(), &mut s.xq, &mut s.qkv)?;
            let (q, rest) = s.qkv.split_at_mut(q_dim);
            let (k, v) = rest.split_at_mut(kv);
            self.rope(q, h, pos);
            self.rope(k, g, pos);
            let layer = l * ctx * kv;
            s.cache.store(layer + pos * kv, k, v);
            self.attend(
                q,
                s.cache.view(layer, (pos + 1) * kv),
                &mut s.scores,
                &mut s.att,
            )?;
            lw.wo.matvec(&s.att, None, &mut s.xq, &mut s.delta)?;
            s.x.iter_mut().zip(&s.delta).for_each(|(x, d)| *x += d);
            rmsnorm_fwd(
                &mut s.xn,
                &mut s.rstd,
                &s.x,
                &lw.ffn_norm,
                1,
                c.rms_norm_eps as f32,
            )?;
            lw.wgu.matvec(&s.xn, None, &mut s.xq, &mut s.gu)?;
            swiglu_fwd(&mut s.act, &s.gu, 1, c.intermediate_size)?;
            lw.wdown.matvec(&s.act, None, &mut s.xq, &mut s.delta)?;
            s.x.iter_mut().zip(&s.delta).for_each(|(x, d)| *x += d);
        }
        self.logits(s).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn model(tied: bool, bias: bool) -> Llama {
        crate::testutil::tiny_llama(96, tied, bias, 32, 5)
    }

    /// Logits of every position from the candle model's full forward.
    fn reference(m: &Llama, tokens: &[u32]) -> Vec<Vec<f32>> {
        let input = Tensor::new(tokens, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        m.forward(&input, None)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    }

    #[test]
    fn f32_decode_equals_the_full_forward() {
        let tokens: Vec<u32> = (0..20).map(|i| (i * 37 % 96) as u32).collect();
        for (tied, bias) in [(true, false), (false, true)] {
            let m = model(tied, bias);
            let want = reference(&m, &tokens);
            let dec = Decoder::new(&m, WeightType::F32).unwrap();
            let mut s = dec.new_state();
            for (pos, &t) in tokens.iter().enumerate() {
                let got = dec.forward(&mut s, t, pos).unwrap();
                let worst = got
                    .iter()
                    .zip(&want[pos])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-4, "tied {tied} bias {bias} pos {pos}: {worst}");
            }
        }
    }

    #[test]
    fn quantised_decode_tracks_f32() {
        let m = model(false, false);
        let tokens: Vec<u32> = (0..12).map(|i| (i * 11 % 96) as u32).collect();
        let f = Decoder::new(&m, WeightType::F32).unwrap();
        for (ty, tol) in [
            (WeightType::Q8_0, 0.02),
            (WeightType::Q4_0, 0.25),
            (WeightType::Q4_1, 0.25),
        ] {
            let qd = Decoder::new(&m, ty).unwrap();
            assert!(qd.weight_bytes_per_token() < f.weight_bytes_per_token() / 3);
            let (mut sf, mut sq) = (f.new_state(), qd.new_state());
            for (pos, &t) in tokens.iter().enumerate() {
                let a = f.forward(&mut sf, t, pos).unwrap().to_vec();
                let b = qd.forward(&mut sq, t, pos).unwrap();
                let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < tol * scale,
                    "{ty:?} pos {pos}: {worst} vs scale {scale}"
                );
            }
        }
    }

    #[test]
    fn chunked_prefill_equals_token_by_token() {
        // 600 tokens: three chunks (256, 256, 88), then decoding continues from the cache.
        let mut m = model(false, true);
        m.config.max_position_embeddings = 610;
        let m = Llama::random(m.config.clone(), 5, &Device::Cpu).unwrap();
        let tokens: Vec<u32> = (0..600).map(|i| (i * 29 % 96) as u32).collect();
        for ty in [WeightType::F32, WeightType::Q8_0] {
            let dec = Decoder::new(&m, ty).unwrap();
            let mut a = dec.new_state();
            let mut last = Vec::new();
            for (pos, &t) in tokens.iter().enumerate() {
                last = dec.forward(&mut a, t, pos).unwrap().to_vec();
            }
            let mut b = dec.new_state();
            // Prefill 590, then the last 10 as a second prefill starting at 590.
            dec.prefill(&mut b, &tokens[..590], 0).unwrap();
            let got = dec.prefill(&mut b, &tokens[590..], 590).unwrap().to_vec();
            let worst = got
                .iter()
                .zip(&last)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{ty:?}: prefill vs token by token {worst}");
            let next_a = dec.forward(&mut a, 7, 600).unwrap().to_vec();
            let next_b = dec.forward(&mut b, 7, 600).unwrap();
            let worst = next_a
                .iter()
                .zip(next_b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{ty:?}: decode after prefill {worst}");
        }
        let dec = Decoder::new(&m, WeightType::F32).unwrap();
        let mut s = dec.new_state();
        assert!(dec.prefill(&mut s, &[], 0).is_err());
        assert!(dec.prefill(&mut s, &tokens, 20).is_err());
    }

    #[test]
    fn prefill_scores_gives_every_rows_logits() {
        // 300 rows: two chunks; then two continuations of a shared 40-token context, each at
        // position 40, the second overwriting the first's cache entries.
        let mut c = model(false, true).config;
        c.max_position_embeddings = 320;
        let m = Llama::random(c, 7, &Device::Cpu).unwrap();
        let tokens: Vec<u32> = (0..300).map(|i| (i * 31 % 96) as u32).collect();
        let want = reference(&m, &tokens);
        for ty in [WeightType::F32, WeightType::Q8_0] {
            let dec = Decoder::new(&m, ty).unwrap();
            let tol = if ty == WeightType::F32 { 1e-4 } else { 0.05 };
            let mut s = dec.new_state();
            let mut out = Vec::new();
            dec.prefill_scores(&mut s, &tokens, 0, &mut out).unwrap();
            assert_eq!(out.len(), 300 * 96);
            for (r, row) in out.chunks_exact(96).enumerate() {
                let worst = row
                    .iter()
                    .zip(&want[r])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < tol, "{ty:?} row {r}: {worst}");
            }
            assert_eq!(s.logits(), &out[299 * 96..]);
        }
        let dec = Decoder::new(&m, WeightType::F32).unwrap();
        let ctx: Vec<u32> = tokens[..40].to_vec();
        let conts: [Vec<u32>; 2] = [vec![5, 6, 7, 8, 9, 10], vec![60, 61, 62]];
        let mut s = dec.new_state();
        let last = dec.prefill(&mut s, &ctx, 0).unwrap().to_vec();
        let mut out = Vec::new();
        for cont in &conts {
            let whole: Vec<u32> = ctx.iter().chain(cont).copied().collect();
            let want = reference(&m, &whole);
            dec.prefill_scores(&mut s, cont, 40, &mut out).unwrap();
            let worst_ctx = last
                .iter()
                .zip(&want[39])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst_ctx < 1e-4, "context's last row {worst_ctx}");
            for (r, row) in out.chunks_exact(96).enumerate() {
                let worst = row
                    .iter()
                    .zip(&want[40 + r])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-4, "continuation {cont:?} row {r}: {worst}");
            }
        }
        assert!(dec.prefill_scores(&mut s, &[], 0, &mut out).is_err());
        assert!(dec.prefill_scores(&mut s, &[1; 30], 300, &mut out).is_err());
    }

    #[test]
    fn several_sequences_in_one_pass_equal_the_full_forward() {
        // A shared 30-token context, then three continuations of different lengths scored in
        // one pass, each on its own copy of the context's cache.
        let mut c = model(false, true).config;
        c.max_position_embeddings = 64;
        let m = Llama::random(c, 11, &Device::Cpu).unwrap();
        let ctx: Vec<u32> = (0..30).map(|i| (i * 17 % 96) as u32).collect();
        let conts: [Vec<u32>; 3] = [vec![5, 6, 7, 8], vec![60], vec![9, 10, 11, 12, 13, 14]];
        for ty in [WeightType::F32, WeightType::Q8_0] {
            let dec = Decoder::new(&m, ty).unwrap();
            let mut states: Vec<RunState> = (0..3).map(|_| dec.new_state()).collect();
            dec.prefill(&mut states[0], &ctx, 0).unwrap();
            let (first, rest) = states.split_at_mut(1);
            for s in rest.iter_mut() {
                dec.copy_prefix(&first[0], s, 30).unwrap();
            }
            let parts: Vec<(usize, &[u32], usize)> = conts
                .iter()
                .enumerate()
                .map(|(i, c)| (i, &c[..], 30))
                .collect();
            let mut out = Vec::new();
            dec.prefill_scores_multi(&mut states, &parts, &mut out)
                .unwrap();
            let mut row = 0;
            for cont in &conts {
                // The same continuation scored alone after the same context.
                let mut s = dec.new_state();
                dec.prefill(&mut s, &ctx, 0).unwrap();
                let mut want = Vec::new();
                dec.prefill_scores(&mut s, cont, 30, &mut want).unwrap();
                let got = &out[row * 96..(row + cont.len()) * 96];
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-4, "{ty:?} {cont:?}: {worst}");
                row += cont.len();
            }
        }
        let dec = Decoder::new(&m, WeightType::F32).unwrap();
        let mut states = vec![dec.new_state()];
        let mut out = Vec::new();
        assert!(dec
            .prefill_scores_multi(&mut states, &[(1, &[1], 0)], &mut out)
            .is_err());
        assert!(dec
            .prefill_scores_multi(&mut states, &[(0, &[1], 64)], &mut out)
            .is_err());
        assert!(dec
            .prefill_scores_multi(&mut states, &[], &mut out)
            .is_err());
        let mut f16 = dec.new_state_with(KvType::F16);
        assert!(dec.copy_prefix(&states[0], &mut f16, 3).is_err());
    }

    /// `m` with every block's linear weights pruned: the `sparsity` smallest magnitudes of
    /// each tensor zeroed, or the 2 smallest of every 4 when `two_four`.
    fn pruned(m: &Llama, sparsity: f64, two_four: bool) -> Llama {
        let mut t: std::collections::HashMap<String, Tensor> = m.tensors().into_iter().collect();
        for (name, tensor) in t.iter_mut() {
            if !name.contains("layers.") || !name.ends_with("proj.weight") {
                continue;
            }
            let shape = tensor.dims().to_vec();
            let mut w = tensor.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            if two_four {
                for g in w.chunks_exact_mut(4) {
                    let mut idx = [0usize, 1, 2, 3];
                    idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
                    g[idx[2]] = 0.0;
                    g[idx[3]] = 0.0;
                }
            } else {
                let mut mags: Vec<f32> = w.iter().map(|v| v.abs()).collect();
                let cut = (sparsity * mags.len() as f64) as usize;
                let thr = *mags.select_nth_unstable_by(cut, f32::total_cmp).1;
                w.iter_mut()
                    .filter(|v| v.abs() < thr)
                    .for_each(|v| *v = 0.0);
            }
            *tensor = Tensor::from_vec(w, shape, &Device::Cpu).unwrap();
        }
        Llama::from_tensors(m.config.clone(), t, std::path::Path::new("pruned")).unwrap()
    }

    #[test]
    fn sparse_storage_decodes_like_the_masked_dense_model() {
        let mut c = model(false, true).config;
        c.max_position_embeddings = 96;
        let base = Llama::random(c, 9, &Device::Cpu).unwrap();
        let prompt: Vec<u32> = (0..70).map(|i| (i * 13 % 96) as u32).collect();
        for (sparsity, two_four, kind) in [
            (0.65, false, "offsets"),
            (0.7, false, "offsets"),
            (0.9, false, "offsets"),
            (0.5, true, "2:4"),
        ] {
            let m = pruned(&base, sparsity, two_four);
            let dense = Decoder::with_sparse(&m, WeightType::F32, SparseUse::Off).unwrap();
            let sparse = Decoder::new(&m, WeightType::F32).unwrap();
            for l in &sparse.weights.layers {
                for w in [&l.wqkv, &l.wo, &l.wgu, &l.wdown] {
                    assert_eq!(w.kind(), kind, "{sparsity} {two_four}");
                }
            }
            assert_eq!(sparse.weights.lm_head.kind(), "f32");
            assert!(sparse.weight_bytes_per_token() < dense.weight_bytes_per_token());
            // Prefill (chunked matmul path), then greedy decoding (matvec path).
            let (mut sd, mut ss) = (dense.new_state(), sparse.new_state());
            let mut a = dense.prefill(&mut sd, &prompt, 0).unwrap().to_vec();
            let mut b = sparse.prefill(&mut ss, &prompt, 0).unwrap().to_vec();
            for pos in prompt.len()..prompt.len() + 20 {
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "{kind} {sparsity}: pos {pos} differs by {worst}"
                );
                let (ta, tb) = (crate::sampler::argmax(&a), crate::sampler::argmax(&b));
                assert_eq!(ta, tb, "{kind} {sparsity}: greedy token at {pos}");
                a = dense.forward(&mut sd, ta, pos).unwrap().to_vec();
                b = sparse.forward(&mut ss, tb, pos).unwrap().to_vec();
            }
        }
        // A dense model stays dense, and so does a 50%-pruned one (not faster as offsets);
        // `Off` keeps a pruned one dense.
        let dense = Decoder::new(&base, WeightType::F32).unwrap();
        assert_eq!(dense.weights.layers[0].wgu.kind(), "f32");
        let half = Decoder::new(&pruned(&base, 0.5, false), WeightType::F32).unwrap();
        assert_eq!(half.weights.layers[0].wgu.kind(), "f32");
        let off = Decoder::with_sparse(&pruned(&base, 0.7, false), WeightType::F32, SparseUse::Off)
            .unwrap();
        assert_eq!(off.weights.layers[0].wgu.kind(), "f32");
    }

    #[test]
    fn batched_decoding_equals_one_sequence_at_a_time() {
        let m = model(false, true);
        let prompts: [Vec<u32>; 3] = [vec![1, 2, 3], vec![9, 8, 7, 6, 5], vec![40]];
        for ty in [WeightType::F32, WeightType::Q8_0] {
            let dec = Decoder::new(&m, ty).unwrap();
            // One at a time: prefill, then 6 greedy steps.
            let mut want = Vec::new();
            for p in &prompts {
                let mut s = dec.new_state();
                let mut logits = dec.prefill(&mut s, p, 0).unwrap().to_vec();
                let mut steps = Vec::new();
                for i in 0..6 {
                    let t = crate::sampler::argmax(&logits);
                    logits = dec.forward(&mut s, t, p.len() + i).unwrap().to_vec();
                    steps.push(logits.clone());
                }
                want.push(steps);
            }
            // Together: each prefilled alone, then batched steps at different positions.
            let mut states: Vec<RunState> = prompts.iter().map(|_| dec.new_state()).collect();
            let mut next: Vec<u32> = prompts
                .iter()
                .zip(states.iter_mut())
                .map(|(p, s)| crate::sampler::argmax(dec.prefill(s, p, 0).unwrap()))
                .collect();
            let mut scratch = BatchScratch::default();
            for i in 0..6 {
                let pos: Vec<usize> = prompts.iter().map(|p| p.len() + i).collect();
                dec.forward_batch(&mut scratch, &mut states, &next, &pos)
                    .unwrap();
                for (b, s) in states.iter().enumerate() {
                    let worst = s
                        .logits()
                        .iter()
                        .zip(&want[b][i])
                        .map(|(x, y)| (x - y).abs())
                        .fold(0f32, f32::max);
                    assert!(worst < 1e-4, "{ty:?} sequence {b} step {i}: {worst}");
                }
                next = states
                    .iter()
                    .map(|s| crate::sampler::argmax(s.logits()))
                    .collect();
            }
        }
        let dec = Decoder::new(&m, WeightType::F32).unwrap();
        let mut states = vec![dec.new_state(), dec.new_state()];
        let mut scratch = BatchScratch::default();
        assert!(dec
            .forward_batch(&mut scratch, &mut states, &[1], &[0, 0])
            .is_err());
        assert!(dec
            .forward_batch(&mut scratch, &mut states, &[1, 96], &[0, 0])
            .is_err());
        assert!(dec
            .forward_batch(&mut scratch, &mut states, &[1, 2], &[0, 32])
            .is_err());
    }

    #[test]
    fn f16_kv_cache_tracks_the_f32_cache() {
        let m = model(false, true);
        let dec = Decoder::new(&m, WeightType::F32).unwrap();
        let (mut a, mut b) = (dec.new_state(), dec.new_state_with(KvType::F16));
        let prompt: Vec<u32> = (0..10).map(|i| (i * 7 % 96) as u32).collect();
        let mut la = dec.prefill(&mut a, &prompt, 0).unwrap().to_vec();
        let mut lb = dec.prefill(&mut b, &prompt, 0).unwrap().to_vec();
        for pos in 10..30 {
            let scale = la.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = la
                .iter()
                .zip(&lb)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            // The first prefill chunk attends over its own f32 keys/values, so the two agree
            // exactly there; afterwards decoding reads the (f16) cache.
            assert!(worst < 1e-2 * scale, "pos {pos}: {worst} vs {scale}");
            assert_eq!(worst == 0.0, pos == 10, "pos {pos}: {worst}");
            let t = crate::sampler::argmax(&la);
            la = dec.forward(&mut a, t, pos).unwrap().to_vec();
            lb = dec.forward(&mut b, t, pos).unwrap().to_vec();
        }
        assert!(KvType::parse("q8").is_err());
    }

    #[test]
    fn bad_positions_and_tokens_are_errors() {
        let m = model(true, false);
        let dec = Decoder::new(&m, WeightType::F32).unwrap();
        let mut s = dec.new_state();
        assert!(dec.forward(&mut s, 1, 32).is_err());
        assert!(dec.forward(&mut s, 96, 0).is_err());
        assert!(WeightType::parse("q5_k").is_err());
    }
}
