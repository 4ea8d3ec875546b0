//! Matrix × few-vectors for decoding: y[r, o] = Σ_i w[o, i] · x[r, i] (+ b[o]).
//!
//! At batch 1 a linear layer is bound by reading its weights once; a general matmul (gemm)
//! is tuned for many rows and reads them slowly here. This kernel streams each weight row
//! once for all `r` input rows, splits output rows across threads in cache-sized chunks, and
//! vectorises the dot products (AVX2/FMA chosen at run time, see `simd`).
//! Layout: `w` [out, in] row-major, `x` [rows, in], `y` [rows, out].

use crate::{check_len, simd};
use rayon::prelude::*;
use slm_core::Result;

/// Rows of `x` handled in one pass over the weights (larger inputs should use gemm).
pub const MAX_ROWS: usize = 8;

#[inline(always)]
fn block_impl(w: &[f32], x: &[f32], rows: usize, inf: usize, o0: usize, y_t: &mut [f32]) {
    // y_t: [chunk_out, rows] (transposed so each thread writes one contiguous block)
    let n_out = y_t.len() / rows;
    for o in 0..n_out {
        let wr = &w[(o0 + o) * inf..(o0 + o + 1) * inf];
        for r in 0..rows {
            y_t[o * rows + r] = simd::dot(wr, &x[r * inf..(r + 1) * inf]);
        }
    }
}

crate::dispatch!(fn block(w: &[f32], x: &[f32], rows: usize, inf: usize, o0: usize, y_t: &mut [f32]) => block_impl);

/// y = x Wᵀ (+ bias) for `rows` ≤ [`MAX_ROWS`] input rows (allocates its transposed output
/// for more than one row; [`matvec_with`] takes it as scratch).
pub fn matvec(
    w: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    rows: usize,
    in_features: usize,
    out_features: usize,
    y: &mut [f32],
) -> Result<()> {
    let mut y_t = vec![0f32; if rows > 1 { rows * out_features } else { 0 }];
    matvec_with(w, bias, x, rows, in_features, out_features, &mut y_t, y)
}

/// [`matvec`] with the caller's scratch `y_t` (at least rows · out_features values when
/// `rows` > 1; unused for one row), so batched decoding allocates nothing per step.
#[allow(clippy::too_many_arguments)]
pub fn matvec_with(
    w: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    rows: usize,
    in_features: usize,
    out_features: usize,
    y_t: &mut [f32],
    y: &mut [f32],
) -> Result<()> {
    check_len("matvec w", w.len(), out_features * in_features)?;
    check_len("matvec x", x.len(), rows * in_features)?;
    check_len("matvec y", y.len(), rows * out_features)?;
    if let Some(b) = bias {
        check_len("matvec bias", b.len(), out_features)?;
    }
    if rows == 0 || out_features == 0 {
        return Ok(());
    }
    // Chunks of ~64 KiB of weights per task: enough work to amortise scheduling.
    let chunk = (16 * 1024 / in_features.max(1)).clamp(1, out_features);
    if rows == 1 {
        // One input row: [out, 1] is y itself, so write it in place (no allocation; the
        // decode loop calls this for every matrix of every token).
        if out_features * in_features < 64 * 1024 {
            block(w, x, 1, in_features, 0, y);
        } else {
            y.par_chunks_mut(chunk)
                .enumerate()
                .for_each(|(c, yc)| block(w, x, 1, in_features, c * chunk, yc));
        }
        if let Some(b) = bias {
            y.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
        }
        return Ok(());
    }
    if y_t.len() < rows * out_features {
        return Err(slm_core::Error::invalid(format!(
            "matvec scratch holds {} values, {rows} rows × {out_features} outputs need {}",
            y_t.len(),
            rows * out_features
        )));
    }
    let y_t = &mut y_t[..rows * out_features];
    if out_features * in_features < 64 * 1024 {
        block(w, x, rows, in_features, 0, y_t);
    } else {
        y_t.par_chunks_mut(chunk * rows)
            .enumerate()
            .for_each(|(c, yc)| {
                block(w, x, rows, in_features, c * chunk, yc);
            });
    }
    for r in 0..rows {
        for o in 0..out_features {
            y[r * out_features + o] = y_t[o * rows + r] + bias.map_or(0.0, |b| b[o]);
        }
    }
    Ok(())
}

/// Naive twin of [`matvec`].
pub fn matvec_naive(
    w: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    rows: usize,
    in_features: usize,
    out_features: usize,
    y: &mut [f32],
) {
    for r in 0..rows {
        for o in 0..out_features {
            let mut s = 0f64;
            for i in 0..in_features {
                s += w[o * in_features + i] as f64 * x[r * in_features + i] as f64;
            }
            y[r * out_features + o] = s as f32 + bias.map_or(0.0, |b| b[o]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, rand_vec};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn matches_naive(rows in 1usize..=MAX_ROWS, inf in 1usize..300, outf in 1usize..700, seed in 0u64..1000, with_bias: bool) {
            let w = rand_vec(outf * inf, seed);
            let x = rand_vec(rows * inf, seed + 1);
            let b = rand_vec(outf, seed + 2);
            let bias = if with_bias { Some(b.as_slice()) } else { None };
            let mut y = vec![0f32; rows * outf];
            let mut y_ref = vec![0f32; rows * outf];
            matvec(&w, bias, &x, rows, inf, outf, &mut y).unwrap();
            matvec_naive(&w, bias, &x, rows, inf, outf, &mut y_ref);
            assert_close(&y, &y_ref, 1e-5 * (inf as f32).sqrt(), "matvec");
        }
    }

    #[test]
    fn large_layer_uses_threads_and_matches() {
        let (inf, outf) = (288, 3000);
        let w = rand_vec(outf * inf, 3);
        let x = rand_vec(inf, 4);
        let mut y = vec![0f32; outf];
        let mut y_ref = vec![0f32; outf];
        matvec(&w, None, &x, 1, inf, outf, &mut y).unwrap();
        matvec_naive(&w, None, &x, 1, inf, outf, &mut y_ref);
        assert_close(&y, &y_ref, 1e-4, "matvec large");
        assert!(matvec(&w, None, &x, 2, inf, outf, &mut y).is_err());
    }

    #[test]
    fn scratch_is_reused_and_checked() {
        // One scratch across calls of different shapes, as batched decoding uses it; a larger
        // scratch than needed is fine, a smaller one an error.
        let mut y_t = vec![f32::NAN; 4 * 700];
        for (rows, inf, outf, seed) in [
            (4usize, 50usize, 700usize, 1u64),
            (3, 90, 20, 2),
            (2, 700, 300, 3),
        ] {
            let w = rand_vec(outf * inf, seed);
            let x = rand_vec(rows * inf, seed + 1);
            let (mut y, mut y_ref) = (vec![0f32; rows * outf], vec![0f32; rows * outf]);
            matvec_with(&w, None, &x, rows, inf, outf, &mut y_t, &mut y).unwrap();
            matvec_naive(&w, None, &x, rows, inf, outf, &mut y_ref);
            assert_close(&y, &y_ref, 1e-4, "matvec_with");
        }
        let (w, x) = (rand_vec(8 * 4, 5), rand_vec(3 * 4, 6));
        let mut y = vec![0f32; 3 * 8];
        let e = matvec_with(&w, None, &x, 3, 4, 8, &mut [0f32; 23], &mut y).unwrap_err();
        assert!(e.to_string().contains("scratch"), "{e}");
    }
}
