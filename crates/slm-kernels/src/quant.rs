//! Block-quantised weights for decoding: Q8_0, Q4_0 and Q4_1, byte for byte the blocks of ggml/GGUF
//! (so import and export are copies), with round-to-nearest quantisers, dequantisers and the
//! dot products and matrix-vector products decoding needs.
//!
//! A block covers 32 consecutive weights of a row and stores one f16 scale `d`:
//! - **Q8_0** (34 bytes, 8.5 bits/weight): `w = d · q`, q ∈ [-127, 127], d = max|w|/127.
//! - **Q4_0** (18 bytes, 4.5 bits/weight): `w = d · (q − 8)`, q ∈ [0, 15] packed two per byte
//!   (byte j holds element j in its low nibble and element j + 16 in its high nibble);
//!   d = m / −8 with m the element of largest magnitude (ggml's choice, so the extreme value
//!   is exact).
//! - **Q4_1** (20 bytes, 5 bits/weight): `w = d · q + m`, q ∈ [0, 15] packed as in Q4_0, with
//!   the block's minimum `m` (f16) as zero point and d = (max − min)/15. The asymmetric
//!   range fits blocks whose values are not centred on zero, so its error is lower than
//!   Q4_0's (`tests::q4_1_is_more_accurate_than_q4_0`) for half a bit more per weight.
//!
//! As in llama.cpp, the activation vector is quantised to Q8_0 once per matrix-vector product
//! and each block's dot product is computed in integers: Σ q_w·q_x, scaled by d_w·d_x. The
//! AVX2 path (chosen at run time) is ggml's: |q_x| times q_w with the sign of q_x moved
//! over, `maddubs` to 16-bit pairs, `madd` to 32-bit lanes, one FMA per block. Other CPUs run
//! the scalar twin, which the tests compare with the dequantise-then-multiply reference.
//! On aarch64 the NEON kernels of [`crate::neon`] (with `SDOT` where the CPU has it) run
//! instead.
//!
//! The decode engine multiplies these blocks after repacking them eight rows at a time
//! ([`crate::quant_x8`]); the row-by-row kernels here serve rows left over after the last full
//! group, and the kernel bench's comparison of the two layouts.

use crate::check_len;
use half::f16;
use rayon::prelude::*;
use slm_core::{Error, Result};

/// Weights per block.
pub const QK: usize = 32;

/// 32 weights as f16 scale + 32 signed bytes (ggml `block_q8_0`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ8_0 {
    /// f16 bits of the scale.
    pub d: u16,
    pub qs: [i8; QK],
}

/// 32 weights as f16 scale + 16 bytes of packed nibbles (ggml `block_q4_0`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4_0 {
    /// f16 bits of the scale.
    pub d: u16,
    pub qs: [u8; QK / 2],
}

/// 32 weights as f16 scale, f16 minimum and 16 bytes of packed nibbles (ggml `block_q4_1`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockQ4_1 {
    /// f16 bits of the scale.
    pub d: u16,
    /// f16 bits of the minimum (the zero point).
    pub m: u16,
    pub qs: [u8; QK / 2],
}

impl Default for BlockQ8_0 {
    fn default() -> Self {
        Self { d: 0, qs: [0; QK] }
    }
}

impl Default for BlockQ4_0 {
    fn default() -> Self {
        Self {
            d: 0,
            qs: [0; QK / 2],
        }
    }
}

fn blocks_for(n: usize, what: &str) -> Result<usize> {
    if !n.is_multiple_of(QK) {
        return Err(Error::invalid(format!(
            "{what}: {n} values is not a multiple of the {QK}-value block"
        )));
    }
    Ok(n / QK)
}

#[inline(always)]
fn scale(d: u16) -> f32 {
    f16::from_bits(d).to_f32()
}

/// Round-to-nearest Q8_0 of `x` (length a multiple of 32) into `out` (ggml's quantiser:
/// d = max|x|/127, x/d rounded half away from zero). Every activation of a block product goes
/// through here; on AVX-512 CPUs a twin computes the same blocks bit for bit, 32 values in two
/// registers.
pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) -> Result<()> {
    check_len(
        "quantize_q8_0 out",
        out.len(),
        blocks_for(x.len(), "quantize_q8_0")?,
    )?;
    #[cfg(target_arch = "x86_64")]
    if crate::quant_x8::group_path() == crate::quant_x8::GroupPath::Avx512Vnni {
        // SAFETY: that path is only chosen on CPUs with AVX-512 F/BW/VL and F16C; the
        // lengths were checked.
        unsafe { avx512::quantize_q8_0(x, out) };
        return Ok(());
    }
    quantize_q8_0_scalar(x, out);
    Ok(())
}

