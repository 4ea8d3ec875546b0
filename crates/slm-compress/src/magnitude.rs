//! Magnitude pruning: drop the weights with the smallest |w|.
//!
//! The baseline every other method is measured against (Han et al. 2015). It needs no
//! calibration data. Scores are compared within the whole tensor ("per layer") or, through
//! [`crate::select::global_masks`], across every selected tensor ("global"); N:M patterns
//! compare within each group of `m` consecutive inputs.

use crate::pattern::Pattern;
use crate::select::{select_mask, Group};
use slm_core::Result;

/// |w| for each weight of a row-major `[rows, cols]` matrix.
pub fn magnitude_scores(w: &[f32]) -> Vec<f64> {
    w.iter().map(|&x| (x as f64).abs()).collect()
}

/// The per-tensor magnitude mask of `w` `[rows, cols]`: the `int(rows·cols·sparsity)`
/// smallest |w| (unstructured), or the `m − n` smallest of each N:M group. `true` = pruned.
pub fn magnitude_mask(
    w: &[f32],
    rows: usize,
    cols: usize,
    pattern: Pattern,
    sparsity: f64,
) -> Result<Vec<bool>> {
    select_mask(
        &magnitude_scores(w),
        rows,
        cols,
        pattern,
        sparsity,
        Group::Tensor,
    )
}
