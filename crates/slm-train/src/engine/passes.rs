//! The forward and backward passes of the fast engine, written against flat buffers.
//!
//! One decoder block, forward (n = batch·seq rows; shapes as in `buffers.rs`):
//! ```text
//! xn1  = rmsnorm(x)·w1                 rstd saved
//! qkv  = xn1 · Wqkvᵀ (+ bqkv)          one matmul for q|k|v, then RoPE on q and k in place
//! att  = causal_gqa(qkv)               probs (or row log-sum-exps) saved
//! mid  = x + att · Woᵀ                 residual add fused into the matmul (accumulate)
//! xn2  = rmsnorm(mid)·w2
//! gu   = xn2 · Wguᵀ                    one matmul for gate|up
//! act  = silu(gate)·up
//! out  = mid + act · Wdownᵀ
//! ```
//! The head normalises the final residual and computes logits, loss and the logits gradient
//! in row chunks (`logits = xn·W_lmᵀ`; fused softmax-CE turns them into their gradient in
//! place; `dxn = dlogits·W_lm`, `dW_lm += dlogitsᵀ·xn`), so the full [n, vocab] matrix never
//! exists. The backward walks the blocks in reverse with `d_res` carrying ∂L/∂residual;
//! each RMSNorm backward adds its input gradient into `d_res` (the residual branch).
//! Every weight gradient is accumulated (`+=`) into the flat gradient buffer.

use super::buffers::{logits_chunk_rows, slot, slot_mut, slots_ij, Buffers};
use super::layout::Layout;
use super::profile::time;
use slm_core::Result;
use slm_kernels::attention::{
    attention_bwd, attention_bwd_lse, attention_fwd, attention_fwd_lse, AttnShape,
};
use slm_kernels::cross_entropy::{cross_entropy_fwd_bwd, cross_entropy_loss};
use slm_kernels::distill::{distill_fwd_bwd, distill_topk_fwd_bwd, DistillSpec, DistillSums, TopK};
use slm_kernels::embedding::{embedding_bwd, embedding_fwd};
use slm_kernels::matmul::{bias_bwd, linear_bwd_input, linear_bwd_weight, linear_fwd, LinearDims};
use slm_kernels::rmsnorm::{rmsnorm_bwd, rmsnorm_fwd};
use slm_kernels::rope::{rope_bwd, rope_fwd, RopeLayout};
use slm_kernels::swiglu::{swiglu_bwd, swiglu_fwd};
use slm_model::LlamaConfig;

/// The sizes every pass needs, derived once per call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
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
}

impl Dims {
    pub fn new(cfg: &LlamaConfig, batch: usize, seq: usize, save_probs: bool) -> Self {
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
            save_probs,
        }
    }

    fn attn(&self) -> AttnShape {
        AttnShape {
            batch: self.batch,
            seq: self.seq,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
        }
    }

    /// RoPE over the q and k heads of a qkv row (they are adjacent: h + g heads from col 0).
    fn rope(&self) -> RopeLayout {
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
    fn probs(&self) -> usize {
        self.batch * self.heads * self.seq * self.seq
    }

    /// Elements of one `lse` layer slot.
    fn lse(&self) -> usize {
        self.batch * self.heads * self.seq
    }
}

/// Read-only model state a pass needs.
pub(crate) struct Model<'a> {
    pub layout: &'a Layout,
    pub params: &'a [f32],
    pub cos: &'a [f32],
    pub sin: &'a [f32],
}

