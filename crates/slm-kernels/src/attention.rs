//! Causal grouped-query attention, forward and backward, over a packed q|k|v matrix.
//!
//! Layout (b = batch, t = seq, h = query heads, g = kv heads, e = head_dim, W = (h+2g)·e):
//! - `qkv` [b·t, W]: row n = token (n / t, n % t); columns `[q_0 … q_{h-1} | k_0 … k_{g-1} |
//!   v_0 … v_{g-1}]`, each head e wide (q and k already rotated by RoPE).
//! - `y` [b·t, h·e]: attention output per head, the input of the output projection.
//! - saved for the backward, one of:
//!   - `probs` [b, h, t, t] ([`attention_fwd`] / [`attention_bwd`]): the probabilities. Only
//!     `j ≤ i` of row i is meaningful (the rest is zero or never written, and never read);
//!     with example starts, `j < starts[i]` is zero too.
//!   - `lse` [b, h, t] ([`attention_fwd_lse`] / [`attention_bwd_lse`]): each row's
//!     log-sum-exp; the backward recomputes `P = e^(S − lse)` block by block (one more
//!     QKᵀ product), so memory stays linear in t.
//!
//! Query head `h` reads kv head `h / (h_total / g)`. Scores are scaled by 1/√e.
//!
//! Packed sequences: with `starts` [b·t] (see [`crate::segments`]) query i sees only keys
//! `starts[i]..=i` of its row (its own example); `None` is plain causal attention. The
//! masked probabilities are zero, so every product below stays correct over any key range
//! that covers the visible one; the blocks start at their first row's start (starts never
//! decrease along a row), which skips the keys of earlier examples.
//!
//! The fast path runs one task per (batch, head) forward and per (batch, kv head) backward
//! (so the heads sharing a kv head accumulate dK/dV without races), each task issuing small
//! single-threaded `gemm`s: QKᵀ and PV forward; dP = dY·Vᵀ, dV += Pᵀ·dY, dQ = dS·K,
//! dK += dSᵀ·Q backward. Rows are processed in blocks of [`BLOCK`] queries so that a block
//! only multiplies the keys it can see, skipping most of the masked upper triangle (and,
//! with starts, the keys before the block's first example, and in the backward the query
//! rows after the last example a key block belongs to).
//! The backward's `dS = P ⊙ (dP − rowsum(P ⊙ dP)) / √e` uses t×t scratch matrices kept per
//! thread (dS, and P when it is recomputed).

use crate::check_len;
use crate::matmul::gemm_raw;
use crate::par::SendPtr;
use crate::segments::check_starts;
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

    fn check(&self, qkv: usize, y: usize) -> Result<()> {
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::invalid(format!(
                "attention: {} query heads are not a multiple of {} kv heads",
                self.heads, self.kv_heads
            )));
        }
        let n = self.batch * self.seq;
        check_len("attention qkv", qkv, n * self.qkv_width())?;
        check_len("attention y", y, n * self.heads * self.head_dim)
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    fn check_starts(&self, starts: Option<&[u32]>) -> Result<()> {
        match starts {
            Some(st) => check_starts(st, self.batch, self.seq),
            None => Ok(()),
        }
    }
}

/// The example starts of one batch row, [t] (`None`: one example, plain causal).
#[derive(Clone, Copy)]
struct Segs<'a>(Option<&'a [u32]>);

impl<'a> Segs<'a> {
    /// Row `b` of `starts` [batch·t].
    fn row(starts: Option<&'a [u32]>, b: usize, t: usize) -> Self {
        Self(starts.map(|s| &s[b * t..(b + 1) * t]))
    }

    /// The first key query `i` sees (for the first row of a block: the first key any row of
    /// the block sees, as starts never decrease).
    #[inline(always)]
    fn lo(self, i: usize) -> usize {
        self.0.map_or(0, |s| s[i] as usize)
    }

    /// The end of the query rows that see some key below `c` (≥ c): the rows from `c` on
    /// whose example begins at or after `c` see none, and neither does any row after them.
    fn reach(self, c: usize, t: usize) -> usize {
        match self.0 {
            None => t,
            Some(s) => (c..t).find(|&r| s[r] as usize >= c).unwrap_or(t),
        }
    }
}

