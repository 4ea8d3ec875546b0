//! Causal grouped-query attention, forward and backward, over a packed q|k|v matrix.
//!
//! Layout (b = batch, t = seq, h = query heads, g = kv heads, e = head_dim, W = (h+2g)·e):
//! - `qkv` [b·t, W]: row n = token (n / t, n % t); columns `[q_0 … q_{h-1} | k_0 … k_{g-1} |
//!   v_0 … v_{g-1}]`, each head e wide (q and k already rotated by RoPE).
//! - `y` [b·t, h·e]: attention output per head, the input of the output projection.
//! - `probs` [b, h, t, t]: softmax probabilities saved for the backward. Only `j ≤ i` of row i
//!   is meaningful (the rest is zero or never written, and never read).
//!
//! Query head `h` reads kv head `h / (h_total / g)`. Scores are scaled by 1/√e.
//!
//! The fast path runs one task per (batch, head) forward and per (batch, kv head) backward
//! (so the heads sharing a kv head accumulate dK/dV without races), each task issuing small
//! single-threaded `gemm`s: QKᵀ and PV forward; dP = dY·Vᵀ, dV += Pᵀ·dY, dQ = dS·K,
//! dK += dSᵀ·Q backward. Rows are processed in blocks of [`BLOCK`] queries so that a block
//! only multiplies the keys it can see, skipping most of the masked upper triangle.
//! The backward's `dS = P ⊙ (dP − rowsum(P ⊙ dP)) / √e` uses one t×t scratch per thread.

use crate::check_len;
use crate::matmul::gemm_raw;
use crate::par::SendPtr;
use crate::simd;
use gemm::Parallelism;
use rayon::prelude::*;
use slm_core::{Error, Result};
use std::cell::RefCell;