/// The portable [`quantize_q8_0`] (lengths checked by the caller).
fn quantize_q8_0_scalar(x: &[f32], out: &mut [BlockQ8_0]) {
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16::from_f32(d).to_bits();
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round() as i8;
        }
    }
}

/// The AVX-512 twin of [`quantize_q8_0_scalar`], the same operations lane by lane: max|x|
/// by `vmaxps`, d = max/127 and its inverse as scalars, x·(1/d) rounded half away from zero
/// (truncate, then step away from zero where the dropped fraction is ≥ ½), saturated to bytes.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512 F/BW/VL and F16C present; `out.len()·32 = x.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub unsafe fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
        let half = _mm512_set1_ps(0.5);
        let one = _mm512_set1_ps(1.0);
        let sign = _mm512_set1_epi32(i32::MIN);
        for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
            let v = [
                _mm512_loadu_ps(xs.as_ptr()),
                _mm512_loadu_ps(xs.as_ptr().add(16)),
            ];
            let amax =
                _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            b.d = f16::from_f32(d).to_bits();
            let idv = _mm512_set1_ps(id);
            for (k, &vk) in v.iter().enumerate() {
                let y = _mm512_mul_ps(vk, idv);
                let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
                let away =
                    _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(_mm512_sub_ps(y, t)), half);
                // ±1 with y's sign.
                let step = _mm512_castsi512_ps(_mm512_or_si512(
                    _mm512_and_si512(_mm512_castps_si512(y), sign),
                    _mm512_castps_si512(one),
                ));
                let r = _mm512_mask_add_ps(t, away, t, step);
                let q = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(r));
                _mm_storeu_si128(b.qs.as_mut_ptr().add(16 * k) as *mut __m128i, q);
            }
        }
    }
}

/// Q8_0 blocks back to f32.
pub fn dequantize_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) -> Result<()> {
    check_len("dequantize_q8_0 out", out.len(), blocks.len() * QK)?;
    for (b, ys) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = scale(b.d);
        for (y, &q) in ys.iter_mut().zip(&b.qs) {
            *y = d * q as f32;
        }
    }
    Ok(())
}

/// Round-to-nearest Q4_0 of `x` (length a multiple of 32) into `out` (ggml's quantiser).
pub fn quantize_q4_0(x: &[f32], out: &mut [BlockQ4_0]) -> Result<()> {
    check_len(
        "quantize_q4_0 out",
        out.len(),
        blocks_for(x.len(), "quantize_q4_0")?,
    )?;
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        // The element of largest magnitude, with its sign.
        let m = xs
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = m / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16::from_f32(d).to_bits();
        let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
        for j in 0..QK / 2 {
            b.qs[j] = q(xs[j]) | (q(xs[j + QK / 2]) << 4);
        }
    }
    Ok(())
}

/// Q4_0 blocks back to f32.
pub fn dequantize_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) -> Result<()> {
    check_len("dequantize_q4_0 out", out.len(), blocks.len() * QK)?;
    for (b, ys) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = scale(b.d);
        for j in 0..QK / 2 {
            ys[j] = d * ((b.qs[j] & 0x0F) as i32 - 8) as f32;
            ys[j + QK / 2] = d * ((b.qs[j] >> 4) as i32 - 8) as f32;
        }
    }
    Ok(())
}

/// Round-to-nearest Q4_1 of `x` (length a multiple of 32) into `out` (ggml's quantiser).
pub fn quantize_q4_1(x: &[f32], out: &mut [BlockQ4_1]) -> Result<()> {
    check_len(
        "quantize_q4_1 out",
        out.len(),
        blocks_for(x.len(), "quantize_q4_1")?,
    )?;
    for (b, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let (min, max) = xs
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f16::from_f32(d).to_bits();
        b.m = f16::from_f32(min).to_bits();
        let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
        for j in 0..QK / 2 {
            b.qs[j] = q(xs[j]) | (q(xs[j + QK / 2]) << 4);
        }
    }
    Ok(())
}

/// Q4_1 blocks back to f32.
pub fn dequantize_q4_1(blocks: &[BlockQ4_1], out: &mut [f32]) -> Result<()> {
    check_len("dequantize_q4_1 out", out.len(), blocks.len() * QK)?;
    for (b, ys) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let (d, m) = (scale(b.d), scale(b.m));
        for j in 0..QK / 2 {
            ys[j] = d * (b.qs[j] & 0x0F) as f32 + m;
            ys[j + QK / 2] = d * (b.qs[j] >> 4) as f32 + m;
        }
    }
    Ok(())
}