/// Row `i` of a causal block whose first visible key is `lo`: softmax over `row[lo..=i]`,
/// zeros on `row[..lo]` and `row[i+1..]`; returns the row's log-sum-exp.
#[inline(always)]
fn softmax_row_impl(row: &mut [f32], lo: usize, i: usize) -> f32 {
    let (before, row) = row.split_at_mut(lo);
    before.fill(0.0);
    let (live, dead) = row.split_at_mut(i + 1 - lo);
    let m = simd::max(live);
    let s = simd::exp_shift_sum(live, m);
    simd::scale(live, 1.0 / s);
    dead.fill(0.0);
    m + s.ln()
}

crate::dispatch!(fn softmax_row(row: &mut [f32], lo: usize, i: usize) -> f32 => softmax_row_impl);

/// Row `i` recomputed from scores and the saved log-sum-exp: `e^(s − lse)` on `lo..=i`,
/// zeros elsewhere.
#[inline(always)]
fn probs_row_impl(row: &mut [f32], lo: usize, i: usize, lse: f32) {
    let (before, row) = row.split_at_mut(lo);
    before.fill(0.0);
    let (live, dead) = row.split_at_mut(i + 1 - lo);
    for x in live.iter_mut() {
        *x = simd::exp(*x - lse);
    }
    dead.fill(0.0);
}

crate::dispatch!(fn probs_row(row: &mut [f32], lo: usize, i: usize, lse: f32) => probs_row_impl);

/// Row `i` of the backward: `ds ← scale · p ⊙ (ds − Σ p⊙ds)` on `lo..=i`, zeros elsewhere.
#[inline(always)]
fn ds_row_impl(ds: &mut [f32], p: &[f32], lo: usize, i: usize, scale: f32) {
    let (before, ds) = ds.split_at_mut(lo);
    before.fill(0.0);
    let (live, dead) = ds.split_at_mut(i + 1 - lo);
    let p = &p[lo..=i];
    let d = simd::dot(live, p);
    for (x, &pv) in live.iter_mut().zip(p) {
        *x = scale * pv * (*x - d);
    }
    dead.fill(0.0);
}

crate::dispatch!(fn ds_row(ds: &mut [f32], p: &[f32], lo: usize, i: usize, scale: f32) => ds_row_impl);

thread_local! {
    /// Per-thread t×t work matrices (P when it is not saved, and dS), grown on first use
    /// and kept.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch holding at least `n` elements.
fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut v = cell.borrow_mut();
        if v.len() < n {
            v.resize(n, 0.0);
        }
        f(&mut v[..n])
    })
}

/// Pointers to one batch's heads inside the packed q|k|v matrix and the output.
#[derive(Clone, Copy)]
struct Heads {
    /// Row stride of qkv (W) and of y / dy (h·e).
    w: isize,
    ye: isize,
    scale: f32,
}

/// S[r0..r1, c0..r1] = scale · Q[r0..r1] · K[c0..r1]ᵀ into `p` ([t, t] row-major).
#[allow(clippy::too_many_arguments)] // one block of one head: the sizes and two pointers
///
/// # Safety
/// `q` and `k` must address rows `< r1` of one head (row stride `hs.w`, `e` columns), and
/// `c0 ≤ r0 < r1 ≤ t`.
unsafe fn scores(
    p: &mut [f32],
    t: usize,
    e: usize,
    c0: usize,
    r0: usize,
    r1: usize,
    q: *const f32,
    k: *const f32,
    hs: Heads,
) {
    // SAFETY: caller's contract for q/k; p holds t·t elements. Kᵀ: rs 1, cs w.
    unsafe {
        gemm_raw(
            r1 - r0,
            r1 - c0,
            e,
            (p.as_mut_ptr().add(r0 * t + c0), t as isize, 1),
            false,
            (q.offset(r0 as isize * hs.w), hs.w, 1),
            (k.offset(c0 as isize * hs.w), 1, hs.w),
            hs.scale,
            Parallelism::None,
        )
    }
}

