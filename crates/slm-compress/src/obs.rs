//! The Optimal Brain Surgeon machinery that SparseGPT ([`crate::sparsegpt`]) and GPTQ
//! ([`crate::gptq`]) share: both walk a layer's columns in order, replace each column by a
//! pruned or rounded one, and spread the error over the columns not yet visited through the
//! upper Cholesky factor U of H⁻¹ (UᵀU = H⁻¹).
//!
//! What lives here, as the official `sparsegpt.py` / `gptq.py` do it (in f64):
//! 1. the weight in column-major order (`wc[c · rows + r] = W[r, c]`), so a column is contiguous;
//! 2. dead inputs (H_ii = 0): H_ii = 1 and W[:, i] = 0;
//! 3. dampening: H += damp · mean(diag H) · I;
//! 4. U = the upper Cholesky factor of H⁻¹ (faer: Cholesky of H, inverse, Cholesky again);
//! 5. the in-block update W[:, j] −= err · U[i, j] for a block's later columns, and the lazy
//!    update W[:, after] −= Err · U[block, after] once a block is done (one matrix product).
//!
//! Shapes: W `[rows = out, cols = in]`, H and U `[cols, cols]`.

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use slm_core::{Error, Result};

/// A layer ready for the column walk: its weight column-major in f64 (dead inputs zeroed)
/// and the factor U.
pub(crate) struct ObsLayer {
    /// `[cols][rows]`: `wc[c · rows + r] = W[r, c]`.
    pub wc: Vec<f64>,
    pub rows: usize,
    pub cols: usize,
    /// Upper triangular `[cols, cols]` with UᵀU = (H + damp)⁻¹.
    pub u: Mat<f64>,
}

