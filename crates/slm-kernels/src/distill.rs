//! Fused distillation loss over the vocabulary: a weighted sum of the hard-label
//! cross-entropy and a divergence between the teacher's and the student's softened
//! distributions, with the gradient written over the student logits in place.
//!
//! For one row with student logits `z`, teacher logits `t`, target `y`, weight `w` and
//! temperature `T` (q = softmax(z/T), p = softmax(t/T)):
//!
//! ```text
//! loss = (1 − w) · CE(z, y) + w · T² · D(p, q)
//! ```
//!
//! The T² factor (Hinton et al. 2015) keeps the soft-target gradient on the same scale as
//! the hard one when T changes. Divergences ([`KdLoss`]):
//! - forward KL, `KL(p‖q) = Σ p (log p − log q)`: mean-seeking, the classic choice;
//!   ∂/∂z = (q − p) / T.
//! - reverse KL, `KL(q‖p) = Σ q (log q − log p)`: mode-seeking (MiniLLM);
//!   ∂/∂z_j = q_j (log q_j − log p_j − KL) / T.
//!
//! Rows whose target is [`IGNORE_INDEX`] add nothing and get a zero gradient, so prompt
//! tokens and padding are excluded from both terms alike. Like [`crate::cross_entropy`], no
//! probability matrix is stored: each row is swept a few times and overwritten by its
//! gradient. Sums are returned in f64 so callers choose the normalisation.

use crate::check_len;
use crate::cross_entropy::IGNORE_INDEX;
use crate::par::rows_per_task;
use crate::simd;
use rayon::prelude::*;
use slm_core::{Error, Result};

/// Which divergence between teacher (p) and student (q) distributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdLoss {
    /// KL(p‖q).
    ForwardKl,
    /// KL(q‖p).
    ReverseKl,
}

impl KdLoss {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "fkl" | "forward_kl" | "kl" => Ok(Self::ForwardKl),
            "rkl" | "reverse_kl" => Ok(Self::ReverseKl),
            _ => Err(Error::invalid(format!(
                "unknown distillation loss `{s}`: expected fkl (forward KL) or rkl (reverse KL)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ForwardKl => "fkl",
            Self::ReverseKl => "rkl",
        }
    }
}

/// How a row's loss mixes hard labels and the teacher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistillSpec {
    pub loss: KdLoss,
    /// Softening temperature T > 0 for both distributions.
    pub temperature: f32,
    /// Weight w in [0, 1] of the teacher term; 1 − w goes to the hard-label cross-entropy.
    pub kd_weight: f32,
}

impl DistillSpec {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::invalid(format!(
                "distillation temperature must be positive, got {}",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.kd_weight) {
            return Err(Error::invalid(format!(
                "distillation weight must be in [0, 1], got {}",
                self.kd_weight
            )));
        }
        Ok(())
    }
}

/// Summed losses over the non-ignored rows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DistillSums {
    /// Σ CE(z, y).
    pub ce: f64,
    /// Σ T² · D(p, q).
    pub kd: f64,
}

impl DistillSums {
    pub fn add(self, o: Self) -> Self {
        Self {
            ce: self.ce + o.ce,
            kd: self.kd + o.kd,
        }
    }

    /// (1 − w) · ce + w · kd.
    pub fn total(&self, spec: &DistillSpec) -> f64 {
        (1.0 - spec.kd_weight as f64) * self.ce + spec.kd_weight as f64 * self.kd
    }
}