/// Query rows per causal block.
pub const BLOCK: usize = 64;

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    /// Elements per row of the packed q|k|v matrix.
    pub fn qkv_width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    fn check(&self, qkv: usize, y: usize, probs: usize) -> Result<()> {
        if self.kv_heads == 0 || self.heads % self.kv_heads != 0 {
            return Err(Error::invalid(format!(
                "attention: {} query heads are not a multiple of {} kv heads",
                self.heads, self.kv_heads
            )));
        }
        let n = self.batch * self.seq;
        check_len("attention qkv", qkv, n * self.qkv_width())?;
        check_len("attention y", y, n * self.heads * self.head_dim)?;
        check_len(
            "attention probs",
            probs,
            self.batch * self.heads * self.seq * self.seq,
        )
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Row `i` of a causal block: softmax over `row[..=i]`, zeros on `row[i+1..]`.
#[inline(always)]
fn softmax_row_impl(row: &mut [f32], i: usize) {
    let (live, dead) = row.split_at_mut(i + 1);
    let m = simd::max(live);
    let s = simd::exp_shift_sum(live, m);
    simd::scale(live, 1.0 / s);
    dead.fill(0.0);
}

crate::dispatch!(fn softmax_row(row: &mut [f32], i: usize) => softmax_row_impl);

/// Row `i` of the backward: `ds ← scale · p ⊙ (ds − Σ p⊙ds)` on `..=i`, zeros after.
#[inline(always)]
fn ds_row_impl(ds: &mut [f32], p: &[f32], i: usize, scale: f32) {
    let (live, dead) = ds.split_at_mut(i + 1);
    let d = simd::dot(live, &p[..=i]);
    for (x, &pv) in live.iter_mut().zip(&p[..=i]) {
        *x = scale * pv * (*x - d);
    }
    dead.fill(0.0);
}

crate::dispatch!(fn ds_row(ds: &mut [f32], p: &[f32], i: usize, scale: f32) => ds_row_impl);

thread_local! {
    /// One t×t dS scratch per thread, grown on first use and kept.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Forward: y and probs from qkv.
pub fn attention_fwd(y: &mut [f32], probs: &mut [f32], qkv: &[f32], s: AttnShape) -> Result<()> {
    s.check(qkv.len(), y.len(), probs.len())?;
    let AttnShape {
        seq: t,
        heads: h,
        kv_heads: g,
        head_dim: e,
        ..
    } = s;
    if y.is_empty() || t == 0 {
        return Ok(());
    }
    let (w, ye, rep, scale) = (s.qkv_width() as isize, (h * e) as isize, h / g, s.scale());
    let yp = SendPtr(y.as_mut_ptr());
    probs
        .par_chunks_mut(t * t)
        .enumerate()
        .for_each(|(task, p)| {
            let (b, hh) = (task / h, task % h);
            let gg = hh / rep;
            let base = qkv.as_ptr().wrapping_add(b * t * w as usize);
            let q = base.wrapping_add(hh * e); // Q_h [t, e], row stride w
            let k = base.wrapping_add((h + gg) * e); // K_g [t, e]
            let v = base.wrapping_add((h + g + gg) * e); // V_g [t, e]
            let yb = yp.get().wrapping_add(b * t * ye as usize + hh * e); // Y_h [t, e], row stride h·e
            for r0 in (0..t).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(t);
                let pp = p.as_mut_ptr(); // P [t, t]
                                         // SAFETY: all pointers address rows < t and columns < e (or < t) of this task's
                                         // batch inside buffers whose lengths `check` verified; P is this task's own chunk;
                                         // Y_h of (b, hh) is written by this task only (tasks differ in b or in hh).
                unsafe {
                    // S[r0..r1, 0..r1] = scale · Q[r0..r1] · K[0..r1]ᵀ  (Kᵀ: rs 1, cs w)
                    gemm_raw(
                        r1 - r0,
                        r1,
                        e,
                        (pp.add(r0 * t), t as isize, 1),
                        false,
                        (q.offset(r0 as isize * w), w, 1),
                        (k, 1, w),
                        scale,
                        Parallelism::None,
                    );
                }
                for i in r0..r1 {
                    softmax_row(&mut p[i * t..i * t + r1], i);
                }
                let pp = p.as_ptr();
                // SAFETY: as above.
                unsafe {
                    // Y[r0..r1] = P[r0..r1, 0..r1] · V[0..r1]
                    gemm_raw(
                        r1 - r0,
                        e,
                        r1,
                        (yb.offset(r0 as isize * ye), ye, 1),
                        false,
                        (pp.add(r0 * t), t as isize, 1),
                        (v, w, 1),
                        1.0,
                        Parallelism::None,
                    );
                }
            }
        });
    Ok(())
}

/// Backward: overwrites dqkv [b·t, W] with the gradients of q, k and v given dy [b·t, h·e].
pub fn attention_bwd(
    dqkv: &mut [f32],
    dy: &[f32],
    qkv: &[f32],
    probs: &[f32],
    s: AttnShape,
) -> Result<()> {
    s.check(qkv.len(), dy.len(), probs.len())?;
    check_len("attention dqkv", dqkv.len(), qkv.len())?;
    let AttnShape {
        batch,
        seq: t,
        heads: h,
        kv_heads: g,
        head_dim: e,
    } = s;
    if dy.is_empty() || t == 0 {
        return Ok(());
    }
    let (w, ye, rep, scale) = (s.qkv_width() as isize, (h * e) as isize, h / g, s.scale());
    let dp = SendPtr(dqkv.as_mut_ptr());
    (0..batch * g).into_par_iter().for_each(|task| {
        let (b, gg) = (task / g, task % g);
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            if scratch.len() < t * t {
                scratch.resize(t * t, 0.0);
            }
            let ds = &mut scratch[..t * t]; // dS [t, t]
            let base = qkv.as_ptr().wrapping_add(b * t * w as usize);
            let dbase = dp.get().wrapping_add(b * t * w as usize);
            let k = base.wrapping_add((h + gg) * e);
            let v = base.wrapping_add((h + g + gg) * e);
            let dk = dbase.wrapping_add((h + gg) * e);
            let dv = dbase.wrapping_add((h + g + gg) * e);
            for hh in gg * rep..(gg + 1) * rep {
                let first = hh == gg * rep;
                let q = base.wrapping_add(hh * e);
                let dq = dbase.wrapping_add(hh * e);
                let dyh = dy.as_ptr().wrapping_add(b * t * ye as usize + hh * e); // [t, e], rs h·e
                let p = &probs[(b * h + hh) * t * t..(b * h + hh + 1) * t * t]; // [t, t]
                let pp = p.as_ptr();
                for r0 in (0..t).step_by(BLOCK) {
                    let r1 = (r0 + BLOCK).min(t);
                    let dsp = ds.as_mut_ptr();
                    // SAFETY: reads stay inside qkv/dy/probs rows of batch b (lengths checked);
                    // dS is this thread's scratch.
                    unsafe {
                        // dP[r0..r1, 0..r1] = dY[r0..r1] · V[0..r1]ᵀ
                        gemm_raw(
                            r1 - r0,
                            r1,
                            e,
                            (dsp.add(r0 * t), t as isize, 1),
                            false,
                            (dyh.offset(r0 as isize * ye), ye, 1),
                            (v, 1, w),
                            1.0,
                            Parallelism::None,
                        );
                    }
                    for i in r0..r1 {
                        ds_row(&mut ds[i * t..i * t + r1], &p[i * t..i * t + r1], i, scale);
                    }
                }
                let dsp = ds.as_ptr();
                for c0 in (0..t).step_by(BLOCK) {
                    let c1 = (c0 + BLOCK).min(t);
                    let (m, kk) = (c1 - c0, t - c0);
                    // SAFETY: writes go to dQ_h / dK_g / dV_g rows of batch b, columns of head
                    // hh / kv head gg: this task owns (b, gg) and every query head of group gg,
                    // so no other task writes them. Reads as above.
                    unsafe {
                        // dV[c0..c1] (+)= P[c0.., c0..c1]ᵀ · dY[c0..]   (Pᵀ: rs 1, cs t)
                        gemm_raw(
                            m,
                            e,
                            kk,
                            (dv.offset(c0 as isize * w), w, 1),
                            !first,
                            (pp.add(c0 * t + c0), 1, t as isize),
                            (dyh.offset(c0 as isize * ye), ye, 1),
                            1.0,
                            Parallelism::None,
                        );
                        // dK[c0..c1] (+)= dS[c0.., c0..c1]ᵀ · Q[c0..]
                        gemm_raw(
                            m,
                            e,
                            kk,
                            (dk.offset(c0 as isize * w), w, 1),
                            !first,
                            (dsp.add(c0 * t + c0), 1, t as isize),
                            (q.offset(c0 as isize * w), w, 1),
                            1.0,
                            Parallelism::None,
                        );
                        // dQ[c0..c1] = dS[c0..c1, 0..c1] · K[0..c1]
                        gemm_raw(
                            m,
                            e,
                            c1,
                            (dq.offset(c0 as isize * w), w, 1),
                            false,
                            (dsp.add(c0 * t), t as isize, 1),
                            (k, w, 1),
                            1.0,
                            Parallelism::None,
                        );
                    }
                }
            }
        });
    });
    Ok(())
}