/// Σ over blocks of d_w·d_x·Σ q_w·q_x, scalar.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))] // NEON runs there; tests compare
fn dot_q8_0_scalar(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        let s: i32 =
            a.qs.iter()
                .zip(&b.qs)
                .map(|(&p, &q)| p as i32 * q as i32)
                .sum();
        sum += scale(a.d) * scale(b.d) * s as f32;
    }
    sum
}

#[cfg_attr(target_arch = "aarch64", allow(dead_code))] // NEON runs there; tests compare
fn dot_q4_0_scalar(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        let mut s = 0i32;
        for j in 0..QK / 2 {
            s += ((a.qs[j] & 0x0F) as i32 - 8) * b.qs[j] as i32;
            s += ((a.qs[j] >> 4) as i32 - 8) * b.qs[j + QK / 2] as i32;
        }
        sum += scale(a.d) * scale(b.d) * s as f32;
    }
    sum
}

/// Σ over blocks of d_w·d_x·Σ q_w·q_x + m_w·d_x·Σ q_x, scalar.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))] // NEON runs there; tests compare
fn dot_q4_1_scalar(w: &[BlockQ4_1], x: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (a, b) in w.iter().zip(x) {
        let (mut s, mut sx) = (0i32, 0i32);
        for j in 0..QK / 2 {
            s += (a.qs[j] & 0x0F) as i32 * b.qs[j] as i32;
            s += (a.qs[j] >> 4) as i32 * b.qs[j + QK / 2] as i32;
            sx += b.qs[j] as i32 + b.qs[j + QK / 2] as i32;
        }
        sum += scale(b.d) * (scale(a.d) * s as f32 + scale(a.m) * sx as f32);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BlockQ4_0, BlockQ4_1, BlockQ8_0};
    use std::arch::x86_64::*;

    /// f16 bits → the scale in all 8 lanes, with the F16C instruction (software conversion
    /// costs more than the 32 multiply-adds of a block). Broadcasting the bits first matters:
    /// a scalar `cvtsi32` lets the compiler merge the load into whatever register holds an
    /// accumulator, which chains every block to the previous block's FMA (measured: ~20
    /// cycles per block instead of a few).
    #[inline(always)]
    unsafe fn scale8(d: u16) -> __m256 {
        _mm256_cvtph_ps(_mm_set1_epi16(d as i16))
    }

    /// 8 lanes of i32 sums of products of signed bytes `w` and `x` (ggml's `mul_sum_i8_pairs`).
    #[inline(always)]
    unsafe fn mul_sum_i8(w: __m256i, x: __m256i) -> __m256 {
        let ax = _mm256_sign_epi8(w, w); // |w|
        let sx = _mm256_sign_epi8(x, w); // x with w's sign
        let dot16 = _mm256_maddubs_epi16(ax, sx);
        let dot32 = _mm256_madd_epi16(dot16, _mm256_set1_epi16(1));
        _mm256_cvtepi32_ps(dot32)
    }

    use crate::simd::hsum256 as hsum;

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (a, b) in w.iter().zip(x) {
            let d = _mm256_mul_ps(scale8(a.d), scale8(b.d));
            let qa = _mm256_loadu_si256(a.qs.as_ptr() as *const __m256i);
            let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
            acc = _mm256_fmadd_ps(d, mul_sum_i8(qa, qb), acc);
        }
        hsum(acc)
    }

    /// Four rows of `nb` blocks each (`w` holds them back to back) against one activation:
    /// the activation block is loaded once for the four rows and the four sums are
    /// independent chains. `quants` unpacks a weight block to 32 signed bytes.
    #[inline(always)]
    unsafe fn dot4<B>(
        w: &[B],
        x: &[BlockQ8_0],
        out: &mut [f32; 4],
        scale_bits: impl Fn(&B) -> u16,
        quants: impl Fn(&B) -> __m256i,
    ) {
        let nb = x.len();
        // Four row pointers and four named accumulators: an indexed array of accumulators
        // made the compiler spill to the stack inside the loop (perf annotate).
        let p = w.as_ptr();
        let (r0, r1, r2, r3) = (p, p.add(nb), p.add(2 * nb), p.add(3 * nb));
        let (mut a0, mut a1, mut a2, mut a3) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let xp = x.as_ptr();
        for i in 0..nb {
            let b = &*xp.add(i);
            let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
            let db = scale8(b.d);
            // (A macro, not a closure: closures do not inherit the caller's target features.)
            macro_rules! step {
                ($row:expr, $acc:ident) => {{
                    let blk = &*$row.add(i);
                    let d = _mm256_mul_ps(scale8(scale_bits(blk)), db);
                    $acc = _mm256_fmadd_ps(d, mul_sum_i8(quants(blk), qb), $acc);
                }};
            }
            step!(r0, a0);
            step!(r1, a1);
            step!(r2, a2);
            step!(r3, a3);
        }
        *out = [hsum(a0), hsum(a1), hsum(a2), hsum(a3)];
    }

    /// Q4_0 block → 32 signed bytes: low nibbles are elements 0..16, high nibbles 16..32.
    #[inline(always)]
    unsafe fn unpack_q4_0(blk: &BlockQ4_0) -> __m256i {
        let packed = _mm_loadu_si128(blk.qs.as_ptr() as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        _mm256_sub_epi8(
            _mm256_and_si256(both, _mm256_set1_epi8(0x0F)),
            _mm256_set1_epi8(8),
        )
    }

    /// [`dot4`] for Q8_0 rows.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `w` holds 4·x.len() blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot4_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0], out: &mut [f32; 4]) {
        dot4(
            w,
            x,
            out,
            |b| b.d,
            |b| _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i),
        )
    }

    /// [`dot4`] for Q4_0 rows.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `w` holds 4·x.len() blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot4_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0], out: &mut [f32; 4]) {
        dot4(w, x, out, |b| b.d, |b| unpack_q4_0(b))
    }

    /// Q4_1 block → its 32 unsigned nibbles as bytes (same order as Q4_0).
    #[inline(always)]
    unsafe fn unpack_q4_1(blk: &BlockQ4_1) -> __m256i {
        let packed = _mm_loadu_si128(blk.qs.as_ptr() as *const __m128i);
        let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
    }

    /// 8 lanes of i32 sums of products of unsigned bytes `w` (< 128) and signed bytes `x`.
    #[inline(always)]
    unsafe fn mul_sum_u8_i8(w: __m256i, x: __m256i) -> __m256 {
        let dot16 = _mm256_maddubs_epi16(w, x);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(dot16, _mm256_set1_epi16(1)))
    }

    /// Four Q4_1 rows (back to back, `x.len()` blocks each) against one activation:
    /// Σ d_w·d_x·Σ q_w·q_x + m_w·(d_x·Σ q_x), the activation's block sums shared by the rows.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `w` holds `rows`·x.len() blocks, rows ≤ 4.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dotn_q4_1<const R: usize>(w: &[BlockQ4_1], x: &[BlockQ8_0], out: &mut [f32; R]) {
        let nb = x.len();
        let ones = _mm256_set1_epi8(1);
        let mut acc = [_mm256_setzero_ps(); R];
        for (i, b) in x.iter().enumerate() {
            let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
            let db = scale8(b.d);
            // d_x·Σ q_x spread over 8 lanes (their sum is the block's).
            let sx = _mm256_mul_ps(db, mul_sum_u8_i8(ones, qb));
            for (r, a) in acc.iter_mut().enumerate() {
                let blk = w.get_unchecked(r * nb + i);
                let d = _mm256_mul_ps(scale8(blk.d), db);
                *a = _mm256_fmadd_ps(d, mul_sum_u8_i8(unpack_q4_1(blk), qb), *a);
                *a = _mm256_fmadd_ps(scale8(blk.m), sx, *a);
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = hsum(a);
        }
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (a, b) in w.iter().zip(x) {
            let d = _mm256_mul_ps(scale8(a.d), scale8(b.d));
            let qa = unpack_q4_0(a);
            let qb = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
            acc = _mm256_fmadd_ps(d, mul_sum_i8(qa, qb), acc);
        }
        hsum(acc)
    }
}

