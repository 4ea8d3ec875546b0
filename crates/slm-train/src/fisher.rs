//! Gradients of the training loss over calibration batches, for Optimal Brain Damage.
//!
//! LeCun's OBD ranks weights by ½·h_kk·w_k²; with the empirical Fisher the diagonal h_kk is
//! the mean of squared loss gradients. This module runs the fast engine over calibration
//! windows and hands each batch's gradient of every block linear weight to a callback, which
//! accumulates what it needs (slm-compress's `FisherDiag` squares and averages them).

use crate::engine::FastModel;
use slm_core::{Error, LinearRole, ParamRole, Result};
use slm_model::Llama;

/// Runs `windows` (token ids; inputs are `w[..n-1]`, targets `w[1..]`) in batches of `batch`
/// through `model` and calls `on_grad(layer, role, grad [out·in])` for every block linear
/// weight after each batch. `progress(done, total)` after each batch.
pub fn for_each_batch_gradient(
    model: &Llama,
    windows: &[Vec<u32>],
    batch: usize,
    on_grad: &mut dyn FnMut(usize, LinearRole, &[f32]) -> Result<()>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let Some(first) = windows.first() else {
        return Err(Error::invalid(
            "OBD needs calibration windows to compute gradients",
        ));
    };
    let seq = first.len().saturating_sub(1);
    if seq == 0 || windows.iter().any(|w| w.len() != seq + 1) {
        return Err(Error::invalid(
            "calibration windows must all have the same length ≥ 2",
        ));
    }
    let mut fast = FastModel::from_llama(model)?;
    let batches: Vec<&[Vec<u32>]> = windows.chunks(batch.max(1)).collect();
    for (i, chunk) in batches.iter().enumerate() {
        let inputs: Vec<u32> = chunk
            .iter()
            .flat_map(|w| w[..seq].iter().copied())
            .collect();
        let targets: Vec<u32> = chunk.iter().flat_map(|w| w[1..].iter().copied()).collect();
        fast.zero_grad();
        fast.forward_backward(&inputs, &targets, chunk.len(), seq)?;
        let names: Vec<(String, usize, LinearRole)> = fast
            .params()
            .iter()
            .filter_map(|p| match p.role() {
                Some(ParamRole::Linear { layer, role }) => Some((p.name.clone(), layer, role)),
                _ => None,
            })
            .collect();
        for (name, layer, role) in names {
            let g = fast
                .grad(&name)
                .ok_or_else(|| Error::msg(format!("no gradient for {name}")))?;
            on_grad(layer, role, g)?;
        }
        progress(i + 1, batches.len());
    }
    Ok(())
}
