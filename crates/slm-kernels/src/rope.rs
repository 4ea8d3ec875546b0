//! Rotary position embeddings in the Hugging Face "rotate half" layout, in place.
//!
//! Within each head of width `e`, element `i < e/2` pairs with `i + e/2`:
//! forward `(a, b) → (a·cos − b·sin, b·cos + a·sin)`; the backward applies the transposed
//! (inverse) rotation `(a, b) → (a·cos + b·sin, b·cos − a·sin)` to the gradient.
//! The tables hold `cos/sin(pos · inv_freq[i])` as `[positions, e/2]`, made by the model's
//! `Rope` code; row `r` of the activation matrix is at position `r % seq`, or with packed
//! examples (`starts` [rows], see [`crate::segments`]) at `r % seq − starts[r]`, its place
//! in its own example.

use crate::check_len;
use crate::par::rows_per_task;
use crate::segments::check_starts;
use rayon::prelude::*;
use slm_core::{Error, Result};

/// Where the heads sit in a row-major activation matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RopeLayout {
    /// Rows of the matrix (batch · seq tokens).
    pub rows: usize,
    /// Elements per row.
    pub row_stride: usize,
    /// Column of the first head's first element.
    pub col0: usize,
    /// Number of consecutive heads to rotate.
    pub heads: usize,
    /// Width of one head (even).
    pub head_dim: usize,
    /// Sequence length: row r is at position r % seq.
    pub seq: usize,
}

impl RopeLayout {
    fn check(&self, len: usize, cos: &[f32], sin: &[f32], starts: Option<&[u32]>) -> Result<()> {
        check_len("rope input", len, self.rows * self.row_stride)?;
        if !self.head_dim.is_multiple_of(2) || self.seq == 0 {
            return Err(Error::invalid(format!(
                "rope: head_dim {} must be even and seq {} positive",
                self.head_dim, self.seq
            )));
        }
        if let Some(st) = starts {
            if !self.rows.is_multiple_of(self.seq) {
                return Err(Error::invalid(format!(
                    "rope: {} rows are not whole sequences of {} for segment starts",
                    self.rows, self.seq
                )));
            }
            // Positions r % seq − starts[r] lie in 0..seq, which the tables cover (below).
            check_starts(st, self.rows / self.seq, self.seq)?;
        }
        if self.col0 + self.heads * self.head_dim > self.row_stride {
            return Err(Error::invalid(format!(
                "rope: heads end at column {} beyond the row of {}",
                self.col0 + self.heads * self.head_dim,
                self.row_stride
            )));
        }
        let need = self.seq * self.head_dim / 2;
        if cos.len() < need || sin.len() < need {
            return Err(Error::invalid(format!(
                "rope: tables hold {} / {} values, {} positions need {need}",
                cos.len(),
                sin.len(),
                self.seq
            )));
        }
        Ok(())
    }
}

#[inline(always)]
fn rows_impl(
    x: &mut [f32],
    first_row: usize,
    l: RopeLayout,
    cos: &[f32],
    sin: &[f32],
    starts: Option<&[u32]>,
    inverse: bool,
) {
    let half = l.head_dim / 2;
    // x: [rows in this chunk, row_stride]; starts: [rows in this chunk]
    for (i, row) in x.chunks_exact_mut(l.row_stride).enumerate() {
        let pos = (first_row + i) % l.seq - starts.map_or(0, |s| s[i] as usize);
        let (c, s) = (
            &cos[pos * half..(pos + 1) * half],
            &sin[pos * half..(pos + 1) * half],
        );
        for h in 0..l.heads {
            let base = l.col0 + h * l.head_dim;
            let (x1, x2) = row[base..base + l.head_dim].split_at_mut(half);
            for (((a, b), &cv), &sv) in x1.iter_mut().zip(x2.iter_mut()).zip(c).zip(s) {
                let (av, bv) = (*a, *b);
                if inverse {
                    *a = av * cv + bv * sv;
                    *b = bv * cv - av * sv;
                } else {
                    *a = av * cv - bv * sv;
                    *b = bv * cv + av * sv;
                }
            }
        }
    }
}

crate::dispatch!(fn rows_kernel(x: &mut [f32], first_row: usize, l: RopeLayout, cos: &[f32], sin: &[f32], starts: Option<&[u32]>, inverse: bool) => rows_impl);

fn run(
    x: &mut [f32],
    l: RopeLayout,
    cos: &[f32],
    sin: &[f32],
    starts: Option<&[u32]>,
    inverse: bool,
) -> Result<()> {
    l.check(x.len(), cos, sin, starts)?;
    if l.rows == 0 || l.row_stride == 0 || l.heads == 0 {
        return Ok(());
    }
    let per = rows_per_task(l.rows, l.heads * l.head_dim);
    x.par_chunks_mut(per * l.row_stride)
        .enumerate()
        .for_each(|(i, chunk)| {
            let first = i * per;
            let st = starts.map(|s| &s[first..first + chunk.len() / l.row_stride]);
            rows_kernel(chunk, first, l, cos, sin, st, inverse)
        });
    Ok(())
}

/// Rotates the heads of `x` in place; `starts` [rows] places each row in its own example.
pub fn rope_fwd(
    x: &mut [f32],
    l: RopeLayout,
    cos: &[f32],
    sin: &[f32],
    starts: Option<&[u32]>,
) -> Result<()> {
    run(x, l, cos, sin, starts, false)
}

/// Backward of [`rope_fwd`]: rotates the gradient `dx` back in place.
pub fn rope_bwd(
    dx: &mut [f32],
    l: RopeLayout,
    cos: &[f32],
    sin: &[f32],
    starts: Option<&[u32]>,
) -> Result<()> {
    run(dx, l, cos, sin, starts, true)
}