#[cfg(target_arch = "aarch64")]
use crate::neon;

/// AVX2, FMA and F16C: what the block kernels here and in `quant_x8` need.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// Σ_i w_i·x_i for a Q8_0 weight row and a Q8_0 activation row (same block count).
pub fn vec_dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the features were just detected.
        return unsafe { avx2::dot_q8_0(w, x) };
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the kernel zips the two rows; NEON is baseline on aarch64.
    return unsafe { neon::dot_q8_0(w, x) };
    #[cfg(not(target_arch = "aarch64"))]
    dot_q8_0_scalar(w, x)
}

/// Σ_i w_i·x_i for a Q4_0 weight row and a Q8_0 activation row (same block count).
pub fn vec_dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the features were just detected.
        return unsafe { avx2::dot_q4_0(w, x) };
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the kernel zips the two rows; NEON is baseline on aarch64.
    return unsafe { neon::dot_q4_0(w, x) };
    #[cfg(not(target_arch = "aarch64"))]
    dot_q4_0_scalar(w, x)
}

/// Σ_i w_i·x_i for a Q4_1 weight row and a Q8_0 activation row (same block count).
pub fn vec_dot_q4_1(w: &[BlockQ4_1], x: &[BlockQ8_0]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        let mut out = [0f32; 1];
        // SAFETY: the features were just detected; one row of x.len() blocks.
        unsafe { avx2::dotn_q4_1(w, x, &mut out) };
        return out[0];
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the kernel zips the two rows; NEON is baseline on aarch64.
    return unsafe { neon::dot_q4_1(w, x) };
    #[cfg(not(target_arch = "aarch64"))]
    dot_q4_1_scalar(w, x)
}

