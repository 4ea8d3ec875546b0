//! The calibration forward of one decoder block on flat `f32` buffers, through the same
//! `slm-kernels` the training engine uses (gemm matmuls, fused RMSNorm/RoPE/attention/
//! SwiGLU). Calibration runs every window through every block twice (to capture the
//! inputs, then again through the pruned block), and the composed candle forward was ~98%
//! of a pruning run's time; this is the fast path, tested against `Llama::block_forward`.
//!
//! One block, n = batch·seq rows (shapes row-major):
//! ```text
//! xn1 = rmsnorm(x)·w1                 [n, d]        → Attn input (q, k, v)
//! qkv = xn1·Wqkvᵀ (+ b), RoPE on q|k  [n, q+2kv]
//! att = causal_gqa(qkv)               [n, q]        → AttnOut input (o)
//! mid = x + att·Woᵀ                   [n, d]
//! xn2 = rmsnorm(mid)·w2               [n, d]        → Mlp input (gate, up)
//! act = silu(xn2·Wgᵀ)·(xn2·Wuᵀ)       [n, inter]    → MlpHidden input (down)
//! out = mid + act·Wdownᵀ              [n, d]
//! ```

use crate::capture::InputSlot;
use candle_core::{DType, Tensor};
use slm_core::{Error, Result};
use slm_kernels::attention::{attention_fwd_lse, AttnShape};
use slm_kernels::matmul::{linear_fwd, LinearDims};
use slm_kernels::rmsnorm::rmsnorm_fwd;
use slm_kernels::rope::{rope_fwd, RopeLayout};
use slm_kernels::swiglu::swiglu_fwd;
use slm_model::{Llama, LlamaConfig};
use std::collections::HashMap;