/// Forward through the blocks and the final norm, saving what the backward needs.
pub(crate) fn forward(m: &Model, a: &mut Buffers, ids: &[u32], k: Dims) -> Result<()> {
    let (n, d) = (k.n, k.d);
    let p = m.params;
    let nd = n * d;
    time("fwd.embed", || {
        embedding_fwd(
            slot_mut(&mut a.resid, 0, nd),
            &p[m.layout.embed.clone()],
            ids,
            d,
        )
    })?;
    for (l, r) in m.layout.layers.iter().enumerate() {
        // block input x = resid[2l] -> normed[2l]
        time("fwd.norm", || {
            rmsnorm_fwd(
                slot_mut(&mut a.normed, 2 * l, nd),
                slot_mut(&mut a.rstd, 2 * l, n),
                slot(&a.resid, 2 * l, nd),
                &p[r.norm1.clone()],
                n,
                k.eps,
            )
        })?;
        let qkv = slot_mut(&mut a.qkv, l, n * k.w);
        time("fwd.qkv", || {
            linear_fwd(
                qkv,
                slot(&a.normed, 2 * l, nd),
                &p[r.wqkv.clone()],
                r.bqkv.clone().map(|b| &p[b]),
                LinearDims::new(n, d, k.w),
                false,
            )
        })?;
        time("fwd.rope", || rope_fwd(qkv, k.rope(), m.cos, m.sin))?;
        time("fwd.attn", || {
            let (att, qkv) = (slot_mut(&mut a.att, l, n * k.q), slot(&a.qkv, l, n * k.w));
            if k.save_probs {
                attention_fwd(att, slot_mut(&mut a.probs, l, k.probs()), qkv, k.attn())
            } else {
                attention_fwd_lse(att, slot_mut(&mut a.lse, l, k.lse()), qkv, k.attn())
            }
        })?;
        // mid = x + att·Woᵀ
        let (x, mid) = slots_ij(&mut a.resid, 2 * l, 2 * l + 1, nd);
        mid.copy_from_slice(x);
        time("fwd.o", || {
            linear_fwd(
                mid,
                slot(&a.att, l, n * k.q),
                &p[r.wo.clone()],
                None,
                LinearDims::new(n, k.q, d),
                true,
            )
        })?;
        time("fwd.norm", || {
            rmsnorm_fwd(
                slot_mut(&mut a.normed, 2 * l + 1, nd),
                slot_mut(&mut a.rstd, 2 * l + 1, n),
                slot(&a.resid, 2 * l + 1, nd),
                &p[r.norm2.clone()],
                n,
                k.eps,
            )
        })?;
        let gu = slot_mut(&mut a.gu, l, n * 2 * k.inter);
        time("fwd.gate_up", || {
            linear_fwd(
                gu,
                slot(&a.normed, 2 * l + 1, nd),
                &p[r.wgu.clone()],
                None,
                LinearDims::new(n, d, 2 * k.inter),
                false,
            )
        })?;
        time("fwd.swiglu", || {
            swiglu_fwd(slot_mut(&mut a.act, l, n * k.inter), gu, n, k.inter)
        })?;
        // out = mid + act·Wdownᵀ
        let (mid, out) = slots_ij(&mut a.resid, 2 * l + 1, 2 * l + 2, nd);
        out.copy_from_slice(mid);
        time("fwd.down", || {
            linear_fwd(
                out,
                slot(&a.act, l, n * k.inter),
                &p[r.wdown.clone()],
                None,
                LinearDims::new(n, k.inter, d),
                true,
            )
        })?;
    }
    let last = 2 * k.layers;
    time("fwd.norm", || {
        rmsnorm_fwd(
            slot_mut(&mut a.normed, last, nd),
            slot_mut(&mut a.rstd, last, n),
            slot(&a.resid, last, nd),
            &p[m.layout.norm_f.clone()],
            n,
            k.eps,
        )
    })?;
    Ok(())
}

/// The teacher side of a distillation step, for the same n rows as the batch.
pub(crate) enum Soft<'a> {
    /// Full teacher logits [n, vocab] and the divergence to use.
    Dense {
        teacher: &'a [f32],
        spec: DistillSpec,
    },
    /// A teacher's top-k per row (an offline cache): sparse forward KL at T = 1.
    TopK { top: TopK<'a>, kd_weight: f32 },
}

impl Soft<'_> {
    fn check(&self, n: usize, v: usize) -> Result<()> {
        let (have, need) = match self {
            Soft::Dense { teacher, .. } => (teacher.len(), n * v),
            Soft::TopK { top, .. } => (top.tail.len(), n),
        };
        if have != need {
            return Err(slm_core::Error::invalid(format!(
                "the teacher's targets cover {have} values; the batch needs {need}"
            )));
        }
        Ok(())
    }

    /// The divergence part for rows r0..r1 of the batch (`logits` holds those rows).
    fn rows(
        &self,
        logits: &mut [f32],
        y: &[u32],
        v: usize,
        r0: usize,
        r1: usize,
        scale: f32,
    ) -> Result<DistillSums> {
        match self {
            Soft::Dense { teacher, spec } => {
                distill_fwd_bwd(logits, &teacher[r0 * v..r1 * v], y, v, spec, scale)
            }
            Soft::TopK { top, kd_weight } => {
                let k = top.k;
                let part = TopK {
                    k,
                    ids: &top.ids[r0 * k..r1 * k],
                    logp: &top.logp[r0 * k..r1 * k],
                    tail: &top.tail[r0..r1],
                };
                distill_topk_fwd_bwd(logits, &part, y, v, *kd_weight, scale)
            }
        }
    }
}