/// Forward of one (batch b, head hh): P into `p` [t, t], Y_h through `yp`, and the
/// log-sum-exp of every row into `lse` when given.
fn fwd_task(
    qkv: &[f32],
    yp: SendPtr,
    starts: Option<&[u32]>,
    s: AttnShape,
    task: usize,
    p: &mut [f32],
    mut lse: Option<&mut [f32]>,
) {
    let AttnShape {
        seq: t,
        heads: h,
        kv_heads: g,
        head_dim: e,
        ..
    } = s;
    let hs = Heads {
        w: s.qkv_width() as isize,
        ye: (h * e) as isize,
        scale: s.scale(),
    };
    let (b, hh) = (task / h, task % h);
    let gg = hh / (h / g);
    let base = qkv.as_ptr().wrapping_add(b * t * hs.w as usize);
    let q = base.wrapping_add(hh * e); // Q_h [t, e], row stride w
    let k = base.wrapping_add((h + gg) * e); // K_g [t, e]
    let v = base.wrapping_add((h + g + gg) * e); // V_g [t, e]
    let yb = yp.get().wrapping_add(b * t * hs.ye as usize + hh * e); // Y_h [t, e], rs h·e
    let segs = Segs::row(starts, b, t);
    for r0 in (0..t).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(t);
        // The block's first visible key.
        let c0 = segs.lo(r0);
        // SAFETY: q, k address rows < t of batch b inside qkv (length checked by the caller);
        // c0 ≤ r0 (checked starts).
        unsafe { scores(p, t, e, c0, r0, r1, q, k, hs) };
        for i in r0..r1 {
            let l = softmax_row(&mut p[i * t..i * t + r1], segs.lo(i), i);
            if let Some(lse) = lse.as_deref_mut() {
                lse[i] = l;
            }
        }
        // SAFETY: V_g rows < r1 of batch b; Y_h of (b, hh) is written by this task only
        // (tasks differ in b or hh), inside y (length checked by the caller).
        unsafe {
            // Y[r0..r1] = P[r0..r1, c0..r1] · V[c0..r1]
            gemm_raw(
                r1 - r0,
                e,
                r1 - c0,
                (yb.offset(r0 as isize * hs.ye), hs.ye, 1),
                false,
                (p.as_ptr().add(r0 * t + c0), t as isize, 1),
                (v.offset(c0 as isize * hs.w), hs.w, 1),
                1.0,
                Parallelism::None,
            )
        };
    }
}

/// Forward: y and the probabilities `probs` [b, h, t, t] from qkv; `starts` [b·t]
/// restricts each query to its own example (see the module documentation).
pub fn attention_fwd(
    y: &mut [f32],
    probs: &mut [f32],
    qkv: &[f32],
    starts: Option<&[u32]>,
    s: AttnShape,
) -> Result<()> {
    s.check(qkv.len(), y.len())?;
    s.check_starts(starts)?;
    check_len(
        "attention probs",
        probs.len(),
        s.batch * s.heads * s.seq * s.seq,
    )?;
    if y.is_empty() {
        return Ok(());
    }
    let (t, yp) = (s.seq, SendPtr(y.as_mut_ptr()));
    probs
        .par_chunks_mut(t * t)
        .enumerate()
        .for_each(|(task, p)| fwd_task(qkv, yp, starts, s, task, p, None));
    Ok(())
}

/// Forward saving only the row log-sum-exps `lse` [b, h, t] (the backward recomputes the
/// probabilities: one more QKᵀ product, but no [b, h, t, t] buffer).
pub fn attention_fwd_lse(
    y: &mut [f32],
    lse: &mut [f32],
    qkv: &[f32],
    starts: Option<&[u32]>,
    s: AttnShape,
) -> Result<()> {
    s.check(qkv.len(), y.len())?;
    s.check_starts(starts)?;
    check_len("attention lse", lse.len(), s.batch * s.heads * s.seq)?;
    if y.is_empty() {
        return Ok(());
    }
    let (t, yp) = (s.seq, SendPtr(y.as_mut_ptr()));
    lse.par_chunks_mut(t).enumerate().for_each(|(task, l)| {
        with_scratch(t * t, |p| fwd_task(qkv, yp, starts, s, task, p, Some(l)))
    });
    Ok(())
}

