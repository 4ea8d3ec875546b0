//! Attention of one new position over a KV cache (decoding): for each head, scores against
//! every cached key, softmax, weighted sum of the cached values.
//!
//! ```text
//! q [h·e], keys/vals [n, g·e] (positions 0..n), head i reads kv head i/(h/g) (GQA)
//! out[i] = Σ_t softmax_t(q_i·k_t / √e) · v_t
//! ```
//! Heads run in parallel on the current rayon pool once there is enough work (long caches),
//! each head's loop compiled for AVX2+FMA where the CPU has it. The training kernels in
//! [`crate::attention`] cover whole sequences; this is the one-query case.

use crate::{check_len, simd};
use rayon::prelude::*;
use slm_core::{Error, Result};

/// Shape of a decode attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeAttn {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn head_impl(
    qh: &[f32],
    keys: &[f32],
    vals: &[f32],
    kv: usize,
    off: usize,
    scale: f32,
    scores: &mut [f32],
    o: &mut [f32],
) {
    let e = qh.len();
    for (t, sc) in scores.iter_mut().enumerate() {
        *sc = simd::dot(qh, &keys[t * kv + off..t * kv + off + e]) * scale;
    }
    let max = simd::max(scores);
    let sum = simd::exp_shift_sum(scores, max);
    o.fill(0.0);
    for (t, &p) in scores.iter().enumerate() {
        let vt = &vals[t * kv + off..t * kv + off + e];
        for (a, &v) in o.iter_mut().zip(vt) {
            *a += p * v;
        }
    }
    let inv = 1.0 / sum;
    o.iter_mut().for_each(|a| *a *= inv);
}

crate::dispatch!(
    #[allow(clippy::too_many_arguments)]
    fn head(qh: &[f32], keys: &[f32], vals: &[f32], kv: usize, off: usize, scale: f32,
            scores: &mut [f32], o: &mut [f32]) => head_impl
);

/// `out` [h·e] = attention of `q` [h·e] over `keys`, `vals` [n, g·e]; `scores` is scratch of
/// at least h·n values.
pub fn attend(
    s: DecodeAttn,
    q: &[f32],
    keys: &[f32],
    vals: &[f32],
    scores: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    let (h, g, e) = (s.heads, s.kv_heads, s.head_dim);
    if g == 0 || h % g != 0 || e == 0 {
        return Err(Error::invalid(format!(
            "decode attention: {h} heads over {g} kv heads of width {e}"
        )));
    }
    let kv = g * e;
    let n = keys.len() / kv;
    check_len("decode attention q", q.len(), h * e)?;
    check_len("decode attention out", out.len(), h * e)?;
    check_len("decode attention keys", keys.len(), n * kv)?;
    check_len("decode attention vals", vals.len(), n * kv)?;
    if n == 0 || scores.len() < h * n {
        return Err(Error::invalid(format!(
            "decode attention: {n} positions, {} scores of scratch for {h} heads",
            scores.len()
        )));
    }
    let scale = 1.0 / (e as f32).sqrt();
    let per_group = h / g;
    let one = |(i, (o, sc)): (usize, (&mut [f32], &mut [f32]))| {
        let off = (i / per_group) * e;
        head(&q[i * e..(i + 1) * e], keys, vals, kv, off, scale, sc, o);
    };
    let scores = &mut scores[..h * n];
    // Two passes over n·e values per head: worth a fork-join from ~16k multiply-adds.
    if h * n * e >= 16 * 1024 && crate::par::num_threads() > 1 {
        out.par_chunks_mut(e)
            .zip(scores.par_chunks_mut(n))
            .enumerate()
            .for_each(one);
    } else {
        out.chunks_mut(e)
            .zip(scores.chunks_mut(n))
            .enumerate()
            .for_each(one);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::rand_vec;

    /// Straight from the definition, in f64.
    fn naive(s: DecodeAttn, q: &[f32], keys: &[f32], vals: &[f32]) -> Vec<f32> {
        let (h, g, e) = (s.heads, s.kv_heads, s.head_dim);
        let kv = g * e;
        let n = keys.len() / kv;
        let mut out = vec![0f32; h * e];
        for i in 0..h {
            let off = (i / (h / g)) * e;
            let sc: Vec<f64> = (0..n)
                .map(|t| {
                    (0..e)
                        .map(|d| q[i * e + d] as f64 * keys[t * kv + off + d] as f64)
                        .sum::<f64>()
                        / (e as f64).sqrt()
                })
                .collect();
            let m = sc.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = sc.iter().map(|v| (v - m).exp()).sum();
            for d in 0..e {
                out[i * e + d] = (0..n)
                    .map(|t| (sc[t] - m).exp() / z * vals[t * kv + off + d] as f64)
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    #[test]
    fn equals_the_definition_with_and_without_threads() {
        for (h, g, e, n) in [(4, 2, 16, 5), (6, 6, 8, 1), (16, 4, 64, 300)] {
            let s = DecodeAttn {
                heads: h,
                kv_heads: g,
                head_dim: e,
            };
            let q = rand_vec(h * e, 1);
            let (keys, vals) = (rand_vec(n * g * e, 2), rand_vec(n * g * e, 3));
            let mut scores = vec![0f32; h * n];
            let mut out = vec![0f32; h * e];
            attend(s, &q, &keys, &vals, &mut scores, &mut out).unwrap();
            let want = naive(s, &q, &keys, &vals);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{h}/{g}/{e}/{n}: {a} vs {b}");
            }
        }
        let s = DecodeAttn {
            heads: 3,
            kv_heads: 2,
            head_dim: 4,
        };
        assert!(attend(
            s,
            &[0.0; 12],
            &[0.0; 8],
            &[0.0; 8],
            &mut [0.0; 3],
            &mut [0.0; 12]
        )
        .is_err());
    }
}