/// One of the block formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Q8_0,
    Q4_0,
    Q4_1,
}

/// A quantised weight matrix [out, in] stored row by row in blocks.
#[derive(Debug, Clone, PartialEq)]
pub enum QuantMatrix {
    Q8_0(Vec<BlockQ8_0>),
    Q4_0(Vec<BlockQ4_0>),
    Q4_1(Vec<BlockQ4_1>),
}

impl QuantMatrix {
    /// Round-to-nearest `kind` blocks of `x` (rows of a length divisible by 32, row after row).
    pub fn quantize(kind: BlockKind, x: &[f32]) -> Result<Self> {
        let n = blocks_for(x.len(), "QuantMatrix::quantize")?;
        Ok(match kind {
            BlockKind::Q8_0 => {
                let mut b = vec![BlockQ8_0::default(); n];
                quantize_q8_0(x, &mut b)?;
                Self::Q8_0(b)
            }
            BlockKind::Q4_0 => {
                let mut b = vec![BlockQ4_0::default(); n];
                quantize_q4_0(x, &mut b)?;
                Self::Q4_0(b)
            }
            BlockKind::Q4_1 => {
                let mut b = vec![BlockQ4_1::default(); n];
                quantize_q4_1(x, &mut b)?;
                Self::Q4_1(b)
            }
        })
    }

    /// The values the blocks stand for.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.blocks() * QK];
        // The lengths agree by construction.
        let _ = match self {
            Self::Q8_0(b) => dequantize_q8_0(b, &mut out),
            Self::Q4_0(b) => dequantize_q4_0(b, &mut out),
            Self::Q4_1(b) => dequantize_q4_1(b, &mut out),
        };
        out
    }

    /// The values the blocks stand for, into `out` (exactly as many values as the blocks
    /// hold): no allocation, for a scratch buffer reused block after block.
    pub fn dequantize_into(&self, out: &mut [f32]) -> Result<()> {
        match self {
            Self::Q8_0(b) => dequantize_q8_0(b, out),
            Self::Q4_0(b) => dequantize_q4_0(b, out),
            Self::Q4_1(b) => dequantize_q4_1(b, out),
        }
    }

    /// Bytes of weight data (what a matrix-vector product streams).
    pub fn bytes(&self) -> usize {
        match self {
            Self::Q8_0(b) => b.len() * std::mem::size_of::<BlockQ8_0>(),
            Self::Q4_0(b) => b.len() * std::mem::size_of::<BlockQ4_0>(),
            Self::Q4_1(b) => b.len() * std::mem::size_of::<BlockQ4_1>(),
        }
    }

    pub(crate) fn blocks(&self) -> usize {
        match self {
            Self::Q8_0(b) => b.len(),
            Self::Q4_0(b) => b.len(),
            Self::Q4_1(b) => b.len(),
        }
    }

    /// Dot products of rows `o0..o0 + ys.len()` with `xq`, four rows per kernel call where
    /// the fast path exists.
    fn rows_dot(&self, o0: usize, xq: &[BlockQ8_0], ys: &mut [f32]) {
        // (Only the AVX2 path advances `o` four rows at a time.)
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut o = 0;
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            let nb = xq.len();
            let mut four = [0f32; 4];
            while o + 4 <= ys.len() {
                let rows = (o0 + o) * nb..(o0 + o + 4) * nb;
                // SAFETY: features detected; each slice holds 4·nb blocks.
                unsafe {
                    match self {
                        Self::Q8_0(b) => avx2::dot4_q8_0(&b[rows], xq, &mut four),
                        Self::Q4_0(b) => avx2::dot4_q4_0(&b[rows], xq, &mut four),
                        Self::Q4_1(b) => avx2::dotn_q4_1(&b[rows], xq, &mut four),
                    }
                }
                ys[o..o + 4].copy_from_slice(&four);
                o += 4;
            }
        }
        for (j, y) in ys[o..].iter_mut().enumerate() {
            *y = self.row_dot(o0 + o + j, xq);
        }
    }

    /// Row `o`'s dot product with the quantised activation `xq` (one row of blocks).
    #[inline]
    pub(crate) fn row_dot(&self, o: usize, xq: &[BlockQ8_0]) -> f32 {
        let nb = xq.len();
        match self {
            Self::Q8_0(b) => vec_dot_q8_0(&b[o * nb..(o + 1) * nb], xq),
            Self::Q4_0(b) => vec_dot_q4_0(&b[o * nb..(o + 1) * nb], xq),
            Self::Q4_1(b) => vec_dot_q4_1(&b[o * nb..(o + 1) * nb], xq),
        }
    }
}

