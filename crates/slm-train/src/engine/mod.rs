//! The fast training engine: the shared flat-buffer forward of `slm_model::flat` plus
//! saved activations, a hand-written backward and the losses (in the style of llm.c).
//!
//! It computes exactly what `slm_model::Llama` computes (same parameters, same names, same
//! RoPE tables), but instead of candle's autograd it runs fused kernels from `slm-kernels`:
//! the forward is `slm_model::flat::forward` (every layer's activations kept), this module
//! adds the hand-written RMSNorm/RoPE/attention/SwiGLU backward and a fused softmax
//! cross-entropy (or distillation loss) over row chunks of the logits. The candle model
//! stays the reference; `tests/` compare the two (and PyTorch) parameter by parameter.
//!
//! # Gradient convention
//! [`FastModel::forward_backward`] returns the mean cross-entropy over the non-ignored
//! targets of the micro-batch it is given and **adds** the gradient of that mean to the
//! gradient buffer. Gradients are never cleared implicitly: call [`FastModel::zero_grad`]
//! before each optimiser step. To accumulate k micro-batches into one step, call
//! `forward_backward` k times and then `scale_grads(1/k)` (the mean of the micro-batch means).
//!
//! # Packed sequences
//! [`FastModel::forward_backward_packed`] and [`FastModel::forward_loss_packed`] take, besides
//! the ids, the start of each position's example within its row (`slm_kernels::segments`):
//! several short examples packed into one row then train exactly as if each ran alone
//! (attention and RoPE positions reset at every example boundary), with the loss averaged
//! over all non-ignored targets of the batch as usual.
//!
//! # Threads
//! All work runs on the current rayon pool (the global one, sized by `RAYON_NUM_THREADS`,
//! unless the caller runs inside another pool); matmuls get the same thread count.
//!
//! # Profiling
//! With `SLM_ENGINE_PROFILE` set, every phase of the passes is timed; [`profile_report`]
//! returns the table.
//!
//! # Memory
//! Activations for the largest (batch, seq) used so far are kept and reused: after the
//! first call at a given size, a training step allocates nothing proportional to the model
//! or the batch.

mod buffers;
pub mod lora;
mod passes;
mod trainable;

pub use buffers::DEFAULT_PROBS_BUDGET;
pub use slm_core::profile::report as profile_report;
pub use slm_model::flat::ParamBuf;

use buffers::Buffers;
use candle_core::Tensor;
use slm_core::{Error, Result};
use slm_kernels::distill::{DistillSpec, DistillSums, TopK};
use slm_kernels::segments::check_starts;
use slm_kernels::IGNORE_INDEX;
use slm_model::flat::forward::{slot, slot_mut};
use slm_model::flat::{on_pool, FlatModel, FlatWeights, Saved};
use slm_model::{Llama, LlamaConfig};
use std::collections::HashMap;

/// One parameter with its value and gradient, borrowed mutably (see
/// [`FastModel::params_mut`]).
#[derive(Debug)]
pub struct ParamMut<'a> {
    pub info: &'a ParamBuf,
    pub value: &'a mut [f32],
    pub grad: &'a mut [f32],
}

/// Mean losses of one micro-batch over its non-ignored targets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DistillLoss {
    /// Hard-label cross-entropy.
    pub ce: f32,
    /// T² · divergence from the teacher (0 without one).
    pub kd: f32,
    /// The hidden-state loss, already weighted by its [`ResidualLoss`] (0 without one).
    pub hidden: f32,
    /// What the gradient is of: (1 − w)·ce + w·kd + hidden, or ce without a teacher.
    pub total: f32,
}

/// A loss on the student's block outputs (hidden-state distillation), evaluated between the
/// forward and the backward pass. The engine hands it block `layers()[j]`'s output
/// [batch·seq, hidden] and adds the gradient it writes into the backward pass at that block.
pub trait ResidualLoss: Send {
    /// The blocks whose outputs the loss reads (0-based, each below the layer count).
    fn layers(&self) -> &[usize];
    /// The loss on `output` (block `layers()[index]`'s output, [n, hidden]) in the units of
    /// [`DistillLoss::total`] (already weighted and averaged). With `grad` ([n, hidden]) it
    /// also overwrites `grad` with ∂loss/∂output.
    fn loss_grad(&mut self, index: usize, output: &[f32], grad: Option<&mut [f32]>) -> Result<f64>;
}

