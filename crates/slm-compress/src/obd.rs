//! Optimal Brain Damage (LeCun, Denker & Solla 1990): prune the weights whose removal raises
//! the loss least under a diagonal second-order model, saliency s_k = ½·h_kk·w_k².
//!
//! Two Hessian diagonals are offered:
//!
//! * **Fisher** ([`obd_saliency`]): h_kk is the diagonal of the empirical Fisher of the real
//!   training loss, E(g_k²), the mean over calibration batches of the squared gradient of the
//!   loss with respect to w_k. This is LeCun's method on the model's own objective. The
//!   squared gradients come from whoever can compute them (the trainer) through
//!   [`FisherDiag`]; this crate never runs a backward pass.
//! * **Layer-wise** ([`obd_layerwise_saliency`]): the Hessian of the layer's reconstruction
//!   error ‖WX − ŴX‖² with respect to one row of W is 2XXᵀ, whose diagonal is 2‖X_j‖², so
//!   s_ij = ‖X_j‖²·w_ij². Within an output row this orders weights exactly as Wanda's
//!   |w_ij|·‖X_j‖ does; OBD compares saliencies across the whole tensor instead (per-row
//!   comparison *is* Wanda).
//!
//! Saliencies are compared within the whole tensor ([`obd_mask`]), across every selected
//! tensor (global, through [`crate::select::global_masks`]) or within N:M groups.

use crate::pattern::Pattern;
use crate::select::{select_mask, Group};
use candle_core::{DType, Tensor};
use slm_core::{Error, LinearRole, Result};
use std::collections::BTreeMap;
use std::fmt;

/// The diagonal of the empirical Fisher for block linear weights, accumulated batch by batch:
/// for each (layer, role), the running sum of g² `[out · in]` (row-major) and the number of
/// batches added. [`FisherDiag::get`] returns the mean.
#[derive(Clone, Default)]
pub struct FisherDiag {
    entries: BTreeMap<(usize, LinearRole), (Vec<f64>, usize)>,
}

impl fmt::Debug for FisherDiag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FisherDiag")
            .field("tensors", &self.entries.len())
            .finish()
    }
}

impl FisherDiag {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one batch's gradient of the training loss for the weight of (`layer`, `role`),
    /// `grad` `[out, in]` in any float dtype: accumulates g².
    pub fn add_grad(&mut self, layer: usize, role: LinearRole, grad: &Tensor) -> Result<()> {
        let g = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        self.add_grad_slice(layer, role, &g)
    }

    /// [`FisherDiag::add_grad`] on a plain row-major `[out · in]` gradient.
    pub fn add_grad_slice(&mut self, layer: usize, role: LinearRole, grad: &[f32]) -> Result<()> {
        let (sum, batches) = self
            .entries
            .entry((layer, role))
            .or_insert_with(|| (vec![0.0; grad.len()], 0));
        if sum.len() != grad.len() {
            return Err(Error::invalid(format!(
                "fisher for {}: gradient has {} entries, earlier batches had {}",
                role.hf_prefix(layer),
                grad.len(),
                sum.len()
            )));
        }
        for (s, &g) in sum.iter_mut().zip(grad) {
            *s += (g as f64) * (g as f64);
        }
        *batches += 1;
        Ok(())
    }

    /// Sets the Fisher diagonal of (`layer`, `role`) directly (already averaged).
    pub fn insert(&mut self, layer: usize, role: LinearRole, fisher: Vec<f32>) {
        let sum = fisher.into_iter().map(f64::from).collect();
        self.entries.insert((layer, role), (sum, 1));
    }

    /// The mean of g² over the batches added, `[out · in]` row-major.
    pub fn get(&self, layer: usize, role: LinearRole) -> Option<Vec<f32>> {
        self.entries.get(&(layer, role)).map(|(sum, batches)| {
            let n = (*batches).max(1) as f64;
            sum.iter().map(|&s| (s / n) as f32).collect()
        })
    }