/// y[o] = Σ_i W[o, i]·x[i] for a quantised `w` [out, in]: `x` is quantised to Q8_0 into the
/// caller's scratch `xq` (in/32 blocks, so the decode loop allocates nothing), then output
/// rows are split across the current rayon pool.
pub fn matvec_quant(
    w: &QuantMatrix,
    x: &[f32],
    xq: &mut [BlockQ8_0],
    out_features: usize,
    y: &mut [f32],
) -> Result<()> {
    let nb = blocks_for(x.len(), "matvec_quant x")?;
    check_len(
        "matvec_quant weights (blocks)",
        w.blocks(),
        out_features * nb,
    )?;
    check_len("matvec_quant y", y.len(), out_features)?;
    check_len("matvec_quant scratch", xq.len(), nb)?;
    quantize_q8_0(x, xq)?;
    let xq: &[BlockQ8_0] = xq;
    // ~32 KiB of weights per task.
    let rows_per_task = (32 * 1024 / (w.bytes() / out_features.max(1)).max(1)).max(1);
    if out_features * nb * QK < 64 * 1024 {
        w.rows_dot(0, xq, y);
    } else {
        let rows_per_task = rows_per_task.next_multiple_of(4);
        y.par_chunks_mut(rows_per_task)
            .enumerate()
            .for_each(|(c, ys)| w.rows_dot(c * rows_per_task, xq, ys));
    }
    Ok(())
}

