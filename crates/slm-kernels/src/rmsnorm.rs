//! RMSNorm over the last dimension: forward `y = x · rstd · w` with
//! `rstd = 1/√(mean(x²) + eps)` saved per row, and its backward
//! `dx = rstd · (g − x̂ · mean(g·x̂))` with `g = dy·w`, `x̂ = x·rstd`, `dw += Σ_rows dy·x̂`.
//!
//! Rows are split over the thread pool for `y`/`dx`; `dw` is a second pass over blocks of
//! columns so its sum order does not depend on the thread count.

use crate::check_len;
use crate::par::rows_per_task;
use crate::simd;
use rayon::prelude::*;
use slm_core::Result;

#[inline(always)]
fn fwd_rows_impl(y: &mut [f32], rstd: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let d = w.len();
    // y, x: [rows, d]; rstd: [rows]
    for ((yr, xr), rs) in y
        .chunks_exact_mut(d)
        .zip(x.chunks_exact(d))
        .zip(rstd.iter_mut())
    {
        let r = 1.0 / (simd::sum_sq(xr) / d as f32 + eps).sqrt();
        *rs = r;
        for ((yv, xv), wv) in yr.iter_mut().zip(xr).zip(w) {
            *yv = xv * r * wv;
        }
    }
}

crate::dispatch!(fn fwd_rows(y: &mut [f32], rstd: &mut [f32], x: &[f32], w: &[f32], eps: f32) => fwd_rows_impl);

#[inline(always)]
fn bwd_rows_impl(dx: &mut [f32], dy: &[f32], x: &[f32], rstd: &[f32], w: &[f32], acc: bool) {
    let d = w.len();
    // dx, dy, x: [rows, d]; rstd: [rows]
    for (((dxr, dyr), xr), &r) in dx
        .chunks_exact_mut(d)
        .zip(dy.chunks_exact(d))
        .zip(x.chunks_exact(d))
        .zip(rstd)
    {
        // mean(g·x̂) = rstd · Σ dy·w·x / d
        let mut s = [0f32; 16];
        let (mut cy, mut cx, mut cw) = (
            dyr.chunks_exact(16),
            xr.chunks_exact(16),
            w.chunks_exact(16),
        );
        for ((a, b), c) in (&mut cy).zip(&mut cx).zip(&mut cw) {
            for l in 0..16 {
                s[l] += a[l] * c[l] * b[l];
            }
        }
        let mut tail = 0f32;
        for ((a, b), c) in cy
            .remainder()
            .iter()
            .zip(cx.remainder())
            .zip(cw.remainder())
        {
            tail += a * c * b;
        }
        let c = r * (s.iter().sum::<f32>() + tail) / d as f32;
        let k = r * c; // coefficient of x in dx / rstd
        for (((o, dyv), xv), wv) in dxr.iter_mut().zip(dyr).zip(xr).zip(w) {
            let v = r * (dyv * wv - xv * k);
            *o = if acc { *o + v } else { v };
        }
    }
}

crate::dispatch!(fn bwd_rows(dx: &mut [f32], dy: &[f32], x: &[f32], rstd: &[f32], w: &[f32], acc: bool) => bwd_rows_impl);

#[inline(always)]
fn dw_cols_impl(dw: &mut [f32], c0: usize, dy: &[f32], x: &[f32], rstd: &[f32], d: usize) {
    // dw[c0 .. c0 + len] += Σ_r dy[r, c] · x[r, c] · rstd[r]
    let len = dw.len();
    for (r, &rs) in rstd.iter().enumerate() {
        let base = r * d + c0;
        let (dyr, xr) = (&dy[base..base + len], &x[base..base + len]);
        for ((o, a), b) in dw.iter_mut().zip(dyr).zip(xr) {
            *o += a * b * rs;
        }
    }
}

crate::dispatch!(fn dw_cols(dw: &mut [f32], c0: usize, dy: &[f32], x: &[f32], rstd: &[f32], d: usize) => dw_cols_impl);

/// y[rows, d] = rmsnorm(x[rows, d]) · w[d]; writes rstd[rows].
pub fn rmsnorm_fwd(
    y: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    w: &[f32],
    rows: usize,
    eps: f32,
) -> Result<()> {
    let d = w.len();
    check_len("rmsnorm_fwd y", y.len(), rows * d)?;
    check_len("rmsnorm_fwd x", x.len(), rows * d)?;
    check_len("rmsnorm_fwd rstd", rstd.len(), rows)?;
    if d == 0 {
        return Ok(());
    }
    let per = rows_per_task(rows, d);
    y.par_chunks_mut(per * d)
        .zip(rstd.par_chunks_mut(per))
        .zip(x.par_chunks(per * d))
        .for_each(|((y, r), x)| fwd_rows(y, r, x, w, eps));
    Ok(())
}

