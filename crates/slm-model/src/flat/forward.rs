//! The flat-buffer forward of a Llama-family decoder: one block function, the whole-model
//! pass that runs it over saved activation slots, and the output head.
//!
//! One decoder block, forward (n = batch·seq rows, row-major):
//! ```text
//! xn1  = rmsnorm(x)·w1                 [n, d]       rstd saved      → InputSlot::Attn
//! qkv  = xn1 · Wqkvᵀ (+ bqkv)          [n, q+2kv]   one matmul for q|k|v, RoPE on q|k in place
//! att  = causal_gqa(qkv)               [n, q]       probs (or row log-sum-exps) saved → AttnOut
//!                                                   (within each example when packed)
//! mid  = x + att · Woᵀ                 [n, d]       residual add fused into the matmul
//! xn2  = rmsnorm(mid)·w2               [n, d]                       → InputSlot::Mlp
//! gu   = xn2 · Wguᵀ                    [n, 2·inter] one matmul for gate|up
//! act  = silu(gate)·up                 [n, inter]                   → InputSlot::MlpHidden
//! out  = mid + act · Wdownᵀ            [n, d]
//! ```
//! [`block_forward`] is that block, written once: the whole-model [`forward`] runs it into
//! per-layer slots of [`Activations`] (what the training backward reads), and
//! [`BlockScratch`] runs it on reused scratch for calibration, where `on_input` sees each
//! distinct linear input as it is computed.
//!
//! Packed sequences: with example starts [n] (`slm_kernels::segments`), RoPE places each
//! token in its own example and attention stays inside it, so every example is computed as
//! if it ran alone; [`Activations::starts`] keeps them for the backward.

use super::layout::{BlockWeights, Layout};
use crate::config::LlamaConfig;
use crate::rope::RopeTables;
use slm_core::profile::time;
use slm_core::{Error, LinearRole, Result};
use slm_kernels::attention::{attention_fwd, attention_fwd_lse, AttnShape};
use slm_kernels::embedding::embedding_fwd;
use slm_kernels::matmul::{linear_fwd, LinearDims};
use slm_kernels::rmsnorm::rmsnorm_fwd;
use slm_kernels::rope::{rope_fwd, RopeLayout};
use slm_kernels::swiglu::swiglu_fwd;

/// One distinct input of a block's linears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputSlot {
    /// The normed block input, read by q, k and v `[.., hidden]`.
    Attn,
    /// The attention output, read by o `[.., heads · head_dim]`.
    AttnOut,
    /// The normed residual after attention, read by gate and up `[.., hidden]`.
    Mlp,
    /// The MLP hidden state, read by down `[.., intermediate]`.
    MlpHidden,
}

impl InputSlot {
    pub const ALL: [InputSlot; 4] = [
        InputSlot::Attn,
        InputSlot::AttnOut,
        InputSlot::Mlp,
        InputSlot::MlpHidden,
    ];

    /// The slot a linear reads from.
    pub fn of(role: LinearRole) -> Self {
        match role {
            LinearRole::Q | LinearRole::K | LinearRole::V => InputSlot::Attn,
            LinearRole::O => InputSlot::AttnOut,
            LinearRole::Gate | LinearRole::Up => InputSlot::Mlp,
            LinearRole::Down => InputSlot::MlpHidden,
        }
    }

    /// The linears reading this slot, in the order the block runs them.
    pub fn roles(self) -> &'static [LinearRole] {
        match self {
            InputSlot::Attn => &[LinearRole::Q, LinearRole::K, LinearRole::V],
            InputSlot::AttnOut => &[LinearRole::O],
            InputSlot::Mlp => &[LinearRole::Gate, LinearRole::Up],
            InputSlot::MlpHidden => &[LinearRole::Down],
        }
    }

    /// The first linear reading this slot (the one whose hook event stands for the slot).
    pub fn canonical(self) -> LinearRole {
        self.roles()[0]
    }

    /// The input width of this slot for `cfg`.
    pub fn width(self, cfg: &LlamaConfig) -> usize {
        match self {
            InputSlot::Attn | InputSlot::Mlp => cfg.hidden_size,
            InputSlot::AttnOut => cfg.q_dim(),
            InputSlot::MlpHidden => cfg.intermediate_size,
        }
    }
}