/// Reference: dequantise `w`, quantise-then-dequantise `x` (what the fast path multiplies),
/// and multiply in f64.
pub fn matvec_quant_naive(w: &QuantMatrix, x: &[f32], out_features: usize) -> Result<Vec<f32>> {
    let inf = x.len();
    let nb = blocks_for(inf, "matvec_quant_naive x")?;
    let mut wf = vec![0f32; out_features * inf];
    match w {
        QuantMatrix::Q8_0(b) => dequantize_q8_0(b, &mut wf)?,
        QuantMatrix::Q4_0(b) => dequantize_q4_0(b, &mut wf)?,
        QuantMatrix::Q4_1(b) => dequantize_q4_1(b, &mut wf)?,
    }
    let mut xq = vec![BlockQ8_0::default(); nb];
    quantize_q8_0(x, &mut xq)?;
    let mut xd = vec![0f32; inf];
    dequantize_q8_0(&xq, &mut xd)?;
    Ok((0..out_features)
        .map(|o| {
            wf[o * inf..(o + 1) * inf]
                .iter()
                .zip(&xd)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>() as f32
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{quantized, rand_vec};
    use proptest::prelude::*;

    #[test]
    fn block_layout_is_ggml() {
        assert_eq!(std::mem::size_of::<BlockQ8_0>(), 34);
        assert_eq!(std::mem::size_of::<BlockQ4_0>(), 18);
        assert_eq!(std::mem::size_of::<BlockQ4_1>(), 20);
    }

    /// Root-mean-square error of `kind` on `w`.
    fn rms_error(w: &[f32], kind: usize) -> f64 {
        let mut back = vec![0f32; w.len()];
        match quantized(w, kind) {
            QuantMatrix::Q4_0(b) => dequantize_q4_0(&b, &mut back).unwrap(),
            QuantMatrix::Q4_1(b) => dequantize_q4_1(&b, &mut back).unwrap(),
            QuantMatrix::Q8_0(b) => dequantize_q8_0(&b, &mut back).unwrap(),
        }
        let se: f64 = w
            .iter()
            .zip(&back)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        (se / w.len() as f64).sqrt()
    }

    #[test]
    fn q4_1_is_more_accurate_than_q4_0() {
        // Bell-shaped weights (sum of 4 uniforms), centred and off-centre.
        let n = 512 * QK;
        let parts: Vec<Vec<f32>> = (0..4).map(|k| rand_vec(n, 40 + k)).collect();
        let bell: Vec<f32> = (0..n)
            .map(|i| parts.iter().map(|p| p[i]).sum::<f32>() * 0.01)
            .collect();
        let shifted: Vec<f32> = bell.iter().map(|v| v + 0.01).collect();
        for (name, w) in [("centred", &bell), ("shifted", &shifted)] {
            let (e40, e41) = (rms_error(w, 1), rms_error(w, 2));
            assert!(e41 < e40, "{name}: q4_1 {e41} vs q4_0 {e40}");
        }
        let mut back = vec![0f32; QK];
        let mut b = [BlockQ4_1::default()];
        // A constant block is exact; min and max are exact up to f16.
        quantize_q4_1(&[0.25; QK], &mut b).unwrap();
        dequantize_q4_1(&b, &mut back).unwrap();
        assert!(back.iter().all(|&v| v == 0.25), "{back:?}");
        let x = rand_vec(QK, 3);
        quantize_q4_1(&x, &mut b).unwrap();
        dequantize_q4_1(&b, &mut back).unwrap();
        let d = scale(b[0].d);
        for (a, c) in x.iter().zip(&back) {
            assert!((a - c).abs() <= 0.51 * d + 1e-3, "{a} vs {c}, d {d}");
        }
    }

    #[test]
    fn round_trips_within_half_a_step() {
        let x = rand_vec(4 * QK, 3);
        let mut q8 = vec![BlockQ8_0::default(); 4];
        quantize_q8_0(&x, &mut q8).unwrap();
        let mut y = vec![0f32; x.len()];
        dequantize_q8_0(&q8, &mut y).unwrap();
        for (b, (xs, ys)) in q8.iter().zip(x.chunks(QK).zip(y.chunks(QK))) {
            let d = scale(b.d);
            for (a, c) in xs.iter().zip(ys) {
                assert!((a - c).abs() <= 0.5 * d + 1e-3 * d, "{a} vs {c}, d {d}");
            }
        }
        let mut q4 = vec![BlockQ4_0::default(); 4];
        quantize_q4_0(&x, &mut q4).unwrap();
        dequantize_q4_0(&q4, &mut y).unwrap();
        for (b, (xs, ys)) in q4.iter().zip(x.chunks(QK).zip(y.chunks(QK))) {
            // Levels run from −8d to 7d: values beyond 7d on the side opposite the extreme
            // clip to 7d (error up to d); all others round to within d/2.
            let d = scale(b.d).abs();
            for (a, c) in xs.iter().zip(ys) {
                let bound = if a.abs() > 7.0 * d {
                    1.01 * d
                } else {
                    0.51 * d
                };
                assert!((a - c).abs() <= bound, "{a} vs {c}, d {d}");
            }
            // The extreme element is exact (up to the f16 scale).
            let m = xs
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let i = xs.iter().position(|&v| v == m).unwrap();
            assert!((ys[i] - m).abs() <= 2e-3 * m.abs(), "{} vs {m}", ys[i]);
        }
        assert!(quantize_q8_0(&x[..33], &mut q8[..1]).is_err());
    }

    #[test]
    fn every_quantiser_path_gives_the_same_blocks() {
        // Random values, exact halves after scaling (ties), zeros, one huge outlier.
        let mut x = rand_vec(64 * QK, 11);
        for (i, v) in x[..QK].iter_mut().enumerate() {
            *v = (i as f32 - 16.0) + 0.5; // max 15.5: steps of 15.5/127
        }
        x[QK] = 127.0;
        for (i, v) in x[QK + 1..2 * QK].iter_mut().enumerate() {
            *v = i as f32 + 0.5 - 15.0;
        }
        x[2 * QK..3 * QK].fill(0.0);
        x[3 * QK + 5] = 1e4;
        let mut fast = vec![BlockQ8_0::default(); 64];
        let mut slow = fast.clone();
        quantize_q8_0(&x, &mut fast).unwrap();
        quantize_q8_0_scalar(&x, &mut slow);
        assert_eq!(fast, slow);
        assert!(fast[2].qs.iter().all(|&q| q == 0) && fast[2].d == 0);
    }

    #[test]
    fn zero_blocks_stay_zero() {
        let x = vec![0f32; QK];
        let mut q = [BlockQ4_0::default()];
        quantize_q4_0(&x, &mut q).unwrap();
        let mut y = vec![1f32; QK];
        dequantize_q4_0(&q, &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn simd_dots_equal_scalar_dots() {
        let (w, x) = (rand_vec(7 * QK, 1), rand_vec(7 * QK, 2));
        let (mut w8, mut w4, mut x8) = (
            vec![BlockQ8_0::default(); 7],
            vec![BlockQ4_0::default(); 7],
            vec![BlockQ8_0::default(); 7],
        );
        quantize_q8_0(&w, &mut w8).unwrap();
        quantize_q4_0(&w, &mut w4).unwrap();
        quantize_q8_0(&x, &mut x8).unwrap();
        let (a, b) = (vec_dot_q8_0(&w8, &x8), dot_q8_0_scalar(&w8, &x8));
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
        let (a, b) = (vec_dot_q4_0(&w4, &x8), dot_q4_0_scalar(&w4, &x8));
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
        let mut w41 = vec![BlockQ4_1::default(); 7];
        quantize_q4_1(&w, &mut w41).unwrap();
        let (a, b) = (vec_dot_q4_1(&w41, &x8), dot_q4_1_scalar(&w41, &x8));
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }

    /// On aarch64: the NEON dot products with and without `SDOT` give the same sums, equal
    /// to the scalar twins'. (Whether `SDOT` ran depends on the CPU, or on qemu's `-cpu`.)
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_dots_with_and_without_sdot_equal_scalar_dots() {
        use crate::neon;
        for (blocks, seed) in [(1usize, 3u64), (7, 4), (13, 5)] {
            let w = rand_vec(blocks * QK, seed)
                .iter()
                .map(|v| v + 0.3)
                .collect::<Vec<_>>();
            let x = rand_vec(blocks * QK, seed + 50);
            let mut x8 = vec![BlockQ8_0::default(); blocks];
            quantize_q8_0(&x, &mut x8).unwrap();
            let (mut w8, mut w4, mut w41) = (
                vec![BlockQ8_0::default(); blocks],
                vec![BlockQ4_0::default(); blocks],
                vec![BlockQ4_1::default(); blocks],
            );
            quantize_q8_0(&w, &mut w8).unwrap();
            quantize_q4_0(&w, &mut w4).unwrap();
            quantize_q4_1(&w, &mut w41).unwrap();
            // SAFETY: both rows have `blocks` blocks.
            let got = unsafe {
                [
                    (neon::dot_q8_0(&w8, &x8), neon::baseline::dot_q8_0(&w8, &x8)),
                    (neon::dot_q4_0(&w4, &x8), neon::baseline::dot_q4_0(&w4, &x8)),
                    (
                        neon::dot_q4_1(&w41, &x8),
                        neon::baseline::dot_q4_1(&w41, &x8),
                    ),
                ]
            };
            let want = [
                dot_q8_0_scalar(&w8, &x8),
                dot_q4_0_scalar(&w4, &x8),
                dot_q4_1_scalar(&w41, &x8),
            ];
            for ((fast, base), b) in got.into_iter().zip(want) {
                assert_eq!(fast, base, "SDOT and baseline differ");
                assert!((fast - b).abs() <= 1e-5 * b.abs().max(1.0), "{fast} vs {b}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn matvec_matches_dequantised_reference(
            out in 1usize..70, blocks in 1usize..12, kind in 0usize..3, seed in 0u64..1000,
            shift in -1.0f32..1.0
        ) {
            let inf = blocks * QK;
            // Shifted so blocks are not centred on zero (Q4_1's zero point matters).
            let wf: Vec<f32> = rand_vec(out * inf, seed).iter().map(|v| v + shift).collect();
            let x = rand_vec(inf, seed + 7);
            let w = quantized(&wf, kind);
            let mut y = vec![0f32; out];
            let mut xq = vec![BlockQ8_0::default(); blocks];
            matvec_quant(&w, &x, &mut xq, out, &mut y).unwrap();
            let r = matvec_quant_naive(&w, &x, out).unwrap();
            for (a, b) in y.iter().zip(&r) {
                prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{} vs {}", a, b);
            }
        }
    }

    #[test]
    fn four_row_kernels_equal_one_row_kernels() {
        let (out, blocks) = (11, 5);
        let wf = rand_vec(out * blocks * QK, 21);
        let x = rand_vec(blocks * QK, 22);
        let mut xq = vec![BlockQ8_0::default(); blocks];
        quantize_q8_0(&x, &mut xq).unwrap();
        for w in (0..3).map(|k| quantized(&wf, k)) {
            let mut ys = vec![0f32; out];
            w.rows_dot(0, &xq, &mut ys);
            for (o, &y) in ys.iter().enumerate() {
                let one = w.row_dot(o, &xq);
                assert!(
                    (y - one).abs() <= 1e-5 * one.abs().max(1.0),
                    "row {o}: {y} vs {one}"
                );
            }
        }
    }

    #[test]
    fn large_matvec_uses_threads_and_agrees() {
        let (out, blocks) = (300, 16);
        let inf = blocks * QK;
        let wf = rand_vec(out * inf, 5);
        let x = rand_vec(inf, 6);
        let mut b = vec![BlockQ4_0::default(); out * blocks];
        quantize_q4_0(&wf, &mut b).unwrap();
        let w = QuantMatrix::Q4_0(b);
        let mut y = vec![0f32; out];
        let mut xq = vec![BlockQ8_0::default(); blocks];
        matvec_quant(&w, &x, &mut xq, out, &mut y).unwrap();
        let r = matvec_quant_naive(&w, &x, out).unwrap();
        for (a, b) in y.iter().zip(&r) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert_eq!(w.bytes(), out * blocks * 18);
    }
}