    /// The number of batches accumulated for (`layer`, `role`), 0 if none.
    pub fn batches(&self, layer: usize, role: LinearRole) -> usize {
        self.entries.get(&(layer, role)).map_or(0, |e| e.1)
    }

    /// The number of weight entries held for (`layer`, `role`), if any.
    pub fn len_of(&self, layer: usize, role: LinearRole) -> Option<usize> {
        self.entries.get(&(layer, role)).map(|e| e.0.len())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// OBD saliency ½·F_k·w_k² for each weight of `w` given the Fisher diagonal `fisher`, both
/// `[rows · cols]` row-major.
pub fn obd_saliency(w: &[f32], fisher: &[f32]) -> Result<Vec<f64>> {
    if w.len() != fisher.len() {
        return Err(Error::invalid(format!(
            "obd: weight has {} entries, fisher diagonal {}",
            w.len(),
            fisher.len()
        )));
    }
    Ok(w.iter()
        .zip(fisher)
        .map(|(&x, &f)| 0.5 * f as f64 * (x as f64) * (x as f64))
        .collect())
}

/// Layer-wise OBD saliency ½·(2‖X_j‖²)·w_ij² = ‖X_j‖²·w_ij² for `w` `[rows, cols]` and
/// `col_sq_norms` `[cols]` = ‖X_j‖² (the diagonal of XᵀX).
pub fn obd_layerwise_saliency(
    w: &[f32],
    rows: usize,
    cols: usize,
    col_sq_norms: &[f64],
) -> Result<Vec<f64>> {
    if w.len() != rows * cols || col_sq_norms.len() != cols {
        return Err(Error::invalid(format!(
            "obd: weight has {} entries and norms {}, expected {rows} x {cols} and {cols}",
            w.len(),
            col_sq_norms.len()
        )));
    }
    let mut s = Vec::with_capacity(rows * cols);
    if cols > 0 {
        for row in w.chunks_exact(cols) {
            s.extend(
                row.iter()
                    .zip(col_sq_norms)
                    .map(|(&x, &h)| h * (x as f64) * (x as f64)),
            );
        }
    }
    Ok(s)
}

/// The per-tensor OBD mask from `saliency` `[rows, cols]`: the `int(rows·cols·sparsity)`
/// smallest (unstructured) or the `m − n` smallest of each N:M group. `true` = pruned.
pub fn obd_mask(
    saliency: &[f64],
    rows: usize,
    cols: usize,
    pattern: Pattern,
    sparsity: f64,
) -> Result<Vec<bool>> {
    select_mask(saliency, rows, cols, pattern, sparsity, Group::Tensor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fisher_is_the_mean_of_squared_gradients() {
        let mut f = FisherDiag::new();
        f.add_grad_slice(0, LinearRole::Q, &[1.0, -2.0]).unwrap();
        f.add_grad_slice(0, LinearRole::Q, &[3.0, 0.0]).unwrap();
        assert_eq!(f.get(0, LinearRole::Q).unwrap(), vec![5.0, 2.0]);
        assert_eq!(f.batches(0, LinearRole::Q), 2);
        assert!(f.add_grad_slice(0, LinearRole::Q, &[1.0]).is_err());
        assert!(f.get(1, LinearRole::Q).is_none());
        let s = obd_saliency(&[2.0, 1.0], &f.get(0, LinearRole::Q).unwrap()).unwrap();
        assert_eq!(s, vec![10.0, 1.0]);
    }

    #[test]
    fn layerwise_orders_rows_like_wanda() {
        let w = [0.3f32, -0.1, 0.2, 0.5, 0.05, -0.4];
        let sq = [4.0, 25.0, 1.0];
        let s = obd_layerwise_saliency(&w, 2, 3, &sq).unwrap();
        let wa = crate::wanda::wanda_scores(&w, 2, 3, &sq).unwrap();
        for (a, b) in s.iter().zip(&wa) {
            assert!((a - b * b).abs() < 1e-12);
        }
    }
}
