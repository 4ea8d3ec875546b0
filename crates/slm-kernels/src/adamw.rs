//! One AdamW step on a flat buffer, exactly PyTorch's `torch.optim.AdamW`
//! (single-tensor path, `amsgrad = False`):
//!
//! ```text
//! p ← p · (1 − lr·wd)                       decoupled weight decay
//! m ← m + (1 − β1)·(g − m)                  (torch's lerp)
//! v ← β2·v + (1 − β2)·g²
//! p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
//! ```
//!
//! Scalars are computed in f64 and rounded to f32 as PyTorch does for its Python-float
//! hyperparameters; element arithmetic is f32. The step count `t` starts at 1.

use crate::check_len;
use rayon::prelude::*;
use slm_core::{Error, Result};

/// AdamW hyperparameters (defaults are PyTorch's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// The per-step f32 coefficients derived from the config and the step count.
#[derive(Debug, Clone, Copy)]
struct Coeffs {
    decay: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    bc2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
}

impl Coeffs {
    fn new(c: &AdamWConfig, step: u64) -> Result<Self> {
        if step == 0 {
            return Err(Error::invalid("adamw: the step count starts at 1"));
        }
        let t = step as f64;
        let bc1 = 1.0 - c.beta1.powf(t);
        let bc2 = 1.0 - c.beta2.powf(t);
        Ok(Self {
            decay: (1.0 - c.lr * c.weight_decay) as f32,
            one_minus_b1: (1.0 - c.beta1) as f32,
            b2: c.beta2 as f32,
            one_minus_b2: (1.0 - c.beta2) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: c.eps as f32,
            neg_step_size: (-(c.lr / bc1)) as f32,
        })
    }
}

#[inline(always)]
fn step_impl(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: Coeffs) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *p *= k.decay;
        *m += k.one_minus_b1 * (g - *m);
        *v = *v * k.b2 + k.one_minus_b2 * g * g;
        let denom = v.sqrt() / k.bc2_sqrt + k.eps;
        *p += k.neg_step_size * (*m / denom);
    }
}

crate::dispatch!(fn step_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: Coeffs) => step_impl);

/// Updates `param` in place from `grad`, with Adam moments `m` and `v` (zeros before the
/// first step); `step` is the 1-based number of this update.
pub fn adamw_step(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: u64,
    config: &AdamWConfig,
) -> Result<()> {
    let n = param.len();
    check_len("adamw grad", grad.len(), n)?;
    check_len("adamw m", m.len(), n)?;
    check_len("adamw v", v.len(), n)?;
    let k = Coeffs::new(config, step)?;
    const CHUNK: usize = 16 * 1024;
    if n <= CHUNK {
        step_chunk(param, grad, m, v, k);
        return Ok(());
    }
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| step_chunk(p, g, m, v, k));
    Ok(())
}

/// Naive twin of [`adamw_step`], all in f64 per element.
pub fn adamw_step_naive(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: u64,
    c: &AdamWConfig,
) {
    let t = step as f64;
    for i in 0..param.len() {
        let g = grad[i] as f64;
        let mut p = param[i] as f64 * (1.0 - c.lr * c.weight_decay);
        let mi = c.beta1 * m[i] as f64 + (1.0 - c.beta1) * g;
        let vi = c.beta2 * v[i] as f64 + (1.0 - c.beta2) * g * g;
        let m_hat = mi / (1.0 - c.beta1.powf(t));
        let v_hat = vi / (1.0 - c.beta2.powf(t));
        p -= c.lr * m_hat / (v_hat.sqrt() + c.eps);
        param[i] = p as f32;
        m[i] = mi as f32;
        v[i] = vi as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, rand_vec};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn adamw_matches_naive(n in 1usize..40_000, seed in 0u64..1000, wd in 0.0f64..0.2) {
            let c = AdamWConfig { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: wd };
            let p0 = rand_vec(n, seed);
            let (mut p, mut pn) = (p0.clone(), p0);
            let (mut m, mut mn, mut v, mut vn) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            for step in 1..=3u64 {
                let g = rand_vec(n, seed + step);
                adamw_step(&mut p, &g, &mut m, &mut v, step, &c).unwrap();
                adamw_step_naive(&mut pn, &g, &mut mn, &mut vn, step, &c);
            }
            assert_close(&p, &pn, 1e-5, "param");
            assert_close(&m, &mn, 1e-5, "m");
            assert_close(&v, &vn, 1e-5, "v");
        }
    }

    #[test]
    fn first_step_moves_each_weight_by_about_lr() {
        let c = AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        };
        let mut p = vec![1.0, -1.0, 0.5];
        let g = vec![0.3, -2.0, 1e-3];
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        adamw_step(&mut p, &g, &mut m, &mut v, 1, &c).unwrap();
        assert!((p[0] - (1.0 - 1e-3)).abs() < 1e-6);
        assert!((p[1] - (-1.0 + 1e-3)).abs() < 1e-6);
        assert!(adamw_step(&mut p, &g, &mut m, &mut v, 0, &c).is_err());
    }
}
