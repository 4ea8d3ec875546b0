//! Capturing the input statistics of one block's linears through the model's hooks.
//!
//! A decoder block has four distinct linear inputs: the normed residual (read by q, k and v),
//! the attention output (o), the normed residual after attention (gate and up) and the MLP
//! hidden state (down). [`LayerCapture`] listens to `HookPoint::LinearInput` for one layer
//! and accumulates [`InputStats`] once per distinct input it was asked for, so q/k/v and
//! gate/up share one Gram.

use crate::gram::InputStats;
use candle_core::Tensor;
use slm_core::{LinearRole, Result};
use slm_model::{HookPoint, Hooks, LlamaConfig};
use std::collections::BTreeMap;

pub use slm_model::flat::InputSlot;

/// A [`Hooks`] listener that accumulates the statistics of chosen input slots of one layer.
#[derive(Debug, Clone)]
pub struct LayerCapture {
    layer: usize,
    stats: BTreeMap<InputSlot, InputStats>,
}

impl LayerCapture {
    /// Listens to layer `layer` for `slots` of `cfg`; `with_gram` accumulates XᵀX, else only
    /// the column norms.
    pub fn new(cfg: &LlamaConfig, layer: usize, slots: &[InputSlot], with_gram: bool) -> Self {
        let stats = slots
            .iter()
            .map(|&s| (s, InputStats::new(s.width(cfg), with_gram)))
            .collect();
        Self { layer, stats }
    }

    pub fn layer(&self) -> usize {
        self.layer
    }

    /// The statistics of `slot`, if captured.
    pub fn stats(&self, slot: InputSlot) -> Option<&InputStats> {
        self.stats.get(&slot)
    }

    /// Adds one batch of `slot`'s input `x` [rows, width] (from the flat forward's `on_input`), counted as
    /// `samples` calibration samples (the batch's windows, as the official code counts);
    /// ignored when the slot was not asked for.
    pub fn add(&mut self, slot: InputSlot, x: &[f32], rows: usize, samples: usize) -> Result<()> {
        match self.stats.get_mut(&slot) {
            Some(s) => s.add_rows_as(x, rows, samples),
            None => Ok(()),
        }
    }

    /// The statistics of the input of `role`, if captured.
    pub fn stats_for(&self, role: LinearRole) -> Option<&InputStats> {
        self.stats(InputSlot::of(role))
    }
}

impl Hooks for LayerCapture {
    fn observe(&mut self, point: HookPoint, x: &Tensor) -> Result<()> {
        if let HookPoint::LinearInput { layer, role } = point {
            let slot = InputSlot::of(role);
            if layer == self.layer && role == slot.canonical() {
                if let Some(s) = self.stats.get_mut(&slot) {
                    s.add(x)?;
                }
            }
        }
        Ok(())
    }
}
