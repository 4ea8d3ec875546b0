//! LoRA adapters merged into (and taken out of) a model's weights: `W ← W ± scaling · B·A`.
//!
//! The adapter comes from `slm_io::peft` (PEFT's directory layout). Its pairs are in Hugging
//! Face row order, which is the order of every `Llama` slm holds: loaders turn GGUF's and
//! llama2.c's interleaved q/k rows into Hugging Face's rotate_half layout at the door, so a
//! q_proj delta is added as it is, whatever file the base came from. An adapter that does not
//! fit the model (a layer out of range, a factor of the wrong shape) is refused before any
//! weight changes.

use crate::config::LlamaConfig;
use crate::flat::layout::tensor_values;
use crate::linear::Linear;
use crate::llama::Llama;
use candle_core::Tensor;
use slm_core::{Error, Result};
use slm_io::peft::{BaseShapes, LoraAdapter, LoraPair};
use slm_kernels::matmul::{linear_bwd_input, LinearDims};

/// The shapes an adapter for `cfg` must have.
pub fn base_shapes(cfg: &LlamaConfig) -> BaseShapes {
    BaseShapes {
        layers: cfg.num_hidden_layers,
        hidden: cfg.hidden_size,
        q_dim: cfg.q_dim(),
        kv_dim: cfg.kv_dim(),
        intermediate: cfg.intermediate_size,
    }
}

/// Adds `scale · B·A` to `w` ([out, in], row-major).
pub fn add_delta(w: &mut [f32], pair: &LoraPair, scale: f32) -> Result<()> {
    let r = pair.rank();
    let scaled_b: Vec<f32> = pair.b.iter().map(|v| v * scale).collect();
    // dx[rows, in] += dy[rows, out] · w[out, in] with rows = out_features, "out" = r:
    // W[out, in] += (scale·B)[out, r] · A[r, in].
    linear_bwd_input(
        w,
        &scaled_b,
        &pair.a,
        LinearDims::new(pair.out_features, pair.in_features, r),
        true,
    )
}

/// The weight change of one pair, `scaling · B·A` ([out, in], row-major).
pub fn delta(pair: &LoraPair, scaling: f32) -> Result<Vec<f32>> {
    let mut d = vec![0f32; pair.out_features * pair.in_features];
    add_delta(&mut d, pair, scaling)?;
    Ok(d)
}

/// Merges `adapter` into `model`: every adapted projection becomes `W + scaling · B·A`.
/// Checks the adapter against the model's shapes first; on error the model is unchanged.
pub fn merge(model: &mut Llama, adapter: &LoraAdapter) -> Result<()> {
    apply(model, adapter, adapter.config.scaling())
}

/// Takes a merged `adapter` out again: `W - scaling · B·A` (equal to the weights before
/// [`merge`] up to float rounding).
pub fn unmerge(model: &mut Llama, adapter: &LoraAdapter) -> Result<()> {
    apply(model, adapter, -adapter.config.scaling())
}

fn apply(model: &mut Llama, adapter: &LoraAdapter, scale: f32) -> Result<()> {
    adapter.check_against(&base_shapes(&model.config))?;
    for (&(layer, role), pair) in &adapter.pairs {
        let block = model.layers.get_mut(layer).ok_or_else(|| {
            Error::invalid(format!(
                "the adapter adapts layer {layer}, which the model lacks"
            ))
        })?;
        let lin = block.linear_mut(role);
        let w = lin.weight();
        let (dtype, device) = (w.dtype(), w.device().clone());
        let mut values = tensor_values(w)?;
        add_delta(&mut values, pair, scale)?;
        let merged = Tensor::from_vec(values, (pair.out_features, pair.in_features), &device)?
            .to_dtype(dtype)?;
        *lin = Linear::dense(merged, lin.bias.clone());
    }
    Ok(())
}
