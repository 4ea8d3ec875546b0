//! Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs").
//!
//! Score |W_ij| · ‖X_j‖₂, where ‖X_j‖₂ is the norm of input feature j over all calibration
//! tokens; scores are compared within each output row (unstructured: `int(in · sparsity)`
//! pruned per row) or within each N:M group. No weight is updated. Taking the layer-wise
//! Hessian 2XXᵀ as OBD's Hessian gives the saliency ‖X_j‖²·w², whose order within a row is
//! Wanda's (see [`crate::obd`]).

use crate::pattern::Pattern;
use crate::select::{select_mask, Group};
use slm_core::{Error, Result};

/// Wanda scores |W_ij| · sqrt(col_sq_norms\[j\]) for `w` `[rows, cols]` row-major and
/// `col_sq_norms` `[cols]` = ‖X_j‖² (the diagonal of XᵀX).
pub fn wanda_scores(w: &[f32], rows: usize, cols: usize, col_sq_norms: &[f64]) -> Result<Vec<f64>> {
    if w.len() != rows * cols || col_sq_norms.len() != cols {
        return Err(Error::invalid(format!(
            "wanda: weight has {} entries and norms {}, expected {rows} x {cols} and {cols}",
            w.len(),
            col_sq_norms.len()
        )));
    }
    let norms: Vec<f64> = col_sq_norms.iter().map(|&s| s.max(0.0).sqrt()).collect();
    let mut scores = Vec::with_capacity(rows * cols);
    if cols > 0 {
        for row in w.chunks_exact(cols) {
            scores.extend(row.iter().zip(&norms).map(|(&x, &n)| (x as f64).abs() * n));
        }
    }
    Ok(scores)
}

/// The Wanda mask of `w` `[rows, cols]` given ‖X_j‖² `[cols]`: per output row for an
/// unstructured pattern, per N:M group otherwise. `true` = pruned.
pub fn wanda_mask(
    w: &[f32],
    rows: usize,
    cols: usize,
    col_sq_norms: &[f64],
    pattern: Pattern,
    sparsity: f64,
) -> Result<Vec<bool>> {
    let scores = wanda_scores(w, rows, cols, col_sq_norms)?;
    select_mask(&scores, rows, cols, pattern, sparsity, Group::Row)
}
