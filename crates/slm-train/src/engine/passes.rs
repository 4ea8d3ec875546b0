//! The training passes on top of the shared flat forward (`slm_model::flat::forward`):
//! the head (logits, loss and its gradient in row chunks) and the backward.
//!
//! The head normalises the final residual and computes logits, loss and the logits gradient
//! in row chunks (`logits = xn·W_lmᵀ`; fused softmax-CE turns them into their gradient in
//! place; `dxn = dlogits·W_lm`, `dW_lm += dlogitsᵀ·xn`), so the full [n, vocab] matrix never
//! exists. The backward walks the blocks in reverse with `d_res` carrying ∂L/∂residual;
//! each RMSNorm backward adds its input gradient into `d_res` (the residual branch).
//! Every weight gradient is accumulated (`+=`) into the flat gradient buffer. Activation
//! slots are those of a `Saved::ForBackward` forward (block l in slot l), or of a
//! `Saved::Checkpointed` one (every block in slot 0, each block's forward run again from its
//! saved input just before its backward); a packed forward's
//! example starts (`Activations::starts`) restrict the attention and RoPE backward the same
//! way.

use super::buffers::{logits_chunk_rows, Buffers};
use super::lora::Lora;
use slm_core::profile::time;
use slm_core::Result;
use slm_kernels::attention::{attention_bwd, attention_bwd_lse};
use slm_kernels::cross_entropy::{cross_entropy_fwd_bwd, cross_entropy_loss};
use slm_kernels::distill::{distill_fwd_bwd, distill_topk_fwd_bwd, DistillSpec, DistillSums, TopK};
use slm_kernels::embedding::embedding_bwd;
use slm_kernels::matmul::{bias_bwd, linear_bwd_input, linear_bwd_weight, linear_fwd, LinearDims};
use slm_kernels::rmsnorm::rmsnorm_bwd;
use slm_kernels::rope::rope_bwd;
use slm_kernels::swiglu::{swiglu_bwd, swiglu_fwd};
use slm_model::flat::forward::slot;
use slm_model::flat::{forward_block, Activations, Dims, InputSlot, LinearDelta};
use slm_model::FlatWeights;

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
    m: &FlatWeights,
    acts: &Activations,
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
    let xn = acts.final_normed(&k);
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
        if !g.is_empty() {
            // (no base gradients when only adapters train)
            time("head.dw", || {
                linear_bwd_weight(&mut g[m.layout.lm_head.clone()], logits, x, dims)
            })?;
        }
    }
    Ok(total)
}

/// Gradients of a loss on block outputs, to add into the residual gradient: block
/// `layers[j]`'s output gets slot j of `grads` [layers.len(), n, d].
pub(crate) struct Inject<'a> {
    pub layers: &'a [usize],
    pub grads: &'a [f32],
}