/// Receives each distinct linear input of a block: (slot, values [rows, width], rows).
pub type OnInput<'a> = dyn FnMut(InputSlot, &[f32], usize) -> Result<()> + 'a;

/// A term added to the output of a block's linears (LoRA adapters while training): called
/// right after the product of the pack reading `slot` (q|k|v, o, gate|up, down), before
/// anything reads its output (before RoPE for q|k|v; `y` of o and down already holds the
/// residual, which an additive term does not mind).
pub trait LinearDelta: Send {
    /// Adds block `layer`'s term for the pack reading `slot` to `y` [rows, out], given the
    /// pack's input `x` [rows, in].
    fn add(
        &mut self,
        layer: usize,
        slot: InputSlot,
        x: &[f32],
        y: &mut [f32],
        rows: usize,
    ) -> Result<()>;
}

/// The sizes every pass needs, derived once per call.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub batch: usize,
    pub seq: usize,
    /// batch · seq
    pub n: usize,
    pub d: usize,
    pub layers: usize,
    /// h·e
    pub q: usize,
    /// (h+2g)·e
    pub w: usize,
    pub inter: usize,
    pub vocab: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    /// Attention saves probabilities (else log-sum-exps).
    pub save_probs: bool,
    /// Every layer's activations are kept (a backward follows); else each block reuses slot
    /// 0 of the per-layer buffers and only the residual stream is kept for every block.
    pub keep_layers: bool,
}

impl Dims {
    pub fn new(cfg: &LlamaConfig, batch: usize, seq: usize, save: Saved) -> Self {
        Self {
            batch,
            seq,
            n: batch * seq,
            d: cfg.hidden_size,
            layers: cfg.num_hidden_layers,
            q: cfg.q_dim(),
            w: cfg.q_dim() + 2 * cfg.kv_dim(),
            inter: cfg.intermediate_size,
            vocab: cfg.vocab_size,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
            eps: cfg.rms_norm_eps as f32,
            save_probs: matches!(
                save,
                Saved::ForBackward { probs: true } | Saved::Checkpointed { probs: true }
            ),
            keep_layers: matches!(save, Saved::ForBackward { .. }),
        }
    }

    pub fn attn(&self) -> AttnShape {
        AttnShape {
            batch: self.batch,
            seq: self.seq,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
        }
    }

    /// RoPE over the q and k heads of a qkv row (they are adjacent: h + g heads from col 0).
    pub fn rope(&self) -> RopeLayout {
        RopeLayout {
            rows: self.n,
            row_stride: self.w,
            col0: 0,
            heads: self.heads + self.kv_heads,
            head_dim: self.head_dim,
            seq: self.seq,
        }
    }

    /// Elements of one `probs` layer slot.
    pub fn probs(&self) -> usize {
        self.batch * self.heads * self.seq * self.seq
    }

    /// Elements of one `lse` layer slot.
    pub fn lse(&self) -> usize {
        self.batch * self.heads * self.seq
    }

    /// The slot of block `l` in the per-layer buffers.
    pub fn layer_slot(&self, l: usize) -> usize {
        if self.keep_layers {
            l
        } else {
            0
        }
    }

    /// The `normed`/`rstd` slot of block `l`'s input norm (its post-attention norm is the
    /// next slot).
    pub fn norm_slot(&self, l: usize) -> usize {
        2 * self.layer_slot(l)
    }

    /// The `normed`/`rstd` slot of the final norm.
    pub fn final_norm_slot(&self) -> usize {
        if self.keep_layers {
            2 * self.layers
        } else {
            2
        }
    }

    /// Per-layer slots the buffers need.
    fn layer_slots(&self) -> usize {
        if self.keep_layers {
            self.layers
        } else {
            1
        }
    }
}