/// Naive twin of [`rope_fwd`] / [`rope_bwd`] (`inverse` selects the backward; `starts` must
/// be valid).
pub fn rope_naive(
    x: &mut [f32],
    l: RopeLayout,
    cos: &[f32],
    sin: &[f32],
    starts: Option<&[u32]>,
    inverse: bool,
) {
    let half = l.head_dim / 2;
    for r in 0..l.rows {
        let pos = r % l.seq - starts.map_or(0, |s| s[r] as usize);
        for h in 0..l.heads {
            for i in 0..half {
                let ia = r * l.row_stride + l.col0 + h * l.head_dim + i;
                let ib = ia + half;
                let (a, b) = (x[ia], x[ib]);
                let (c, s) = (cos[pos * half + i], sin[pos * half + i]);
                let s = if inverse { -s } else { s };
                x[ia] = a * c - b * s;
                x[ib] = b * c + a * s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, rand_starts, rand_vec, segments_of};
    use proptest::prelude::*;

    fn tables(positions: usize, half: usize) -> (Vec<f32>, Vec<f32>) {
        let mut c = Vec::new();
        let mut s = Vec::new();
        for p in 0..positions {
            for i in 0..half {
                let a = p as f32 / 10000f32.powf(2.0 * i as f32 / (2 * half) as f32);
                c.push(a.cos());
                s.push(a.sin());
            }
        }
        (c, s)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn rope_matches_naive_and_inverts(batch in 1usize..4, seq in 1usize..40, heads in 1usize..5,
                                          half in 1usize..9, extra in 0usize..7, kind in 0usize..5,
                                          seed in 0u64..1000) {
            let e = 2 * half;
            let col0 = extra.min(3);
            let stride = col0 + heads * e + extra;
            let l = RopeLayout { rows: batch * seq, row_stride: stride, col0, heads, head_dim: e, seq };
            let (c, s) = tables(seq + 5, half);
            let x = rand_vec(batch * seq * stride, seed);
            // kind 4: no starts; else random examples (see `rand_starts`).
            let starts = (kind < 4).then(|| rand_starts(batch, seq, kind, seed));
            let starts = starts.as_deref();
            let (mut a, mut b) = (x.clone(), x.clone());
            rope_fwd(&mut a, l, &c, &s, starts).unwrap();
            rope_naive(&mut b, l, &c, &s, starts, false);
            assert_close(&a, &b, 1e-6, "fwd");
            let mut g = a.clone();
            rope_naive(&mut g, l, &c, &s, starts, true);
            rope_bwd(&mut a, l, &c, &s, starts).unwrap();
            assert_close(&a, &g, 1e-6, "bwd");
            assert_close(&a, &x, 1e-5, "inverse");
        }

        /// Packed rows rotate each example exactly as the example alone (rows from 0).
        #[test]
        fn packed_rope_equals_examples_alone(batch in 1usize..4, seq in 1usize..150,
                                             heads in 1usize..5, half in 1usize..9,
                                             kind in 1usize..4, seed in 0u64..1000) {
            let e = 2 * half;
            let stride = heads * e + 3;
            let l = RopeLayout { rows: batch * seq, row_stride: stride, col0: 1, heads, head_dim: e, seq };
            let (c, s) = tables(seq, half);
            let x = rand_vec(batch * seq * stride, seed);
            let starts = rand_starts(batch, seq, kind, seed);
            let (mut a, mut g) = (x.clone(), x.clone());
            rope_fwd(&mut a, l, &c, &s, Some(&starts)).unwrap();
            rope_bwd(&mut g, l, &c, &s, Some(&starts)).unwrap();
            for (r0, len) in segments_of(&starts, seq) {
                let one = RopeLayout { rows: len, seq: len, ..l };
                let part = &x[r0 * stride..(r0 + len) * stride];
                let (mut a1, mut g1) = (part.to_vec(), part.to_vec());
                rope_fwd(&mut a1, one, &c, &s, None).unwrap();
                rope_bwd(&mut g1, one, &c, &s, None).unwrap();
                assert_close(&a[r0 * stride..(r0 + len) * stride], &a1, 1e-6, "fwd");
                assert_close(&g[r0 * stride..(r0 + len) * stride], &g1, 1e-6, "bwd");
            }
        }
    }

    #[test]
    fn bad_layouts_are_errors() {
        let (c, s) = tables(4, 2);
        let l = RopeLayout {
            rows: 2,
            row_stride: 4,
            col0: 1,
            heads: 1,
            head_dim: 4,
            seq: 2,
        };
        assert!(rope_fwd(&mut [0.0; 8], l, &c, &s, None).is_err());
        let l = RopeLayout {
            rows: 2,
            row_stride: 4,
            col0: 0,
            heads: 1,
            head_dim: 4,
            seq: 5,
        };
        assert!(rope_fwd(&mut [0.0; 8], l, &c, &s, None).is_err());
        // Starts: the wrong count, or invalid ones.
        let l = RopeLayout { seq: 2, ..l };
        rope_fwd(&mut [0.0; 8], l, &c, &s, Some(&[0, 1])).unwrap();
        assert!(rope_fwd(&mut [0.0; 8], l, &c, &s, Some(&[0])).is_err());
        assert!(rope_bwd(&mut [0.0; 8], l, &c, &s, Some(&[0, 2])).is_err());
        let l = RopeLayout {
            rows: 3,
            seq: 2,
            ..l
        };
        assert!(rope_fwd(&mut [0.0; 12], l, &c, &s, Some(&[0, 1, 0])).is_err());
    }
}
