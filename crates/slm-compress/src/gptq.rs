//! GPTQ (Frantar, Ashkboos, Hoefler & Alistarh 2023, "GPTQ: Accurate Post-Training Quantization
//! for Generative Pre-trained Transformers"): round a layer onto ggml's 32-weight block grids
//! (Q8_0, Q4_0, Q4_1) column by column, and after each column spread its rounding error over
//! the columns not yet rounded so that ‖WX − ŴX‖² stays small. It is SparseGPT's walk
//! ([`crate::obs`]) with rounding in place of pruning.
//!
//! Following the official `gptq.py` `fasterquant` (groups, no act-order), in f64:
//! 1. H → U (upper Cholesky factor of (H + damp·mean(diag H)·I)⁻¹), dead inputs zeroed;
//! 2. columns in lazy blocks of `block_size` (a multiple of 32); at the first column of each
//!    32-column group, every row's grid is chosen from the group's *current* values (already
//!    updated by the columns before it) by ggml's round-to-nearest rule: Q8_0 d = max|w|/127,
//!    Q4_0 d = m/−8 with m the value of largest magnitude, Q4_1 d = (max − min)/15 with the
//!    minimum as zero point (d and the minimum rounded to f16 as the file stores them). The
//!    reference takes the group from its global W, whose columns inside the current lazy block
//!    lack the block's own updates; we take the updated values, which the grid then rounds;
//!    with one 128-column block per group of 32 this differs only for groups 2–4 of a block;
//! 3. each column is rounded onto its row's grid, err = (w − q)/U_cc, and the block's later
//!    columns get W[:, j] −= err · U_cj; after the block, the lazy update.
//!
//! **The extreme codes are kept.** The element that set a row's grid (the extreme of its
//! group when the group began) is given the extreme code (Q4_0: code 0 = m; Q8_0: ±127;
//! Q4_1: 0 for the minimum and 15 for the maximum) even when the updates have since moved it
//! by more than half a step; the OBS update carries that extra error on like any other. So
//! every block of the result contains its grid's extreme, and round-to-nearest applied to the
//! result (what `slm export gguf` and the decode engine do to f32 weights) finds the same grid
//! and the same codes: the GPTQ weights go into the file and the engine exactly, without a
//! separate block format (test `round_to_nearest_gives_back_the_gptq_blocks`).
//!
//! **Zeros stay zero** (Q8_0, Q4_0): a weight that is exactly 0 on input (a pruned model's) is
//! rounded to 0, which both grids hold, and counts as 0 when the grid is chosen; its update
//! error is carried on like any other, so pruning then GPTQ keeps the mask (SparseGPT's joint
//! "50% + 4-bit"). Q4_1's grid holds 0 only by chance (its zero point is the block minimum), so
//! there zeros become the grid value nearest 0, as round-to-nearest makes them.

use crate::obs::ObsLayer;
use faer::MatRef;
use half::f16;
use slm_core::{Error, Result};
use slm_kernels::quant::{BlockKind, QK};

/// What [`gptq_quantize`] returns.
#[derive(Debug, Clone)]
pub struct GptqOutput {
    /// The quantised weight `[rows, cols]` row-major, as the blocks' values (dequantised).
    pub weight: Vec<f32>,
    /// Σ ½(w − q)²/U_cc² over all weights: the OBS estimate of the error added (in units of
    /// the H passed), as the reference's `Losses`.
    pub loss: f64,
}

/// The settings of one GPTQ run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqOptions {
    pub kind: BlockKind,
    /// Columns per lazy block, a multiple of 32 (128 in the paper).
    pub block_size: usize,
    /// Relative dampening: H += damp · mean(diag H) · I (0.01 in the paper).
    pub damp: f64,
}

impl GptqOptions {
    /// The paper's settings for `kind`: blocks of 128 columns, damp 0.01.
    pub fn new(kind: BlockKind) -> Self {
        Self {
            kind,
            block_size: 128,
            damp: 0.01,
        }
    }
}