/// What a whole-model forward keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Every layer's activations, for a backward; attention probabilities saved when
    /// `probs` (else row log-sum-exps, and the backward recomputes the probabilities).
    ForBackward { probs: bool },
    /// The residual stream of every block and the final norm only (evaluation, scoring,
    /// teachers): per-layer intermediates reuse one slot.
    Outputs,
    /// Activation checkpointing: as `Outputs` (every block's input kept, intermediates in
    /// one slot), and the backward runs each block's forward again ([`forward_block`])
    /// before its own backward; `probs` as in `ForBackward`. Activation memory no longer
    /// grows with depth beyond one [n, d] residual per block, for one more forward's work.
    Checkpointed { probs: bool },
}

/// The activations of one whole-model forward (see [`forward`] for which slot holds what).
///
/// Sizes (n = batch·seq tokens, d = hidden, L = layers kept, W = (h+2g)·e, q = h·e, I = inter):
/// - `resid` [2·layers+1, n, d]: slot 2l = input of block l, 2l+1 = after its attention,
///   2·layers = final (always every block: hidden-state losses read block outputs).
/// - `normed` [2L+1, n, d] and `rstd` [2L+1, n]: the RMSNorm of each `resid` slot (input
///   norm, post-attention norm, final norm) and its reciprocal RMS.
/// - `qkv` [L, n, W] (after RoPE), `att` [L, n, q], `gu` [L, n, 2I] (gate|up
///   pre-activations), `act` [n, I] (silu(gate)·up of the block that ran last: one slot
///   whatever is kept, since a backward recomputes it from `gu` for a few element-wise
///   operations instead of holding 18% of the activations).
/// - `probs` [L, batch, h, seq, seq] or `lse` [L, batch, h, seq]: what attention saves.
/// - `starts` [n] or empty: the example starts of the pass (packed sequences), empty for one
///   example per row.
///
/// Buffers grow to the largest call and are reused (a smaller call uses a prefix of each
/// buffer with its own compact strides).
#[derive(Debug, Default)]
pub struct Activations {
    pub resid: Vec<f32>,
    pub normed: Vec<f32>,
    pub rstd: Vec<f32>,
    pub qkv: Vec<f32>,
    pub att: Vec<f32>,
    pub probs: Vec<f32>,
    pub lse: Vec<f32>,
    pub gu: Vec<f32>,
    pub act: Vec<f32>,
    pub starts: Vec<u32>,
}

/// Grows `v` to at least `n` elements (never shrinks, so later calls do not allocate).
pub fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        *v = vec![0.0; n];
    }
}

impl Activations {
    /// Makes every buffer large enough for a pass of `k`.
    pub fn ensure(&mut self, k: &Dims) {
        let (n, d, l) = (k.n, k.d, k.layer_slots());
        grow(&mut self.resid, (2 * k.layers + 1) * n * d);
        grow(&mut self.normed, (2 * l + 1) * n * d);
        grow(&mut self.rstd, (2 * l + 1) * n);
        grow(&mut self.qkv, l * n * k.w);
        grow(&mut self.att, l * n * k.q);
        if k.save_probs {
            grow(&mut self.probs, l * k.probs());
        } else {
            grow(&mut self.lse, l * k.lse());
        }
        grow(&mut self.gu, l * n * 2 * k.inter);
        grow(&mut self.act, n * k.inter); // one slot: the backward recomputes it from `gu`
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
        ]
        .iter()
        .map(|v| v.len())
        .sum::<usize>()
            + 4 * self.starts.len()
    }

    /// The example starts [n] of the last pass (`None`: one example per row).
    pub fn starts(&self) -> Option<&[u32]> {
        (!self.starts.is_empty()).then_some(&self.starts[..])
    }

    /// The final normed states [n, d] of the pass `k` described.
    pub fn final_normed(&self, k: &Dims) -> &[f32] {
        slot(&self.normed, k.final_norm_slot(), k.n * k.d)
    }
}