/// Σ losses over non-ignored targets from the final normed states, chunk by chunk: the
/// cross-entropy, or with `soft` the distillation mix (see `slm_kernels::distill`).
/// With `grads`, also writes ∂L/∂xn_final into `a.d_xn` and adds ∂L/∂W_lm to the gradient,
/// where L = grad_scale · Σ loss (the mixed loss when distilling).
pub(crate) fn head(
    m: &Model,
    a: &mut Buffers,
    targets: &[u32],
    k: Dims,
    grads: Option<(&mut [f32], f32)>,
    soft: Option<&Soft>,
) -> Result<DistillSums> {
    let (n, d, v) = (k.n, k.d, k.vocab);
    if let Some(s) = soft {
        s.check(n, v)?;
    }
    let xn = slot(&a.normed, 2 * k.layers, n * d);
    let w_lm = &m.params[m.layout.lm_head.clone()];
    let rows = logits_chunk_rows(n, v);
    let mut total = DistillSums::default();
    let mut grads = grads;
    for r0 in (0..n).step_by(rows) {
        let r1 = (r0 + rows).min(n);
        let dims = LinearDims::new(r1 - r0, d, v);
        let logits = &mut a.logits[..(r1 - r0) * v]; // [rows, vocab]
        let x = &xn[r0 * d..r1 * d]; // [rows, d]
        let y = &targets[r0..r1];
        time("head.logits", || {
            linear_fwd(logits, x, w_lm, None, dims, false)
        })?;
        let Some((g, scale)) = grads.as_mut() else {
            let part = match soft {
                None => DistillSums {
                    ce: time("head.ce", || cross_entropy_loss(logits, y, v))?,
                    kd: 0.0,
                },
                // The loss alone: the chunk buffer is scratch, so the kernel may overwrite it.
                Some(s) => time("head.kd", || s.rows(logits, y, v, r0, r1, 0.0))?,
            };
            total = total + part;
            continue;
        };
        let part = match soft {
            None => DistillSums {
                ce: time("head.ce", || cross_entropy_fwd_bwd(logits, y, v, *scale))?,
                kd: 0.0,
            },
            Some(s) => time("head.kd", || s.rows(logits, y, v, r0, r1, *scale))?,
        };
        total = total + part;
        time("head.dx", || {
            linear_bwd_input(&mut a.d_xn[r0 * d..r1 * d], logits, w_lm, dims, false)
        })?;
        time("head.dw", || {
            linear_bwd_weight(&mut g[m.layout.lm_head.clone()], logits, x, dims)
        })?;
    }
    Ok(total)
}

/// Full logits [n, vocab] from the final normed states into `out`.
pub(crate) fn logits(m: &Model, a: &Buffers, out: &mut [f32], k: Dims) -> Result<()> {
    let xn = slot(&a.normed, 2 * k.layers, k.n * k.d);
    let w_lm = &m.params[m.layout.lm_head.clone()];
    time("logits", || {
        linear_fwd(
            out,
            xn,
            w_lm,
            None,
            LinearDims::new(k.n, k.d, k.vocab),
            false,
        )
    })
}

/// Gradients of a loss on block outputs, to add into the residual gradient: block
/// `layers[j]`'s output gets slot j of `grads` [layers.len(), n, d].
pub(crate) struct Inject<'a> {
    pub layers: &'a [usize],
    pub grads: &'a [f32],
}