/// The fast training engine (see the module documentation).
#[derive(Debug)]
pub struct FastModel {
    /// The parameters (packed in storage order, see [`FastModel::params`]), the forward and
    /// its saved activations.
    flat: FlatModel,
    /// Gradients, same layout as the parameters.
    grads: Vec<f32>,
    /// The logits chunk and the backward's scratch.
    bufs: Buffers,
    /// Largest saved attention-probability buffer before switching to log-sum-exps.
    probs_budget: usize,
    /// LoRA adapters on a frozen base (then `grads` is empty: the base gets none).
    lora: Option<lora::Lora>,
    /// Activation checkpointing: keep only each block's input, recompute the rest in the
    /// backward.
    checkpointing: bool,
}

impl FastModel {
    /// Builds the engine from Hugging Face-named tensors (checked against the config like
    /// every loader: each name present, each shape right).
    pub fn new(config: &LlamaConfig, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        let weights = FlatWeights::new(config, tensors)?;
        Ok(Self {
            grads: vec![0f32; weights.layout.total],
            flat: FlatModel::new(weights),
            bufs: Buffers::default(),
            probs_budget: buffers::DEFAULT_PROBS_BUDGET,
            lora: None,
            checkpointing: false,
        })
    }

    /// Builds the engine for QLoRA-style training: the base's block linears held as `kind`
    /// blocks (Q8_0 or Q4_0; see `slm_model::flat::frozen`), frozen, with LoRA adapters
    /// `spec` (initialised from `seed`) the only trained tensors. Every pass computes what
    /// the f32 engine with the same adapters computes on the dequantised base.
    pub fn with_quantized_base(
        config: &LlamaConfig,
        tensors: &HashMap<String, Tensor>,
        kind: slm_kernels::quant::BlockKind,
        spec: lora::LoraSpec,
        seed: u64,
    ) -> Result<Self> {
        let weights = FlatWeights::with_frozen_linears(config, tensors, kind)?;
        let mut model = Self {
            grads: Vec::new(),
            flat: FlatModel::new(weights),
            bufs: Buffers::default(),
            probs_budget: buffers::DEFAULT_PROBS_BUDGET,
            lora: None,
            checkpointing: false,
        };
        model.attach_lora(spec, seed)?;
        Ok(model)
    }

    /// The block format the frozen base's linears are held in (`None`: f32).
    pub fn base_kind(&self) -> Option<slm_kernels::quant::BlockKind> {
        self.flat.weights().frozen.as_ref().map(|f| f.kind())
    }

    /// Bytes held by the model's weights (the flat buffer and any quantised linears; not the
    /// adapters, gradients or optimiser state).
    pub fn weight_bytes(&self) -> usize {
        self.flat.weights().bytes()
    }

    /// Builds the engine from a candle model (copies its parameters).
    pub fn from_llama(model: &Llama) -> Result<Self> {
        let tensors: HashMap<String, Tensor> = model.tensors().into_iter().collect();
        Self::new(&model.config, &tensors)
    }