/// Naive twin of [`attention_fwd`] (writes zeros above the diagonal of probs).
pub fn attention_fwd_naive(y: &mut [f32], probs: &mut [f32], qkv: &[f32], s: AttnShape) {
    let AttnShape {
        batch,
        seq: t,
        heads: h,
        kv_heads: g,
        head_dim: e,
    } = s;
    let w = s.qkv_width();
    let scale = s.scale();
    for b in 0..batch {
        for hh in 0..h {
            let gg = hh / (h / g);
            for i in 0..t {
                let prow = &mut probs[((b * h + hh) * t + i) * t..((b * h + hh) * t + i + 1) * t];
                let qi = &qkv[(b * t + i) * w + hh * e..][..e];
                for j in 0..t {
                    prow[j] = if j <= i {
                        let kj = &qkv[(b * t + j) * w + (h + gg) * e..][..e];
                        scale * qi.iter().zip(kj).map(|(a, c)| a * c).sum::<f32>()
                    } else {
                        f32::NEG_INFINITY
                    };
                }
                let m = prow.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = prow.iter().map(|x| (x - m).exp()).sum();
                for x in prow.iter_mut() {
                    *x = (*x - m).exp() / sum;
                }
                for c in 0..e {
                    y[(b * t + i) * h * e + hh * e + c] = (0..t)
                        .map(|j| prow[j] * qkv[(b * t + j) * w + (h + g + gg) * e + c])
                        .sum();
                }
            }
        }
    }
}

