//! SwiGLU, the gated MLP activation: `h = silu(gate) · up` with `silu(x) = x·σ(x)`.
//!
//! Input `gu` [rows, 2·inter] holds each row's gate pre-activations then its up
//! pre-activations (the output of one fused gate|up projection). Backward:
//! `d gate = dh · up · σ(g)·(1 + g·(1 − σ(g)))`, `d up = dh · silu(g)`.

use crate::check_len;
use crate::par::rows_per_task;
use crate::simd;
use rayon::prelude::*;
use slm_core::Result;

#[inline(always)]
fn fwd_impl(h: &mut [f32], gu: &[f32], inter: usize) {
    // h: [rows, inter]; gu: [rows, 2·inter]
    for (hr, gur) in h.chunks_exact_mut(inter).zip(gu.chunks_exact(2 * inter)) {
        let (g, u) = gur.split_at(inter);
        for ((o, &gv), &uv) in hr.iter_mut().zip(g).zip(u) {
            *o = gv * simd::sigmoid(gv) * uv;
        }
    }
}

crate::dispatch!(fn fwd_rows(h: &mut [f32], gu: &[f32], inter: usize) => fwd_impl);

#[inline(always)]
fn bwd_impl(dgu: &mut [f32], dh: &[f32], gu: &[f32], inter: usize) {
    // dgu, gu: [rows, 2·inter]; dh: [rows, inter]
    for ((dr, dhr), gur) in dgu
        .chunks_exact_mut(2 * inter)
        .zip(dh.chunks_exact(inter))
        .zip(gu.chunks_exact(2 * inter))
    {
        let (dg, du) = dr.split_at_mut(inter);
        let (g, u) = gur.split_at(inter);
        for ((((dgv, duv), &d), &gv), &uv) in
            dg.iter_mut().zip(du.iter_mut()).zip(dhr).zip(g).zip(u)
        {
            let sg = simd::sigmoid(gv);
            *duv = d * gv * sg;
            *dgv = d * uv * sg * (1.0 + gv * (1.0 - sg));
        }
    }
}

crate::dispatch!(fn bwd_rows(dgu: &mut [f32], dh: &[f32], gu: &[f32], inter: usize) => bwd_impl);

/// h[rows, inter] = silu(gate) · up from gu[rows, 2·inter].
pub fn swiglu_fwd(h: &mut [f32], gu: &[f32], rows: usize, inter: usize) -> Result<()> {
    check_len("swiglu_fwd h", h.len(), rows * inter)?;
    check_len("swiglu_fwd gu", gu.len(), rows * 2 * inter)?;
    if inter == 0 || rows == 0 {
        return Ok(());
    }
    let per = rows_per_task(rows, inter);
    h.par_chunks_mut(per * inter)
        .zip(gu.par_chunks(per * 2 * inter))
        .for_each(|(h, gu)| fwd_rows(h, gu, inter));
    Ok(())
}

/// Overwrites dgu[rows, 2·inter] with the gradient of gate|up given dh[rows, inter].
pub fn swiglu_bwd(
    dgu: &mut [f32],
    dh: &[f32],
    gu: &[f32],
    rows: usize,
    inter: usize,
) -> Result<()> {
    check_len("swiglu_bwd dgu", dgu.len(), rows * 2 * inter)?;
    check_len("swiglu_bwd dh", dh.len(), rows * inter)?;
    check_len("swiglu_bwd gu", gu.len(), rows * 2 * inter)?;
    if inter == 0 || rows == 0 {
        return Ok(());
    }
    let per = rows_per_task(rows, inter);
    dgu.par_chunks_mut(per * 2 * inter)
        .zip(dh.par_chunks(per * inter))
        .zip(gu.par_chunks(per * 2 * inter))
        .for_each(|((d, dh), gu)| bwd_rows(d, dh, gu, inter));
    Ok(())
}

/// Naive twin of [`swiglu_fwd`].
pub fn swiglu_fwd_naive(h: &mut [f32], gu: &[f32], rows: usize, inter: usize) {
    for r in 0..rows {
        for j in 0..inter {
            let (g, u) = (gu[r * 2 * inter + j], gu[r * 2 * inter + inter + j]);
            h[r * inter + j] = g / (1.0 + (-g).exp()) * u;
        }
    }
}

/// Naive twin of [`swiglu_bwd`].
pub fn swiglu_bwd_naive(dgu: &mut [f32], dh: &[f32], gu: &[f32], rows: usize, inter: usize) {
    for r in 0..rows {
        for j in 0..inter {
            let (g, u) = (gu[r * 2 * inter + j], gu[r * 2 * inter + inter + j]);
            let s = 1.0 / (1.0 + (-g).exp());
            let d = dh[r * inter + j];
            dgu[r * 2 * inter + j] = d * u * (s + g * s * (1.0 - s));
            dgu[r * 2 * inter + inter + j] = d * g * s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, rand_vec};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn swiglu_matches_naive(rows in 1usize..200, inter in 1usize..100, seed in 0u64..1000) {
            let gu: Vec<f32> = rand_vec(rows * 2 * inter, seed).iter().map(|v| v * 8.0).collect();
            let (mut h, mut hn) = (vec![0.0; rows * inter], vec![0.0; rows * inter]);
            swiglu_fwd(&mut h, &gu, rows, inter).unwrap();
            swiglu_fwd_naive(&mut hn, &gu, rows, inter);
            assert_close(&h, &hn, 1e-6, "h");
            let dh = rand_vec(rows * inter, seed + 1);
            let (mut d, mut dn) = (vec![0.0; gu.len()], vec![0.0; gu.len()]);
            swiglu_bwd(&mut d, &dh, &gu, rows, inter).unwrap();
            swiglu_bwd_naive(&mut dn, &dh, &gu, rows, inter);
            assert_close(&d, &dn, 1e-6, "dgu");
        }
    }

    #[test]
    fn naive_backward_matches_finite_differences() {
        let gu: Vec<f32> = rand_vec(2 * 2 * 3, 4).iter().map(|v| v * 3.0).collect();
        let c = rand_vec(2 * 3, 5);
        let loss = |gu: &[f32]| -> f64 {
            let mut h = vec![0.0; 6];
            swiglu_fwd_naive(&mut h, gu, 2, 3);
            h.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum()
        };
        let mut d = vec![0.0; gu.len()];
        swiglu_bwd_naive(&mut d, &c, &gu, 2, 3);
        for i in 0..gu.len() {
            let (mut a, mut b) = (gu.clone(), gu.clone());
            a[i] += 1e-2;
            b[i] -= 1e-2;
            let fd = (loss(&a) - loss(&b)) / 2e-2;
            assert!((fd - d[i] as f64).abs() < 1e-3, "d[{i}] {fd} vs {}", d[i]);
        }
    }
}