    /// The parameters as tensors on the CPU, in canonical checkpoint order
    /// (`slm_model::weights::expected_shapes`).
    pub fn to_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.flat.weights().export_params()
    }

    /// The gradients as tensors, named and ordered like [`FastModel::to_tensors`].
    pub fn grads_to_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.flat.weights().export(&self.grads)
    }

    /// A candle model with the current parameters.
    pub fn to_llama(&self) -> Result<Llama> {
        self.flat.weights().to_llama()
    }

    pub fn config(&self) -> &LlamaConfig {
        self.flat.config()
    }

    /// The shared forward and its weights (e.g. to score with the current parameters).
    pub fn flat(&self) -> &FlatModel {
        &self.flat
    }

    /// Every parameter's name, shape and place in the flat buffers, in storage order
    /// (which is not the checkpoint order; use names to identify parameters).
    pub fn params(&self) -> &[ParamBuf] {
        &self.flat.weights().layout.params
    }

    /// Total number of parameters (a tied embedding counted once; quantised linears
    /// counted too).
    pub fn num_parameters(&self) -> usize {
        self.flat.weights().layout.num_parameters()
    }

    /// All parameter values, packed as described by [`FastModel::params`].
    pub fn flat_params(&self) -> &[f32] {
        &self.flat.weights().params
    }

    /// All gradients, same layout as [`FastModel::flat_params`].
    pub fn flat_grads(&self) -> &[f32] {
        &self.grads
    }

    /// The layout, parameters and gradients at once, for optimisers that update the whole
    /// flat buffer in one pass.
    pub fn flat_mut(&mut self) -> (&[ParamBuf], &mut [f32], &mut [f32]) {
        let w = self.flat.weights_mut();
        (&w.layout.params, &mut w.params, &mut self.grads)
    }

    /// Each parameter with its value and gradient, mutably, in storage order: what an
    /// optimiser or a sparsity mask walks.
    pub fn params_mut(&mut self) -> impl Iterator<Item = ParamMut<'_>> {
        let w = self.flat.weights_mut();
        let mut values: &mut [f32] = &mut w.params;
        let mut grads: &mut [f32] = &mut self.grads;
        // The layout packs parameters back to back from offset 0, so splitting off `len`
        // elements in order yields each parameter's range.
        w.layout.params.iter().map(move |info| {
            let (v, rest_v) = std::mem::take(&mut values).split_at_mut(info.len);
            let (g, rest_g) = std::mem::take(&mut grads).split_at_mut(info.len);
            values = rest_v;
            grads = rest_g;
            ParamMut {
                info,
                value: v,
                grad: g,
            }
        })
    }

    /// The values of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&[f32]> {
        self.flat.weights().param(name)
    }

    /// The values of parameter `name`, mutably.
    pub fn param_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        self.flat.weights_mut().param_mut(name)
    }

    /// The gradient of parameter `name`.
    pub fn grad(&self, name: &str) -> Option<&[f32]> {
        let p = self.flat.weights().layout.get(name)?;
        self.grads.get(p.range())
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&mut self) {
        self.grads.fill(0.0);
        if let Some(l) = &mut self.lora {
            l.grads.fill(0.0);
        }
    }

    /// Multiplies every gradient by `s` (e.g. 1/k after accumulating k micro-batches, or a
    /// clipping factor).
    pub fn scale_grads(&mut self, s: f32) {
        self.grads.iter_mut().for_each(|g| *g *= s);
        if let Some(l) = &mut self.lora {
            l.grads.iter_mut().for_each(|g| *g *= s);
        }
    }

    /// The global L2 norm of the gradients (accumulated in f64).
    pub fn grad_norm(&self) -> f64 {
        let lora: &[f32] = self.lora.as_ref().map_or(&[], |l| &l.grads);
        self.grads
            .iter()
            .chain(lora)
            .map(|&g| (g as f64) * (g as f64))
            .sum::<f64>()
            .sqrt()
    }

    /// Sets the largest buffer of saved attention probabilities (all layers, bytes) the
    /// engine may keep; above it attention saves one log-sum-exp per row and the backward
    /// recomputes the probabilities (slightly slower, memory linear in seq). Default
    /// [`DEFAULT_PROBS_BUDGET`]; 0 always recomputes.
    pub fn set_attention_probs_budget(&mut self, bytes: usize) {
        self.probs_budget = bytes;
    }

    /// Activation checkpointing: the forward keeps only each block's input (one [n, d]
    /// residual per block) and the intermediates of one block; the backward runs each
    /// block's forward again before its backward. Same results, bit for bit; activation
    /// memory about (2·layers + 1)·n·d + one block's intermediates instead of all blocks';
    /// about one more forward's work per step.
    pub fn set_activation_checkpointing(&mut self, on: bool) {
        self.checkpointing = on;
    }

    /// What a (batch, seq) pass saves: attention probabilities (within the budget, else
    /// log-sum-exps), for every block or, checkpointing, for one.
    fn saved(&self, batch: usize, seq: usize) -> Saved {
        let mut bytes = buffers::probs_bytes(self.config(), batch, seq);
        if self.checkpointing {
            bytes /= self.config().num_hidden_layers.max(1); // one block's
        }
        let probs = bytes <= self.probs_budget;
        if self.checkpointing {
            Saved::Checkpointed { probs }
        } else {
            Saved::ForBackward { probs }
        }
    }

    /// Bytes held by activation buffers (grows with the largest batch·seq used).
    pub fn activation_bytes(&self) -> usize {
        self.flat.activation_bytes()
            + self.bufs.bytes()
            + self.lora.as_ref().map_or(0, |l| l.bytes())
    }

    /// Checks targets for a [batch, seq] pass (the inputs are checked by the forward).
    fn check_targets(&self, targets: &[u32], batch: usize, seq: usize) -> Result<()> {
        let v = self.config().vocab_size;
        if targets.len() != batch * seq {
            return Err(Error::invalid(format!(
                "{} targets for batch {batch} × seq {seq}",
                targets.len()
            )));
        }
        if let Some(&bad) = targets
            .iter()
            .find(|&&t| t != IGNORE_INDEX && t as usize >= v)
        {
            return Err(Error::invalid(format!(
                "target {bad} is outside the vocabulary of {v}"
            )));
        }
        Ok(())
    }

    /// Forward and backward on one micro-batch: `inputs` and `targets` are [batch, seq]
    /// row-major token ids (`u32::MAX` marks a target to ignore). Returns the mean
    /// cross-entropy over the non-ignored targets and adds its gradient to the gradient
    /// buffer (see the module documentation). A batch whose targets are all ignored returns
    /// 0 and leaves the gradients untouched.
    pub fn forward_backward(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        batch: usize,
        seq: usize,
    ) -> Result<f32> {
        self.forward_backward_packed(inputs, targets, None, batch, seq)
    }

    /// The mean cross-entropy over the non-ignored targets, without gradients (evaluation).
    /// 0 when every target is ignored.
    pub fn forward_loss(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        batch: usize,
        seq: usize,
    ) -> Result<f32> {
        self.forward_loss_packed(inputs, targets, None, batch, seq)
    }

    /// [`FastModel::forward_backward`] over packed sequences: `starts` [batch, seq] gives,
    /// for each position, where its example begins within its row (see
    /// `slm_kernels::segments`: `starts[p] ≤ p`, and each position continues the example
    /// before it or begins one; a padding position is its own example, `starts[p] = p`,
    /// with an ignored target). Each example is computed as if it ran alone: attention stays
    /// inside it and RoPE counts positions from its start. Returns the mean cross-entropy
    /// over all non-ignored targets of the batch and adds its gradient, as
    /// [`FastModel::forward_backward`] does; `None` is exactly
    /// [`FastModel::forward_backward`].
    pub fn forward_backward_packed(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        starts: Option<&[u32]>,
        batch: usize,
        seq: usize,
    ) -> Result<f32> {
        Ok(self
            .run(inputs, targets, starts, None, None, true, batch, seq)?
            .ce)
    }

    /// The mean cross-entropy of packed sequences without gradients (see
    /// [`FastModel::forward_backward_packed`]).
    pub fn forward_loss_packed(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        starts: Option<&[u32]>,
        batch: usize,
        seq: usize,
    ) -> Result<f32> {
        Ok(self
            .run(inputs, targets, starts, None, None, false, batch, seq)?
            .ce)
    }

    /// Forward and backward of the distillation loss against `teacher_logits`
    /// [batch, seq, vocab] for the same inputs (e.g. from a teacher's
    /// [`FastModel::logits`]): per non-ignored target, (1 − w)·CE + w·T²·D(teacher ‖ student)
    /// as `spec` says (`slm_kernels::distill`). Adds the gradient of the mean mixed loss,
    /// with the same conventions as [`FastModel::forward_backward`].
    pub fn forward_backward_distill(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        teacher_logits: &[f32],
        spec: &DistillSpec,
        batch: usize,
        seq: usize,
    ) -> Result<DistillLoss> {
        let soft = passes::Soft::Dense {
            teacher: teacher_logits,
            spec: *spec,
        };
        self.run(inputs, targets, None, Some(&soft), None, true, batch, seq)
    }

    /// Forward and backward of the sparse distillation loss against a teacher's top-k per
    /// position (an offline cache, rows in batch order): (1 − w)·CE + w·KL over the k listed
    /// ids and one bucket for the rest (`slm_kernels::distill::distill_topk_fwd_bwd`).
    pub fn forward_backward_topk(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        top: &TopK,
        kd_weight: f32,
        batch: usize,
        seq: usize,
    ) -> Result<DistillLoss> {
        let soft = passes::Soft::TopK {
            top: *top,
            kd_weight,
        };
        self.run(inputs, targets, None, Some(&soft), None, true, batch, seq)
    }

    /// The distillation losses without gradients (see
    /// [`FastModel::forward_backward_distill`]).
    pub fn forward_loss_distill(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        teacher_logits: &[f32],
        spec: &DistillSpec,
        batch: usize,
        seq: usize,
    ) -> Result<DistillLoss> {
        let soft = passes::Soft::Dense {
            teacher: teacher_logits,
            spec: *spec,
        };
        self.run(inputs, targets, None, Some(&soft), None, false, batch, seq)
    }

    /// Forward and backward of the distillation loss (as [`FastModel::forward_backward_distill`],
    /// or plain cross-entropy when `teacher` is `None`) plus a loss on block outputs
    /// (hidden-state distillation): its gradient enters the backward pass at the blocks it
    /// reads. With `backward` false only the losses are computed.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_backward_hidden(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        teacher: Option<(&[f32], &DistillSpec)>,
        hidden: &mut dyn ResidualLoss,
        backward: bool,
        batch: usize,
        seq: usize,
    ) -> Result<DistillLoss> {
        let soft = teacher.map(|(teacher, spec)| passes::Soft::Dense {
            teacher,
            spec: *spec,
        });
        self.run(
            inputs,
            targets,
            None,
            soft.as_ref(),
            Some(hidden),
            backward,
            batch,
            seq,
        )
    }

    /// The output [batch·seq, hidden] of block `layer` in the last forward pass (any loss
    /// entry point or [`FastModel::logits`]): a teacher's hidden states for
    /// hidden-state distillation.
    pub fn block_output(&self, layer: usize) -> Result<&[f32]> {
        self.flat.block_output(layer)
    }

    /// The one forward (+ backward) path every loss entry point shares.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        inputs: &[u32],
        targets: &[u32],
        starts: Option<&[u32]>,
        soft: Option<&passes::Soft>,
        hidden: Option<&mut dyn ResidualLoss>,
        backward: bool,
        batch: usize,
        seq: usize,
    ) -> Result<DistillLoss> {
        self.flat.weights().check_ids(inputs, batch, seq)?;
        self.check_targets(targets, batch, seq)?;
        if let Some(st) = starts {
            check_starts(st, batch, seq)?;
        }
        if let Some(passes::Soft::Dense { spec, .. }) = soft {
            spec.validate()?;
        }
        let count = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
        if count == 0 {
            return Ok(DistillLoss::default());
        }
        let layers = self.config().num_hidden_layers;
        let hidden_layers: Vec<usize> = hidden.as_ref().map_or(Vec::new(), |h| h.layers().to_vec());
        if let Some(&bad) = hidden_layers.iter().find(|&&l| l >= layers) {
            return Err(Error::invalid(format!(
                "the hidden-state loss reads block {bad}, the student has {layers} blocks"
            )));
        }
        let save = self.saved(batch, seq);
        if let Some(l) = &mut self.lora {
            l.ensure(batch * seq);
        }
        let delta = self
            .lora
            .as_mut()
            .map(|l| l as &mut dyn slm_model::flat::LinearDelta);
        let k = self
            .flat
            .forward_with(inputs, starts, batch, seq, save, delta)?;
        let nd = k.n * k.d;
        self.bufs.ensure(&k);
        buffers::ensure_hidden(&mut self.bufs, hidden_layers.len(), k.n, k.d);
        let Self {
            flat,
            grads,
            bufs,
            lora,
            ..
        } = self;
        let (m, acts) = flat.parts();
        let (sums, hidden_loss) = on_pool(|| -> Result<(DistillSums, f64)> {
            // The hidden-state loss reads the block outputs saved in `resid`.
            let mut d_hidden = std::mem::take(&mut bufs.d_hidden);
            let mut hidden_loss = 0.0;
            if let Some(h) = hidden {
                for (j, &l) in hidden_layers.iter().enumerate() {
                    let out = slot(&acts.resid, 2 * l + 2, nd);
                    let g = backward.then(|| slot_mut(&mut d_hidden, j, nd));
                    hidden_loss += h.loss_grad(j, out, g)?;
                }
            }
            let result = if !backward {
                passes::head(m, &*acts, bufs, targets, k, None, soft)
            } else {
                let g = Some((grads.as_mut_slice(), 1.0 / count as f32));
                passes::head(m, &*acts, bufs, targets, k, g, soft).and_then(|sums| {
                    let inject = passes::Inject {
                        layers: &hidden_layers,
                        grads: &d_hidden,
                    };
                    let inject = (!hidden_layers.is_empty()).then_some(&inject);
                    passes::backward(m, acts, bufs, grads, lora.as_mut(), inputs, inject, k)
                        .map(|()| sums)
                })
            };
            bufs.d_hidden = d_hidden;
            Ok((result?, hidden_loss))
        })?;
        let c = count as f64;
        let w = match soft {
            Some(passes::Soft::Dense { spec, .. }) => spec.kd_weight as f64,
            Some(passes::Soft::TopK { kd_weight, .. }) => *kd_weight as f64,
            None => 0.0,
        };
        let total = ((1.0 - w) * sums.ce + w * sums.kd) / c + hidden_loss;
        Ok(DistillLoss {
            ce: (sums.ce / c) as f32,
            kd: (sums.kd / c) as f32,
            hidden: hidden_loss as f32,
            total: total as f32,
        })
    }

    /// Logits [batch, seq, vocab] (row-major) for `inputs` [batch, seq].
    pub fn logits(&mut self, inputs: &[u32], batch: usize, seq: usize) -> Result<Vec<f32>> {
        self.flat.logits(inputs, batch, seq)
    }
}
