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
//! the hard one when T changes. Divergences ([`KdLoss`]), all ≥ 0 and 0 when p = q:
//! - forward KL, `KL(p‖q) = Σ p (log p − log q)`: mean-seeking, the classic choice;
//! - reverse KL, `KL(q‖p)`: mode-seeking (MiniLLM);
//! - generalised JSD(β) of GKD with m = β·p + (1 − β)·q: `β·KL(p‖m) + (1 − β)·KL(q‖m)`,
//!   with β = 0 and β = 1 taken as forward and reverse KL (as Hugging Face TRL does);
//! - skew KL(α) of DistiLLM, `KL(p ‖ α·p + (1 − α)·q)`, and skew reverse KL(α),
//!   `KL(q ‖ α·q + (1 − α)·p)` (α = 0 gives the plain KLs);
//! - total variation, `½ Σ |p − q|`.
//!
//! # Gradient
//! With u = z/T, every divergence's gradient passes through the softmax the same way:
//! ∂D/∂u_j = q_j·g_j − q_j·Σ_k q_k·g_k, where g = ∂D/∂q. Each loss supplies its term of D
//! and q_j·g_j, written so that nothing divides by a vanishing q (forward KL has
//! q_j·g_j = −p_j, which gives the familiar q − p). Then ∂(T²·D)/∂z = T·∂D/∂u.
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

/// Which divergence between teacher (p) and student (q) distributions (by name, as configs
/// write it: `slm_distill::loss`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KdLoss {
    /// KL(p‖q).
    ForwardKl,
    /// KL(q‖p).
    ReverseKl,
    /// Generalised JSD(β) (GKD): β·KL(p‖m) + (1 − β)·KL(q‖m), m = β·p + (1 − β)·q.
    Jsd { beta: f32 },
    /// Skew KL(α) (DistiLLM): KL(p ‖ α·p + (1 − α)·q).
    SkewKl { alpha: f32 },
    /// Skew reverse KL(α) (DistiLLM): KL(q ‖ α·q + (1 − α)·p).
    SkewReverseKl { alpha: f32 },
    /// Total variation distance ½·Σ|p − q|.
    Tvd,
}

impl KdLoss {
    /// JSD at its end points is the plain KL it interpolates (TRL's convention).
    fn canonical(self) -> Self {
        match self {
            Self::Jsd { beta } if beta <= 0.0 => Self::ForwardKl,
            Self::Jsd { beta } if beta >= 1.0 => Self::ReverseKl,
            l => l,
        }
    }

