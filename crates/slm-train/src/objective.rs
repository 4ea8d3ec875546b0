//! What a training step minimises: the seam between the training loop and the losses above
//! it.
//!
//! The trainer draws micro-batches, accumulates gradients, clips, steps AdamW, prunes and
//! checkpoints; an [`Objective`] turns one micro-batch into a loss and its gradient on the
//! student. [`CrossEntropy`] is next-token prediction. Distillation (a live teacher or its
//! cache, hidden-state matching, on-policy batches) is `slm_distill::Distillation`, which
//! lives a layer up because it needs teachers; this crate never names it.

use crate::engine::FastModel;
use crate::optim::AdamWConfig;
use slm_core::Result;
use std::path::Path;

/// One micro-batch: `inputs` and `targets` [batch, seq] (row-major) and the shard windows
/// the rows were cut from (`slm_data::batches::BatchStream::last_windows`; rewritten rows
/// keep their window).
#[derive(Debug, Clone, Copy)]
pub struct MicroBatch<'a> {
    pub inputs: &'a [u32],
    pub targets: &'a [u32],
    /// Per position, where its example begins in its row (packed fine-tuning rows: attention
    /// and positions restart there); `None` for plain windows.
    pub starts: Option<&'a [u32]>,
    pub windows: &'a [u32],
    pub batch: usize,
    pub seq: usize,
}

/// A micro-batch's loss: the `total` whose gradient was added, and named parts logged to
/// `metrics.jsonl` beside it (e.g. `ce`, `kd`; none for plain cross-entropy).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loss {
    pub total: f64,
    pub parts: Vec<(&'static str, f64)>,
}

/// The loss of a run (see the module documentation). Everything an objective does must be
/// deterministic in its inputs, so that a resumed run repeats the uninterrupted one.
pub trait Objective: Send {
    /// May rewrite the micro-batch `micro` of optimiser step `step` (0-based) before the loss,
    /// e.g. with the student's own continuations.
    fn prepare(
        &mut self,
        _student: &FastModel,
        _step: u64,
        _micro: usize,
        _inputs: &mut [u32],
        _targets: &mut [u32],
    ) -> Result<()> {
        Ok(())
    }

    /// Forward and backward: adds the gradient of the mean loss over the batch's targets to
    /// the student (and to the objective's own parameters) and returns the loss.
    fn forward_backward(&mut self, student: &mut FastModel, batch: &MicroBatch) -> Result<Loss>;

    /// The objective's own trainable parameters (a projection between widths, say): cleared
    /// before each step, scaled with the student's gradients under accumulation, updated
    /// after the student's AdamW step with the same settings at `lr`, and saved beside each
    /// checkpoint in `dir`.
    fn zero_grad(&mut self) {}
    fn scale_grads(&mut self, _s: f32) {}
    fn step(&mut self, _adam: &AdamWConfig, _lr: f64) -> Result<()> {
        Ok(())
    }
    fn save(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }
    fn load(&mut self, _dir: &Path) -> Result<()> {
        Ok(())
    }
}

/// Next-token cross-entropy, the loss of plain training.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrossEntropy;

impl Objective for CrossEntropy {
    fn forward_backward(&mut self, student: &mut FastModel, b: &MicroBatch) -> Result<Loss> {
        let loss =
            student.forward_backward_packed(b.inputs, b.targets, b.starts, b.batch, b.seq)?;
        Ok(Loss {
            total: loss as f64,
            parts: Vec::new(),
        })
    }
}