fn check(
    len: usize,
    teacher: usize,
    targets: &[u32],
    vocab: usize,
    spec: &DistillSpec,
) -> Result<()> {
    spec.validate()?;
    check_len("distill student logits", len, targets.len() * vocab)?;
    check_len("distill teacher logits", teacher, targets.len() * vocab)?;
    if let Some((i, &t)) = targets
        .iter()
        .enumerate()
        .find(|(_, &t)| t != IGNORE_INDEX && t as usize >= vocab)
    {
        return Err(Error::invalid(format!(
            "distill: target {t} at row {i} is outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// Per-row normalisers: max and Σ e^(x·s − max) of a row scaled by `s`.
#[inline(always)]
fn scaled_max_sum(row: &[f32], s: f32) -> (f32, f32) {
    // max(x·s) = s·max(x) for s > 0.
    let m = simd::max(row) * s;
    let mut acc = [0f32; 16];
    let mut c = row.chunks_exact(16);
    for x in &mut c {
        for l in 0..16 {
            acc[l] += simd::exp(x[l] * s - m);
        }
    }
    let tail: f32 = c.remainder().iter().map(|&x| simd::exp(x * s - m)).sum();
    (m, acc.iter().sum::<f32>() + tail)
}

/// One row: returns its sums; with `grad_scale`, overwrites `z` by the gradient.
#[inline(always)]
fn row_impl(
    z: &mut [f32],
    t: &[f32],
    y: usize,
    spec: &DistillSpec,
    grad_scale: Option<f32>,
) -> DistillSums {
    let inv_t = 1.0 / spec.temperature;
    let tt = spec.temperature as f64 * spec.temperature as f64;
    let (m1, s1) = scaled_max_sum(z, 1.0); // hard CE at T = 1
    let (mq, sq) = scaled_max_sum(z, inv_t); // student at T
    let (mp, sp) = scaled_max_sum(t, inv_t); // teacher at T
    let (lse1, lq, lp) = (m1 + s1.ln(), mq + sq.ln(), mp + sp.ln());
    let ce = (lse1 - z[y]) as f64;
    // log q_j = z_j/T − lq, log p_j = t_j/T − lp.
    let mut div = 0f64;
    {
        let mut acc = [0f32; 16];
        let mut zc = z.chunks_exact(16);
        let mut tc = t.chunks_exact(16);
        let term = |zj: f32, tj: f32| -> f32 {
            let (lqj, lpj) = (zj * inv_t - lq, tj * inv_t - lp);
            match spec.loss {
                KdLoss::ForwardKl => simd::exp(lpj) * (lpj - lqj),
                KdLoss::ReverseKl => simd::exp(lqj) * (lqj - lpj),
            }
        };
        for (a, b) in (&mut zc).zip(&mut tc) {
            for l in 0..16 {
                acc[l] += term(a[l], b[l]);
            }
        }
        let tail: f32 = zc
            .remainder()
            .iter()
            .zip(tc.remainder())
            .map(|(&a, &b)| term(a, b))
            .sum();
        div += (acc.iter().sum::<f32>() + tail) as f64;
    }
    let sums = DistillSums { ce, kd: tt * div };
    if let Some(scale) = grad_scale {
        let w = spec.kd_weight;
        let (hard, soft) = (scale * (1.0 - w), scale * w * spec.temperature);
        let kl = div as f32;
        for (zj, &tj) in z.iter_mut().zip(t) {
            let p1 = simd::exp(*zj - lse1);
            let (lqj, lpj) = (*zj * inv_t - lq, tj * inv_t - lp);
            let q = simd::exp(lqj);
            // ∂(T²·D)/∂z_j, with D's own 1/T folded into `soft` = w·T.
            let dsoft = match spec.loss {
                KdLoss::ForwardKl => q - simd::exp(lpj),
                KdLoss::ReverseKl => q * (lqj - lpj - kl),
            };
            *zj = hard * p1 + soft * dsoft;
        }
        z[y] -= hard;
    }
    sums
}

#[inline(always)]
fn rows_impl(
    z: &mut [f32],
    t: &[f32],
    targets: &[u32],
    vocab: usize,
    spec: &DistillSpec,
    grad_scale: f32,
) -> DistillSums {
    let mut sums = DistillSums::default();
    for ((zr, tr), &y) in z
        .chunks_exact_mut(vocab)
        .zip(t.chunks_exact(vocab))
        .zip(targets)
    {
        if y == IGNORE_INDEX {
            zr.fill(0.0);
            continue;
        }
        sums = sums.add(row_impl(zr, tr, y as usize, spec, Some(grad_scale)));
    }
    sums
}

crate::dispatch!(fn fwd_bwd_rows(z: &mut [f32], t: &[f32], targets: &[u32], vocab: usize, spec: &DistillSpec, grad_scale: f32) -> DistillSums => rows_impl);

/// Σ losses over non-ignored rows; overwrites `student` [rows, vocab] with the gradient of
/// `grad_scale · Σ_rows [(1 − w)·CE + w·T²·D]` (zero rows where ignored).
pub fn distill_fwd_bwd(
    student: &mut [f32],
    teacher: &[f32],
    targets: &[u32],
    vocab: usize,
    spec: &DistillSpec,
    grad_scale: f32,
) -> Result<DistillSums> {
    check(student.len(), teacher.len(), targets, vocab, spec)?;
    if vocab == 0 || targets.is_empty() {
        return Ok(DistillSums::default());
    }
    let per = rows_per_task(targets.len(), 3 * vocab);
    // Per-task sums collected in order, so the total does not depend on scheduling.
    let parts: Vec<DistillSums> = student
        .par_chunks_mut(per * vocab)
        .zip(teacher.par_chunks(per * vocab))
        .zip(targets.par_chunks(per))
        .map(|((z, t), y)| fwd_bwd_rows(z, t, y, vocab, spec, grad_scale))
        .collect();
    Ok(parts
        .into_iter()
        .fold(DistillSums::default(), DistillSums::add))
}

/// Naive twin of [`distill_fwd_bwd`]: f64 throughout, probabilities materialised.
pub fn distill_fwd_bwd_naive(
    student: &mut [f32],
    teacher: &[f32],
    targets: &[u32],
    vocab: usize,
    spec: &DistillSpec,
    grad_scale: f32,
) -> DistillSums {
    let temp = spec.temperature as f64;
    let w = spec.kd_weight as f64;
    let softmax = |x: &[f32], s: f64| -> Vec<f64> {
        let m = x
            .iter()
            .fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64 * s));
        let e: Vec<f64> = x.iter().map(|&v| (v as f64 * s - m).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.into_iter().map(|v| v / sum).collect()
    };
    let mut sums = DistillSums::default();
    for (r, &y) in targets.iter().enumerate() {
        let z = &mut student[r * vocab..(r + 1) * vocab];
        if y == IGNORE_INDEX {
            z.fill(0.0);
            continue;
        }
        let t = &teacher[r * vocab..(r + 1) * vocab];
        let p1 = softmax(z, 1.0);
        let q = softmax(z, 1.0 / temp);
        let p = softmax(t, 1.0 / temp);
        let ce = -p1[y as usize].ln();
        let div: f64 = match spec.loss {
            KdLoss::ForwardKl => (0..vocab).map(|j| p[j] * (p[j].ln() - q[j].ln())).sum(),
            KdLoss::ReverseKl => (0..vocab).map(|j| q[j] * (q[j].ln() - p[j].ln())).sum(),
        };
        sums = sums.add(DistillSums {
            ce,
            kd: temp * temp * div,
        });
        for j in 0..vocab {
            let hard = p1[j] - if j == y as usize { 1.0 } else { 0.0 };
            let dsoft = match spec.loss {
                KdLoss::ForwardKl => q[j] - p[j],
                KdLoss::ReverseKl => q[j] * (q[j].ln() - p[j].ln() - div),
            };
            z[j] = (grad_scale as f64 * ((1.0 - w) * hard + w * temp * dsoft)) as f32;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, rand_vec};
    use proptest::prelude::*;

    fn spec(loss: KdLoss, temperature: f32, kd_weight: f32) -> DistillSpec {
        DistillSpec {
            loss,
            temperature,
            kd_weight,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn distill_matches_naive(rows in 1usize..30, vocab in 1usize..500, seed in 0u64..1000,
                                 reverse in any::<bool>(), temperature in 0.5f32..4.0, w in 0.0f32..1.0) {
            let z: Vec<f32> = rand_vec(rows * vocab, seed).iter().map(|v| v * 6.0).collect();
            let t: Vec<f32> = rand_vec(rows * vocab, seed + 7).iter().map(|v| v * 6.0).collect();
            let targets: Vec<u32> = (0..rows)
                .map(|r| if r % 4 == 3 { IGNORE_INDEX } else { ((r * 7919 + seed as usize) % vocab) as u32 })
                .collect();
            let s = spec(if reverse { KdLoss::ReverseKl } else { KdLoss::ForwardKl }, temperature, w);
            let (mut a, mut b) = (z.clone(), z.clone());
            let la = distill_fwd_bwd(&mut a, &t, &targets, vocab, &s, 0.5).unwrap();
            let lb = distill_fwd_bwd_naive(&mut b, &t, &targets, vocab, &s, 0.5);
            prop_assert!((la.ce - lb.ce).abs() <= 1e-4 * lb.ce.abs().max(1.0), "ce {} vs {}", la.ce, lb.ce);
            prop_assert!((la.kd - lb.kd).abs() <= 1e-4 * lb.kd.abs().max(1.0), "kd {} vs {}", la.kd, lb.kd);
            assert_close(&a, &b, 2e-5, "grad");
        }
    }

    /// The naive gradient is checked against central differences of the naive loss, so the
    /// fast kernel (checked against the naive one above) is tied to the loss it claims.
    #[test]
    fn naive_gradient_matches_finite_differences() {
        let vocab = 7;
        let z: Vec<f32> = rand_vec(2 * vocab, 3).iter().map(|v| v * 3.0).collect();
        let t: Vec<f32> = rand_vec(2 * vocab, 4).iter().map(|v| v * 3.0).collect();
        let targets = [2u32, 5];
        for loss in [KdLoss::ForwardKl, KdLoss::ReverseKl] {
            let s = spec(loss, 2.0, 0.7);
            let total = |zz: &[f32]| {
                let mut c = zz.to_vec();
                distill_fwd_bwd_naive(&mut c, &t, &targets, vocab, &s, 1.0).total(&s)
            };
            let mut g = z.clone();
            distill_fwd_bwd_naive(&mut g, &t, &targets, vocab, &s, 1.0);
            for i in 0..z.len() {
                let h = 1e-2f32;
                let (mut up, mut dn) = (z.clone(), z.clone());
                up[i] += h;
                dn[i] -= h;
                let fd = (total(&up) - total(&dn)) / (2.0 * h as f64);
                assert!(
                    (fd - g[i] as f64).abs() < 2e-3,
                    "{loss:?} element {i}: finite difference {fd} vs gradient {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn identical_distributions_have_zero_divergence_and_gradient() {
        let vocab = 50;
        let z = rand_vec(3 * vocab, 9);
        for loss in [KdLoss::ForwardKl, KdLoss::ReverseKl] {
            let mut g = z.clone();
            let s = spec(loss, 1.5, 1.0);
            let sums = distill_fwd_bwd(&mut g, &z, &[1, 2, 3], vocab, &s, 1.0).unwrap();
            assert!(sums.kd.abs() < 1e-5, "{loss:?}: {}", sums.kd);
            assert!(
                g.iter().all(|v| v.abs() < 1e-5),
                "{loss:?}: gradient not zero"
            );
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut z = vec![0.0; 6];
        let t = vec![0.0; 6];
        let ok = spec(KdLoss::ForwardKl, 1.0, 0.5);
        assert!(distill_fwd_bwd(&mut z, &t, &[0, 3], 3, &ok, 1.0).is_err());
        assert!(distill_fwd_bwd(&mut z, &t[..3], &[0, 1], 3, &ok, 1.0).is_err());
        assert!(distill_fwd_bwd(
            &mut z,
            &t,
            &[0, 1],
            3,
            &spec(KdLoss::ForwardKl, 0.0, 0.5),
            1.0
        )
        .is_err());
        assert!(distill_fwd_bwd(
            &mut z,
            &t,
            &[0, 1],
            3,
            &spec(KdLoss::ForwardKl, 1.0, 1.5),
            1.0
        )
        .is_err());
        assert!(KdLoss::parse("jsd?").is_err());
        assert_eq!(KdLoss::parse("fkl").unwrap(), KdLoss::ForwardKl);
    }
}
