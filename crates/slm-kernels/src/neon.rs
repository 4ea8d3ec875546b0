//! The block-quantised kernels for aarch64 (NEON): the ggml-layout dot products of
//! [`crate::quant`] and the 8-row interleaved group kernels of [`crate::quant_x8`].
//!
//! Every aarch64 CPU has NEON; the signed-byte dot product `SDOT` (FEAT_DotProd: Apple M1 and
//! later, Cortex-A55/A76 and later, Graviton 2 and later) is optional and chosen at run
//! time. Each kernel is written once, generic over `SDOT: bool`, and compiled twice:
//! - `SDOT = true` inside a `#[target_feature(enable = "dotprod")]` function: one `sdot`
//!   (by element, for the interleaved layout) per 16 weight bytes;
//! - `SDOT = false` for baseline ARMv8.0: `smull`/`smull2` to 16-bit products, two pairwise
//!   widening adds to the same 4 lanes of 32-bit sums.
//!
//! Both give lane k of the accumulator Σ_{b<4} w[4k + b]·x[4k + b] (or x[4L + b] in the
//! by-element form), so the two are bit for bit the same integers. `SDOT` is written as
//! inline assembly: its Rust intrinsics (`vdotq_laneq_s32`) are not stable.
//!
//! Layouts are the ones the x86 kernels read (see those modules' docs); in the interleaved
//! layout a 32-byte chunk is two NEON registers, rows 0–3 and rows 4–7, and lane L of the
//! activation register selects the 4 activation bytes a chunk multiplies.

use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0};
use crate::quant_x8::{ActRow, Chunk, ROWS};
use half::f16;
use std::arch::aarch64::*;
use std::arch::asm;

/// Whether this CPU has the signed-byte dot product (checked at run time, cached by std).
#[inline]
pub(crate) fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// `acc` lane k += Σ_{b<4} w[4k + b]·x[4L + b], with `sdot`.
///
/// # Safety
/// The CPU must support FEAT_DotProd.
#[target_feature(enable = "dotprod")]
#[inline]
unsafe fn sdot_lane<const L: i32>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    asm!(
        "sdot {acc:v}.4s, {w:v}.16b, {x:v}.4b[{l}]",
        acc = inout(vreg) acc,
        w = in(vreg) w,
        x = in(vreg_low16) x,
        l = const L,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// `acc` lane k += Σ_{b<4} a[4k + b]·b[4k + b], with `sdot`.
///
/// # Safety
/// The CPU must support FEAT_DotProd.
#[target_feature(enable = "dotprod")]
#[inline]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// Lane k of the result = Σ_{b<4} a[4k + b]·b[4k + b], baseline NEON (16-bit products,
/// which cannot overflow for signed bytes, then two pairwise widening adds).
#[inline(always)]
unsafe fn widen_dot(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    let hi = vpaddlq_s16(vmull_high_s8(a, b));
    vpaddq_s32(lo, hi)
}

/// [`sdot`] or its baseline twin.
#[inline(always)]
unsafe fn dot<const SDOT: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    if SDOT {
        sdot(acc, a, b)
    } else {
        vaddq_s32(acc, widen_dot(a, b))
    }
}

/// [`sdot_lane`] or its baseline twin (lane L of `x` broadcast first).
#[inline(always)]
unsafe fn dot_lane<const SDOT: bool, const L: i32>(
    acc: int32x4_t,
    w: int8x16_t,
    x: int8x16_t,
) -> int32x4_t {
    if SDOT {
        sdot_lane::<L>(acc, w, x)
    } else {
        let xb = vreinterpretq_s8_s32(vdupq_laneq_s32::<L>(vreinterpretq_s32_s8(x)));
        vaddq_s32(acc, widen_dot(w, xb))
    }
}

/// Four f16 scales (bits) at `p` as f32 lanes (`fcvtl`, in every ARMv8 CPU; its intrinsic
/// is not stable either).
#[inline(always)]
unsafe fn f16x4(p: *const u16) -> float32x4_t {
    let bits = vld1_u16(p);
    let out: float32x4_t;
    asm!(
        "fcvtl {o:v}.4s, {i:v}.4h",
        o = out(vreg) out,
        i = in(vreg) bits,
        options(pure, nomem, nostack, preserves_flags)
    );
    out
}

fn scale(d: u16) -> f32 {
    f16::from_bits(d).to_f32()
}

