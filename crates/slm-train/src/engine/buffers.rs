//! The activation and gradient-scratch buffers of one forward/backward pass.
//!
//! Every buffer is allocated once, for the largest (batch, seq) seen so far, and reused: a
//! smaller call uses a prefix of each buffer with its own (compact) strides. Per-layer
//! activations are stacked: layer l of a `[L, n, w]` buffer is `[l·n·w, (l+1)·n·w)`.
//!
//! Sizes (n = batch·seq tokens, d = hidden, L = layers, W = (h+2g)·e, q = h·e, I = inter):
//! - `resid` [2L+1, n, d]: slot 2l = input of block l, 2l+1 = after its attention, 2L = final.
//! - `normed` [2L+1, n, d] and `rstd` [2L+1, n]: the RMSNorm of each `resid` slot (input
//!   norm, post-attention norm, final norm) and its reciprocal RMS.
//! - `qkv` [L, n, W] (after RoPE), `att` [L, n, q], `gu` [L, n, 2I] (gate|up
//!   pre-activations), `act` [L, n, I] (silu(gate)·up).
//! - what attention saves: `probs` [L, batch, h, seq, seq] while that fits
//!   [`DEFAULT_PROBS_BUDGET`] (a little faster), else `lse` [L, batch, h, seq] (the backward
//!   recomputes the probabilities; memory linear in seq).
//! - `logits` [chunk, vocab]: one row-chunk of logits, then its gradient.
//! - backward scratch, one layer at a time: `d_res`, `d_xn` [n, d], `d_act` [n, I],
//!   `d_gu` [n, 2I], `d_att` [n, q], `d_qkv` [n, W].
//! - `d_hidden` [m, n, d]: gradients of a hidden-state loss on m block outputs (only when
//!   one is used).

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
    pub resid: Vec<f32>,
    pub normed: Vec<f32>,
    pub rstd: Vec<f32>,
    pub qkv: Vec<f32>,
    pub att: Vec<f32>,
    pub probs: Vec<f32>,
    pub lse: Vec<f32>,
    pub gu: Vec<f32>,
    pub act: Vec<f32>,
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
}

/// Grows `v` to at least `n` elements (never shrinks, so later calls do not allocate).
fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        *v = vec![0.0; n];
    }
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
    /// Makes every buffer large enough for `batch` sequences of `seq` tokens, saving
    /// attention probabilities when `save_probs`, else log-sum-exps.
    pub fn ensure(&mut self, cfg: &LlamaConfig, batch: usize, seq: usize, save_probs: bool) {
        let n = batch * seq;
        let l = cfg.num_hidden_layers;
        let (d, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (q, w) = (cfg.q_dim(), cfg.q_dim() + 2 * cfg.kv_dim());
        let h = cfg.num_attention_heads;
        grow(&mut self.resid, (2 * l + 1) * n * d);
        grow(&mut self.normed, (2 * l + 1) * n * d);
        grow(&mut self.rstd, (2 * l + 1) * n);
        grow(&mut self.qkv, l * n * w);
        grow(&mut self.att, l * n * q);
        if save_probs {
            grow(&mut self.probs, l * batch * h * seq * seq);
        } else {
            grow(&mut self.lse, l * batch * h * seq);
        }
        grow(&mut self.gu, l * n * 2 * i);
        grow(&mut self.act, l * n * i);
        grow(&mut self.logits, logits_chunk_rows(n, v) * v);
        grow(&mut self.d_res, n * d);
        grow(&mut self.d_xn, n * d);
        grow(&mut self.d_act, n * i);
        grow(&mut self.d_gu, n * 2 * i);
        grow(&mut self.d_att, n * q);
        grow(&mut self.d_qkv, n * w);
    }

    /// Bytes held by all buffers.
    pub fn bytes(&self) -> usize {
        4 * [
            &self.resid,
            &self.normed,
            &self.rstd,
            &self.qkv,
            &self.att,
            &self.probs,
            &self.lse,
            &self.gu,
            &self.act,
            &self.logits,
            &self.d_res,
            &self.d_xn,
            &self.d_act,
            &self.d_gu,
            &self.d_att,
            &self.d_qkv,
            &self.d_hidden,
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

/// Slot `i` of a buffer of `size`-element slots.
pub(crate) fn slot(buf: &[f32], i: usize, size: usize) -> &[f32] {
    &buf[i * size..(i + 1) * size]
}

/// Slot `i` of a buffer of `size`-element slots, mutably.
pub(crate) fn slot_mut(buf: &mut [f32], i: usize, size: usize) -> &mut [f32] {
    &mut buf[i * size..(i + 1) * size]
}

/// Slot `i` (shared) and slot `j > i` (mutable) of the same buffer.
pub(crate) fn slots_ij(buf: &mut [f32], i: usize, j: usize, size: usize) -> (&[f32], &mut [f32]) {
    debug_assert!(i < j);
    let (lo, hi) = buf.split_at_mut(j * size);
    (&lo[i * size..(i + 1) * size], &mut hi[..size])
}
