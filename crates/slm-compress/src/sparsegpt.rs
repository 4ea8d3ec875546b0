//! SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
//! Pruned in One-Shot"): prune a layer column by column and update the remaining weights so
//! that ‖WX − ŴX‖² stays small (Optimal Brain Surgeon with a shared row Hessian).
//!
//! A transcription of the official `sparsegpt.py` `fasterprune` (without quantisation), in
//! f64, given H = 2/n · Σ xxᵀ as the official `add_batch` accumulates it (n = number of
//! calibration sequences; [`crate::gram::InputStats::sparsegpt_hessian`]). Every step is
//! invariant to the scale of H except the dead-input fix, which sets H_ii = 1 and so shifts
//! the dampening by a scale-dependent amount: pass H at this scale to reproduce the
//! reference exactly.
//!
//! 1.–3. dead inputs, dampening and U = the upper Cholesky factor of H⁻¹, as [`crate::obs`]
//!    prepares them (shared with GPTQ);
//! 4. columns in blocks of `block_size`; in each block
//!    * unstructured: the mask is chosen once for the block over all rows, from
//!      w²/U_cc² with the threshold `sort(tmp)[int(numel · s)]` and `tmp <= thresh`, so, as in
//!      the reference, `int(numel · s) + 1` weights of each block go (more on ties); at
//!      sparsity 0 we prune nothing, where the reference would still prune one per block;
//!    * N:M: at the start of each group of `m` columns inside the block, the `m − n` smallest
//!      w²/U_cc² of the group in each row (so `block_size` must be a multiple of `m`);
//!    * column by column: q = w with the mask applied, err = (w − q)/U_cc, and the block's
//!      later columns get W[:, j] −= err · U_cj (OBS update);
//! 5. after each block, the lazy update W[:, after] −= Err · U[block, after] (one matrix
//!    product).
//!
//! Shapes: W `[rows = out, cols = in]` (row-major in and out, column-major inside so that
//! column updates are contiguous), H and U `[cols, cols]`.

use crate::obs::ObsLayer;
use crate::pattern::Pattern;
use faer::MatRef;
use slm_core::{Error, Result};

/// What [`sparsegpt_prune`] returns.
#[derive(Debug, Clone)]
pub struct SparseGptOutput {
    /// The pruned and updated weight `[rows, cols]` row-major; pruned entries are exactly 0.
    pub weight: Vec<f32>,
    /// `[rows, cols]` row-major, `true` = pruned.
    pub mask: Vec<bool>,
    /// The official code's `Losses` summed over rows: Σ ½(w − q)²/U_cc², the OBS estimate of
    /// the error added (in units of the H passed).
    pub loss: f64,
}

/// The settings of one SparseGPT run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparseGptOptions {
    pub pattern: Pattern,
    /// Fraction pruned for an unstructured pattern (ignored for N:M).
    pub sparsity: f64,
    /// Columns per lazy block (128 in the paper).
    pub block_size: usize,
    /// Relative dampening: H += damp · mean(diag H) · I (0.01 in the paper).
    pub damp: f64,
}

impl Default for SparseGptOptions {
    fn default() -> Self {
        Self {
            pattern: Pattern::Unstructured,
            sparsity: 0.5,
            block_size: 128,
            damp: 0.01,
        }
    }
}

