//! Named points where callers can observe activations during a forward pass.
//!
//! Calibration for pruning (XᵀX, input column norms) and distillation (hidden states) read
//! the input of every block and of every linear layer through this trait, without the model
//! knowing who listens.

use candle_core::Tensor;
use slm_core::{LinearRole, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookPoint {
    /// The residual stream entering block `layer` [batch, seq, hidden].
    BlockInput(usize),
    /// The input of a linear layer [batch, seq, in_features]. q, k and v see the same tensor,
    /// as do gate and up.
    LinearInput { layer: usize, role: LinearRole },
    /// The residual stream after the last block, before the final norm [batch, seq, hidden].
    FinalHidden,
}

pub trait Hooks {
    fn observe(&mut self, point: HookPoint, x: &Tensor) -> Result<()>;
}

/// Calls `hooks` if present.
pub(crate) fn emit(hooks: &mut Option<&mut dyn Hooks>, point: HookPoint, x: &Tensor) -> Result<()> {
    match hooks {
        Some(h) => h.observe(point, x),
        None => Ok(()),
    }
}

/// A hook that records every observation (tests and small tools).
#[derive(Default)]
pub struct Recorder {
    pub seen: Vec<(HookPoint, Tensor)>,
}

impl Hooks for Recorder {
    fn observe(&mut self, point: HookPoint, x: &Tensor) -> Result<()> {
        self.seen.push((point, x.clone()));
        Ok(())
    }
}
