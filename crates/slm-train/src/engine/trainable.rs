//! What a step updates: every parameter of the model (full training), or only LoRA adapters
//! on a frozen base (see [`super::lora`]). The optimiser, gradient clipping and checkpoints
//! go through these methods and never ask which it is.

use super::lora::{Lora, LoraSpec};
use super::{FastModel, ParamBuf};
use slm_core::{Error, Result};

impl FastModel {
    /// Freezes the base and trains LoRA adapters from `spec` (A seeded from `seed`, B zero):
    /// the base gradients are dropped and no longer computed.
    pub fn attach_lora(&mut self, spec: LoraSpec, seed: u64) -> Result<()> {
        if self.lora.is_some() {
            return Err(Error::invalid("the model already has LoRA adapters"));
        }
        self.lora = Some(Lora::new(self.config(), spec, seed)?);
        self.grads = Vec::new();
        Ok(())
    }

    /// The adapters, when the base is frozen.
    pub fn lora(&self) -> Option<&Lora> {
        self.lora.as_ref()
    }

    pub fn lora_mut(&mut self) -> Option<&mut Lora> {
        self.lora.as_mut()
    }

    /// Whether the base parameters are trained (no adapters).
    pub fn trains_base(&self) -> bool {
        self.lora.is_none()
    }

    /// The trained tensors: the model's own, or the adapters'.
    pub fn trainable_layout(&self) -> &[ParamBuf] {
        match &self.lora {
            Some(l) => l.layout(),
            None => self.params(),
        }
    }

    /// Number of trained values (the optimiser's state size).
    pub fn trainable_values(&self) -> usize {
        self.trainable_params().len()
    }

    /// The trained values, packed as [`FastModel::trainable_layout`] says.
    pub fn trainable_params(&self) -> &[f32] {
        match &self.lora {
            Some(l) => &l.params,
            None => self.flat_params(),
        }
    }

    /// The trained tensors, values and gradients at once (what the optimiser updates).
    pub fn trainable_mut(&mut self) -> (&[ParamBuf], &mut [f32], &mut [f32]) {
        if self.lora.is_none() {
            return self.flat_mut();
        }
        match &mut self.lora {
            Some(l) => l.parts_mut(),
            None => unreachable!("checked above"),
        }
    }

    /// Turns LoRA dropout on for the next passes with masks drawn from `seed`, or off
    /// (`None`: evaluation). Nothing happens without adapters or without dropout.
    pub fn set_dropout_seed(&mut self, seed: Option<u64>) {
        if let Some(l) = &mut self.lora {
            l.set_dropout_seed(seed);
        }
    }
}