impl ObsLayer {
    /// Checks the shapes and `damp`, converts `w` `[rows, cols]` (row-major) and prepares U
    /// from `hessian` (steps 1–4 of the module doc). `who` prefixes the errors.
    pub fn new(
        w: &[f32],
        rows: usize,
        cols: usize,
        hessian: MatRef<'_, f64>,
        damp: f64,
        who: &str,
    ) -> Result<Self> {
        if w.len() != rows * cols || hessian.nrows() != cols || hessian.ncols() != cols {
            return Err(Error::invalid(format!(
                "{who}: weight has {} entries and H is {}x{}, expected {rows} x {cols} and {cols}x{cols}",
                w.len(),
                hessian.nrows(),
                hessian.ncols()
            )));
        }
        if !damp.is_finite() || damp < 0.0 {
            return Err(Error::invalid(format!("{who}: damp {damp} must be ≥ 0")));
        }
        let mut wc = vec![0.0f64; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                wc[c * rows + r] = w[r * cols + c] as f64;
            }
        }
        let mut h = hessian.to_owned();
        for i in 0..cols {
            if h[(i, i)] == 0.0 {
                h[(i, i)] = 1.0;
                wc[i * rows..(i + 1) * rows].fill(0.0);
            }
        }
        let mean_diag = (0..cols).map(|i| h[(i, i)]).sum::<f64>() / cols.max(1) as f64;
        let d = damp * mean_diag;
        for i in 0..cols {
            h[(i, i)] += d;
        }
        let u = inverse_upper_cholesky(h, who)?;
        Ok(Self { wc, rows, cols, u })
    }

    /// U's diagonal entry for column `c`.
    pub fn diag(&self, c: usize) -> f64 {
        self.u[(c, c)]
    }

    /// The column walk: the columns in lazy blocks of `block_size`; for each block `i1..i2`,
    /// `block(layer, i1, w1, err1)` gets the block's current columns `w1` and zeroed errors
    /// `err1` (both `[i2 − i1][rows]`) and replaces the columns one by one
    /// ([`ObsLayer::replace_column`]); then the block is written back and the lazy update
    /// carries its errors to the columns after it.
    pub fn walk(
        &mut self,
        block_size: usize,
        mut block: impl FnMut(&Self, usize, &mut [f64], &mut [f64]) -> Result<()>,
    ) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        let block_size = block_size.max(1);
        // Scratch, reused across blocks, column-major.
        let mut w1 = vec![0.0f64; rows * block_size.min(cols)];
        let mut err1 = vec![0.0f64; rows * block_size.min(cols)];
        let mut i1 = 0;
        while i1 < cols {
            let i2 = (i1 + block_size).min(cols);
            let w1 = &mut w1[..rows * (i2 - i1)];
            let err1 = &mut err1[..rows * (i2 - i1)];
            w1.copy_from_slice(&self.wc[i1 * rows..i2 * rows]);
            err1.fill(0.0);
            block(self, i1, w1, err1)?;
            self.wc[i1 * rows..i2 * rows].copy_from_slice(w1);
            self.lazy_update(i1, i2, err1);
            i1 = i2;
        }
        Ok(())
    }

    /// Replaces column `i` of a block starting at column `i1` (`w1`, `err1` as [`ObsLayer::walk`]
    /// passes them): each row's value x becomes `q(row, x)`, its scaled error (x − q)/U_cc goes
    /// to `err1`, and the block's later columns get the OBS update. Returns Σ ½(x − q)²/U_cc².
    pub fn replace_column(
        &self,
        i1: usize,
        i: usize,
        w1: &mut [f64],
        err1: &mut [f64],
        mut q: impl FnMut(usize, f64) -> f64,
    ) -> f64 {
        let rows = self.rows;
        let d = self.diag(i1 + i);
        let (done, later) = w1.split_at_mut((i + 1) * rows);
        let col = &mut done[i * rows..];
        let e = &mut err1[i * rows..(i + 1) * rows];
        let mut loss = 0.0;
        for (r, (x, e)) in col.iter_mut().zip(e.iter_mut()).enumerate() {
            let new = q(r, *x);
            loss += 0.5 * (*x - new) * (*x - new) / (d * d);
            *e = (*x - new) / d;
            *x = new;
        }
        self.update_later(i1 + i, e, later);
        loss
    }

    /// In-block OBS update after column `col` (absolute index) produced the scaled errors
    /// `err` `[rows]`: every later column of the block held in `later` (`[count][rows]`,
    /// column-major, starting at column `col + 1`) gets `−= err · U[col, j]`.
    fn update_later(&self, col: usize, err: &[f64], later: &mut [f64]) {
        let rows = self.rows;
        for (jj, cj) in later.chunks_exact_mut(rows).enumerate() {
            let uij = self.u[(col, col + 1 + jj)];
            if uij != 0.0 {
                for (x, &e) in cj.iter_mut().zip(err) {
                    *x -= e * uij;
                }
            }
        }
    }

    /// The lazy update once columns `i1..i2` are done with scaled errors `err`
    /// `[i2 − i1][rows]`: W[:, i2..] −= Err · U[i1..i2, i2..].
    fn lazy_update(&mut self, i1: usize, i2: usize, err: &[f64]) {
        let (rows, cols) = (self.rows, self.cols);
        if i2 >= cols {
            return;
        }
        let (_, after) = self.wc.split_at_mut(i2 * rows);
        let dst = MatMut::from_column_major_slice_mut(after, rows, cols - i2);
        let lhs = MatRef::from_column_major_slice(err, rows, i2 - i1);
        let rhs = self.u.as_ref().submatrix(i1, i2, i2 - i1, cols - i2);
        matmul(dst, Accum::Add, lhs, rhs, -1.0, Par::rayon(0));
    }

    /// The weight back in row-major f32 `[rows, cols]`.
    pub fn row_major(&self) -> Vec<f32> {
        let (rows, cols) = (self.rows, self.cols);
        let mut out = vec![0.0f32; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                out[r * cols + c] = self.wc[c * rows + r] as f32;
            }
        }
        out
    }
}

/// The upper triangular U with UᵀU = H⁻¹ (torch: `cholesky(cholesky_inverse(cholesky(H)),
/// upper=True)`).
fn inverse_upper_cholesky(h: Mat<f64>, who: &str) -> Result<Mat<f64>> {
    let not_pd = |what: &str| {
        Error::msg(format!(
            "{who}: {what} is not positive definite; raise the dampening (damp)"
        ))
    };
    let hinv = h
        .llt(Side::Lower)
        .map_err(|_| not_pd("H + damp·I"))?
        .inverse();
    let l = hinv.llt(Side::Lower).map_err(|_| not_pd("H⁻¹"))?;
    Ok(l.L().transpose().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u_factors_the_inverse_and_dead_inputs_are_cleared() {
        let h = Mat::<f64>::from_fn(3, 3, |i, j| match (i, j) {
            (2, _) | (_, 2) => 0.0,
            _ if i == j => 2.0,
            _ => 0.5,
        });
        let w = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // [2, 3]
        let l = ObsLayer::new(&w, 2, 3, h.as_ref(), 0.0, "t").unwrap();
        assert_eq!(l.row_major(), [1.0, 2.0, 0.0, 4.0, 5.0, 0.0]);
        // UᵀU · H' = I with H' = H and H'_22 = 1.
        let mut hp = h.clone();
        hp[(2, 2)] = 1.0;
        let p = l.u.transpose() * &l.u * &hp;
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((p[(i, j)] - want).abs() < 1e-12, "{i},{j}: {}", p[(i, j)]);
            }
            for j in 0..i {
                assert_eq!(l.u[(i, j)], 0.0);
            }
        }
    }
}