/// Backward from `a.d_xn` (∂L/∂final normed states, written by [`head`]) to every
/// parameter, accumulating into `g`; `inject` adds a hidden-state loss's gradients at the
/// block outputs it read. With `lora`, the base is frozen (`g` is empty and gets nothing):
/// only the input gradients flow through the base, and the adapters get theirs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    m: &FlatWeights,
    acts: &mut Activations,
    a: &mut Buffers,
    g: &mut [f32],
    mut lora: Option<&mut Lora>,
    ids: &[u32],
    inject: Option<&Inject>,
    k: Dims,
) -> Result<()> {
    let (n, d) = (k.n, k.d);
    let nd = n * d;
    let p = &m.params[..];
    let last = 2 * k.layers;
    let base = !g.is_empty(); // the base parameters get gradients
                              // A norm's weight gradient goes here when the base is frozen.
    let mut dw_norm = if base { Vec::new() } else { vec![0f32; d] };
    let d_res = &mut a.d_res[..nd]; // ∂L/∂residual stream [n, d]
    let d_xn = &mut a.d_xn[..nd]; // ∂L/∂(a norm output) [n, d]
    let d_act = &mut a.d_act[..n * k.inter];
    let d_gu = &mut a.d_gu[..n * 2 * k.inter];
    let d_att = &mut a.d_att[..n * k.q];
    let d_qkv = &mut a.d_qkv[..n * k.w];
    let dw: &mut [f32] = if base {
        &mut g[m.layout.norm_f.clone()]
    } else {
        &mut dw_norm
    };
    time("bwd.norm", || {
        rmsnorm_bwd(
            d_res,
            dw,
            d_xn,
            slot(&acts.resid, last, nd),
            slot(&acts.rstd, k.final_norm_slot(), n),
            &p[m.layout.norm_f.clone()],
            n,
            false,
        )
    })?;
    // One block's dequantised linears when the base is held quantised.
    let mut scratch = std::mem::take(&mut a.linears);
    for (l, r) in m.layout.layers.iter().enumerate().rev() {
        // After a checkpointed forward, block l's intermediates are computed again (into
        // slot 0) from its saved input.
        if !k.keep_layers {
            let delta = lora.as_deref_mut().map(|lo| lo as &mut dyn LinearDelta);
            time("bwd.recompute", || {
                forward_block(m, &mut scratch, acts, l, &k, delta)
            })?;
        }
        let (s, ns) = (k.layer_slot(l), k.norm_slot(l));
        let starts = acts.starts(); // [n] when examples are packed
        let w = m.block(l, &mut scratch)?;
        // d_res = ∂L/∂(block l's output) here: add the hidden-state loss's share.
        if let Some(inj) = inject {
            for (j, _) in inj.layers.iter().enumerate().filter(|(_, &b)| b == l) {
                for (dr, &dh) in d_res.iter_mut().zip(slot(inj.grads, j, nd)) {
                    *dr += dh;
                }
            }
        }
        // MLP: out = mid + act·Wdownᵀ (+ adapter)
        let dims = LinearDims::new(n, k.inter, d);
        // act = silu(gate)·up, recomputed from the saved pre-activations (one slot).
        let gu = slot(&acts.gu, s, n * 2 * k.inter);
        let act = &mut a.act[..n * k.inter];
        time("bwd.swiglu_fwd", || swiglu_fwd(act, gu, n, k.inter))?;
        let act = &*act;
        time("bwd.down.dx", || {
            linear_bwd_input(d_act, d_res, w.wdown, dims, false)
        })?;
        if base {
            time("bwd.down.dw", || {
                linear_bwd_weight(&mut g[r.wdown.clone()], d_res, act, dims)
            })?;
        }
        if let Some(lo) = lora.as_deref_mut() {
            time("bwd.lora", || {
                lo.backward(l, InputSlot::MlpHidden, act, d_res, d_act, n)
            })?;
        }
        time("bwd.swiglu", || {
            swiglu_bwd(d_gu, d_act, slot(&acts.gu, s, n * 2 * k.inter), n, k.inter)
        })?;
        let dims = LinearDims::new(n, d, 2 * k.inter);
        let normed2 = slot(&acts.normed, ns + 1, nd);
        time("bwd.gate_up.dx", || {
            linear_bwd_input(d_xn, d_gu, w.wgu, dims, false)
        })?;
        if base {
            time("bwd.gate_up.dw", || {
                linear_bwd_weight(&mut g[r.wgu.clone()], d_gu, normed2, dims)
            })?;
        }
        if let Some(lo) = lora.as_deref_mut() {
            time("bwd.lora", || {
                lo.backward(l, InputSlot::Mlp, normed2, d_gu, d_xn, n)
            })?;
        }
        let dw: &mut [f32] = if base {
            &mut g[r.norm2.clone()]
        } else {
            &mut dw_norm
        };
        time("bwd.norm", || {
            rmsnorm_bwd(
                d_res,
                dw,
                d_xn,
                slot(&acts.resid, 2 * l + 1, nd),
                slot(&acts.rstd, ns + 1, n),
                w.norm2,
                n,
                true,
            )
        })?;
        // Attention: mid = x + att·Woᵀ (+ adapter)
        let dims = LinearDims::new(n, k.q, d);
        let att = slot(&acts.att, s, n * k.q);
        time("bwd.o.dx", || {
            linear_bwd_input(d_att, d_res, w.wo, dims, false)
        })?;
        if base {
            time("bwd.o.dw", || {
                linear_bwd_weight(&mut g[r.wo.clone()], d_res, att, dims)
            })?;
        }
        if let Some(lo) = lora.as_deref_mut() {
            time("bwd.lora", || {
                lo.backward(l, InputSlot::AttnOut, att, d_res, d_att, n)
            })?;
        }
        time("bwd.attn", || {
            let qkv = slot(&acts.qkv, s, n * k.w);
            if k.save_probs {
                let probs = slot(&acts.probs, s, k.probs());
                attention_bwd(d_qkv, d_att, qkv, probs, starts, k.attn())
            } else {
                let lse = slot(&acts.lse, s, k.lse());
                attention_bwd_lse(d_qkv, d_att, qkv, lse, starts, k.attn())
            }
        })?;
        time("bwd.rope", || {
            rope_bwd(d_qkv, k.rope(), &m.rope.cos, &m.rope.sin, starts)
        })?;
        if let (Some(b), true) = (r.bqkv.clone(), base) {
            time("bwd.bias", || bias_bwd(&mut g[b], d_qkv, n, k.w))?;
        }
        let dims = LinearDims::new(n, d, k.w);
        let normed1 = slot(&acts.normed, ns, nd);
        time("bwd.qkv.dx", || {
            linear_bwd_input(d_xn, d_qkv, w.wqkv, dims, false)
        })?;
        if base {
            time("bwd.qkv.dw", || {
                linear_bwd_weight(&mut g[r.wqkv.clone()], d_qkv, normed1, dims)
            })?;
        }
        if let Some(lo) = lora.as_deref_mut() {
            time("bwd.lora", || {
                lo.backward(l, InputSlot::Attn, normed1, d_qkv, d_xn, n)
            })?;
        }
        let dw: &mut [f32] = if base {
            &mut g[r.norm1.clone()]
        } else {
            &mut dw_norm
        };
        time("bwd.norm", || {
            rmsnorm_bwd(
                d_res,
                dw,
                d_xn,
                slot(&acts.resid, 2 * l, nd),
                slot(&acts.rstd, ns, n),
                w.norm1,
                n,
                true,
            )
        })?;
    }
    a.linears = scratch;
    if !base {
        return Ok(());
    }
    time("bwd.embed", || {
        embedding_bwd(&mut g[m.layout.embed.clone()], d_res, ids, d)
    })
}