/// One row's grid for the current 32-column group.
#[derive(Debug, Clone, Copy, Default)]
struct RowGrid {
    /// Step (f16 value as f32).
    d: f32,
    /// Q4_1's zero point (f16 value as f32).
    m: f32,
    /// Column within the group given the lowest code (Q4_0: the extreme; Q8_0: the extreme,
    /// with `hi_code` its code; Q4_1: the minimum).
    lo: usize,
    /// Q4_1: column given code 15 (the maximum).
    hi: usize,
    /// Q8_0: the extreme's code, ±127.
    q8_extreme: i32,
}

fn to_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

impl RowGrid {
    /// ggml's round-to-nearest grid for one block of `g` (32 values; those held at zero
    /// already 0).
    fn choose(kind: BlockKind, g: &[f32]) -> Self {
        let mut grid = Self::default();
        match kind {
            BlockKind::Q4_0 | BlockKind::Q8_0 => {
                // The first element of largest magnitude (ggml's fold).
                let (mut j, mut m) = (0, 0f32);
                for (i, &v) in g.iter().enumerate() {
                    if v.abs() > m.abs() {
                        (j, m) = (i, v);
                    }
                }
                grid.lo = j;
                if kind == BlockKind::Q4_0 {
                    grid.d = to_f16(m / -8.0);
                } else {
                    grid.d = to_f16(m.abs() / 127.0);
                    grid.q8_extreme = if m < 0.0 { -127 } else { 127 };
                }
            }
            BlockKind::Q4_1 => {
                let (mut lo, mut hi) = (0, 0);
                for (i, &v) in g.iter().enumerate() {
                    if v < g[lo] {
                        lo = i;
                    }
                    if v > g[hi] {
                        hi = i;
                    }
                }
                grid.lo = lo;
                grid.hi = hi;
                grid.d = to_f16((g[hi] - g[lo]) / 15.0);
                grid.m = to_f16(g[lo]);
            }
        }
        grid
    }

    /// The grid value for `v`, the element in column `j` of the group, computed as the
    /// dequantiser computes it.
    fn round(&self, kind: BlockKind, j: usize, v: f32) -> f32 {
        let d = self.d;
        match kind {
            BlockKind::Q4_0 => {
                let q = if d == 0.0 {
                    8
                } else if j == self.lo {
                    0
                } else {
                    ((v / d + 8.5).floor() as i32).clamp(0, 15)
                };
                d * (q - 8) as f32
            }
            BlockKind::Q8_0 => {
                let q = if d == 0.0 {
                    0
                } else if j == self.lo {
                    self.q8_extreme
                } else {
                    ((v / d).round() as i32).clamp(-127, 127)
                };
                d * q as f32
            }
            BlockKind::Q4_1 => {
                let q = if d == 0.0 || j == self.lo {
                    0
                } else if j == self.hi {
                    15
                } else {
                    (((v - self.m) / d + 0.5).floor() as i32).clamp(0, 15)
                };
                d * q as f32 + self.m
            }
        }
    }
}