/// The two 16-byte halves of a block's 32 activation bytes.
#[inline(always)]
unsafe fn halves(qs: &[i8; 32]) -> (int8x16_t, int8x16_t) {
    (vld1q_s8(qs.as_ptr()), vld1q_s8(qs.as_ptr().add(16)))
}

/// A Q4 block's 16 packed bytes as (low nibbles, high nibbles): elements 0..16 and 16..32.
#[inline(always)]
unsafe fn nibbles(qs: &[u8; 16]) -> (int8x16_t, int8x16_t) {
    let raw = vld1q_u8(qs.as_ptr());
    (
        vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0F))),
        vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw)),
    )
}

// ---------------------------------------------------------------------------------------
// ggml layout: one row of blocks against one activation row.

#[inline(always)]
unsafe fn dot_q8_0_with<const SDOT: bool>(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        let (a0, a1) = halves(&a.qs);
        let (b0, b1) = halves(&b.qs);
        let s = dot::<SDOT>(dot::<SDOT>(vdupq_n_s32(0), a0, b0), a1, b1);
        sum += scale(a.d) * scale(b.d) * vaddvq_s32(s) as f32;
    }
    sum
}

#[inline(always)]
unsafe fn dot_q4_0_with<const SDOT: bool>(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    let eight = vdupq_n_s8(8);
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        let (lo, hi) = nibbles(&a.qs);
        let (b0, b1) = halves(&b.qs);
        let s = dot::<SDOT>(vdupq_n_s32(0), vsubq_s8(lo, eight), b0);
        let s = dot::<SDOT>(s, vsubq_s8(hi, eight), b1);
        sum += scale(a.d) * scale(b.d) * vaddvq_s32(s) as f32;
    }
    sum
}

#[inline(always)]
unsafe fn dot_q4_1_with<const SDOT: bool>(w: &[BlockQ4_1], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        let (lo, hi) = nibbles(&a.qs);
        let (b0, b1) = halves(&b.qs);
        let s = dot::<SDOT>(dot::<SDOT>(vdupq_n_s32(0), lo, b0), hi, b1);
        // Σ q_x: at most 32·127, exact in i16.
        let sx = vaddlvq_s8(b0) as i32 + vaddlvq_s8(b1) as i32;
        sum += scale(b.d) * (scale(a.d) * vaddvq_s32(s) as f32 + scale(a.m) * sx as f32);
    }
    sum
}