/// RoPE tables [positions, head_dim/2], built exactly as `slm_model::rope::Rope` builds them.
pub struct RopeTables {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTables {
    pub fn new(cfg: &LlamaConfig) -> Self {
        let inv: Vec<f32> = slm_model::rope::inverse_frequencies(cfg)
            .iter()
            .map(|&f| f as f32)
            .collect();
        let positions = cfg.max_position_embeddings;
        let (mut cos, mut sin) = (
            Vec::with_capacity(positions * inv.len()),
            Vec::with_capacity(positions * inv.len()),
        );
        for pos in 0..positions {
            for &f in &inv {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self { cos, sin }
    }
}

/// Receives each distinct linear input of a block: (slot, values [rows, width], rows).
pub type OnInput<'a> = dyn FnMut(InputSlot, &[f32], usize) -> Result<()> + 'a;

/// One block's current weights as flat buffers (q|k|v and gate|up stacked by rows).
pub struct FastBlock {
    cfg: LlamaConfig,
    norm1: Vec<f32>,
    /// [q + 2·kv, d]
    wqkv: Vec<f32>,
    bqkv: Option<Vec<f32>>,
    /// [d, q]
    wo: Vec<f32>,
    norm2: Vec<f32>,
    /// [2·inter, d]
    wgu: Vec<f32>,
    /// [d, inter]
    wdown: Vec<f32>,
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

impl FastBlock {
    /// Copies layer `layer`'s weights out of `model` (call again after pruning the layer).
    pub fn from_model(model: &Llama, layer: usize) -> Result<Self> {
        let prefix = format!("model.layers.{layer}.");
        let tensors: HashMap<String, Tensor> = model
            .tensors()
            .into_iter()
            .filter_map(|(n, t)| n.strip_prefix(&prefix).map(|s| (s.to_string(), t)))
            .collect();
        let get = |name: &str| -> Result<Vec<f32>> {
            let t = tensors.get(name).ok_or_else(|| {
                Error::msg(format!("layer {layer} has no `{name}` (internal error)"))
            })?;
            values(t)
        };
        let cat = |names: &[&str]| -> Result<Vec<f32>> {
            let mut out = Vec::new();
            for n in names {
                out.extend(get(n)?);
            }
            Ok(out)
        };
        let bqkv = if model.config.qkv_bias {
            Some(cat(&[
                "self_attn.q_proj.bias",
                "self_attn.k_proj.bias",
                "self_attn.v_proj.bias",
            ])?)
        } else {
            None
        };
        Ok(Self {
            cfg: model.config.clone(),
            norm1: get("input_layernorm.weight")?,
            wqkv: cat(&[
                "self_attn.q_proj.weight",
                "self_attn.k_proj.weight",
                "self_attn.v_proj.weight",
            ])?,
            bqkv,
            wo: get("self_attn.o_proj.weight")?,
            norm2: get("post_attention_layernorm.weight")?,
            wgu: cat(&["mlp.gate_proj.weight", "mlp.up_proj.weight"])?,
            wdown: get("mlp.down_proj.weight")?,
        })
    }

    /// Runs `x` [batch, seq, d] through the block into `out` (same shape), calling
    /// `on_input(slot, values, rows)` with each distinct linear input as it is computed.
    pub fn forward(
        &self,
        x: &[f32],
        batch: usize,
        seq: usize,
        rope: &RopeTables,
        out: &mut [f32],
        on_input: &mut OnInput,
    ) -> Result<()> {
        let c = &self.cfg;
        let (n, d) = (batch * seq, c.hidden_size);
        let (q, kv, inter) = (c.q_dim(), c.kv_dim(), c.intermediate_size);
        let w = q + 2 * kv;
        let eps = c.rms_norm_eps as f32;
        if x.len() != n * d || out.len() != n * d {
            return Err(Error::invalid(format!(
                "block input of {} values for batch {batch} × seq {seq} × {d}",
                x.len()
            )));
        }
        if seq > c.max_position_embeddings {
            return Err(Error::invalid(format!(
                "seq {seq} is beyond the model context {}",
                c.max_position_embeddings
            )));
        }
        let mut rstd = vec![0f32; n];
        let mut xn = vec![0f32; n * d];
        rmsnorm_fwd(&mut xn, &mut rstd, x, &self.norm1, n, eps)?;
        on_input(InputSlot::Attn, &xn, n)?;
        let mut qkv = vec![0f32; n * w];
        linear_fwd(
            &mut qkv,
            &xn,
            &self.wqkv,
            self.bqkv.as_deref(),
            LinearDims::new(n, d, w),
            false,
        )?;
        let layout = RopeLayout {
            rows: n,
            row_stride: w,
            col0: 0,
            heads: c.num_attention_heads + c.num_key_value_heads,
            head_dim: c.head_dim,
            seq,
        };
        rope_fwd(&mut qkv, layout, &rope.cos, &rope.sin)?;
        let shape = AttnShape {
            batch,
            seq,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
        };
        let mut att = vec![0f32; n * q];
        let mut lse = vec![0f32; batch * c.num_attention_heads * seq];
        attention_fwd_lse(&mut att, &mut lse, &qkv, shape)?;
        drop(qkv);
        on_input(InputSlot::AttnOut, &att, n)?;
        // mid = x + att·Woᵀ, kept in `out`.
        out.copy_from_slice(x);
        linear_fwd(out, &att, &self.wo, None, LinearDims::new(n, q, d), true)?;
        rmsnorm_fwd(&mut xn, &mut rstd, out, &self.norm2, n, eps)?;
        on_input(InputSlot::Mlp, &xn, n)?;
        let mut gu = vec![0f32; n * 2 * inter];
        linear_fwd(
            &mut gu,
            &xn,
            &self.wgu,
            None,
            LinearDims::new(n, d, 2 * inter),
            false,
        )?;
        let mut act = vec![0f32; n * inter];
        swiglu_fwd(&mut act, &gu, n, inter)?;
        drop(gu);
        on_input(InputSlot::MlpHidden, &act, n)?;
        linear_fwd(
            out,
            &act,
            &self.wdown,
            None,
            LinearDims::new(n, inter, d),
            true,
        )
    }
}

/// Embeds windows of token ids: `[ids.len(), d]` from the model's embedding table.
pub fn embed(model: &Llama, ids: &[u32]) -> Result<Vec<f32>> {
    let d = model.config.hidden_size;
    let table = values(&model.embed_tokens)?;
    let mut out = vec![0f32; ids.len() * d];
    slm_kernels::embedding::embedding_fwd(&mut out, &table, ids, d)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fast_block_matches_the_candle_block_and_reports_every_input() {
        for (kv_heads, bias) in [(2usize, false), (4, true)] {
            let mut cfg = slm_model::preset("260k").unwrap();
            cfg.vocab_size = 50;
            cfg.hidden_size = 32;
            cfg.num_attention_heads = 4;
            cfg.num_key_value_heads = kv_heads;
            cfg.head_dim = 8;
            cfg.intermediate_size = 40;
            cfg.num_hidden_layers = 2;
            cfg.qkv_bias = bias;
            cfg.max_position_embeddings = 64;
            let model = Llama::random(cfg.clone(), 5, &Device::Cpu).unwrap();
            let (b, t) = (3, 11);
            let ids: Vec<u32> = (0..b * t).map(|i| (i * 7 % 50) as u32).collect();
            let x = embed(&model, &ids).unwrap();
            let xt = Tensor::from_vec(x.clone(), (b, t, 32), &Device::Cpu).unwrap();
            let reference = model.block_forward(1, &xt, 0, None).unwrap();
            let reference: Vec<f32> = reference.flatten_all().unwrap().to_vec1().unwrap();
            let block = FastBlock::from_model(&model, 1).unwrap();
            let mut out = vec![0f32; x.len()];
            let mut seen = Vec::new();
            block
                .forward(
                    &x,
                    b,
                    t,
                    &RopeTables::new(&cfg),
                    &mut out,
                    &mut |s, v, rows| {
                        assert_eq!(v.len(), rows * s.width(&cfg));
                        seen.push(s);
                        Ok(())
                    },
                )
                .unwrap();
            let worst = out
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "kv_heads {kv_heads}: max |diff| {worst}");
            assert_eq!(seen, InputSlot::ALL.to_vec());
            assert!(block
                .forward(
                    &x[1..],
                    b,
                    t,
                    &RopeTables::new(&cfg),
                    &mut out,
                    &mut |_, _, _| Ok(())
                )
                .is_err());
        }
    }
}
