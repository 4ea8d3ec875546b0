//! Fused softmax cross-entropy over the vocabulary.
//!
//! For each row of logits `x` [rows, vocab] with target `y`: loss `logsumexp(x) − x_y`, and,
//! in the fused variant, the logits are overwritten by their gradient
//! `grad_scale · (softmax(x) − onehot(y))`, so no probability matrix is ever stored.
//! Rows whose target is [`IGNORE_INDEX`] contribute no loss and get a zero gradient.
//! Losses are returned as a sum (in f64) so callers choose the normalisation; the usual mean
//! over non-ignored targets passes `grad_scale = 1 / count`.

use crate::check_len;
use crate::par::rows_per_task;
use crate::simd;
use rayon::prelude::*;
use slm_core::{Error, Result};

/// Target value meaning "no loss at this position" (prompt tokens, padding).
pub const IGNORE_INDEX: u32 = u32::MAX;

fn check(len: usize, targets: &[u32], vocab: usize) -> Result<()> {
    check_len("cross_entropy logits", len, targets.len() * vocab)?;
    if let Some((i, &t)) = targets
        .iter()
        .enumerate()
        .find(|(_, &t)| t != IGNORE_INDEX && t as usize >= vocab)
    {
        return Err(Error::invalid(format!(
            "cross_entropy: target {t} at row {i} is outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

#[inline(always)]
fn fwd_bwd_impl(logits: &mut [f32], targets: &[u32], vocab: usize, grad_scale: f32) -> f64 {
    let mut total = 0f64;
    // logits: [rows, vocab]
    for (row, &t) in logits.chunks_exact_mut(vocab).zip(targets) {
        if t == IGNORE_INDEX {
            row.fill(0.0);
            continue;
        }
        let t = t as usize;
        let xt = row[t];
        let m = simd::max(row);
        let s = simd::exp_shift_sum(row, m); // row ← e^(x − m)
        total += m as f64 + (s as f64).ln() - xt as f64;
        simd::scale(row, grad_scale / s);
        row[t] -= grad_scale;
    }
    total
}

crate::dispatch!(fn fwd_bwd_rows(logits: &mut [f32], targets: &[u32], vocab: usize, grad_scale: f32) -> f64 => fwd_bwd_impl);

#[inline(always)]
fn loss_impl(logits: &[f32], targets: &[u32], vocab: usize) -> f64 {
    let mut total = 0f64;
    for (row, &t) in logits.chunks_exact(vocab).zip(targets) {
        if t == IGNORE_INDEX {
            continue;
        }
        let m = simd::max(row);
        let mut acc = [0f32; 16];
        let mut c = row.chunks_exact(16);
        for x in &mut c {
            for l in 0..16 {
                acc[l] += simd::exp(x[l] - m);
            }
        }
        let s: f32 =
            acc.iter().sum::<f32>() + c.remainder().iter().map(|&x| simd::exp(x - m)).sum::<f32>();
        total += m as f64 + (s as f64).ln() - row[t as usize] as f64;
    }
    total
}

crate::dispatch!(fn loss_rows(logits: &[f32], targets: &[u32], vocab: usize) -> f64 => loss_impl);

/// Σ loss over non-ignored rows; overwrites `logits` [rows, vocab] with
/// `grad_scale · (softmax − onehot)` (zero rows where ignored).
pub fn cross_entropy_fwd_bwd(
    logits: &mut [f32],
    targets: &[u32],
    vocab: usize,
    grad_scale: f32,
) -> Result<f64> {
    check(logits.len(), targets, vocab)?;
    if vocab == 0 || targets.is_empty() {
        return Ok(0.0);
    }
    let per = rows_per_task(targets.len(), vocab);
    // Per-task sums collected in order, so the total does not depend on scheduling.
    let parts: Vec<f64> = logits
        .par_chunks_mut(per * vocab)
        .zip(targets.par_chunks(per))
        .map(|(l, t)| fwd_bwd_rows(l, t, vocab, grad_scale))
        .collect();
    Ok(parts.iter().sum())
}

/// Σ loss over non-ignored rows of `logits` [rows, vocab] (no gradient).
pub fn cross_entropy_loss(logits: &[f32], targets: &[u32], vocab: usize) -> Result<f64> {
    check(logits.len(), targets, vocab)?;
    if vocab == 0 || targets.is_empty() {
        return Ok(0.0);
    }
    let per = rows_per_task(targets.len(), vocab);
    let parts: Vec<f64> = logits
        .par_chunks(per * vocab)
        .zip(targets.par_chunks(per))
        .map(|(l, t)| loss_rows(l, t, vocab))
        .collect();
    Ok(parts.iter().sum())
}

/// Naive twin of [`cross_entropy_fwd_bwd`] (f64 throughout).
pub fn cross_entropy_fwd_bwd_naive(
    logits: &mut [f32],
    targets: &[u32],
    vocab: usize,
    grad_scale: f32,
) -> f64 {
    let mut total = 0.0;
    for (r, &t) in targets.iter().enumerate() {
        let row = &mut logits[r * vocab..(r + 1) * vocab];
        if t == IGNORE_INDEX {
            row.fill(0.0);
            continue;
        }
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
        let s: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
        total += m + s.ln() - row[t as usize] as f64;
        for (j, x) in row.iter_mut().enumerate() {
            let p = (*x as f64 - m).exp() / s;
            *x = (grad_scale as f64 * (p - if j == t as usize { 1.0 } else { 0.0 })) as f32;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, rand_vec};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn cross_entropy_matches_naive(rows in 1usize..40, vocab in 1usize..700, seed in 0u64..1000,
                                       ignore_every in 2usize..6) {
            let logits: Vec<f32> = rand_vec(rows * vocab, seed).iter().map(|v| v * 10.0).collect();
            let targets: Vec<u32> = (0..rows)
                .map(|r| if r % ignore_every == 1 { IGNORE_INDEX } else { ((r * 7919 + seed as usize) % vocab) as u32 })
                .collect();
            let scale = 1.0 / rows as f32;
            let (mut a, mut b) = (logits.clone(), logits.clone());
            let la = cross_entropy_fwd_bwd(&mut a, &targets, vocab, scale).unwrap();
            let lb = cross_entropy_fwd_bwd_naive(&mut b, &targets, vocab, scale);
            prop_assert!((la - lb).abs() <= 1e-5 * lb.abs().max(1.0), "{} vs {}", la, lb);
            assert_close(&a, &b, 1e-6, "grad");
            let lc = cross_entropy_loss(&logits, &targets, vocab).unwrap();
            prop_assert!((lc - lb).abs() <= 1e-5 * lb.abs().max(1.0), "{} vs {}", lc, lb);
        }
    }

    #[test]
    fn out_of_range_target_is_an_error() {
        let mut l = vec![0.0; 6];
        assert!(cross_entropy_fwd_bwd(&mut l, &[0, 3], 3, 1.0).is_err());
        assert!(cross_entropy_loss(&l, &[0], 3).is_err());
        assert!((cross_entropy_loss(&l, &[0, 2], 3).unwrap() - 2.0 * 3f64.ln()).abs() < 1e-6);
    }
}
