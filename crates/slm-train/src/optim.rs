//! AdamW over the engine's flat buffers, weight decay on matrices only, with masks that keep
//! pruned weights at exactly zero.
//!
//! The moments live in flat vectors laid out like the parameters, so a checkpoint is three
//! flat arrays. [`adamw_step`] is one update of one flat buffer, exactly PyTorch's
//! `torch.optim.AdamW` (single-tensor path, `amsgrad = False`):
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
//! [`adamw_step_naive`] is its f64 twin.

use crate::engine::{FastModel, ParamBuf};
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

slm_kernels::dispatch!(fn step_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: Coeffs) => step_impl);

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
    for (what, len) in [("grad", grad.len()), ("m", m.len()), ("v", v.len())] {
        if len != n {
            return Err(Error::invalid(format!(
                "adamw {what}: buffer holds {len} elements, the parameter {n}"
            )));
        }
    }
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

#[derive(Debug, Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Number of updates done (the next is `step + 1`).
    pub step: u64,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// Whether a parameter gets weight decay: 2-D tensors (embedding, projections), not norms
/// or biases.
pub fn decays(p: &ParamBuf) -> bool {
    p.is_matrix()
}

impl AdamW {
    pub fn new(config: AdamWConfig, num_params: usize) -> Self {
        Self {
            config,
            step: 0,
            m: vec![0.0; num_params],
            v: vec![0.0; num_params],
        }
    }

    /// One update of every parameter from its gradient at learning rate `lr`.
    pub fn update(&mut self, model: &mut FastModel, lr: f64) -> Result<()> {
        let (layout, params, grads) = model.trainable_mut();
        if self.m.len() != params.len() {
            return Err(Error::invalid(format!(
                "optimizer state holds {} values, the model {}",
                self.m.len(),
                params.len()
            )));
        }
        self.step += 1;
        for p in layout {
            let r = p.range();
            let cfg = AdamWConfig {
                lr,
                weight_decay: if decays(p) {
                    self.config.weight_decay
                } else {
                    0.0
                },
                ..self.config
            };
            adamw_step(
                &mut params[r.clone()],
                &grads[r.clone()],
                &mut self.m[r.clone()],
                &mut self.v[r],
                self.step,
                &cfg,
            )?;
        }
        Ok(())
    }
}

/// Sparsity masks: for each masked parameter, the positions that must stay zero.
#[derive(Debug, Clone, Default)]
pub struct Masks {
    /// (flat offset range of the parameter, mask with `true` = keep)
    pub entries: Vec<(std::ops::Range<usize>, Vec<bool>)>,
}

impl Masks {
    /// Masks every matrix parameter of `model` at its current zeros (a pruned model).
    pub fn from_zeros(model: &FastModel, roles: impl Fn(&ParamBuf) -> bool) -> Self {
        let flat = model.flat_params();
        let mut entries = Vec::new();
        for p in model.params() {
            if !roles(p) {
                continue;
            }
            let r = p.range();
            let keep: Vec<bool> = flat[r.clone()].iter().map(|&x| x != 0.0).collect();
            if keep.iter().any(|k| !k) {
                entries.push((r, keep));
            }
        }
        Self { entries }
    }

    /// Sets masked weights (and their gradients, so moments stay zero) to zero.
    pub fn apply(&self, model: &mut FastModel) {
        let (_, params, grads) = model.flat_mut();
        for (r, keep) in &self.entries {
            for ((p, g), &k) in params[r.clone()]
                .iter_mut()
                .zip(&mut grads[r.clone()])
                .zip(keep)
            {
                if !k {
                    *p = 0.0;
                    *g = 0.0;
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic values in [-1, 1) from a 64-bit LCG.
    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Asserts max |a − b| ≤ tol · max(1, max |b|).
    fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= tol * scale,
            "{what}: max |diff| {worst}, scale {scale}"
        );
    }

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
