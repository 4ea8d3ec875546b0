//! Rotary position embeddings (RoPE) in the Hugging Face "rotate half" layout.
//!
//! Owns the inverse-frequency computation (plain, linear scaling, Llama 3 scaling, exactly as
//! transformers' `rope_init_fn`s) and the cos/sin tables. Applying RoPE is written with
//! differentiable tensor ops so gradients flow (candle's fused `rope` has no backward).
//! Checkpoints that use the interleaved layout (llama2.c, GGUF) are permuted at load time.

use crate::config::{LlamaConfig, RopeScaling};
use candle_core::{DType, Device, Tensor, D};
use slm_core::{Error, Result};

/// Inverse frequencies `1/theta^(2i/d)` for `i < d/2`, with the configured scaling applied.
pub fn inverse_frequencies(cfg: &LlamaConfig) -> Vec<f64> {
    let d = cfg.head_dim;
    // transformers computes the exponent in float32; we follow in f64 and round at the end.
    let base: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f64 / d as f64))
        .collect();
    match &cfg.rope_scaling {
        None => base,
        Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let old_ctx = *original_max_position_embeddings as f64;
            let low_freq_wavelen = old_ctx / low_freq_factor;
            let high_freq_wavelen = old_ctx / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_freq_wavelen {
                        f
                    } else if wavelen > low_freq_wavelen {
                        f / factor
                    } else {
                        let smooth = (old_ctx / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// The cos/sin tables as flat `f32` rows, the one place they are computed: the candle
/// [`Rope`], the flat-buffer forward (`crate::flat`) and the decode engine all read these.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeTables {
    /// [positions, head_dim/2]
    pub cos: Vec<f32>,
    /// [positions, head_dim/2]
    pub sin: Vec<f32>,
    /// head_dim/2
    pub half: usize,
    /// The model context.
    pub positions: usize,
}

impl RopeTables {
    pub fn new(cfg: &LlamaConfig) -> Self {
        let inv_freq: Vec<f32> = inverse_frequencies(cfg).iter().map(|&f| f as f32).collect();
        let (half, positions) = (inv_freq.len(), cfg.max_position_embeddings);
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for &f in &inv_freq {
                // As in transformers: the angle is a float32 product, then cos/sin.
                let angle = (p as f32) * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self {
            cos,
            sin,
            half,
            positions,
        }
    }
}

/// Precomputed cos/sin tables for every position up to the model context, as tensors.
#[derive(Debug, Clone)]
pub struct Rope {
    /// [max_positions, head_dim/2]
    cos: Tensor,
    /// [max_positions, head_dim/2]
    sin: Tensor,
    max_positions: usize,
}

impl Rope {
    pub fn new(cfg: &LlamaConfig, device: &Device) -> Result<Self> {
        let RopeTables {
            cos,
            sin,
            half,
            positions,
        } = RopeTables::new(cfg);
        Ok(Self {
            cos: Tensor::from_vec(cos, (positions, half), device)?,
            sin: Tensor::from_vec(sin, (positions, half), device)?,
            max_positions: positions,
        })
    }

    /// Rotates `x` [batch, heads, seq, head_dim] for positions `start..start+seq`.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let (_b, _h, t, d) = x.dims4()?;
        if start + t > self.max_positions {
            return Err(Error::invalid(format!(
                "position {} is beyond the model context of {} tokens",
                start + t - 1,
                self.max_positions
            )));
        }
        let half = d / 2;
        // [t, d/2] -> broadcast over [b, h, t, d/2]
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let out1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let out2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
        Ok(Tensor::cat(&[out1, out2], D::Minus1)?)
    }

    pub fn dtype(&self) -> DType {
        self.cos.dtype()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::preset;

    #[test]
    fn linear_scaling_divides_frequencies() {
        let mut c = preset("260k").unwrap();
        let plain = inverse_frequencies(&c);
        c.rope_scaling = Some(RopeScaling::Linear { factor: 4.0 });
        let scaled = inverse_frequencies(&c);
        for (p, s) in plain.iter().zip(&scaled) {
            assert!((p / 4.0 - s).abs() < 1e-15);
        }
    }

    #[test]
    fn llama3_keeps_high_and_scales_low_frequencies() {
        let mut c = preset("260k").unwrap();
        c.rope_theta = 500_000.0;
        c.rope_scaling = Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        });
        let plain = {
            let mut p = c.clone();
            p.rope_scaling = None;
            inverse_frequencies(&p)
        };
        let scaled = inverse_frequencies(&c);
        assert_eq!(plain[0], scaled[0]); // wavelength 2π < 64/4: untouched
        let last = plain.len() - 1;
        assert!((plain[last] / 8.0 - scaled[last]).abs() < 1e-15); // long wavelength: / factor
    }

    #[test]
    fn rotation_preserves_pair_norms_and_position_zero() {
        let c = preset("260k").unwrap();
        let rope = Rope::new(&c, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 2, 3, c.head_dim), &Device::Cpu).unwrap();
        let y = rope.apply(&x, 0).unwrap();
        let x0 = x
            .narrow(2, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let y0 = y
            .narrow(2, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(x0, y0);
        let n = |t: &Tensor| {
            t.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!((n(&x) - n(&y)).abs() < 1e-3);
        assert!(rope.apply(&x, c.max_position_embeddings).is_err());
    }
}