/// Defines `pub(crate) unsafe fn $name(args) -> ret` running `$with::<true>` compiled with
/// FEAT_DotProd when the CPU has it, else `$with::<false>`.
macro_rules! dotprod_dispatch {
    ($(#[$meta:meta])* fn $name:ident$(<const $c:ident: usize>)?($($arg:ident : $ty:ty),*) -> $ret:ty => $with:ident) => {
        $(#[$meta])*
        ///
        /// # Safety
        /// The slices hold what the kernel reads (see the module's callers).
        pub(crate) unsafe fn $name$(<const $c: usize>)?($($arg: $ty),*) -> $ret {
            #[target_feature(enable = "dotprod")]
            unsafe fn with_sdot$(<const $c: usize>)?($($arg: $ty),*) -> $ret {
                $with::<true $(, $c)?>($($arg),*)
            }
            if has_dotprod() {
                // SAFETY: the feature was just detected; the caller vouches for the slices.
                unsafe { with_sdot$(::<$c>)?($($arg),*) }
            } else {
                // SAFETY: baseline NEON, present on every aarch64 CPU.
                unsafe { $with::<false $(, $c)?>($($arg),*) }
            }
        }
    };
}

dotprod_dispatch! {
    /// Σ over blocks of d_w·d_x·Σ q_w·q_x (same block count).
    fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 => dot_q8_0_with
}
dotprod_dispatch! {
    /// Σ over blocks of d_w·d_x·Σ (q_w − 8)·q_x.
    fn dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 => dot_q4_0_with
}
dotprod_dispatch! {
    /// Σ over blocks of d_w·d_x·Σ q_w·q_x + m_w·d_x·Σ q_x.
    fn dot_q4_1(w: &[BlockQ4_1], x: &[BlockQ8_0]) -> f32 => dot_q4_1_with
}

// ---------------------------------------------------------------------------------------
// Interleaved layout: 8 rows against R activation rows.

/// Which product a group kernel computes per block column.
#[derive(Clone, Copy)]
enum Group<'a> {
    Q8_0,
    Q4_0,
    /// Q4_1, with the group's f16 minima [nb, 8].
    Q4_1(&'a [u16]),
}

/// Rows `8g..8g + 8` (their `scales` [nb, 8] and `quants` [nb, chunks]) dotted with `R`
/// activation rows; each weight chunk is loaded once for all of them. Mirrors the AVX2
/// kernels in `quant_x8`, with i32 sums throughout.
#[inline(always)]
unsafe fn group_with<const SDOT: bool, const R: usize>(
    kind: Group<'_>,
    scales: &[u16],
    quants: &[Chunk],
    xs: [ActRow<'_>; R],
) -> [[f32; ROWS]; R] {
    let mut acc = [[vdupq_n_f32(0.0); 2]; R];
    let (sp, qp) = (scales.as_ptr(), quants.as_ptr() as *const u8);
    let nb = xs[0].q.len();
    let low = vdupq_n_u8(0x0F);
    for i in 0..nb {
        let mut isum = [[vdupq_n_s32(0); 2]; R];
        let mut x = [(vdupq_n_s8(0), vdupq_n_s8(0)); R];
        for r in 0..R {
            x[r] = halves(&xs[r].q.get_unchecked(i).qs);
        }
        // One chunk: bytes 4L..4L+4 of rows 0–3 (`w0`) and rows 4–7 (`w1`) against lane L of
        // the activation half `$h`. (A macro: the lane must be a constant.)
        macro_rules! chunk {
            ($w0:expr, $w1:expr, $h:tt, $l:literal) => {{
                let (w0, w1) = ($w0, $w1);
                for r in 0..R {
                    isum[r][0] = dot_lane::<SDOT, $l>(isum[r][0], w0, x[r].$h);
                    isum[r][1] = dot_lane::<SDOT, $l>(isum[r][1], w1, x[r].$h);
                }
            }};
        }
        match kind {
            Group::Q8_0 => {
                let c = qp.add(8 * 32 * i) as *const i8;
                let w = |j: usize, half: usize| vld1q_s8(c.add(32 * j + 16 * half));
                chunk!(w(0, 0), w(0, 1), 0, 0);
                chunk!(w(1, 0), w(1, 1), 0, 1);
                chunk!(w(2, 0), w(2, 1), 0, 2);
                chunk!(w(3, 0), w(3, 1), 0, 3);
                chunk!(w(4, 0), w(4, 1), 1, 0);
                chunk!(w(5, 0), w(5, 1), 1, 1);
                chunk!(w(6, 0), w(6, 1), 1, 2);
                chunk!(w(7, 0), w(7, 1), 1, 3);
            }
            Group::Q4_0 | Group::Q4_1(_) => {
                // Chunk j: low nibbles are weights 4j.. (activation half 0, lane j), high
                // nibbles weights 16 + 4j.. (half 1, lane j); unsigned nibbles ≤ 15 are valid
                // signed bytes.
                let c = qp.add(4 * 32 * i);
                let lo = |j: usize, half: usize| {
                    vreinterpretq_s8_u8(vandq_u8(vld1q_u8(c.add(32 * j + 16 * half)), low))
                };
                let hi = |j: usize, half: usize| {
                    vreinterpretq_s8_u8(vshrq_n_u8::<4>(vld1q_u8(c.add(32 * j + 16 * half))))
                };
                chunk!(lo(0, 0), lo(0, 1), 0, 0);
                chunk!(hi(0, 0), hi(0, 1), 1, 0);
                chunk!(lo(1, 0), lo(1, 1), 0, 1);
                chunk!(hi(1, 0), hi(1, 1), 1, 1);
                chunk!(lo(2, 0), lo(2, 1), 0, 2);
                chunk!(hi(2, 0), hi(2, 1), 1, 2);
                chunk!(lo(3, 0), lo(3, 1), 0, 3);
                chunk!(hi(3, 0), hi(3, 1), 1, 3);
            }
        }
        let dw = [f16x4(sp.add(ROWS * i)), f16x4(sp.add(ROWS * i + 4))];
        let mw = match kind {
            Group::Q4_1(m) => Some([
                f16x4(m.as_ptr().add(ROWS * i)),
                f16x4(m.as_ptr().add(ROWS * i + 4)),
            ]),
            _ => None,
        };
        for r in 0..R {
            let dx = *xs[r].d.get_unchecked(i);
            let sx = *xs[r].sum.get_unchecked(i);
            for h in 0..2 {
                let d = vmulq_n_f32(dw[h], dx);
                acc[r][h] = match (kind, mw) {
                    (Group::Q4_0, _) => {
                        // Σ (q − 8)·x = Σ q·x − 8·Σ x.
                        let centred = vsubq_s32(isum[r][h], vdupq_n_s32(8 * sx));
                        vfmaq_f32(acc[r][h], d, vcvtq_f32_s32(centred))
                    }
                    (Group::Q4_1(_), Some(mw)) => {
                        let a = vfmaq_f32(acc[r][h], d, vcvtq_f32_s32(isum[r][h]));
                        vfmaq_f32(a, mw[h], vdupq_n_f32(dx * sx as f32))
                    }
                    _ => vfmaq_f32(acc[r][h], d, vcvtq_f32_s32(isum[r][h])),
                };
            }
        }
    }
    let mut out = [[0f32; ROWS]; R];
    for r in 0..R {
        vst1q_f32(out[r].as_mut_ptr(), acc[r][0]);
        vst1q_f32(out[r].as_mut_ptr().add(4), acc[r][1]);
    }
    out
}

#[inline(always)]
unsafe fn group_q8_0_with<const SDOT: bool, const R: usize>(
    scales: &[u16],
    quants: &[Chunk],
    xs: [ActRow<'_>; R],
) -> [[f32; ROWS]; R] {
    group_with::<SDOT, R>(Group::Q8_0, scales, quants, xs)
}

#[inline(always)]
unsafe fn group_q4_0_with<const SDOT: bool, const R: usize>(
    scales: &[u16],
    quants: &[Chunk],
    xs: [ActRow<'_>; R],
) -> [[f32; ROWS]; R] {
    group_with::<SDOT, R>(Group::Q4_0, scales, quants, xs)
}

#[inline(always)]
unsafe fn group_q4_1_with<const SDOT: bool, const R: usize>(
    scales: &[u16],
    mins: &[u16],
    quants: &[Chunk],
    xs: [ActRow<'_>; R],
) -> [[f32; ROWS]; R] {
    group_with::<SDOT, R>(Group::Q4_1(mins), scales, quants, xs)
}

// The group kernels' callers guarantee the slice lengths (see `quant_x8`): `scales` (and
// `mins`) hold 8·nb values and `quants` nb·chunks, nb being every activation row's block count.
dotprod_dispatch! {
    /// 8 interleaved Q8_0 rows against `R` activation rows.
    fn group_q8_0<const R: usize>(scales: &[u16], quants: &[Chunk], xs: [ActRow<'_>; R]) -> [[f32; ROWS]; R] => group_q8_0_with
}
dotprod_dispatch! {
    /// 8 interleaved Q4_0 rows against `R` activation rows.
    fn group_q4_0<const R: usize>(scales: &[u16], quants: &[Chunk], xs: [ActRow<'_>; R]) -> [[f32; ROWS]; R] => group_q4_0_with
}
dotprod_dispatch! {
    /// 8 interleaved Q4_1 rows against `R` activation rows.
    fn group_q4_1<const R: usize>(scales: &[u16], mins: &[u16], quants: &[Chunk], xs: [ActRow<'_>; R]) -> [[f32; ROWS]; R] => group_q4_1_with
}

/// The baseline (no `SDOT`) instances, for tests to compare with whatever the dispatch picks.
#[cfg(test)]
pub(crate) mod baseline {
    use super::*;

    pub(crate) unsafe fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        dot_q8_0_with::<false>(w, x)
    }
    pub(crate) unsafe fn dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        dot_q4_0_with::<false>(w, x)
    }
    pub(crate) unsafe fn dot_q4_1(w: &[BlockQ4_1], x: &[BlockQ8_0]) -> f32 {
        dot_q4_1_with::<false>(w, x)
    }
    pub(crate) unsafe fn group_q8_0<const R: usize>(
        scales: &[u16],
        quants: &[Chunk],
        xs: [ActRow<'_>; R],
    ) -> [[f32; ROWS]; R] {
        group_q8_0_with::<false, R>(scales, quants, xs)
    }
    pub(crate) unsafe fn group_q4_0<const R: usize>(
        scales: &[u16],
        quants: &[Chunk],
        xs: [ActRow<'_>; R],
    ) -> [[f32; ROWS]; R] {
        group_q4_0_with::<false, R>(scales, quants, xs)
    }
    pub(crate) unsafe fn group_q4_1<const R: usize>(
        scales: &[u16],
        mins: &[u16],
        quants: &[Chunk],
        xs: [ActRow<'_>; R],
    ) -> [[f32; ROWS]; R] {
        group_q4_1_with::<false, R>(scales, mins, quants, xs)
    }
}
