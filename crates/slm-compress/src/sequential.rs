//! The calibrated walk through a model that one-shot compression shares (pruning and GPTQ):
//! block by block, each block's linears changed with statistics of the inputs they see in the
//! model as changed so far.
//!
//! As SparseGPT, Wanda and GPTQ do it: the calibration windows are embedded once; for block i,
//! its inputs (the outputs of blocks 0..i−1 *after* they were changed) are run through the
//! block with a [`LayerCapture`] that accumulates the statistics of each distinct linear input;
//! the block's linears are changed (in parallel, each independent of the others) and written
//! back into the model as dense weights; then the block is run again to produce the inputs of
//! block i+1. Only the current block's inputs are kept, `[windows, seqlen, hidden]`, never the
//! activations of all layers. With `true_sequential` the block is instead changed in four
//! steps (q/k/v, o, gate/up, down) with a capture pass before each, so o sees the output of
//! the changed q/k/v and so on (SparseGPT's `--true-sequential`).

use crate::capture::{InputSlot, LayerCapture};
use crate::gram::InputStats;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use slm_core::{Error, LinearRole, Result};
use slm_model::flat::layout::tensor_values;
use slm_model::flat::{BlockParams, BlockScratch};
use slm_model::rope::RopeTables;
use slm_model::{Linear, Llama};
use std::time::Instant;

/// A weight as row-major f32 `[rows, cols]`.
pub(crate) struct Weight {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

/// The weight of (`layer`, `role`) as row-major f32.
pub(crate) fn weight_of(model: &Llama, layer: usize, role: LinearRole) -> Result<Weight> {
    let w = model
        .layers
        .get(layer)
        .ok_or_else(|| Error::invalid(format!("layer {layer} out of range")))?
        .linear(role)
        .weight();
    let (rows, cols) = w.dims2()?;
    let data = w
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(Weight { data, rows, cols })
}

/// Replaces the weight of (`layer`, `role`) by `w` (a dense linear, bias kept, in the
/// weight's dtype and device).
pub(crate) fn set_weight(
    model: &mut Llama,
    layer: usize,
    role: LinearRole,
    w: Weight,
) -> Result<()> {
    let lin = model
        .layers
        .get_mut(layer)
        .ok_or_else(|| Error::invalid(format!("layer {layer} out of range")))?
        .linear_mut(role);
    let old = lin.weight();
    let t = Tensor::from_vec(w.data, (w.rows, w.cols), old.device())?.to_dtype(old.dtype())?;
    let bias = lin.bias.clone();
    *lin = Linear::dense(t, bias);
    Ok(())
}

/// The HF name of the weight of (`layer`, `role`).
pub(crate) fn tensor_name(layer: usize, role: LinearRole) -> String {
    format!("{}.weight", role.hf_prefix(layer))
}

/// Checks calibration windows against `model`: 1..=context tokens each, every id inside the
/// vocabulary.
pub(crate) fn check_windows(model: &Llama, calib: &[Vec<u32>]) -> Result<()> {
    let max_len = model.config.max_position_embeddings;
    let vocab = model.config.vocab_size;
    for (i, w) in calib.iter().enumerate() {
        if w.is_empty() || w.len() > max_len {
            return Err(Error::invalid(format!(
                "calibration window {i} has {} tokens; windows need 1..={max_len} (the model's context)",
                w.len()
            )));
        }
        if let Some(&t) = w.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::invalid(format!(
                "calibration window {i} holds token {t}, outside the model's vocabulary of {vocab}"
            )));
        }
    }
    Ok(())
}

/// One batch of calibration windows of equal length: hidden states `[b, t, hidden]`.
pub(crate) struct HiddenBatch {
    pub x: Vec<f32>,
    pub b: usize,
    pub t: usize,
}

/// The calibration windows embedded in batches of up to `batch` consecutive windows of equal
/// length.
pub(crate) fn embed_batches(
    model: &Llama,
    calib: &[Vec<u32>],
    batch: usize,
) -> Result<Vec<HiddenBatch>> {
    let d = model.config.hidden_size;
    let table = tensor_values(&model.embed_tokens)?; // [vocab, d]
    let mut out = Vec::new();
    let mut i = 0;
    while i < calib.len() {
        let t = calib[i].len();
        let mut j = i + 1;
        while j < calib.len() && j - i < batch && calib[j].len() == t {
            j += 1;
        }
        let ids: Vec<u32> = calib[i..j].iter().flatten().copied().collect();
        let mut x = vec![0f32; ids.len() * d];
        slm_kernels::embedding::embedding_fwd(&mut x, &table, &ids, d)?;
        out.push(HiddenBatch { x, b: j - i, t });
        i = j;
    }
    Ok(out)
}