/// Where the backward gets P from.
#[derive(Clone, Copy)]
enum Saved<'a> {
    /// [b, h, t, t]
    Probs(&'a [f32]),
    /// [b, h, t]
    Lse(&'a [f32]),
}

/// Backward of one (batch b, kv head gg) for every query head of its group. `work` is
/// 2·t·t scratch: dS, then P when it is recomputed.
#[allow(clippy::too_many_arguments)] // one (batch, kv head): the buffers, the starts, the task
fn bwd_task(
    dp: SendPtr,
    dy: &[f32],
    qkv: &[f32],
    saved: Saved,
    starts: Option<&[u32]>,
    s: AttnShape,
    task: usize,
    work: &mut [f32],
) {
    let AttnShape {
        seq: t,
        heads: h,
        kv_heads: g,
        head_dim: e,
        ..
    } = s;
    let hs = Heads {
        w: s.qkv_width() as isize,
        ye: (h * e) as isize,
        scale: s.scale(),
    };
    let (w, ye) = (hs.w, hs.ye);
    let rep = h / g;
    let (b, gg) = (task / g, task % g);
    let (ds, pbuf) = work.split_at_mut(t * t); // dS [t, t], P [t, t]
    let base = qkv.as_ptr().wrapping_add(b * t * w as usize);
    let dbase = dp.get().wrapping_add(b * t * w as usize);
    let k = base.wrapping_add((h + gg) * e);
    let v = base.wrapping_add((h + g + gg) * e);
    let dk = dbase.wrapping_add((h + gg) * e);
    let dv = dbase.wrapping_add((h + g + gg) * e);
    let segs = Segs::row(starts, b, t);
    for hh in gg * rep..(gg + 1) * rep {
        let first = hh == gg * rep;
        let q = base.wrapping_add(hh * e);
        let dq = dbase.wrapping_add(hh * e);
        let dyh = dy.as_ptr().wrapping_add(b * t * ye as usize + hh * e); // [t, e], rs h·e
        let head = b * h + hh;
        if let Saved::Lse(lse) = saved {
            let lse = &lse[head * t..(head + 1) * t];
            for r0 in (0..t).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(t);
                let c0 = segs.lo(r0);
                // SAFETY: q, k address rows < t of batch b inside qkv (length checked);
                // c0 ≤ r0 (checked starts).
                unsafe { scores(pbuf, t, e, c0, r0, r1, q, k, hs) };
                for i in r0..r1 {
                    probs_row(&mut pbuf[i * t..i * t + r1], segs.lo(i), i, lse[i]);
                }
            }
        }
        let p: &[f32] = match saved {
            Saved::Probs(probs) => &probs[head * t * t..(head + 1) * t * t],
            Saved::Lse(_) => pbuf,
        };
        for r0 in (0..t).step_by(BLOCK) {
            let r1 = (r0 + BLOCK).min(t);
            let c0 = segs.lo(r0);
            // SAFETY: reads stay inside the dy/qkv rows of batch b (lengths checked); dS is
            // this thread's scratch; c0 ≤ r0.
            unsafe {
                // dP[r0..r1, c0..r1] = dY[r0..r1] · V[c0..r1]ᵀ
                gemm_raw(
                    r1 - r0,
                    r1 - c0,
                    e,
                    (ds.as_mut_ptr().add(r0 * t + c0), t as isize, 1),
                    false,
                    (dyh.offset(r0 as isize * ye), ye, 1),
                    (v.offset(c0 as isize * w), 1, w),
                    1.0,
                    Parallelism::None,
                );
            }
            for i in r0..r1 {
                ds_row(
                    &mut ds[i * t..i * t + r1],
                    &p[i * t..i * t + r1],
                    segs.lo(i),
                    i,
                    hs.scale,
                );
            }
        }
        let (pp, dsp) = (p.as_ptr(), ds.as_ptr());
        for c0 in (0..t).step_by(BLOCK) {
            let c1 = (c0 + BLOCK).min(t);
            // Query rows c0..re are the ones that see keys c0..c1 (re = t without starts);
            // keys lo.. are the ones rows c0..c1 see.
            let (re, lo) = (segs.reach(c1, t), segs.lo(c0));
            let (m, kk) = (c1 - c0, re - c0);
            // SAFETY: writes go to dQ_h / dK_g / dV_g rows of batch b, columns of head hh /
            // kv head gg: this task owns (b, gg) and every query head of group gg, so no
            // other task writes them. Reads as above; lo ≤ c0 < c1 ≤ re ≤ t.
            unsafe {
                // dV[c0..c1] (+)= P[c0..re, c0..c1]ᵀ · dY[c0..re]   (Pᵀ: rs 1, cs t)
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
                // dK[c0..c1] (+)= dS[c0..re, c0..c1]ᵀ · Q[c0..re]
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
                // dQ[c0..c1] = dS[c0..c1, lo..c1] · K[lo..c1]
                gemm_raw(
                    m,
                    e,
                    c1 - lo,
                    (dq.offset(c0 as isize * w), w, 1),
                    false,
                    (dsp.add(c0 * t + lo), t as isize, 1),
                    (k.offset(lo as isize * w), w, 1),
                    1.0,
                    Parallelism::None,
                );
            }
        }
    }
}