/// Backward of [`rmsnorm_fwd`]: dx (+)= ∂L/∂x (`accumulate` adds into dx, e.g. the residual
/// gradient), dw += ∂L/∂w.
#[allow(clippy::too_many_arguments)] // the saved state of one norm is inherently this wide
pub fn rmsnorm_bwd(
    dx: &mut [f32],
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    rstd: &[f32],
    w: &[f32],
    rows: usize,
    accumulate: bool,
) -> Result<()> {
    let d = w.len();
    check_len("rmsnorm_bwd dx", dx.len(), rows * d)?;
    check_len("rmsnorm_bwd dw", dw.len(), d)?;
    check_len("rmsnorm_bwd dy", dy.len(), rows * d)?;
    check_len("rmsnorm_bwd x", x.len(), rows * d)?;
    check_len("rmsnorm_bwd rstd", rstd.len(), rows)?;
    if d == 0 {
        return Ok(());
    }
    let per = rows_per_task(rows, d);
    dx.par_chunks_mut(per * d)
        .zip(dy.par_chunks(per * d))
        .zip(x.par_chunks(per * d))
        .zip(rstd.par_chunks(per))
        .for_each(|(((dx, dy), x), r)| bwd_rows(dx, dy, x, r, w, accumulate));
    const BLOCK: usize = 32;
    let blocks = d.div_ceil(BLOCK);
    let run = |(b, c): (usize, &mut [f32])| dw_cols(c, b * BLOCK, dy, x, rstd, d);
    if rows * d < 64 * 1024 || blocks == 1 {
        dw.chunks_mut(BLOCK).enumerate().for_each(run);
    } else {
        dw.par_chunks_mut(BLOCK).enumerate().for_each(run);
    }
    Ok(())
}

/// Naive twin of [`rmsnorm_fwd`].
pub fn rmsnorm_fwd_naive(
    y: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    w: &[f32],
    rows: usize,
    eps: f32,
) {
    let d = w.len();
    for r in 0..rows {
        let ms: f32 = (0..d).map(|j| x[r * d + j] * x[r * d + j]).sum::<f32>() / d as f32;
        rstd[r] = 1.0 / (ms + eps).sqrt();
        for j in 0..d {
            y[r * d + j] = x[r * d + j] * rstd[r] * w[j];
        }
    }
}

/// Naive twin of [`rmsnorm_bwd`].
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_bwd_naive(
    dx: &mut [f32],
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    rstd: &[f32],
    w: &[f32],
    rows: usize,
    accumulate: bool,
) {
    let d = w.len();
    for r in 0..rows {
        let xhat: Vec<f32> = (0..d).map(|j| x[r * d + j] * rstd[r]).collect();
        let g: Vec<f32> = (0..d).map(|j| dy[r * d + j] * w[j]).collect();
        let mean_gx: f32 = (0..d).map(|j| g[j] * xhat[j]).sum::<f32>() / d as f32;
        for j in 0..d {
            let v = rstd[r] * (g[j] - xhat[j] * mean_gx);
            dx[r * d + j] = if accumulate { dx[r * d + j] + v } else { v };
            dw[j] += dy[r * d + j] * xhat[j];
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
        fn rmsnorm_matches_naive(rows in 1usize..300, d in 1usize..90, acc in any::<bool>(),
                                 seed in 0u64..1000) {
            let x = rand_vec(rows * d, seed);
            let w = rand_vec(d, seed + 1);
            let (mut y, mut yn) = (vec![0.0; rows * d], vec![0.0; rows * d]);
            let (mut r, mut rn) = (vec![0.0; rows], vec![0.0; rows]);
            rmsnorm_fwd(&mut y, &mut r, &x, &w, rows, 1e-5).unwrap();
            rmsnorm_fwd_naive(&mut yn, &mut rn, &x, &w, rows, 1e-5);
            assert_close(&r, &rn, 1e-5, "rstd");
            assert_close(&y, &yn, 1e-5, "y");
            let dy = rand_vec(rows * d, seed + 2);
            let dx0 = rand_vec(rows * d, seed + 3);
            let (mut dx, mut dxn) = (dx0.clone(), dx0);
            let (mut dw, mut dwn) = (vec![0.25; d], vec![0.25; d]);
            rmsnorm_bwd(&mut dx, &mut dw, &dy, &x, &r, &w, rows, acc).unwrap();
            rmsnorm_bwd_naive(&mut dxn, &mut dwn, &dy, &x, &rn, &w, rows, acc);
            assert_close(&dx, &dxn, 1e-4, "dx");
            assert_close(&dw, &dwn, 1e-4, "dw");
        }
    }

    /// Central finite differences of L = Σ c·y through the naive pair.
    #[test]
    fn naive_backward_matches_finite_differences() {
        let (rows, d) = (3, 5);
        let x: Vec<f32> = rand_vec(rows * d, 1).iter().map(|v| v * 2.0).collect();
        let w = rand_vec(d, 2);
        let c = rand_vec(rows * d, 3);
        let loss = |x: &[f32], w: &[f32]| -> f64 {
            let (mut y, mut r) = (vec![0.0; rows * d], vec![0.0; rows]);
            rmsnorm_fwd_naive(&mut y, &mut r, x, w, rows, 1e-5);
            y.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum()
        };
        let (mut y, mut r) = (vec![0.0; rows * d], vec![0.0; rows]);
        rmsnorm_fwd_naive(&mut y, &mut r, &x, &w, rows, 1e-5);
        let (mut dx, mut dw) = (vec![0.0; rows * d], vec![0.0; d]);
        rmsnorm_bwd_naive(&mut dx, &mut dw, &c, &x, &r, &w, rows, false);
        let h = 1e-2f32;
        for i in 0..rows * d {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (loss(&xp, &w) - loss(&xm, &w)) / (2.0 * h as f64);
            assert!(
                (fd - dx[i] as f64).abs() < 2e-3,
                "dx[{i}] {fd} vs {}",
                dx[i]
            );
        }
        for j in 0..d {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[j] += h;
            wm[j] -= h;
            let fd = (loss(&x, &wp) - loss(&x, &wm)) / (2.0 * h as f64);
            assert!(
                (fd - dw[j] as f64).abs() < 2e-3,
                "dw[{j}] {fd} vs {}",
                dw[j]
            );
        }
    }
}