/// The steps of one block: all slots at once, or (true-sequential) one slot at a time;
/// only slots read by a changed role.
fn block_steps(roles: &[LinearRole], true_sequential: bool) -> Vec<Vec<InputSlot>> {
    let slots: Vec<InputSlot> = InputSlot::ALL
        .into_iter()
        .filter(|s| s.roles().iter().any(|r| roles.contains(r)))
        .collect();
    if true_sequential {
        slots.into_iter().map(|s| vec![s]).collect()
    } else {
        vec![slots]
    }
}

/// What one linear's change returns: its new weight and what the caller reports of it.
pub(crate) type LinearJob<'a, T> =
    dyn Fn(&Llama, usize, LinearRole, Option<&InputStats>) -> Result<(Weight, T)> + Sync + 'a;

/// One walk's settings.
pub(crate) struct Walk<'a> {
    /// The linears to change, in model order.
    pub roles: &'a [LinearRole],
    /// Calibration windows per forward pass.
    pub batch_size: usize,
    pub true_sequential: bool,
    /// Accumulate XᵀX (else only the column norms).
    pub with_gram: bool,
}

impl Walk<'_> {
    /// Runs `job(model, layer, role, input statistics)` on every chosen linear, block by
    /// block, writing each returned weight back before the next block's inputs are computed.
    /// Returns the jobs' reports in order and the seconds spent in forward passes.
    /// `progress("block", done, total)` after each block.
    pub fn run<T: Send>(
        &self,
        model: &mut Llama,
        calib: &[Vec<u32>],
        progress: &mut dyn FnMut(&str, usize, usize),
        job: &LinearJob<'_, T>,
    ) -> Result<(Vec<T>, f64)> {
        let nl = model.layers.len();
        let mut reports = Vec::new();
        let mut forward_seconds = 0.0;
        // Inputs of the current block, one [b, t, hidden] per batch of windows.
        let tf = Instant::now();
        let rope = RopeTables::new(&model.config);
        let mut scratch = BlockScratch::default();
        let mut xs = embed_batches(model, calib, self.batch_size)?;
        forward_seconds += tf.elapsed().as_secs_f64();
        progress("block", 0, nl);
        for l in 0..nl {
            for slots in block_steps(self.roles, self.true_sequential) {
                let tf = Instant::now();
                let mut cap = LayerCapture::new(&model.config, l, &slots, self.with_gram);
                let block = BlockParams::from_llama(model, l)?;
                let mut out = Vec::new();
                for h in &xs {
                    out.resize(h.x.len(), 0.0);
                    let mut capture = |slot, x: &[f32], rows| cap.add(slot, x, rows, h.b);
                    let w = block.weights();
                    let cfg = &model.config;
                    scratch.run(cfg, &w, &rope, &h.x, h.b, h.t, &mut out, Some(&mut capture))?;
                }
                forward_seconds += tf.elapsed().as_secs_f64();
                let jobs: Vec<LinearRole> = self
                    .roles
                    .iter()
                    .copied()
                    .filter(|r| slots.contains(&InputSlot::of(*r)))
                    .collect();
                let shared: &Llama = model;
                let done: Vec<(Weight, T)> = jobs
                    .par_iter()
                    .map(|&role| job(shared, l, role, cap.stats_for(role)))
                    .collect::<Result<_>>()?;
                for (&role, (weight, report)) in jobs.iter().zip(done) {
                    set_weight(model, l, role, weight)?;
                    reports.push(report);
                }
            }
            if l + 1 < nl {
                // The next block's inputs: this block's outputs after the change.
                let tf = Instant::now();
                let block = BlockParams::from_llama(model, l)?;
                let w = block.weights();
                for h in &mut xs {
                    let mut out = vec![0f32; h.x.len()];
                    scratch.run(&model.config, &w, &rope, &h.x, h.b, h.t, &mut out, None)?;
                    h.x = out;
                }
                forward_seconds += tf.elapsed().as_secs_f64();
            }
            progress("block", l + 1, nl);
        }
        Ok((reports, forward_seconds))
    }
}