/// Slot `i` of a buffer of `size`-element slots.
pub fn slot(buf: &[f32], i: usize, size: usize) -> &[f32] {
    &buf[i * size..(i + 1) * size]
}

/// Slot `i` of a buffer of `size`-element slots, mutably.
pub fn slot_mut(buf: &mut [f32], i: usize, size: usize) -> &mut [f32] {
    &mut buf[i * size..(i + 1) * size]
}

/// Slots `i` and `i + 1` of the same buffer, both mutably.
fn pair_mut(buf: &mut [f32], i: usize, size: usize) -> (&mut [f32], &mut [f32]) {
    let (a, b) = buf[i * size..(i + 2) * size].split_at_mut(size);
    (a, b)
}

/// Where attention saves what its backward needs.
pub enum AttnSave<'a> {
    /// [batch, h, seq, seq]
    Probs(&'a mut [f32]),
    /// [batch, h, seq]
    Lse(&'a mut [f32]),
}

/// The buffers one block reads and writes (shapes as in the module documentation).
pub struct BlockActs<'a> {
    /// [n, d] the block input.
    pub x: &'a [f32],
    /// [n, d] x + attention.
    pub mid: &'a mut [f32],
    /// [n, d] the block output.
    pub out: &'a mut [f32],
    /// [n, d] and [n]: the input norm and its reciprocal RMS.
    pub normed1: &'a mut [f32],
    pub rstd1: &'a mut [f32],
    /// [n, d] and [n]: the post-attention norm.
    pub normed2: &'a mut [f32],
    pub rstd2: &'a mut [f32],
    /// [n, W]
    pub qkv: &'a mut [f32],
    /// [n, q]
    pub att: &'a mut [f32],
    pub save: AttnSave<'a>,
    /// [n, 2I]
    pub gu: &'a mut [f32],
    /// [n, I]
    pub act: &'a mut [f32],
    /// [n] the example starts of packed sequences (`None`: one example per row).
    pub starts: Option<&'a [u32]>,
}

/// One decoder block (see the module documentation); `on_input` receives each distinct
/// linear input as it is computed.
pub fn block_forward(
    k: &Dims,
    w: &BlockWeights,
    rope: &RopeTables,
    a: BlockActs,
    mut on_input: Option<&mut OnInput>,
    mut delta: Option<(usize, &mut dyn LinearDelta)>,
) -> Result<()> {
    let (n, d) = (k.n, k.d);
    let mut add = |s: InputSlot, x: &[f32], y: &mut [f32]| match delta.as_mut() {
        Some((layer, f)) => f.add(*layer, s, x, y, n),
        None => Ok(()),
    };
    let mut emit = |s: InputSlot, v: &[f32]| match on_input.as_deref_mut() {
        Some(f) => f(s, v, n),
        None => Ok(()),
    };
    time("fwd.norm", || {
        rmsnorm_fwd(a.normed1, a.rstd1, a.x, w.norm1, n, k.eps)
    })?;
    emit(InputSlot::Attn, a.normed1)?;
    time("fwd.qkv", || {
        linear_fwd(
            a.qkv,
            a.normed1,
            w.wqkv,
            w.bqkv,
            LinearDims::new(n, d, k.w),
            false,
        )
    })?;
    add(InputSlot::Attn, a.normed1, a.qkv)?;
    time("fwd.rope", || {
        rope_fwd(a.qkv, k.rope(), &rope.cos, &rope.sin, a.starts)
    })?;
    time("fwd.attn", || match a.save {
        AttnSave::Probs(p) => attention_fwd(a.att, p, a.qkv, a.starts, k.attn()),
        AttnSave::Lse(l) => attention_fwd_lse(a.att, l, a.qkv, a.starts, k.attn()),
    })?;
    emit(InputSlot::AttnOut, a.att)?;
    // mid = x + att·Woᵀ
    a.mid.copy_from_slice(a.x);
    time("fwd.o", || {
        linear_fwd(a.mid, a.att, w.wo, None, LinearDims::new(n, k.q, d), true)
    })?;
    add(InputSlot::AttnOut, a.att, a.mid)?;
    time("fwd.norm", || {
        rmsnorm_fwd(a.normed2, a.rstd2, a.mid, w.norm2, n, k.eps)
    })?;
    emit(InputSlot::Mlp, a.normed2)?;
    time("fwd.gate_up", || {
        linear_fwd(
            a.gu,
            a.normed2,
            w.wgu,
            None,
            LinearDims::new(n, d, 2 * k.inter),
            false,
        )
    })?;
    add(InputSlot::Mlp, a.normed2, a.gu)?;
    time("fwd.swiglu", || swiglu_fwd(a.act, a.gu, n, k.inter))?;
    emit(InputSlot::MlpHidden, a.act)?;
    // out = mid + act·Wdownᵀ
    a.out.copy_from_slice(a.mid);
    time("fwd.down", || {
        linear_fwd(
            a.out,
            a.act,
            w.wdown,
            None,
            LinearDims::new(n, k.inter, d),
            true,
        )
    })?;
    add(InputSlot::MlpHidden, a.act, a.out)
}

