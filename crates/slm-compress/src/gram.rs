//! Input statistics of one linear layer, accumulated over calibration tokens in bounded
//! memory: the Gram matrix G = XᵀX `[in, in]` (SparseGPT's Hessian is 2G/n; the
//! reconstruction error of any pruned Ŵ is tr((W−Ŵ) G (W−Ŵ)ᵀ)) and its diagonal, the
//! squared column norms ‖X_j‖² (Wanda, layer-wise OBD).
//!
//! Each call adds one batch of rows: the batch's Gram is one f32 matrix product over the
//! lower triangle (faer; half the work of a full product) added into an f64 accumulator, so
//! no activation is kept past the call. Without a Gram only the column norms are summed.

use candle_core::{DType, Tensor};
use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};
use slm_core::{Error, Result};

/// Statistics of the inputs X `[tokens, width]` of a linear layer.
#[derive(Debug, Clone)]
pub struct InputStats {
    width: usize,
    /// Σ xxᵀ in f64, `[width, width]`; only the lower triangle is summed until
    /// [`InputStats::gram`] mirrors it.
    gram: Option<Mat<f64>>,
    /// Σ x_j² `[width]`.
    col_sq: Vec<f64>,
    tokens: usize,
    /// Calibration samples as the official SparseGPT code counts them: the batch size of
    /// each `[b, t, in]` input, 1 for a 2-D input.
    samples: usize,
    /// f32 scratch `[width, width]` for one batch's product.
    scratch: Option<Mat<f32>>,
}

impl InputStats {
    /// Empty statistics for inputs of `width` features; `with_gram` also accumulates XᵀX.
    pub fn new(width: usize, with_gram: bool) -> Self {
        Self {
            width,
            gram: with_gram.then(|| Mat::zeros(width, width)),
            col_sq: vec![0.0; width],
            tokens: 0,
            samples: 0,
            scratch: None,
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// The number of input rows (tokens) seen.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The number of samples seen (see [`InputStats::add`]).
    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn has_gram(&self) -> bool {
        self.gram.is_some()
    }

    /// Adds every row of `x` `[..., width]` (any float dtype, any device). A `[b, t, width]`
    /// input counts as b samples, any other as one (as SparseGPT's `add_batch` counts).
    pub fn add(&mut self, x: &Tensor) -> Result<()> {
        let dims = x.dims();
        let width = dims.last().copied().unwrap_or(0);
        if width != self.width {
            return Err(Error::invalid(format!(
                "input statistics for width {} got a tensor of shape {dims:?}",
                self.width
            )));
        }
        let rows = x.elem_count().checked_div(width).unwrap_or(0);
        let data = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let samples = if dims.len() == 3 { dims[0] } else { 1 };
        self.add_rows(&data, rows)?;
        // add_rows counted one sample.
        self.samples += samples.saturating_sub(1);
        Ok(())
    }

    /// Adds `rows` rows of `x` `[rows, width]` row-major, as `samples` samples.
    pub fn add_rows_as(&mut self, x: &[f32], rows: usize, samples: usize) -> Result<()> {
        self.add_rows(x, rows)?;
        if rows > 0 {
            self.samples += samples.saturating_sub(1);
        }
        Ok(())
    }

    /// Adds `rows` rows of `x` `[rows, width]` row-major, as one sample.
    pub fn add_rows(&mut self, x: &[f32], rows: usize) -> Result<()> {
        let w = self.width;
        if x.len() != rows * w {
            return Err(Error::invalid(format!(
                "input statistics: {} values is not {rows} rows of width {w}",
                x.len()
            )));
        }
        if rows == 0 {
            return Ok(());
        }
        self.tokens += rows;
        self.samples += 1;
        match self.gram.as_mut() {
            Some(gram) => {
                let xm = MatRef::from_row_major_slice(x, rows, w); // [rows, w]
                let scratch = self.scratch.get_or_insert_with(|| Mat::zeros(w, w));
                // scratch_lower = Xᵀ X over this batch, f32.
                matmul(
                    scratch.as_mut(),
                    BlockStructure::TriangularLower,
                    Accum::Replace,
                    xm.transpose(),
                    BlockStructure::Rectangular,
                    xm,
                    BlockStructure::Rectangular,
                    1.0f32,
                    Par::rayon(0),
                );
                for j in 0..w {
                    for i in j..w {
                        gram[(i, j)] += scratch[(i, j)] as f64;
                    }
                    self.col_sq[j] += scratch[(j, j)] as f64;
                }
            }
            None => {
                for row in x.chunks_exact(w) {
                    for (s, &v) in self.col_sq.iter_mut().zip(row) {
                        *s += (v as f64) * (v as f64);
                    }
                }
            }
        }
        Ok(())
    }

    /// ‖X_j‖² for every input feature j, `[width]`.
    pub fn col_sq_norms(&self) -> &[f64] {
        &self.col_sq
    }

    /// The full symmetric Gram XᵀX `[width, width]`, if accumulated.
    pub fn gram(&self) -> Option<Mat<f64>> {
        self.gram.as_ref().map(|g| {
            let w = self.width;
            Mat::from_fn(w, w, |i, j| if i >= j { g[(i, j)] } else { g[(j, i)] })
        })
    }

    /// SparseGPT's Hessian H = 2/n · XᵀX with n = [`InputStats::samples`], as the official
    /// code accumulates it, if the Gram was accumulated.
    pub fn sparsegpt_hessian(&self) -> Option<Mat<f64>> {
        let scale = 2.0 / self.samples.max(1) as f64;
        self.gram().map(|g| faer::Scale(scale) * &g)
    }

    /// Mean squared norm of an input row, tr(G)/tokens (0 before any token).
    pub fn mean_sq_norm(&self) -> f64 {
        if self.tokens == 0 {
            0.0
        } else {
            self.col_sq.iter().sum::<f64>() / self.tokens as f64
        }
    }
}

/// XᵀX `[width, width]` of `x` `[rows, width]` row-major, computed in f64 (fixture-grade
/// precision; [`InputStats`] is the bounded-memory f32 path).
pub fn gram_f64(x: &[f32], rows: usize, width: usize) -> Result<Mat<f64>> {
    if x.len() != rows * width {
        return Err(Error::invalid(format!(
            "gram: {} values is not {rows} rows of width {width}",
            x.len()
        )));
    }
    let xm = Mat::from_fn(rows, width, |i, j| x[i * width + j] as f64);
    Ok(xm.transpose() * &xm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_add_up_to_the_whole() {
        let (n, w) = (37, 5);
        let x: Vec<f32> = (0..n * w)
            .map(|i| ((i * 7919) % 23) as f32 / 7.0 - 1.5)
            .collect();
        let whole = gram_f64(&x, n, w).unwrap();
        let mut s = InputStats::new(w, true);
        s.add_rows(&x[..10 * w], 10).unwrap();
        s.add_rows(&x[10 * w..], n - 10).unwrap();
        let g = s.gram().unwrap();
        let mut norms_only = InputStats::new(w, false);
        norms_only.add_rows(&x, n).unwrap();
        for i in 0..w {
            for j in 0..w {
                assert!((g[(i, j)] - whole[(i, j)]).abs() < 1e-4 * (1.0 + whole[(i, j)].abs()));
            }
            assert!((s.col_sq_norms()[i] - whole[(i, i)]).abs() < 1e-4 * whole[(i, i)]);
            assert!((norms_only.col_sq_norms()[i] - whole[(i, i)]).abs() < 1e-9 * whole[(i, i)]);
        }
        assert_eq!(s.tokens(), n);
        assert!(s.add_rows(&x[..3], 1).is_err());
    }
}