/// Prunes `w` `[rows, cols]` with SparseGPT given the Hessian `hessian` `[cols, cols]`
/// (2/n · XᵀX; see the module doc on its scale).
pub fn sparsegpt_prune(
    w: &[f32],
    rows: usize,
    cols: usize,
    hessian: MatRef<'_, f64>,
    opts: &SparseGptOptions,
) -> Result<SparseGptOutput> {
    let SparseGptOptions {
        pattern,
        sparsity,
        block_size,
        damp,
    } = *opts;
    if !(0.0..1.0).contains(&sparsity) {
        return Err(Error::invalid(format!(
            "sparsity {sparsity} is outside [0, 1)"
        )));
    }
    if block_size == 0 {
        return Err(Error::invalid(format!(
            "sparsegpt: block size {block_size} must be ≥ 1"
        )));
    }
    pattern.validate()?;
    pattern.check_width(cols, "the tensor")?;
    if let Pattern::NM { m, .. } = pattern {
        if block_size % m != 0 {
            return Err(Error::invalid(format!(
                "sparsegpt: block size {block_size} must be a multiple of {m} for pattern {pattern}"
            )));
        }
    }

    let mut layer = ObsLayer::new(w, rows, cols, hessian, damp, "sparsegpt")?;

    let mut mask = vec![false; rows * cols]; // row-major output
    let mut loss = 0.0f64;
    // Scratch, reused across blocks: the block's mask and scores, column-major.
    let mut mask1 = vec![false; rows * block_size];
    let mut tmp: Vec<f64> = Vec::with_capacity(rows * block_size);
    let mut idx: Vec<usize> = Vec::new();

    layer.walk(block_size, |layer, i1, w1, err1| {
        let count = w1.len() / rows;
        let mask1 = &mut mask1[..rows * count];
        mask1.fill(false);
        if pattern == Pattern::Unstructured && sparsity > 0.0 {
            tmp.clear();
            for c in 0..count {
                let dc = layer.diag(i1 + c);
                tmp.extend(
                    w1[c * rows..(c + 1) * rows]
                        .iter()
                        .map(|&x| x * x / (dc * dc)),
                );
            }
            let k = (tmp.len() as f64 * sparsity) as usize;
            if k < tmp.len() {
                let mut sorted = tmp.clone();
                let (_, kth, _) = sorted.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
                let thresh = *kth;
                for (m, &t) in mask1.iter_mut().zip(tmp.iter()) {
                    *m = t <= thresh;
                }
            }
        }
        for i in 0..count {
            if let Pattern::NM { n, m } = pattern {
                if i % m == 0 {
                    let g = m.min(count - i);
                    let prune = (m - n).min(g);
                    for r in 0..rows {
                        tmp.clear();
                        for j in 0..g {
                            let dj = layer.diag(i1 + i + j);
                            let x = w1[(i + j) * rows + r];
                            tmp.push(x * x / (dj * dj));
                        }
                        idx.clear();
                        idx.extend(0..g);
                        idx.sort_by(|&a, &b| tmp[a].total_cmp(&tmp[b]).then(a.cmp(&b)));
                        for &j in &idx[..prune] {
                            mask1[(i + j) * rows + r] = true;
                        }
                    }
                }
            }
            // q = w masked: pruned weights become 0, the others stay (error 0).
            let m = &mask1[i * rows..(i + 1) * rows];
            loss += layer.replace_column(i1, i, w1, err1, |r, x| if m[r] { 0.0 } else { x });
        }
        for c in 0..count {
            for r in 0..rows {
                if mask1[c * rows + r] {
                    mask[r * cols + i1 + c] = true;
                }
            }
        }
        Ok(())
    })?;

    let mut out = layer.row_major();
    for (x, &m) in out.iter_mut().zip(&mask) {
        if m {
            *x = 0.0;
        }
    }
    Ok(SparseGptOutput {
        weight: out,
        mask,
        loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    fn opts(pattern: Pattern, sparsity: f64, damp: f64) -> SparseGptOptions {
        SparseGptOptions {
            pattern,
            sparsity,
            block_size: 4,
            damp,
        }
    }

    #[test]
    fn sparsity_zero_changes_nothing_but_dead_columns() {
        let w: Vec<f32> = (0..16).map(|i| i as f32 / 7.0 - 1.0).collect();
        // [4, 4], input 2 dead.
        let mut h = Mat::<f64>::identity(4, 4);
        h[(2, 2)] = 0.0;
        h[(0, 1)] = 0.3;
        h[(1, 0)] = 0.3;
        let out = sparsegpt_prune(
            &w,
            4,
            4,
            h.as_ref(),
            &opts(Pattern::Unstructured, 0.0, 0.01),
        )
        .unwrap();
        assert!(out.mask.iter().all(|&m| !m));
        for (i, (&a, &b)) in out.weight.iter().zip(&w).enumerate() {
            assert_eq!(a, if i % 4 == 2 { 0.0 } else { b });
        }
        assert_eq!(out.loss, 0.0);
    }

    #[test]
    fn rejects_what_cannot_work() {
        let w = vec![1.0f32; 8];
        let h = Mat::<f64>::from_fn(4, 4, |i, j| if i == j { 1.0 } else { 2.0 });
        let e = sparsegpt_prune(&w, 2, 4, h.as_ref(), &opts(Pattern::Unstructured, 0.5, 0.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("positive definite"), "{e}");
        let id = Mat::<f64>::identity(4, 4);
        let mut o = opts(Pattern::NM { n: 2, m: 4 }, 0.0, 0.01);
        o.block_size = 6;
        assert!(sparsegpt_prune(&w, 2, 4, id.as_ref(), &o).is_err());
        assert!(sparsegpt_prune(
            &w,
            2,
            3,
            id.as_ref(),
            &opts(Pattern::Unstructured, 0.5, 0.01)
        )
        .is_err());
        assert!(sparsegpt_prune(
            &w,
            2,
            4,
            id.as_ref(),
            &opts(Pattern::Unstructured, 1.0, 0.01)
        )
        .is_err());
    }

    #[test]
    fn identity_hessian_is_magnitude_pruning() {
        // With H = I there is nothing to compensate: the kept weights stay, the smallest go.
        let w = [0.5f32, -0.1, 0.2, -0.9, 0.05, 0.3, -0.7, 0.4];
        let id = Mat::<f64>::identity(4, 4);
        let out = sparsegpt_prune(
            &w,
            2,
            4,
            id.as_ref(),
            &opts(Pattern::NM { n: 2, m: 4 }, 0.0, 0.0),
        )
        .unwrap();
        assert_eq!(out.weight, [0.5, 0.0, 0.0, -0.9, 0.0, 0.0, -0.7, 0.4]);
    }
}