/// Forward through the blocks and the final norm into `a` (sized by
/// [`Activations::ensure`]), saving what `k` asks for; `starts` [n] packs several examples
/// per row (kept in `a.starts` for the backward). `scratch` holds one block's dequantised
/// linears when `w` keeps them quantised (unused otherwise).
pub fn forward(
    w: &super::FlatWeights,
    scratch: &mut Vec<f32>,
    a: &mut Activations,
    ids: &[u32],
    starts: Option<&[u32]>,
    k: &Dims,
    mut delta: Option<&mut dyn LinearDelta>,
) -> Result<()> {
    let (layout, params) = (&w.layout, &w.params[..]);
    let (n, d) = (k.n, k.d);
    let nd = n * d;
    a.starts.clear();
    a.starts.extend_from_slice(starts.unwrap_or_default());
    time("fwd.embed", || {
        embedding_fwd(
            slot_mut(&mut a.resid, 0, nd),
            &params[layout.embed.clone()],
            ids,
            d,
        )
    })?;
    for l in 0..layout.layers.len() {
        // (a reborrow per block; `as_deref_mut` would tie it to the whole call)
        #[allow(clippy::manual_map)]
        let layer_delta = match delta {
            Some(ref mut f) => Some(&mut **f as &mut dyn LinearDelta),
            None => None,
        };
        forward_block(w, scratch, a, l, k, layer_delta)?;
    }
    let last = 2 * k.layers;
    let f = k.final_norm_slot();
    time("fwd.norm", || {
        rmsnorm_fwd(
            slot_mut(&mut a.normed, f, nd),
            slot_mut(&mut a.rstd, f, n),
            slot(&a.resid, last, nd),
            &params[layout.norm_f.clone()],
            n,
            k.eps,
        )
    })
}

/// Block `l` of the whole-model pass: reads its input from `resid` slot 2l, writes slots
/// 2l+1 and 2l+2 and the block's intermediates into its slots of `a` (slot 0 of each
/// per-layer buffer unless `k` keeps every layer). [`forward`] runs it for every block; a
/// backward after a [`Saved::Checkpointed`] forward runs it again for one block at a time.
pub fn forward_block(
    w: &super::FlatWeights,
    scratch: &mut Vec<f32>,
    a: &mut Activations,
    l: usize,
    k: &Dims,
    delta: Option<&mut dyn LinearDelta>,
) -> Result<()> {
    let (n, d) = (k.n, k.d);
    let nd = n * d;
    let (s, ns) = (k.layer_slot(l), k.norm_slot(l));
    // resid slots 2l (input x), 2l+1 (mid), 2l+2 (output).
    let (lo, hi) = a.resid.split_at_mut((2 * l + 1) * nd);
    let x = &lo[2 * l * nd..];
    let (mid, rest) = hi.split_at_mut(nd);
    let (normed1, normed2) = pair_mut(&mut a.normed, ns, nd);
    let (rstd1, rstd2) = pair_mut(&mut a.rstd, ns, n);
    let save = if k.save_probs {
        AttnSave::Probs(slot_mut(&mut a.probs, s, k.probs()))
    } else {
        AttnSave::Lse(slot_mut(&mut a.lse, s, k.lse()))
    };
    let acts = BlockActs {
        x,
        mid,
        out: &mut rest[..nd],
        normed1,
        rstd1,
        normed2,
        rstd2,
        qkv: slot_mut(&mut a.qkv, s, n * k.w),
        att: slot_mut(&mut a.att, s, n * k.q),
        save,
        gu: slot_mut(&mut a.gu, s, n * 2 * k.inter),
        act: slot_mut(&mut a.act, 0, n * k.inter),
        starts: (!a.starts.is_empty()).then_some(&a.starts[..]),
    };
    let layer_delta = delta.map(|f| (l, f));
    let weights = w.block(l, scratch)?;
    block_forward(k, &weights, &w.rope, acts, None, layer_delta)
}

