//! What a pruning run did: per-tensor sparsity and, where calibration data was run, the
//! reconstruction error of every pruned layer on its own calibration inputs.
//!
//! The error ‖XWᵀ − XŴᵀ‖²_F over the n calibration rows X `[n, in]` of a layer is
//! tr((W−Ŵ) G (W−Ŵ)ᵀ) with the Gram G = XᵀX, so it is computed from the statistics the
//! calibration already holds, without keeping any activation. The relative error divides it
//! by ‖XWᵀ‖² = tr(W G Wᵀ).

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};

/// tr(D G Dᵀ) for D `[rows, cols]` row-major and G `[cols, cols]`.
fn quadratic_trace(d: &[f64], rows: usize, cols: usize, gram: MatRef<'_, f64>) -> f64 {
    let dm = MatRef::from_row_major_slice(d, rows, cols);
    let mut dg = Mat::<f64>::zeros(rows, cols);
    matmul(dg.as_mut(), Accum::Replace, dm, gram, 1.0, Par::rayon(0));
    let mut s = 0.0;
    for j in 0..cols {
        for i in 0..rows {
            s += dg[(i, j)] * d[i * cols + j];
        }
    }
    s
}

fn check(len: usize, rows: usize, cols: usize, gram: MatRef<'_, f64>) -> Result<()> {
    if len != rows * cols || gram.nrows() != cols || gram.ncols() != cols {
        return Err(Error::invalid(format!(
            "reconstruction error: weight has {len} entries and G is {}x{}, expected {rows} x {cols} and {cols}x{cols}",
            gram.nrows(),
            gram.ncols()
        )));
    }
    Ok(())
}

/// ‖XWᵀ − XŴᵀ‖² = tr((W−Ŵ) G (W−Ŵ)ᵀ) for `w` and `w_new` `[rows, cols]` row-major and the
/// Gram `gram` = XᵀX `[cols, cols]`.
pub fn reconstruction_error(
    w: &[f32],
    w_new: &[f32],
    rows: usize,
    cols: usize,
    gram: MatRef<'_, f64>,
) -> Result<f64> {
    check(w.len(), rows, cols, gram)?;
    check(w_new.len(), rows, cols, gram)?;
    let d: Vec<f64> = w
        .iter()
        .zip(w_new)
        .map(|(&a, &b)| a as f64 - b as f64)
        .collect();
    Ok(quadratic_trace(&d, rows, cols, gram))
}

/// ‖XWᵀ‖² = tr(W G Wᵀ) for `w` `[rows, cols]` and `gram` = XᵀX `[cols, cols]`.
pub fn output_energy(w: &[f32], rows: usize, cols: usize, gram: MatRef<'_, f64>) -> Result<f64> {
    check(w.len(), rows, cols, gram)?;
    let d: Vec<f64> = w.iter().map(|&a| a as f64).collect();
    Ok(quadratic_trace(&d, rows, cols, gram))
}

/// One pruned tensor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TensorReport {
    /// Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    pub layer: usize,
    /// Short role name (`q`, `k`, ..., `down`).
    pub role: String,
    /// `[out, in]`
    pub shape: [usize; 2],
    /// Entries that are zero after pruning.
    pub zeros: usize,
    /// zeros / (out · in).
    pub sparsity: f64,
    /// ‖XWᵀ − XŴᵀ‖² over this layer's calibration inputs (None without calibration data or
    /// with error measurement off).
    pub recon_error: Option<f64>,
    /// recon_error / ‖XWᵀ‖².
    pub rel_error: Option<f64>,
    /// Mean squared norm of this layer's calibration input rows, tr(XᵀX)/n: shows what the
    /// layer saw (inputs of block i come from the already pruned blocks before it).
    pub input_sq_norm: Option<f64>,
    /// Calibration rows (tokens) seen by this layer.
    pub tokens: usize,
    /// Seconds spent choosing the mask and updating the weights of this tensor.
    pub seconds: f64,
}

/// A whole pruning run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PruneReport {
    /// `magnitude`, `magnitude-global`, `wanda`, `sparsegpt`, `obd`, `obd-global`,
    /// `obd-layerwise`.
    pub method: String,
    /// `unstructured`, `2:4`, ...
    pub pattern: String,
    /// The sparsity asked for (for N:M, the one the pattern implies).
    pub target_sparsity: f64,
    /// Roles pruned, short names.
    pub roles: Vec<String>,
    pub calib_windows: usize,
    pub calib_tokens: usize,
    /// Pruned tensors in model order (layer, then q, k, v, o, gate, up, down).
    pub tensors: Vec<TensorReport>,
    /// Wall time of the whole run.
    pub seconds: f64,
    /// Of which: running calibration windows through the blocks (capture and propagation
    /// passes, statistics included).
    pub forward_seconds: f64,
}

impl PruneReport {
    /// Zeros over entries across every pruned tensor.
    pub fn overall_sparsity(&self) -> f64 {
        let zeros: usize = self.tensors.iter().map(|t| t.zeros).sum();
        let total: usize = self.tensors.iter().map(|t| t.shape[0] * t.shape[1]).sum();
        if total == 0 {
            0.0
        } else {
            zeros as f64 / total as f64
        }
    }

    /// The report of tensor `name`, if pruned.
    pub fn tensor(&self, name: &str) -> Option<&TensorReport> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Sum of the reconstruction errors of all tensors (None if any is missing).
    pub fn total_recon_error(&self) -> Option<f64> {
        self.tensors.iter().map(|t| t.recon_error).sum()
    }

    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gram::gram_f64;

    #[test]
    fn error_from_gram_equals_error_from_activations() {
        let (n, rows, cols) = (9, 3, 4);
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 37) % 11) as f32 - 5.0)
            .collect();
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 13) % 7) as f32 / 3.0 - 1.0)
            .collect();
        let mut wn = w.clone();
        wn[1] = 0.0;
        wn[6] = 0.0;
        let g = gram_f64(&x, n, cols).unwrap();
        let direct: f64 = (0..n)
            .flat_map(|t| (0..rows).map(move |r| (t, r)))
            .map(|(t, r)| {
                let y: f64 = (0..cols)
                    .map(|j| x[t * cols + j] as f64 * (w[r * cols + j] - wn[r * cols + j]) as f64)
                    .sum();
                y * y
            })
            .sum();
        let e = reconstruction_error(&w, &wn, rows, cols, g.as_ref()).unwrap();
        assert!(
            (e - direct).abs() < 1e-9 * direct.max(1.0),
            "{e} vs {direct}"
        );
        assert!(output_energy(&w, rows, cols, g.as_ref()).unwrap() > e);
    }
}