fn bwd(
    dqkv: &mut [f32],
    dy: &[f32],
    qkv: &[f32],
    saved: Saved,
    starts: Option<&[u32]>,
    s: AttnShape,
) -> Result<()> {
    s.check(qkv.len(), dy.len())?;
    s.check_starts(starts)?;
    check_len("attention dqkv", dqkv.len(), qkv.len())?;
    if dy.is_empty() {
        return Ok(());
    }
    let t = s.seq;
    let dp = SendPtr(dqkv.as_mut_ptr());
    (0..s.batch * s.kv_heads).into_par_iter().for_each(|task| {
        with_scratch(2 * t * t, |work| {
            bwd_task(dp, dy, qkv, saved, starts, s, task, work)
        })
    });
    Ok(())
}

/// Backward from saved probabilities: overwrites dqkv [b·t, W] with the gradients of q, k
/// and v given dy [b·t, h·e] (`starts` as given to [`attention_fwd`]).
pub fn attention_bwd(
    dqkv: &mut [f32],
    dy: &[f32],
    qkv: &[f32],
    probs: &[f32],
    starts: Option<&[u32]>,
    s: AttnShape,
) -> Result<()> {
    check_len(
        "attention probs",
        probs.len(),
        s.batch * s.heads * s.seq * s.seq,
    )?;
    bwd(dqkv, dy, qkv, Saved::Probs(probs), starts, s)
}

/// Backward from saved log-sum-exps (see [`attention_fwd_lse`]).
pub fn attention_bwd_lse(
    dqkv: &mut [f32],
    dy: &[f32],
    qkv: &[f32],
    lse: &[f32],
    starts: Option<&[u32]>,
    s: AttnShape,
) -> Result<()> {
    check_len("attention lse", lse.len(), s.batch * s.heads * s.seq)?;
    bwd(dqkv, dy, qkv, Saved::Lse(lse), starts, s)
}