/// Backward from `a.d_xn` (∂L/∂final normed states, written by [`head`]) to every
/// parameter, accumulating into `g`; `inject` adds a hidden-state loss's gradients at the
/// block outputs it read.
pub(crate) fn backward(
    m: &Model,
    a: &mut Buffers,
    g: &mut [f32],
    ids: &[u32],
    inject: Option<&Inject>,
    k: Dims,
) -> Result<()> {
    let (n, d) = (k.n, k.d);
    let nd = n * d;
    let p = m.params;
    let last = 2 * k.layers;
    let d_res = &mut a.d_res[..nd]; // ∂L/∂residual stream [n, d]
    let d_xn = &mut a.d_xn[..nd]; // ∂L/∂(a norm output) [n, d]
    let d_act = &mut a.d_act[..n * k.inter];
    let d_gu = &mut a.d_gu[..n * 2 * k.inter];
    let d_att = &mut a.d_att[..n * k.q];
    let d_qkv = &mut a.d_qkv[..n * k.w];
    time("bwd.norm", || {
        rmsnorm_bwd(
            d_res,
            &mut g[m.layout.norm_f.clone()],
            d_xn,
            slot(&a.resid, last, nd),
            slot(&a.rstd, last, n),
            &p[m.layout.norm_f.clone()],
            n,
            false,
        )
    })?;
    for (l, r) in m.layout.layers.iter().enumerate().rev() {
        // d_res = ∂L/∂(block l's output) here: add the hidden-state loss's share.
        if let Some(inj) = inject {
            for (j, _) in inj.layers.iter().enumerate().filter(|(_, &b)| b == l) {
                for (dr, &dh) in d_res.iter_mut().zip(slot(inj.grads, j, nd)) {
                    *dr += dh;
                }
            }
        }
        // MLP: out = mid + act·Wdownᵀ
        let dims = LinearDims::new(n, k.inter, d);
        time("bwd.down.dx", || {
            linear_bwd_input(d_act, d_res, &p[r.wdown.clone()], dims, false)
        })?;
        time("bwd.down.dw", || {
            linear_bwd_weight(
                &mut g[r.wdown.clone()],
                d_res,
                slot(&a.act, l, n * k.inter),
                dims,
            )
        })?;
        time("bwd.swiglu", || {
            swiglu_bwd(d_gu, d_act, slot(&a.gu, l, n * 2 * k.inter), n, k.inter)
        })?;
        let dims = LinearDims::new(n, d, 2 * k.inter);
        time("bwd.gate_up.dx", || {
            linear_bwd_input(d_xn, d_gu, &p[r.wgu.clone()], dims, false)
        })?;
        time("bwd.gate_up.dw", || {
            linear_bwd_weight(
                &mut g[r.wgu.clone()],
                d_gu,
                slot(&a.normed, 2 * l + 1, nd),
                dims,
            )
        })?;
        time("bwd.norm", || {
            rmsnorm_bwd(
                d_res,
                &mut g[r.norm2.clone()],
                d_xn,
                slot(&a.resid, 2 * l + 1, nd),
                slot(&a.rstd, 2 * l + 1, n),
                &p[r.norm2.clone()],
                n,
                true,
            )
        })?;
        // Attention: mid = x + att·Woᵀ
        let dims = LinearDims::new(n, k.q, d);
        time("bwd.o.dx", || {
            linear_bwd_input(d_att, d_res, &p[r.wo.clone()], dims, false)
        })?;
        time("bwd.o.dw", || {
            linear_bwd_weight(&mut g[r.wo.clone()], d_res, slot(&a.att, l, n * k.q), dims)
        })?;
        time("bwd.attn", || {
            let qkv = slot(&a.qkv, l, n * k.w);
            if k.save_probs {
                attention_bwd(d_qkv, d_att, qkv, slot(&a.probs, l, k.probs()), k.attn())
            } else {
                attention_bwd_lse(d_qkv, d_att, qkv, slot(&a.lse, l, k.lse()), k.attn())
            }
        })?;
        time("bwd.rope", || rope_bwd(d_qkv, k.rope(), m.cos, m.sin))?;
        if let Some(b) = r.bqkv.clone() {
            time("bwd.bias", || bias_bwd(&mut g[b], d_qkv, n, k.w))?;
        }
        let dims = LinearDims::new(n, d, k.w);
        time("bwd.qkv.dx", || {
            linear_bwd_input(d_xn, d_qkv, &p[r.wqkv.clone()], dims, false)
        })?;
        time("bwd.qkv.dw", || {
            linear_bwd_weight(
                &mut g[r.wqkv.clone()],
                d_qkv,
                slot(&a.normed, 2 * l, nd),
                dims,
            )
        })?;
        time("bwd.norm", || {
            rmsnorm_bwd(
                d_res,
                &mut g[r.norm1.clone()],
                d_xn,
                slot(&a.resid, 2 * l, nd),
                slot(&a.rstd, 2 * l, n),
                &p[r.norm1.clone()],
                n,
                true,
            )
        })?;
    }
    time("bwd.embed", || {
        embedding_bwd(&mut g[m.layout.embed.clone()], d_res, ids, d)
    })
}
