//! RMSNorm written with differentiable ops.
//!
//! candle's fused `rms_norm` has no backward (candle issue #2168) and candle-nn's `RmsNorm`
//! takes that path for contiguous input, silently stopping gradients. This composed form
//! is the reference; a fused op with a hand-written backward can replace it on hot paths
//! as long as it is tested against this one.

use candle_core::{DType, Tensor, D};
use slm_core::Result;

#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// [dim]
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> Self {
        Self { weight, eps }
    }

    /// `x / sqrt(mean(x²) + eps) * weight` over the last dimension, computed in f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = x.broadcast_div(&(mean_sq + self.eps)?.sqrt()?)?;
        Ok(normed.to_dtype(dtype)?.broadcast_mul(&self.weight)?)
    }
}