/// Naive twin of [`attention_bwd`].
pub fn attention_bwd_naive(dqkv: &mut [f32], dy: &[f32], qkv: &[f32], probs: &[f32], s: AttnShape) {
    let AttnShape {
        batch,
        seq: t,
        heads: h,
        kv_heads: g,
        head_dim: e,
    } = s;
    let w = s.qkv_width();
    let scale = s.scale();
    dqkv.fill(0.0);
    for b in 0..batch {
        for hh in 0..h {
            let gg = hh / (h / g);
            for i in 0..t {
                let p = &probs[((b * h + hh) * t + i) * t..][..t];
                let dyi = &dy[(b * t + i) * h * e + hh * e..][..e];
                // dP_ij = dy_i · v_j ; dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik)
                let dpv: Vec<f32> = (0..t)
                    .map(|j| {
                        let vj = &qkv[(b * t + j) * w + (h + g + gg) * e..][..e];
                        dyi.iter().zip(vj).map(|(a, c)| a * c).sum()
                    })
                    .collect();
                let dsum: f32 = (0..t).map(|j| p[j] * dpv[j]).sum();
                for j in 0..=i {
                    let dsij = p[j] * (dpv[j] - dsum) * scale;
                    for c in 0..e {
                        let qi = qkv[(b * t + i) * w + hh * e + c];
                        let kj = qkv[(b * t + j) * w + (h + gg) * e + c];
                        dqkv[(b * t + i) * w + hh * e + c] += dsij * kj;
                        dqkv[(b * t + j) * w + (h + gg) * e + c] += dsij * qi;
                        dqkv[(b * t + j) * w + (h + g + gg) * e + c] += p[j] * dyi[c];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, rand_vec};
    use proptest::prelude::*;

    fn lower(p: &[f32], t: usize) -> Vec<f32> {
        p.chunks(t * t)
            .flat_map(|m| (0..t).flat_map(move |i| (0..=i).map(move |j| m[i * t + j])))
            .collect()
    }

    fn check(s: AttnShape, seed: u64) {
        let n = s.batch * s.seq;
        let qkv: Vec<f32> = rand_vec(n * s.qkv_width(), seed)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let (mut y, mut yn) = (
            vec![0.0; n * s.heads * s.head_dim],
            vec![0.0; n * s.heads * s.head_dim],
        );
        let np = s.batch * s.heads * s.seq * s.seq;
        let (mut p, mut pn) = (vec![f32::NAN; np], vec![0.0; np]);
        attention_fwd(&mut y, &mut p, &qkv, s).unwrap();
        attention_fwd_naive(&mut yn, &mut pn, &qkv, s);
        assert_close(&lower(&p, s.seq), &lower(&pn, s.seq), 1e-5, "probs");
        assert_close(&y, &yn, 1e-5, "y");
        let dy = rand_vec(y.len(), seed + 1);
        let (mut d, mut dn) = (vec![f32::NAN; qkv.len()], vec![0.0; qkv.len()]);
        attention_bwd(&mut d, &dy, &qkv, &p, s).unwrap();
        attention_bwd_naive(&mut dn, &dy, &qkv, &pn, s);
        assert_close(&d, &dn, 1e-4, "dqkv");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn attention_matches_naive(batch in 1usize..3, seq in 1usize..150, g in 1usize..3,
                                   rep in 1usize..4, half in 1usize..6, seed in 0u64..1000) {
            check(AttnShape { batch, seq, heads: g * rep, kv_heads: g, head_dim: 2 * half }, seed);
        }
    }

    #[test]
    fn block_edges() {
        for seq in [BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3] {
            check(
                AttnShape {
                    batch: 2,
                    seq,
                    heads: 4,
                    kv_heads: 2,
                    head_dim: 6,
                },
                seq as u64,
            );
        }
    }

    /// The naive backward agrees with central finite differences of L = Σ c·y.
    #[test]
    fn naive_backward_matches_finite_differences() {
        let s = AttnShape {
            batch: 1,
            seq: 4,
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
        };
        let qkv = rand_vec(4 * s.qkv_width(), 5);
        let c = rand_vec(4 * 8, 6);
        let loss = |x: &[f32]| -> f64 {
            let (mut y, mut p) = (vec![0.0; 32], vec![0.0; 32]);
            attention_fwd_naive(&mut y, &mut p, x, s);
            y.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum()
        };
        let (mut y, mut p) = (vec![0.0; 32], vec![0.0; 32]);
        attention_fwd_naive(&mut y, &mut p, &qkv, s);
        let mut d = vec![0.0; qkv.len()];
        attention_bwd_naive(&mut d, &c, &qkv, &p, s);
        for i in 0..qkv.len() {
            let (mut a, mut b) = (qkv.clone(), qkv.clone());
            a[i] += 1e-2;
            b[i] -= 1e-2;
            let fd = (loss(&a) - loss(&b)) / 2e-2;
            assert!((fd - d[i] as f64).abs() < 1e-3, "d[{i}] {fd} vs {}", d[i]);
        }
    }
}
