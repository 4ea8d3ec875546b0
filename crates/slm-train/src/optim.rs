//! AdamW over the engine's flat buffers, weight decay on matrices only, with masks that keep
//! pruned weights at exactly zero.
//!
//! The moments live in flat vectors laid out like the parameters, so a checkpoint is three
//! flat arrays. The update itself is slm-kernels' `adamw_step` (PyTorch's formula).

use crate::engine::{FastModel, ParamBuf};
use slm_core::{Error, Result};
use slm_kernels::adamw::{adamw_step, AdamWConfig};

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
        let (layout, params, grads) = model.flat_mut();
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