/// Naive twin of [`attention_fwd`] (writes zeros on every masked entry of probs; `starts`
/// must be valid).
pub fn attention_fwd_naive(
    y: &mut [f32],
    probs: &mut [f32],
    qkv: &[f32],
    starts: Option<&[u32]>,
    s: AttnShape,
) {
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
                let lo = starts.map_or(0, |st| st[b * t + i] as usize);
                let prow = &mut probs[((b * h + hh) * t + i) * t..((b * h + hh) * t + i + 1) * t];
                let qi = &qkv[(b * t + i) * w + hh * e..][..e];
                for j in 0..t {
                    prow[j] = if lo <= j && j <= i {
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
pub fn attention_bwd_naive(
    dqkv: &mut [f32],
    dy: &[f32],
    qkv: &[f32],
    probs: &[f32],
    starts: Option<&[u32]>,
    s: AttnShape,
) {
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
                let lo = starts.map_or(0, |st| st[b * t + i] as usize);
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
                for j in lo..=i {
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
    use crate::testutil::{assert_close, rand_starts, rand_vec, segments_of};
    use proptest::prelude::*;

    /// The visible entries (`lo..=i` of each row i) of probs [b, h, t, t].
    fn visible(p: &[f32], starts: Option<&[u32]>, s: AttnShape) -> Vec<f32> {
        let t = s.seq;
        p.chunks(t * t)
            .enumerate()
            .flat_map(|(bh, m)| {
                let b = bh / s.heads;
                (0..t).flat_map(move |i| {
                    let lo = starts.map_or(0, |st| st[b * t + i] as usize);
                    (lo..=i).map(move |j| m[i * t + j])
                })
            })
            .collect()
    }

    fn qkv_of(s: AttnShape, seed: u64) -> Vec<f32> {
        let n = s.batch * s.seq;
        rand_vec(n * s.qkv_width(), seed)
            .iter()
            .map(|v| v * 2.0)
            .collect()
    }

    /// Both fast paths (saved probabilities, saved log-sum-exps) against the naive twins.
    fn check(s: AttnShape, starts: Option<&[u32]>, seed: u64) {
        let n = s.batch * s.seq;
        let qkv = qkv_of(s, seed);
        let (mut y, mut yn) = (
            vec![0.0; n * s.heads * s.head_dim],
            vec![0.0; n * s.heads * s.head_dim],
        );
        let np = s.batch * s.heads * s.seq * s.seq;
        let (mut p, mut pn) = (vec![f32::NAN; np], vec![0.0; np]);
        attention_fwd(&mut y, &mut p, &qkv, starts, s).unwrap();
        attention_fwd_naive(&mut yn, &mut pn, &qkv, starts, s);
        assert_close(
            &visible(&p, starts, s),
            &visible(&pn, starts, s),
            1e-5,
            "probs",
        );
        assert_close(&y, &yn, 1e-5, "y");
        let dy = rand_vec(y.len(), seed + 1);
        let (mut d, mut dn) = (vec![f32::NAN; qkv.len()], vec![0.0; qkv.len()]);
        attention_bwd(&mut d, &dy, &qkv, &p, starts, s).unwrap();
        attention_bwd_naive(&mut dn, &dy, &qkv, &pn, starts, s);
        assert_close(&d, &dn, 1e-4, "dqkv");

        // The log-sum-exp variant: same output, same gradients.
        let mut y2 = vec![f32::NAN; y.len()];
        let mut lse = vec![f32::NAN; s.batch * s.heads * s.seq];
        attention_fwd_lse(&mut y2, &mut lse, &qkv, starts, s).unwrap();
        assert_close(&y2, &yn, 1e-5, "y (lse)");
        let (t, e, w) = (s.seq, s.head_dim, s.qkv_width());
        for (r, &l) in lse.iter().enumerate() {
            // p_ij = e^(s_ij − lse_i) for the first visible key j, so lse_i = s_ij − ln p_ij
            // with s_ij = q_i·k_j / √e.
            let (b, hh, i) = (r / (s.heads * t), (r / t) % s.heads, r % t);
            let j = starts.map_or(0, |st| st[b * t + i] as usize);
            let gg = hh / (s.heads / s.kv_heads);
            let qi = &qkv[(b * t + i) * w + hh * e..][..e];
            let kj = &qkv[(b * t + j) * w + (s.heads + gg) * e..][..e];
            let sj: f32 = qi.iter().zip(kj).map(|(a, c)| a * c).sum::<f32>() * s.scale();
            let want = sj - pn[r * t + j].ln();
            assert!(
                (l - want).abs() < 1e-4 * want.abs().max(1.0),
                "lse[{r}] {l} vs {want}"
            );
        }
        let mut d2 = vec![f32::NAN; qkv.len()];
        attention_bwd_lse(&mut d2, &dy, &qkv, &lse, starts, s).unwrap();
        assert_close(&d2, &dn, 1e-4, "dqkv (lse)");
    }

    /// A packed batch equals each of its examples run alone (a batch of one, seq = its
    /// length, no starts): outputs and gradients, through both fast paths.
    fn check_packed_vs_alone(s: AttnShape, starts: &[u32], seed: u64) {
        let (n, w, ye) = (s.batch * s.seq, s.qkv_width(), s.heads * s.head_dim);
        let qkv = qkv_of(s, seed);
        let dy = rand_vec(n * ye, seed + 1);
        let mut y = vec![f32::NAN; n * ye];
        let mut p = vec![f32::NAN; s.batch * s.heads * s.seq * s.seq];
        let mut lse = vec![f32::NAN; s.batch * s.heads * s.seq];
        let (mut d, mut d2) = (vec![f32::NAN; qkv.len()], vec![f32::NAN; qkv.len()]);
        attention_fwd(&mut y, &mut p, &qkv, Some(starts), s).unwrap();
        attention_bwd(&mut d, &dy, &qkv, &p, Some(starts), s).unwrap();
        let mut y2 = vec![f32::NAN; n * ye];
        attention_fwd_lse(&mut y2, &mut lse, &qkv, Some(starts), s).unwrap();
        attention_bwd_lse(&mut d2, &dy, &qkv, &lse, Some(starts), s).unwrap();
        for (r0, len) in segments_of(starts, s.seq) {
            let one = AttnShape {
                batch: 1,
                seq: len,
                ..s
            };
            let q1 = &qkv[r0 * w..(r0 + len) * w];
            let dy1 = &dy[r0 * ye..(r0 + len) * ye];
            let mut y1 = vec![0.0; len * ye];
            let mut p1 = vec![0.0; s.heads * len * len];
            let mut d1 = vec![0.0; len * w];
            attention_fwd(&mut y1, &mut p1, q1, None, one).unwrap();
            attention_bwd(&mut d1, dy1, q1, &p1, None, one).unwrap();
            let what = format!("example at row {r0}, {len} long");
            assert_close(&y[r0 * ye..(r0 + len) * ye], &y1, 1e-5, &what);
            assert_close(&y2[r0 * ye..(r0 + len) * ye], &y1, 1e-5, &what);
            assert_close(&d[r0 * w..(r0 + len) * w], &d1, 1e-5, &what);
            assert_close(&d2[r0 * w..(r0 + len) * w], &d1, 1e-5, &what);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn attention_matches_naive(batch in 1usize..3, seq in 1usize..150, g in 1usize..3,
                                   rep in 1usize..4, half in 1usize..6, seed in 0u64..1000) {
            check(AttnShape { batch, seq, heads: g * rep, kv_heads: g, head_dim: 2 * half }, None, seed);
        }

        #[test]
        fn packed_attention_matches_naive(batch in 1usize..3, seq in 1usize..150, g in 1usize..3,
                                          rep in 1usize..4, half in 1usize..6, kind in 0usize..4,
                                          seed in 0u64..1000) {
            let s = AttnShape { batch, seq, heads: g * rep, kv_heads: g, head_dim: 2 * half };
            let starts = rand_starts(batch, seq, kind, seed);
            check(s, Some(&starts), seed);
        }

        #[test]
        fn packed_attention_equals_examples_alone(batch in 1usize..3, seq in 1usize..150,
                                                  g in 1usize..3, rep in 1usize..4,
                                                  half in 1usize..6, kind in 1usize..4,
                                                  seed in 0u64..1000) {
            let s = AttnShape { batch, seq, heads: g * rep, kv_heads: g, head_dim: 2 * half };
            check_packed_vs_alone(s, &rand_starts(batch, seq, kind, seed), seed);
        }
    }

    #[test]
    fn block_edges() {
        for seq in [BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3] {
            let s = AttnShape {
                batch: 2,
                seq,
                heads: 4,
                kv_heads: 2,
                head_dim: 6,
            };
            check(s, None, seq as u64);
            // Examples ending and beginning on either side of the block edges.
            let mut starts = Vec::new();
            for lengths in [vec![BLOCK - 1, 2, BLOCK], vec![1, BLOCK, BLOCK + 1]] {
                let mut row = crate::segments::row_starts(&[], seq).unwrap();
                let mut at = 0;
                for len in lengths {
                    let len = len.min(seq - at);
                    row[at..at + len].fill(at as u32);
                    at += len;
                }
                starts.extend(row);
            }
            check(s, Some(&starts), seq as u64);
            check_packed_vs_alone(s, &starts, seq as u64);
        }
    }

    /// One example per row is plain causal attention, bit for bit.
    #[test]
    fn one_example_per_row_is_causal_bit_for_bit() {
        let s = AttnShape {
            batch: 2,
            seq: 2 * BLOCK + 5,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
        };
        let starts = vec![0u32; s.batch * s.seq];
        let qkv = qkv_of(s, 3);
        let n = s.batch * s.seq;
        let dy = rand_vec(n * s.heads * s.head_dim, 4);
        let run = |st: Option<&[u32]>| {
            let mut y = vec![0.0; dy.len()];
            let mut p = vec![0.0; s.batch * s.heads * s.seq * s.seq];
            let mut lse = vec![0.0; s.batch * s.heads * s.seq];
            let (mut d, mut d2) = (vec![0.0; qkv.len()], vec![0.0; qkv.len()]);
            attention_fwd(&mut y, &mut p, &qkv, st, s).unwrap();
            attention_bwd(&mut d, &dy, &qkv, &p, st, s).unwrap();
            attention_fwd_lse(&mut y, &mut lse, &qkv, st, s).unwrap();
            attention_bwd_lse(&mut d2, &dy, &qkv, &lse, st, s).unwrap();
            (y, d, d2)
        };
        assert!(run(None) == run(Some(&starts)));
    }

    #[test]
    fn bad_starts_are_errors() {
        let s = AttnShape {
            batch: 1,
            seq: 3,
            heads: 1,
            kv_heads: 1,
            head_dim: 2,
        };
        let qkv = qkv_of(s, 1);
        let (mut y, mut p) = (vec![0.0; 6], vec![0.0; 9]);
        for bad in [&[0u32, 0][..], &[0, 2, 2], &[0, 1, 0]] {
            assert!(attention_fwd(&mut y, &mut p, &qkv, Some(bad), s).is_err());
            assert!(attention_fwd_lse(&mut y, &mut p[..3], &qkv, Some(bad), s).is_err());
            let mut d = vec![0.0; qkv.len()];
            assert!(attention_bwd(&mut d, &y, &qkv, &p, Some(bad), s).is_err());
            assert!(attention_bwd_lse(&mut d, &y, &qkv, &p[..3], Some(bad), s).is_err());
        }
    }

    /// The naive backward agrees with central finite differences of L = Σ c·y, with and
    /// without examples packed.
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
        for starts in [None, Some(&[0u32, 0, 2, 2][..])] {
            let loss = |x: &[f32]| -> f64 {
                let (mut y, mut p) = (vec![0.0; 32], vec![0.0; 32]);
                attention_fwd_naive(&mut y, &mut p, x, starts, s);
                y.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum()
            };
            let (mut y, mut p) = (vec![0.0; 32], vec![0.0; 32]);
            attention_fwd_naive(&mut y, &mut p, &qkv, starts, s);
            let mut d = vec![0.0; qkv.len()];
            attention_bwd_naive(&mut d, &c, &qkv, &p, starts, s);
            for i in 0..qkv.len() {
                let (mut a, mut b) = (qkv.clone(), qkv.clone());
                a[i] += 1e-2;
                b[i] -= 1e-2;
                let fd = (loss(&a) - loss(&b)) / 2e-2;
                assert!((fd - d[i] as f64).abs() < 1e-3, "d[{i}] {fd} vs {}", d[i]);
            }
        }
    }
}
