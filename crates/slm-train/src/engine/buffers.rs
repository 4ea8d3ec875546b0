//! The training engine's own buffers: the logits chunk and the backward's gradient scratch.
//! The forward's saved activations live in `slm_model::flat::Activations`.
//!
//! Every buffer is allocated once, for the largest (batch, seq) seen so far, and reused.
//! Sizes (n = batch·seq tokens, d = hidden, W = (h+2g)·e, q = h·e, I = inter):
//! - `logits` [chunk, vocab]: one row-chunk of logits, then its gradient.
//! - backward scratch, one layer at a time: `d_res`, `d_xn` [n, d], `d_act` [n, I],
//!   `d_gu` [n, 2I], `d_att` [n, q], `d_qkv` [n, W], and `act` [n, I]: the MLP hidden
//!   state recomputed from the saved gate|up pre-activations.
//! - `d_hidden` [m, n, d]: gradients of a hidden-state loss on m block outputs (only when
//!   one is used).
//! - `linears`: one block's dequantised linear weights, when the frozen base is held
//!   quantised (`slm_model::flat::FrozenLinears`).

use slm_model::flat::forward::grow;
use slm_model::flat::Dims;
use slm_model::LlamaConfig;
/// Target logits chunk, in elements (rows · vocab): 8M floats = 32 MiB. Smaller chunks
/// make the weight-gradient matmul `dW += dlogitsᵀ·xn` (inner size = rows) re-read and
/// re-write all of dW too often: on the 15m preset 131-row chunks were 8-15% slower in the
/// head than 256-1024-row chunks.
pub(crate) const LOGITS_CHUNK_ELEMS: usize = 8 << 20;

/// Largest saved attention-probability buffer (all layers), in bytes, before the engine
/// switches to saving log-sum-exps: 256 MiB. (4m and 15m at batch 8 × seq 256 need 64 and
/// 72 MiB; 42m at seq 1024 would need 2 GiB.)
pub const DEFAULT_PROBS_BUDGET: usize = 256 << 20;

/// Fewest rows per logits chunk, whatever the vocabulary (see [`LOGITS_CHUNK_ELEMS`]).
pub(crate) const MIN_LOGITS_CHUNK_ROWS: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct Buffers {
    pub logits: Vec<f32>,
    pub d_res: Vec<f32>,
    pub d_xn: Vec<f32>,
    pub d_act: Vec<f32>,
    pub d_gu: Vec<f32>,
    pub d_att: Vec<f32>,
    pub d_qkv: Vec<f32>,
    /// ∂(hidden-state loss)/∂(block output) for each block a [`super::ResidualLoss`]
    /// reads: [m, n, d], added into `d_res` as the backward passes that block.
    pub d_hidden: Vec<f32>,
    /// One block's dequantised linears, when the frozen base is held quantised.
    pub linears: Vec<f32>,
    /// One block's MLP hidden state [n, I], recomputed from its saved gate|up.
    pub act: Vec<f32>,
}

/// Bytes of saved attention probabilities for all layers.
pub(crate) fn probs_bytes(cfg: &LlamaConfig, batch: usize, seq: usize) -> usize {
    4 * cfg.num_hidden_layers * batch * cfg.num_attention_heads * seq * seq
}

/// Rows of logits per chunk for `n` tokens.
pub(crate) fn logits_chunk_rows(n: usize, vocab: usize) -> usize {
    (LOGITS_CHUNK_ELEMS / vocab.max(1))
        .max(MIN_LOGITS_CHUNK_ROWS)
        .clamp(1, n.max(1))
}

impl Buffers {
    /// Makes every buffer large enough for a pass of `k`.
    pub fn ensure(&mut self, k: &Dims) {
        let (n, d, i) = (k.n, k.d, k.inter);
        grow(&mut self.logits, logits_chunk_rows(n, k.vocab) * k.vocab);
        grow(&mut self.d_res, n * d);
        grow(&mut self.d_xn, n * d);
        grow(&mut self.d_act, n * i);
        grow(&mut self.act, n * i);
        grow(&mut self.d_gu, n * 2 * i);
        grow(&mut self.d_att, n * k.q);
        grow(&mut self.d_qkv, n * k.w);
    }

    /// Bytes held by all buffers.
    pub fn bytes(&self) -> usize {
        4 * [
            &self.logits,
            &self.d_res,
            &self.d_xn,
            &self.d_act,
            &self.d_gu,
            &self.d_att,
            &self.d_qkv,
            &self.d_hidden,
            &self.linears,
            &self.act,
        ]
        .iter()
        .map(|v| v.len())
        .sum::<usize>()
    }
}

/// Grows the hidden-state gradient buffer to `m` slots of [n, d].
pub(crate) fn ensure_hidden(a: &mut Buffers, m: usize, n: usize, d: usize) {
    grow(&mut a.d_hidden, m * n * d);
}