/// Quantises `w` `[rows, cols]` (cols a multiple of 32) onto `opts.kind`'s blocks with GPTQ,
/// given the Hessian `hessian` `[cols, cols]` (2/n · XᵀX, any positive scale).
pub fn gptq_quantize(
    w: &[f32],
    rows: usize,
    cols: usize,
    hessian: MatRef<'_, f64>,
    opts: &GptqOptions,
) -> Result<GptqOutput> {
    let GptqOptions {
        kind,
        block_size,
        damp,
    } = *opts;
    if !cols.is_multiple_of(QK) {
        return Err(Error::invalid(format!(
            "gptq: rows of {cols} values do not fill {QK}-value blocks"
        )));
    }
    if block_size == 0 || block_size % QK != 0 {
        return Err(Error::invalid(format!(
            "gptq: block size {block_size} must be a positive multiple of {QK}"
        )));
    }
    let mut layer = ObsLayer::new(w, rows, cols, hessian, damp, "gptq")?;
    let mut loss = 0.0f64;
    let mut grids = vec![RowGrid::default(); rows];
    let mut group = [0f32; QK];
    // Weights held at zero, column-major like the walk: [cols][rows].
    let keeps_zero = kind != BlockKind::Q4_1;
    let mut zero = vec![false; if keeps_zero { rows * cols } else { 0 }];
    if keeps_zero {
        for r in 0..rows {
            for c in 0..cols {
                zero[c * rows + r] = w[r * cols + c] == 0.0;
            }
        }
    }
    let held = |c: usize, r: usize| keeps_zero && zero[c * rows + r];

    layer.walk(block_size, |layer, i1, w1, err1| {
        for i in 0..w1.len() / rows {
            if i % QK == 0 {
                // A group begins: each row's grid from its 32 current values.
                for (r, grid) in grids.iter_mut().enumerate() {
                    for (j, g) in group.iter_mut().enumerate() {
                        *g = if held(i1 + i + j, r) {
                            0.0
                        } else {
                            w1[(i + j) * rows + r] as f32
                        };
                    }
                    *grid = RowGrid::choose(kind, &group);
                }
            }
            loss += layer.replace_column(i1, i, w1, err1, |r, x| {
                if held(i1 + i, r) {
                    0.0
                } else {
                    grids[r].round(kind, i % QK, x as f32) as f64
                }
            });
        }
        Ok(())
    })?;
    Ok(GptqOutput {
        weight: layer.row_major(),
        loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gram::gram_f64;
    use crate::report::reconstruction_error;
    use faer::Mat;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use slm_kernels::quant::QuantMatrix;

    const KINDS: [BlockKind; 3] = [BlockKind::Q8_0, BlockKind::Q4_0, BlockKind::Q4_1];

    /// A layer `[rows, cols]` and inputs `[n, cols]` with strongly correlated features (as
    /// real activations are) and a few large ones.
    fn fixture(rows: usize, cols: usize, n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng.gen_range(-1.0f32..1.0) * rng.gen_range(0.2f32..1.0))
            .collect();
        let k = 6; // latent factors
        let mix: Vec<f32> = (0..k * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut x = vec![0f32; n * cols];
        for t in 0..n {
            let z: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            for c in 0..cols {
                let big = if c % 17 == 3 { 4.0 } else { 1.0 };
                let s: f32 = (0..k).map(|f| z[f] * mix[f * cols + c]).sum();
                x[t * cols + c] = big * (s + 0.1 * rng.gen_range(-1.0f32..1.0));
            }
        }
        (w, x)
    }

    fn rtn(w: &[f32], kind: BlockKind) -> Vec<f32> {
        QuantMatrix::quantize(kind, w).unwrap().dequantize()
    }

    #[test]
    fn gptq_has_less_output_error_than_round_to_nearest() {
        let (rows, cols, n) = (24, 96, 400);
        let (w, x) = fixture(rows, cols, n, 1);
        let g = gram_f64(&x, n, cols).unwrap();
        let h = faer::Scale(2.0 / n as f64) * &g;
        for kind in KINDS {
            let mut opts = GptqOptions::new(kind);
            opts.block_size = 64; // two lazy blocks, a group split across none
            let out = gptq_quantize(&w, rows, cols, h.as_ref(), &opts).unwrap();
            let e_gptq = reconstruction_error(&w, &out.weight, rows, cols, g.as_ref()).unwrap();
            let e_rtn = reconstruction_error(&w, &rtn(&w, kind), rows, cols, g.as_ref()).unwrap();
            assert!(
                e_gptq < 0.75 * e_rtn,
                "{kind:?}: GPTQ {e_gptq:.4e} vs round-to-nearest {e_rtn:.4e}"
            );
            assert!(out.loss > 0.0);
        }
    }

    #[test]
    fn round_to_nearest_gives_back_the_gptq_blocks() {
        // The file and the decode engine re-quantise f32 weights by round-to-nearest: for GPTQ
        // output that must be the identity, bit for bit.
        for seed in 0..4 {
            let (rows, cols, n) = (16, 128, 200);
            let (w, x) = fixture(rows, cols, n, 10 + seed);
            let h = gram_f64(&x, n, cols).unwrap();
            for kind in KINDS {
                let mut opts = GptqOptions::new(kind);
                opts.block_size = 32;
                let out = gptq_quantize(&w, rows, cols, h.as_ref(), &opts).unwrap();
                let again = rtn(&out.weight, kind);
                for (i, (a, b)) in again.iter().zip(&out.weight).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{kind:?} seed {seed} at {i}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn without_correlations_gptq_is_round_to_nearest() {
        // With H diagonal nothing is carried to other columns: every column is rounded alone,
        // onto the grid round-to-nearest picks.
        let (rows, cols) = (8, 64);
        let (w, _) = fixture(rows, cols, 1, 3);
        let h = Mat::<f64>::from_fn(cols, cols, |i, j| if i == j { 1.0 + i as f64 } else { 0.0 });
        for kind in KINDS {
            let out = gptq_quantize(&w, rows, cols, h.as_ref(), &GptqOptions::new(kind)).unwrap();
            let want = rtn(&w, kind);
            let worst = out
                .weight
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            // ggml rounds with the unrounded scale, GPTQ onto the stored (f16) grid: the two
            // may pick neighbouring codes for a value within f16 precision of a midpoint.
            let mismatches = out.weight.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert!(
                mismatches <= 2,
                "{kind:?}: {mismatches} values differ (max {worst})"
            );
        }
    }

    #[test]
    fn a_pruned_layer_keeps_its_zeros() {
        let (rows, cols, n) = (16, 96, 300);
        let (mut w, x) = fixture(rows, cols, n, 7);
        let mut rng = StdRng::seed_from_u64(8);
        for v in w.iter_mut() {
            if rng.gen_bool(0.5) {
                *v = 0.0;
            }
        }
        let g = gram_f64(&x, n, cols).unwrap();
        for kind in [BlockKind::Q8_0, BlockKind::Q4_0] {
            let out = gptq_quantize(&w, rows, cols, g.as_ref(), &GptqOptions::new(kind)).unwrap();
            for (i, (&a, &b)) in w.iter().zip(&out.weight).enumerate() {
                assert!(a != 0.0 || b == 0.0, "{kind:?}: zero at {i} became {b}");
            }
            assert_eq!(
                rtn(&out.weight, kind),
                out.weight,
                "{kind:?}: still on the grid"
            );
            let e_gptq = reconstruction_error(&w, &out.weight, rows, cols, g.as_ref()).unwrap();
            let e_rtn = reconstruction_error(&w, &rtn(&w, kind), rows, cols, g.as_ref()).unwrap();
            assert!(e_gptq < e_rtn, "{kind:?}: {e_gptq} vs {e_rtn}");
        }
    }

    #[test]
    fn rejects_shapes_it_cannot_block() {
        let h = Mat::<f64>::identity(48, 48);
        let w = vec![0.5f32; 2 * 48];
        let e = gptq_quantize(&w, 2, 48, h.as_ref(), &GptqOptions::new(BlockKind::Q4_0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("32-value blocks"), "{e}");
        let h = Mat::<f64>::identity(64, 64);
        let w = vec![0.5f32; 2 * 64];
        let mut o = GptqOptions::new(BlockKind::Q4_0);
        o.block_size = 48;
        assert!(gptq_quantize(&w, 2, 64, h.as_ref(), &o).is_err());
        assert!(gptq_quantize(&w, 3, 64, h.as_ref(), &GptqOptions::new(BlockKind::Q8_0)).is_err());
    }
}