    /// One vocabulary entry: (its term of D, q_j·g_j) from log q_j and log p_j.
    #[inline(always)]
    fn term(self, lq: f32, lp: f32) -> (f32, f32) {
        let (q, p) = (simd::exp(lq), simd::exp(lp));
        // ln of a mixture, clamped so an entry where both are 0 stays finite (its terms
        // are 0·finite = 0).
        let ln = |m: f32| m.max(f32::MIN_POSITIVE).ln();
        match self {
            Self::ForwardKl => (p * (lp - lq), -p),
            Self::ReverseKl => (q * (lq - lp), q * (lq - lp)),
            Self::Jsd { beta } => {
                let lm = ln(beta * p + (1.0 - beta) * q);
                let d = beta * p * (lp - lm) + (1.0 - beta) * q * (lq - lm);
                (d, (1.0 - beta) * q * (lq - lm))
            }
            Self::SkewKl { alpha } => {
                let m = alpha * p + (1.0 - alpha) * q;
                let qg = if m > 0.0 {
                    -(1.0 - alpha) * q * p / m
                } else {
                    0.0
                };
                (p * (lp - ln(m)), qg)
            }
            Self::SkewReverseKl { alpha } => {
                let m = alpha * q + (1.0 - alpha) * p;
                let lm = ln(m);
                let pull = if m > 0.0 { alpha * q * q / m } else { 0.0 };
                (q * (lq - lm), q * (lq - lm) - pull)
            }
            Self::Tvd => {
                let d = q - p;
                let sign = if d > 0.0 {
                    1.0
                } else if d < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                (0.5 * d.abs(), 0.5 * q * sign)
            }
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

impl std::ops::Add for DistillSums {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            ce: self.ce + o.ce,
            kd: self.kd + o.kd,
        }
    }
}

impl DistillSums {
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

/// Per-row normalisers: max and Σ e^(x·s − max) of a row scaled by `s` > 0.
#[inline(always)]
fn scaled_max_sum(row: &[f32], s: f32) -> (f32, f32) {
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
    grad_scale: f32,
) -> DistillSums {
    let loss = spec.loss.canonical();
    let inv_t = 1.0 / spec.temperature;
    let tt = spec.temperature as f64 * spec.temperature as f64;
    let (m1, s1) = scaled_max_sum(z, 1.0); // hard CE at T = 1
    let (mq, sq) = scaled_max_sum(z, inv_t); // student at T
    let (mp, sp) = scaled_max_sum(t, inv_t); // teacher at T
    let (lse1, lq, lp) = (m1 + s1.ln(), mq + sq.ln(), mp + sp.ln());
    let ce = (lse1 - z[y]) as f64;
    // log q_j = z_j/T − lq, log p_j = t_j/T − lp. First sweep: D and Σ_k q_k·g_k.
    let (mut div, mut qg_sum) = ([0f32; 16], [0f32; 16]);
    let mut zc = z.chunks_exact(16);
    let mut tc = t.chunks_exact(16);
    for (a, b) in (&mut zc).zip(&mut tc) {
        for l in 0..16 {
            let (d, qg) = loss.term(a[l] * inv_t - lq, b[l] * inv_t - lp);
            div[l] += d;
            qg_sum[l] += qg;
        }
    }
    let (mut div_tail, mut qg_tail) = (0f32, 0f32);
    for (&a, &b) in zc.remainder().iter().zip(tc.remainder()) {
        let (d, qg) = loss.term(a * inv_t - lq, b * inv_t - lp);
        div_tail += d;
        qg_tail += qg;
    }
    let div = (div.iter().sum::<f32>() + div_tail) as f64;
    let g_mean = qg_sum.iter().sum::<f32>() + qg_tail;
    // Second sweep: the gradient. ∂(T²·D)/∂z = T·∂D/∂u, folded into `soft` = scale·w·T.
    let w = spec.kd_weight;
    let (hard, soft) = (grad_scale * (1.0 - w), grad_scale * w * spec.temperature);
    for (zj, &tj) in z.iter_mut().zip(t) {
        let p1 = simd::exp(*zj - lse1);
        let lqj = *zj * inv_t - lq;
        let (_, qg) = loss.term(lqj, tj * inv_t - lp);
        *zj = hard * p1 + soft * (qg - simd::exp(lqj) * g_mean);
    }
    z[y] -= hard;
    DistillSums { ce, kd: tt * div }
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
        sums = sums + row_impl(zr, tr, y as usize, spec, grad_scale);
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
    let per = rows_per_task(targets.len(), 4 * vocab);
    // Per-task sums collected in order, so the total does not depend on scheduling.
    let parts: Vec<DistillSums> = student
        .par_chunks_mut(per * vocab)
        .zip(teacher.par_chunks(per * vocab))
        .zip(targets.par_chunks(per))
        .map(|((z, t), y)| fwd_bwd_rows(z, t, y, vocab, spec, grad_scale))
        .collect();
    Ok(parts.into_iter().fold(DistillSums::default(), |a, b| a + b))
}

/// The largest k the sparse loss takes (beyond it, a dense teacher is cheaper anyway).
pub const MAX_TOP_K: usize = 256;

/// A teacher's top-k summary of `rows` positions (an offline cache): for each row, `k` token
/// ids with their log-probabilities at T = 1, and the probability mass of every other token.
#[derive(Debug, Clone, Copy)]
pub struct TopK<'a> {
    pub k: usize,
    /// [rows, k]
    pub ids: &'a [u32],
    /// [rows, k] log p of each id.
    pub logp: &'a [f32],
    /// [rows] 1 − Σ p over the k ids.
    pub tail: &'a [f32],
}

impl TopK<'_> {
    fn check(&self, rows: usize, vocab: usize) -> Result<()> {
        if self.k == 0 || self.k > MAX_TOP_K || self.k > vocab {
            return Err(Error::invalid(format!(
                "top-k: k = {} must be in 1..={} and at most the vocabulary ({vocab})",
                self.k, MAX_TOP_K
            )));
        }
        check_len("top-k ids", self.ids.len(), rows * self.k)?;
        check_len("top-k log-probs", self.logp.len(), rows * self.k)?;
        check_len("top-k tail", self.tail.len(), rows)?;
        if let Some(&bad) = self.ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::invalid(format!(
                "top-k id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        Ok(())
    }
}

/// One row of the sparse forward KL: buckets = the k teacher ids + one bucket for the rest.
/// KL = Σ_i p_i (log p_i − log q_i) + p_r (log p_r − log q_r), q_r = Σ_{j unlisted} q_j.
/// ∂/∂z_j = q_j − p_j for a listed id, q_j·(1 − p_r/q_r) for the rest.
#[inline(always)]
fn topk_row(
    z: &mut [f32],
    ids: &[u32],
    logp: &[f32],
    tail: f32,
    y: usize,
    kd_weight: f32,
    grad_scale: f32,
) -> DistillSums {
    let (m, s) = scaled_max_sum(z, 1.0);
    let lse = m + s.ln();
    let ce = (lse - z[y]) as f64;
    let mut div = 0f64;
    // The listed ids' q before the row is overwritten (k ≤ MAX_TOP_K, checked by the caller).
    let mut q_listed = [0f32; MAX_TOP_K];
    for ((q, &i), &lp) in q_listed.iter_mut().zip(ids).zip(logp) {
        let lq = z[i as usize] - lse;
        *q = simd::exp(lq);
        div += (lp as f64).exp() * (lp - lq) as f64;
    }
    // The rest bucket's mass summed over the unlisted entries themselves, not as 1 − Σ listed:
    // that difference cancels when the listed ids hold nearly all the student's mass, and
    // 1 − p_rest/q_rest below multiplies its error. Listed entries are set to −∞ so the sweep
    // that writes every q skips them (e^−∞ is clamped to ~1e-38, and they are rewritten below).
    for &i in ids {
        z[i as usize] = f32::NEG_INFINITY;
    }
    let q_rest = (simd::exp_shift_sum(z, lse) as f64).max(1e-30); // z[j] = q_j now
    let p_rest = (tail as f64).max(0.0);
    if p_rest > 0.0 {
        div += p_rest * (p_rest.ln() - q_rest.ln());
    }
    let (hard, soft) = (grad_scale * (1.0 - kd_weight), grad_scale * kd_weight);
    // Every entry as if in the rest bucket, then the listed ids.
    simd::scale(z, hard + soft * (1.0 - p_rest / q_rest) as f32);
    for ((&i, &lp), &q) in ids.iter().zip(logp).zip(&q_listed) {
        z[i as usize] = hard * q + soft * (q - lp.exp());
    }
    z[y] -= hard;
    DistillSums { ce, kd: div }
}

#[inline(always)]
fn topk_rows_impl(
    z: &mut [f32],
    top: TopK,
    targets: &[u32],
    vocab: usize,
    kd_weight: f32,
    grad_scale: f32,
) -> DistillSums {
    let k = top.k;
    let mut sums = DistillSums::default();
    for (r, (zr, &y)) in z.chunks_exact_mut(vocab).zip(targets).enumerate() {
        if y == IGNORE_INDEX {
            zr.fill(0.0);
            continue;
        }
        let (ids, logp) = (&top.ids[r * k..(r + 1) * k], &top.logp[r * k..(r + 1) * k]);
        sums = sums
            + topk_row(
                zr,
                ids,
                logp,
                top.tail[r],
                y as usize,
                kd_weight,
                grad_scale,
            );
    }
    sums
}

crate::dispatch!(fn topk_rows(z: &mut [f32], top: TopK, targets: &[u32], vocab: usize, kd_weight: f32, grad_scale: f32) -> DistillSums => topk_rows_impl);

/// The sparse forward KL against a teacher's top-k (an offline cache), mixed with the
/// hard-label cross-entropy: per non-ignored row, (1 − w)·CE + w·KL over k + 1 buckets (the
/// k listed ids and one for the rest of the vocabulary), at T = 1. With k = vocabulary and
/// no tail this is exactly the dense forward KL. Overwrites `student` [rows, vocab] with the
/// gradient of `grad_scale ·` the summed loss; returns the sums.
pub fn distill_topk_fwd_bwd(
    student: &mut [f32],
    top: &TopK,
    targets: &[u32],
    vocab: usize,
    kd_weight: f32,
    grad_scale: f32,
) -> Result<DistillSums> {
    let rows = targets.len();
    check_len("distill student logits", student.len(), rows * vocab)?;
    top.check(rows, vocab)?;
    if !(0.0..=1.0).contains(&kd_weight) {
        return Err(Error::invalid(format!(
            "distillation weight must be in [0, 1], got {kd_weight}"
        )));
    }
    if let Some((i, &t)) = targets
        .iter()
        .enumerate()
        .find(|(_, &t)| t != IGNORE_INDEX && t as usize >= vocab)
    {
        return Err(Error::invalid(format!(
            "distill: target {t} at row {i} is outside the vocabulary of {vocab}"
        )));
    }
    if vocab == 0 || rows == 0 {
        return Ok(DistillSums::default());
    }
    let k = top.k;
    let per = rows_per_task(rows, 2 * vocab);
    let parts: Vec<DistillSums> = student
        .par_chunks_mut(per * vocab)
        .zip(targets.par_chunks(per))
        .enumerate()
        .map(|(c, (z, y))| {
            let r0 = c * per;
            let r1 = r0 + y.len();
            let part = TopK {
                k,
                ids: &top.ids[r0 * k..r1 * k],
                logp: &top.logp[r0 * k..r1 * k],
                tail: &top.tail[r0..r1],
            };
            topk_rows(z, part, y, vocab, kd_weight, grad_scale)
        })
        .collect();
    Ok(parts.into_iter().fold(DistillSums::default(), |a, b| a + b))
}

/// Naive twin of [`distill_topk_fwd_bwd`] in f64: the bucket distributions materialised.
pub fn distill_topk_fwd_bwd_naive(
    student: &mut [f32],
    top: &TopK,
    targets: &[u32],
    vocab: usize,
    kd_weight: f32,
    grad_scale: f32,
) -> DistillSums {
    let (k, w) = (top.k, kd_weight as f64);
    let mut sums = DistillSums::default();
    for (r, &y) in targets.iter().enumerate() {
        let z = &mut student[r * vocab..(r + 1) * vocab];
        if y == IGNORE_INDEX {
            z.fill(0.0);
            continue;
        }
        let q = softmax64(z, 1.0);
        let ids = &top.ids[r * k..(r + 1) * k];
        let p_top: Vec<f64> = top.logp[r * k..(r + 1) * k]
            .iter()
            .map(|&l| (l as f64).exp())
            .collect();
        let in_top = |j: usize| ids.iter().position(|&i| i as usize == j);
        let q_rest: f64 = (0..vocab)
            .filter(|&j| in_top(j).is_none())
            .map(|j| q[j])
            .sum();
        let p_rest = top.tail[r] as f64;
        let mut div: f64 = ids
            .iter()
            .zip(&p_top)
            .map(|(&i, &p)| p * (p.ln() - q[i as usize].ln()))
            .sum();
        if p_rest > 0.0 {
            div += p_rest * (p_rest.ln() - q_rest.ln());
        }
        sums = sums
            + DistillSums {
                ce: -q[y as usize].ln(),
                kd: div,
            };
        for j in 0..vocab {
            let hard = q[j] - if j == y as usize { 1.0 } else { 0.0 };
            let soft = match in_top(j) {
                Some(b) => q[j] - p_top[b],
                None if q_rest > 0.0 => q[j] * (1.0 - p_rest / q_rest),
                None => q[j],
            };
            z[j] = (grad_scale as f64 * ((1.0 - w) * hard + w * soft)) as f32;
        }
    }
    sums
}

/// KL(a‖b) in f64 (entries with a = 0 contribute 0).
fn kl64(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .filter(|(x, _)| **x > 0.0)
        .map(|(x, y)| x * (x.ln() - y.ln()))
        .sum()
}

/// Softmax of `x·s` in f64.
fn softmax64(x: &[f32], s: f64) -> Vec<f64> {
    let m = x
        .iter()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64 * s));
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 * s - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// The divergence D(p, q) in f64 straight from its definition.
pub fn divergence_naive(loss: KdLoss, p: &[f64], q: &[f64]) -> f64 {
    let mix = |a: &[f64], b: &[f64], wa: f64| -> Vec<f64> {
        a.iter()
            .zip(b)
            .map(|(x, y)| wa * x + (1.0 - wa) * y)
            .collect()
    };
    match loss.canonical() {
        KdLoss::ForwardKl => kl64(p, q),
        KdLoss::ReverseKl => kl64(q, p),
        KdLoss::Jsd { beta } => {
            let b = beta as f64;
            let m = mix(p, q, b);
            b * kl64(p, &m) + (1.0 - b) * kl64(q, &m)
        }
        KdLoss::SkewKl { alpha } => kl64(p, &mix(p, q, alpha as f64)),
        KdLoss::SkewReverseKl { alpha } => kl64(q, &mix(q, p, alpha as f64)),
        KdLoss::Tvd => 0.5 * p.iter().zip(q).map(|(a, b)| (a - b).abs()).sum::<f64>(),
    }
}

/// Naive twin of [`distill_fwd_bwd`]: f64 throughout, probabilities materialised, the
/// divergence from its definition and q_j·g_j from the closed forms of ∂D/∂q.
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
    let mut sums = DistillSums::default();
    for (r, &y) in targets.iter().enumerate() {
        let z = &mut student[r * vocab..(r + 1) * vocab];
        if y == IGNORE_INDEX {
            z.fill(0.0);
            continue;
        }
        let t = &teacher[r * vocab..(r + 1) * vocab];
        let p1 = softmax64(z, 1.0);
        let q = softmax64(z, 1.0 / temp);
        let p = softmax64(t, 1.0 / temp);
        let ce = -p1[y as usize].ln();
        let div = divergence_naive(spec.loss, &p, &q);
        let qg: Vec<f64> = (0..vocab)
            .map(|j| match spec.loss.canonical() {
                KdLoss::ForwardKl => -p[j],
                KdLoss::ReverseKl => q[j] * (q[j].ln() - p[j].ln()),
                KdLoss::Jsd { beta } => {
                    let b = beta as f64;
                    (1.0 - b) * q[j] * (q[j] / (b * p[j] + (1.0 - b) * q[j])).ln()
                }
                KdLoss::SkewKl { alpha } => {
                    let a = alpha as f64;
                    -(1.0 - a) * q[j] * p[j] / (a * p[j] + (1.0 - a) * q[j])
                }
                KdLoss::SkewReverseKl { alpha } => {
                    let a = alpha as f64;
                    let m = a * q[j] + (1.0 - a) * p[j];
                    q[j] * (q[j] / m).ln() - a * q[j] * q[j] / m
                }
                KdLoss::Tvd => 0.5 * q[j] * (q[j] - p[j]).signum(),
            })
            .collect();
        let g_mean: f64 = qg.iter().sum();
        sums = sums
            + DistillSums {
                ce,
                kd: temp * temp * div,
            };
        for j in 0..vocab {
            let hard = p1[j] - if j == y as usize { 1.0 } else { 0.0 };
            let dsoft = qg[j] - q[j] * g_mean;
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

    const ALL: [KdLoss; 6] = [
        KdLoss::ForwardKl,
        KdLoss::ReverseKl,
        KdLoss::Jsd { beta: 0.3 },
        KdLoss::SkewKl { alpha: 0.2 },
        KdLoss::SkewReverseKl { alpha: 0.2 },
        KdLoss::Tvd,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn distill_matches_naive(rows in 1usize..20, vocab in 1usize..400, seed in 0u64..1000,
                                 which in 0usize..6, temperature in 0.5f32..4.0, w in 0.0f32..1.0) {
            let z: Vec<f32> = rand_vec(rows * vocab, seed).iter().map(|v| v * 6.0).collect();
            let t: Vec<f32> = rand_vec(rows * vocab, seed + 7).iter().map(|v| v * 6.0).collect();
            let targets: Vec<u32> = (0..rows)
                .map(|r| if r % 4 == 3 { IGNORE_INDEX } else { ((r * 7919 + seed as usize) % vocab) as u32 })
                .collect();
            let s = spec(ALL[which], temperature, w);
            if s.loss == KdLoss::Tvd {
                // TVD's gradient jumps where q_j = p_j: an entry within rounding of a tie has
                // no one right sign, so such draws are not a test of the kernel.
                let inv_t = 1.0 / temperature as f64;
                let near_tie = (0..rows).filter(|&r| targets[r] != IGNORE_INDEX).any(|r| {
                    let q = softmax64(&z[r * vocab..(r + 1) * vocab], inv_t);
                    let p = softmax64(&t[r * vocab..(r + 1) * vocab], inv_t);
                    q.iter().zip(&p).any(|(a, b)| (a - b).abs() < 1e-5 * a.max(*b))
                });
                prop_assume!(!near_tie);
            }
            let (mut a, mut b) = (z.clone(), z.clone());
            let la = distill_fwd_bwd(&mut a, &t, &targets, vocab, &s, 0.5).unwrap();
            let lb = distill_fwd_bwd_naive(&mut b, &t, &targets, vocab, &s, 0.5);
            prop_assert!((la.ce - lb.ce).abs() <= 1e-4 * lb.ce.abs().max(1.0), "ce {} vs {}", la.ce, lb.ce);
            prop_assert!((la.kd - lb.kd).abs() <= 1e-4 * lb.kd.abs().max(1.0), "{:?} kd {} vs {}", s.loss, la.kd, lb.kd);
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
        for loss in ALL {
            let s = spec(loss, 2.0, 0.7);
            let total = |zz: &[f32]| {
                let mut c = zz.to_vec();
                distill_fwd_bwd_naive(&mut c, &t, &targets, vocab, &s, 1.0).total(&s)
            };
            let mut g = z.clone();
            distill_fwd_bwd_naive(&mut g, &t, &targets, vocab, &s, 1.0);
            for i in 0..z.len() {
                let h = 1e-3f32;
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

    /// Closed-form values on hand-made distributions.
    #[test]
    fn divergences_have_their_closed_form_values() {
        let p = [0.5, 0.5];
        let q = [0.9, 0.1];
        let kl_pq = 0.5 * (0.5f64 / 0.9).ln() + 0.5 * (0.5f64 / 0.1).ln();
        let kl_qp = 0.9 * (0.9f64 / 0.5).ln() + 0.1 * (0.1f64 / 0.5).ln();
        let d = |l| divergence_naive(l, &p, &q);
        assert!((d(KdLoss::ForwardKl) - kl_pq).abs() < 1e-12);
        assert!((d(KdLoss::ReverseKl) - kl_qp).abs() < 1e-12);
        assert!((d(KdLoss::Tvd) - 0.4).abs() < 1e-12);
        // JSD(β) at the end points is forward / reverse KL; in between, with m = (p + q)/2 at
        // β = ½, it is the classic Jensen–Shannon divergence.
        assert_eq!(d(KdLoss::Jsd { beta: 0.0 }), d(KdLoss::ForwardKl));
        assert_eq!(d(KdLoss::Jsd { beta: 1.0 }), d(KdLoss::ReverseKl));
        let m = [0.7, 0.3];
        let js = 0.5 * kl64(&p, &m) + 0.5 * kl64(&q, &m);
        assert!((d(KdLoss::Jsd { beta: 0.5 }) - js).abs() < 1e-12);
        // Skew KL at α = 0 is the plain KL; at α = 1 it vanishes.
        assert!((d(KdLoss::SkewKl { alpha: 0.0 }) - kl_pq).abs() < 1e-12);
        assert!((d(KdLoss::SkewReverseKl { alpha: 0.0 }) - kl_qp).abs() < 1e-12);
        assert!(d(KdLoss::SkewKl { alpha: 1.0 }).abs() < 1e-12);
        // Equal distributions: every divergence is 0.
        for l in ALL {
            assert!(divergence_naive(l, &p, &p).abs() < 1e-12, "{l:?}");
        }
        // The fast kernel agrees at the end points too (β = 0 is forward KL there).
        let (z, tt) = (vec![0.3f32, -1.0, 2.0], vec![1.0f32, 0.0, -0.5]);
        let run = |l| {
            let mut g = z.clone();
            distill_fwd_bwd(&mut g, &tt, &[0], 3, &spec(l, 1.0, 1.0), 1.0)
                .unwrap()
                .kd
        };
        assert!((run(KdLoss::Jsd { beta: 0.0 }) - run(KdLoss::ForwardKl)).abs() < 1e-7);
    }

    #[test]
    fn identical_distributions_have_zero_divergence_and_gradient() {
        let vocab = 50;
        let z = rand_vec(3 * vocab, 9);
        for loss in ALL {
            let mut g = z.clone();
            let s = spec(loss, 1.5, 1.0);
            let sums = distill_fwd_bwd(&mut g, &z, &[1, 2, 3], vocab, &s, 1.0).unwrap();
            assert!(sums.kd.abs() < 1e-5, "{loss:?}: {}", sums.kd);
            if loss != KdLoss::Tvd {
                // (TVD's subgradient at p = q is any sign; the others are smooth there.)
                assert!(
                    g.iter().all(|v| v.abs() < 1e-5),
                    "{loss:?}: gradient not zero"
                );
            }
        }
    }

    /// A teacher's top-k from dense logits (sorted by probability), with the tail mass.
    fn top_k_of(t: &[f32], rows: usize, vocab: usize, k: usize) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
        let (mut ids, mut logp, mut tail) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rows {
            let p = softmax64(&t[r * vocab..(r + 1) * vocab], 1.0);
            let mut order: Vec<usize> = (0..vocab).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            let top = &order[..k];
            ids.extend(top.iter().map(|&i| i as u32));
            logp.extend(top.iter().map(|&i| p[i].ln() as f32));
            tail.push((1.0 - top.iter().map(|&i| p[i]).sum::<f64>()).max(0.0) as f32);
        }
        (ids, logp, tail)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn topk_matches_naive(rows in 1usize..12, vocab in 2usize..300, seed in 0u64..1000,
                              kfrac in 0.01f64..1.0, w in 0.0f32..1.0) {
            let k = ((vocab as f64 * kfrac) as usize).clamp(1, vocab.min(MAX_TOP_K));
            let z: Vec<f32> = rand_vec(rows * vocab, seed).iter().map(|v| v * 5.0).collect();
            let t: Vec<f32> = rand_vec(rows * vocab, seed + 3).iter().map(|v| v * 5.0).collect();
            let targets: Vec<u32> = (0..rows)
                .map(|r| if r % 3 == 2 { IGNORE_INDEX } else { ((r * 31 + seed as usize) % vocab) as u32 })
                .collect();
            let (ids, logp, tail) = top_k_of(&t, rows, vocab, k);
            let top = TopK { k, ids: &ids, logp: &logp, tail: &tail };
            let (mut a, mut b) = (z.clone(), z.clone());
            let la = distill_topk_fwd_bwd(&mut a, &top, &targets, vocab, w, 0.5).unwrap();
            let lb = distill_topk_fwd_bwd_naive(&mut b, &top, &targets, vocab, w, 0.5);
            prop_assert!((la.kd - lb.kd).abs() <= 1e-4 * lb.kd.abs().max(1.0), "kd {} vs {}", la.kd, lb.kd);
            prop_assert!((la.ce - lb.ce).abs() <= 1e-4 * lb.ce.abs().max(1.0));
            assert_close(&a, &b, 2e-5, "grad");
        }
    }

    #[test]
    fn topk_with_the_whole_vocabulary_is_the_dense_forward_kl() {
        let (rows, vocab) = (5, 40);
        let z: Vec<f32> = rand_vec(rows * vocab, 11).iter().map(|v| v * 4.0).collect();
        let t: Vec<f32> = rand_vec(rows * vocab, 12).iter().map(|v| v * 4.0).collect();
        let targets = [1u32, 7, IGNORE_INDEX, 39, 0];
        let (ids, logp, tail) = top_k_of(&t, rows, vocab, vocab);
        let top = TopK {
            k: vocab,
            ids: &ids,
            logp: &logp,
            tail: &tail,
        };
        let (mut a, mut b) = (z.clone(), z.clone());
        let sparse = distill_topk_fwd_bwd(&mut a, &top, &targets, vocab, 0.6, 1.0).unwrap();
        let dense = distill_fwd_bwd(
            &mut b,
            &t,
            &targets,
            vocab,
            &spec(KdLoss::ForwardKl, 1.0, 0.6),
            1.0,
        )
        .unwrap();
        assert!(
            (sparse.kd - dense.kd).abs() < 1e-4,
            "{sparse:?} vs {dense:?}"
        );
        assert!((sparse.ce - dense.ce).abs() < 1e-4);
        assert_close(&a, &b, 1e-5, "grad");
    }

    #[test]
    fn topk_naive_gradient_matches_finite_differences() {
        let (rows, vocab, k) = (2, 9, 3);
        let z: Vec<f32> = rand_vec(rows * vocab, 21).iter().map(|v| v * 2.0).collect();
        let t: Vec<f32> = rand_vec(rows * vocab, 22).iter().map(|v| v * 2.0).collect();
        let targets = [4u32, 0];
        let (ids, logp, tail) = top_k_of(&t, rows, vocab, k);
        let top = TopK {
            k,
            ids: &ids,
            logp: &logp,
            tail: &tail,
        };
        let total = |zz: &[f32]| {
            let mut c = zz.to_vec();
            let s = distill_topk_fwd_bwd_naive(&mut c, &top, &targets, vocab, 0.7, 1.0);
            0.3 * s.ce + 0.7 * s.kd
        };
        let mut g = z.clone();
        distill_topk_fwd_bwd_naive(&mut g, &top, &targets, vocab, 0.7, 1.0);
        for i in 0..z.len() {
            let h = 1e-3f32;
            let (mut up, mut dn) = (z.clone(), z.clone());
            up[i] += h;
            dn[i] -= h;
            let fd = (total(&up) - total(&dn)) / (2.0 * h as f64);
            assert!(
                (fd - g[i] as f64).abs() < 2e-3,
                "element {i}: {fd} vs {}",
                g[i]
            );
        }
        // Bad shapes and k are errors.
        let mut zz = z.clone();
        let bad = TopK {
            k: 0,
            ids: &[],
            logp: &[],
            tail: &tail,
        };
        assert!(distill_topk_fwd_bwd(&mut zz, &bad, &targets, vocab, 0.5, 1.0).is_err());
        let short = TopK {
            k,
            ids: &ids[1..],
            logp: &logp,
            tail: &tail,
        };
        assert!(distill_topk_fwd_bwd(&mut zz, &short, &targets, vocab, 0.5, 1.0).is_err());
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut z = vec![0.0; 6];
        let t = vec![0.0; 6];
        let ok = spec(KdLoss::ForwardKl, 1.0, 0.5);
        assert!(distill_fwd_bwd(&mut z, &t, &[0, 3], 3, &ok, 1.0).is_err());
        assert!(distill_fwd_bwd(&mut z, &t[..3], &[0, 1], 3, &ok, 1.0).is_err());
        let bad_t = spec(KdLoss::ForwardKl, 0.0, 0.5);
        assert!(distill_fwd_bwd(&mut z, &t, &[0, 1], 3, &bad_t, 1.0).is_err());
        let bad_w = spec(KdLoss::ForwardKl, 1.0, 1.5);
        assert!(distill_fwd_bwd(&mut z, &t, &[0, 1], 3, &bad_w, 1.0).is_err());
    }
}