/// Logits [n, vocab] from the final normed states of the last [`forward`] into `out`.
pub fn logits(
    layout: &Layout,
    params: &[f32],
    a: &Activations,
    out: &mut [f32],
    k: &Dims,
) -> Result<()> {
    time("logits", || {
        linear_fwd(
            out,
            a.final_normed(k),
            &params[layout.lm_head.clone()],
            None,
            LinearDims::new(k.n, k.d, k.vocab),
            false,
        )
    })
}

/// Scratch for running one block at a time ([`block_forward`] with no saved activations
/// kept between calls): calibration's forward. Buffers grow to the largest call.
#[derive(Debug, Default)]
pub struct BlockScratch {
    normed: Vec<f32>,
    rstd: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    lse: Vec<f32>,
    mid: Vec<f32>,
    gu: Vec<f32>,
    act: Vec<f32>,
}

impl BlockScratch {
    /// Runs `x` [batch, seq, d] through the block `w` of a `cfg` model into `out` (same
    /// shape), calling `on_input(slot, values, rows)` with each distinct linear input.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        cfg: &LlamaConfig,
        w: &BlockWeights,
        rope: &RopeTables,
        x: &[f32],
        batch: usize,
        seq: usize,
        out: &mut [f32],
        on_input: Option<&mut OnInput>,
    ) -> Result<()> {
        let k = Dims::new(cfg, batch, seq, Saved::Outputs);
        let (n, d) = (k.n, k.d);
        if x.len() != n * d || out.len() != n * d {
            return Err(Error::invalid(format!(
                "block input of {} values for batch {batch} × seq {seq} × {d}",
                x.len()
            )));
        }
        if seq > rope.positions {
            return Err(Error::invalid(format!(
                "seq {seq} is beyond the model context {}",
                rope.positions
            )));
        }
        grow(&mut self.normed, 2 * n * d);
        grow(&mut self.rstd, 2 * n);
        grow(&mut self.qkv, n * k.w);
        grow(&mut self.att, n * k.q);
        grow(&mut self.lse, k.lse());
        grow(&mut self.mid, n * d);
        grow(&mut self.gu, n * 2 * k.inter);
        grow(&mut self.act, n * k.inter);
        let (normed1, normed2) = pair_mut(&mut self.normed, 0, n * d);
        let (rstd1, rstd2) = pair_mut(&mut self.rstd, 0, n);
        let acts = BlockActs {
            x,
            mid: &mut self.mid[..n * d],
            out,
            normed1,
            rstd1,
            normed2,
            rstd2,
            qkv: &mut self.qkv[..n * k.w],
            att: &mut self.att[..n * k.q],
            save: AttnSave::Lse(&mut self.lse[..k.lse()]),
            gu: &mut self.gu[..n * 2 * k.inter],
            act: &mut self.act[..n * k.inter],
            starts: None,
        };
        block_forward(&k, w, rope, acts, on_input, None)
    }
}
