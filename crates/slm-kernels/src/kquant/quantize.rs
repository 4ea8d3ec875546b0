//! llama.cpp's quantisers for the k-quant and 5-bit blocks, ported line for line from ggml's
//! reference functions (`ggml-quants.c`): `quantize_row_q4_K_ref`, `quantize_row_q5_K_ref`,
//! `quantize_row_q6_K_ref`, `quantize_row_q5_0_ref`, `quantize_row_q5_1_ref` and their helpers
//! `make_qkx2_quants` and `make_qx_quants`. `llama-quantize` without an importance matrix calls
//! exactly these, so the blocks written here are byte for byte the blocks llama.cpp writes.
//!
//! Byte identity needs the same float operations in the same order, each rounded to f32:
//! ggml-base (where these functions live) is compiled without `-march=native` (SSE2, no FMA
//! contraction: its disassembly has no `vfmadd`), and Rust never fuses `a * b + c`, so every
//! expression below keeps C's evaluation order (`w * l * l` is `(w * l) * l`) and nothing is
//! fused. f32 → f16 is ggml's own rounding (`ggml_compute_fp32_to_fp16`).
//!
//! What the searches do:
//! - **Q4_K / Q5_K** (`make_qkx2_quants`): each 32-value sub-block gets a scale and a minimum
//!   fitted by weighted least squares (weights `sqrt(mean x²) + |x|`) over 21 (Q4_K) or 16
//!   (Q5_K) candidate scales; the eight scales and minimums are then quantised to 6 bits
//!   against the block's largest (f16 `d`, `dmin`) and the values re-rounded to the stored
//!   scales.
//! - **Q6_K** (`make_qx_quants`, rmse type 1): each 16-value sub-block's symmetric scale is
//!   searched over 19 candidates weighting errors by x²; the 16 scales are stored as i8
//!   against the largest (`d` = max/−128).
//! - **Q5_0 / Q5_1**: round to nearest, as Q4_0/Q4_1 with 32 levels.

use super::{
    nearest_int, scales_mins, BlockQ4K, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, GgmlBlock, QK_K,
};
use crate::quant::QK;
use rayon::prelude::*;
use slm_core::{Error, Result};

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below it is all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `ggml_compute_fp32_to_fp16` (round to nearest even; NaN → 0x7E00).
pub fn fp32_to_fp16(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2¹¹²
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2⁻¹¹⁰
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;
    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let bias = (shl1_w & 0xFF00_0000).max(0x7100_0000);
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    ((sign >> 16)
        | if shl1_w > 0xFF00_0000 {
            0x7E00
        } else {
            nonsign
        }) as u16
}

#[inline(always)]
fn fp16_to_fp32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// A block type with llama.cpp's reference quantiser.
pub trait GgmlQuantize: GgmlBlock {
    /// Quantises `B::VALUES` values into one block (ggml's `quantize_row_*_ref` on one block).
    fn quantize_block(x: &[f32]) -> Self;
}

impl GgmlQuantize for BlockQ4K {
    fn quantize_block(x: &[f32]) -> Self {
        q4_k_block(x)
    }
}
impl GgmlQuantize for BlockQ5K {
    fn quantize_block(x: &[f32]) -> Self {
        q5_k_block(x)
    }
}
impl GgmlQuantize for BlockQ6K {
    fn quantize_block(x: &[f32]) -> Self {
        q6_k_block(x)
    }
}
impl GgmlQuantize for BlockQ5_0 {
    fn quantize_block(x: &[f32]) -> Self {
        q5_0_block(x)
    }
}
impl GgmlQuantize for BlockQ5_1 {
    fn quantize_block(x: &[f32]) -> Self {
        q5_1_block(x)
    }
}

/// Blocks quantised per task when the work is split across threads.
const BLOCKS_PER_TASK: usize = 64;

/// Quantises `x` (a whole number of `B::VALUES`-value blocks) into `out`, one block per
/// `B::VALUES` values, as ggml's `quantize_row_*_ref` does (blocks are independent, so the
/// work is split across threads without changing a byte).
pub fn quantize_blocks<B: GgmlQuantize>(x: &[f32], out: &mut [B]) -> Result<()> {
    if !x.len().is_multiple_of(B::VALUES) {
        return Err(Error::invalid(format!(
            "quantize {}: {} values is not a multiple of the {}-value block",
            B::NAME,
            x.len(),
            B::VALUES
        )));
    }
    if out.len() != x.len() / B::VALUES {
        return Err(Error::invalid(format!(
            "quantize {}: {} values make {} blocks, the output holds {}",
            B::NAME,
            x.len(),
            x.len() / B::VALUES,
            out.len()
        )));
    }
    let run = |o: &mut [B], xs: &[f32]| {
        for (b, xb) in o.iter_mut().zip(xs.chunks_exact(B::VALUES)) {
            *b = B::quantize_block(xb);
        }
    };
    if out.len() > BLOCKS_PER_TASK {
        out.par_chunks_mut(BLOCKS_PER_TASK)
            .zip(x.par_chunks(BLOCKS_PER_TASK * B::VALUES))
            .for_each(|(o, xs)| run(o, xs));
    } else {
        run(out, x);
    }
    Ok(())
}

/// `x` as a new vector of blocks (see [`quantize_blocks`]).
pub fn quantize_to_blocks<B: GgmlQuantize>(x: &[f32]) -> Result<Vec<B>> {
    let mut out = vec![B::default(); x.len() / B::VALUES];
    quantize_blocks(x, &mut out)?;
    Ok(out)
}

/// ggml's `quantize_row_q4_K_ref`.
pub fn quantize_q4_k(x: &[f32], out: &mut [BlockQ4K]) -> Result<()> {
    quantize_blocks(x, out)
}

/// ggml's `quantize_row_q5_K_ref`.
pub fn quantize_q5_k(x: &[f32], out: &mut [BlockQ5K]) -> Result<()> {
    quantize_blocks(x, out)
}

/// ggml's `quantize_row_q6_K_ref`.
pub fn quantize_q6_k(x: &[f32], out: &mut [BlockQ6K]) -> Result<()> {
    quantize_blocks(x, out)
}

/// ggml's `quantize_row_q5_0_ref`.
pub fn quantize_q5_0(x: &[f32], out: &mut [BlockQ5_0]) -> Result<()> {
    quantize_blocks(x, out)
}

/// ggml's `quantize_row_q5_1_ref`.
pub fn quantize_q5_1(x: &[f32], out: &mut [BlockQ5_1]) -> Result<()> {
    quantize_blocks(x, out)
}

/// ggml's `make_qkx2_quants`: levels `l` in [0, nmax] (into `levels`), scale and minimum
/// (returned as (scale, −min)) of `x` minimising Σ w·(scale·l + min − x)² (or |·| with
/// `use_mad`) over the candidate scales (rmin + rdelta·is + nmax)/(max − min), is = 0..=nstep.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    levels: &mut [u8],
    aux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels[..n].fill(0);
        return (0.0, -min);
    }
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        levels[i] = l.clamp(0, nmax) as u8;
        let diff = scale * levels[i] as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let (w, lf) = (weights[i], l as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                levels[..n].copy_from_slice(&aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` without importance weights (`qw` NULL): signed levels `l + nmax`
/// in [0, 2·nmax) (into `levels`) and the scale of `x`. rmse_type 0: round to nearest of
/// max/−nmax; 1..=4: search 19 scales weighting errors by x², 1, |x| or √|x|; negative: one
/// least-squares step, returned early.
fn make_qx_quants(nmax: i32, x: &[f32], levels: &mut [i8], rmse_type: i32) -> f32 {
    let n = x.len();
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -nmax as f32 / max;
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    if rmse_type == 0 {
        for i in 0..n {
            levels[i] = (nmax + level(iscale, x[i])) as i8;
        }
        return 1.0 / iscale;
    }
    let (rmse_type, return_early) = if rmse_type < 0 {
        (-rmse_type, true)
    } else {
        (rmse_type, false)
    };
    let weight = |v: f32| match rmse_type {
        1 => v * v,
        2 => 1.0,
        3 => v.abs(),
        _ => v.abs().sqrt(),
    };
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..n {
        let l = level(iscale, x[i]);
        levels[i] = (l + nmax) as i8;
        let (w, lf) = (weight(x[i]), l as f32);
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let (w, lf) = (weight(v), level(iscale, v) as f32);
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                levels[i] = (nmax + level(iscale, x[i])) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// The part Q4_K and Q5_K share: per 32-value sub-block a `make_qkx2_quants` fit, the eight
/// scales and minimums as 6-bit numbers against the largest (f16 `d`, `dmin`, the 12 packed
/// bytes), and each value's level in [0, nmax] under the stored scales.
fn k_scales_and_levels(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> (u16, u16, [u8; 12], [u8; QK_K]) {
    let mut levels = [0u8; QK_K];
    let mut aux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut levels[32 * j..32 * j + 32],
            &mut aux,
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..QK_K / 32 {
        // C: `uint8_t ls = nearest_int(...)` (wraps), then MIN(63, ls).
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = fp32_to_fp16(max_scale / 63.0);
    let dmin = fp32_to_fp16(max_min / 63.0);
    let (sc, m) = scales_mins(&packed);
    for j in 0..QK_K / 32 {
        let dj = fp16_to_fp32(d) * sc[j] as f32;
        if dj == 0.0 {
            continue; // keeps the levels the fit chose, as ggml does
        }
        let dm = fp16_to_fp32(dmin) * m[j] as f32;
        for ii in 0..32 {
            let l = nearest_int((x[32 * j + ii] + dm) / dj);
            levels[32 * j + ii] = l.clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, levels)
}

fn q4_k_block(x: &[f32]) -> BlockQ4K {
    let (d, dmin, scales, l) = k_scales_and_levels(x, 15, -1.0, 20);
    let mut qs = [0u8; 128];
    for (c, q) in qs.chunks_exact_mut(32).enumerate() {
        let j = 64 * c;
        for (i, b) in q.iter_mut().enumerate() {
            *b = l[j + i] | (l[j + i + 32] << 4);
        }
    }
    BlockQ4K {
        d,
        dmin,
        scales,
        qs,
    }
}

fn q5_k_block(x: &[f32]) -> BlockQ5K {
    let (d, dmin, scales, l) = k_scales_and_levels(x, 31, -0.5, 15);
    let (mut qh, mut qs) = ([0u8; 32], [0u8; 128]);
    let (mut m1, mut m2) = (1u8, 2u8);
    for (c, ql) in qs.chunks_exact_mut(32).enumerate() {
        let n = 64 * c;
        for j in 0..32 {
            let mut l1 = l[n + j];
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= m1;
            }
            let mut l2 = l[n + j + 32];
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = l1 | (l2 << 4);
        }
        m1 = m1.wrapping_shl(2);
        m2 = m2.wrapping_shl(2);
    }
    BlockQ5K {
        d,
        dmin,
        scales,
        qh,
        qs,
    }
}

fn q6_k_block(x: &[f32]) -> BlockQ6K {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for ib in 0..QK_K / 16 {
        let scale = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..], 1);
        scales[ib] = scale;
        let abs_scale = scale.abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    let mut y = BlockQ6K::default();
    if max_abs_scale < GROUP_MAX_EPS {
        y.d = fp32_to_fp16(0.0);
        return y;
    }
    let iscale = -128.0 / max_scale;
    y.d = fp32_to_fp16(1.0 / iscale);
    for (s, &v) in y.scales.iter_mut().zip(&scales) {
        *s = nearest_int(iscale * v).min(127) as i8;
    }
    for j in 0..QK_K / 16 {
        let d = fp16_to_fp32(y.d) * y.scales[j] as f32;
        if d == 0.0 {
            continue; // keeps make_qx_quants' levels, as ggml does
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
            l[16 * j + ii] = (q + 32) as i8;
        }
    }
    let u = |i: usize| l[i] as u8;
    for h in 0..2 {
        let (j, ql, qh) = (128 * h, &mut y.ql[64 * h..64 * h + 64], &mut y.qh[32 * h..]);
        for i in 0..32 {
            let q1 = u(j + i) & 0xF;
            let q2 = u(j + i + 32) & 0xF;
            let q3 = u(j + i + 64) & 0xF;
            let q4 = u(j + i + 96) & 0xF;
            ql[i] = q1 | (q3 << 4);
            ql[i + 32] = q2 | (q4 << 4);
            qh[i] = (u(j + i) >> 4)
                | ((u(j + i + 32) >> 4) << 2)
                | ((u(j + i + 64) >> 4) << 4)
                | ((u(j + i + 96) >> 4) << 6);
        }
    }
    y
}

/// Q5_0/Q5_1's packing: value j's low nibble in byte j (j < 16) or the high nibble of byte
/// j − 16, its fifth bit as bit j of `qh`.
fn pack_q5(level: impl Fn(usize) -> u8) -> ([u8; 4], [u8; 16]) {
    let mut qs = [0u8; 16];
    let mut qh = 0u32;
    for (j, q) in qs.iter_mut().enumerate() {
        let (xi0, xi1) = (level(j), level(j + QK / 2));
        *q = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
        qh |= (((xi0 & 0x10) >> 4) as u32) << j;
        qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    (qh.to_le_bytes(), qs)
}

fn q5_0_block(x: &[f32]) -> BlockQ5_0 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // C: MIN(31, (int8_t)(x·id + 16.5f)), the float truncated toward zero.
    let (qh, qs) = pack_q5(|j| ((x[j] * id + 16.5) as i32 as i8).min(31) as u8);
    BlockQ5_0 {
        d: fp32_to_fp16(d),
        qh,
        qs,
    }
}

fn q5_1_block(x: &[f32]) -> BlockQ5_1 {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // C: (uint8_t)((x − min)·id + 0.5f).
    let (qh, qs) = pack_q5(|j| ((x[j] - min) * id + 0.5) as i32 as u8);
    BlockQ5_1 {
        d: fp32_to_fp16(d),
        m: fp32_to_fp16(min),
        qh,
        qs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kquant::{blocks_from_bytes, blocks_to_bytes, dequantize_blocks};
    use crate::testutil::rand_vec;

    /// Values like a weight matrix's: mostly small, a few outliers, some sub-blocks offset.
    fn weights(n: usize, seed: u64) -> Vec<f32> {
        let r = rand_vec(n, seed);
        r.iter()
            .enumerate()
            .map(|(i, &v)| {
                let base = 0.05 * v * v * v + 0.02 * v;
                if i % 97 == 13 {
                    base * 20.0
                } else if (i / 32) % 5 == 3 {
                    base + 0.03
                } else {
                    base
                }
            })
            .collect()
    }

    fn round_trip<B: GgmlQuantize>(x: &[f32]) -> Vec<f32> {
        let b = quantize_to_blocks::<B>(x).unwrap();
        // Bytes survive a write and a read.
        let bytes = blocks_to_bytes(&b);
        assert_eq!(bytes.len(), b.len() * B::BYTES);
        assert_eq!(blocks_from_bytes::<B>(&bytes).unwrap(), b);
        let mut y = vec![0f32; x.len()];
        dequantize_blocks(&b, &mut y).unwrap();
        y
    }

    /// Largest |x − x̂| of each `group` values divided by that group's range, over all groups.
    fn worst_relative_step(x: &[f32], y: &[f32], group: usize) -> f32 {
        x.chunks(group)
            .zip(y.chunks(group))
            .map(|(a, b)| {
                let lo = a.iter().cloned().fold(f32::MAX, f32::min).min(0.0);
                let hi = a.iter().cloned().fold(f32::MIN, f32::max).max(0.0);
                let e = a
                    .iter()
                    .zip(b)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f32::max);
                if hi > lo {
                    e / (hi - lo)
                } else {
                    e
                }
            })
            .fold(0.0, f32::max)
    }

    fn rel_rms(x: &[f32], y: &[f32]) -> f64 {
        let (e, n) = x.iter().zip(y).fold((0f64, 0f64), |(e, n), (&a, &b)| {
            (e + ((a - b) as f64).powi(2), n + (a as f64).powi(2))
        });
        (e / n).sqrt()
    }

    #[test]
    fn fp16_rounding_is_ggmls() {
        // ggml's bit trick rounds to nearest even, as `half` does, over normals, subnormals,
        // ties and overflow.
        let mut s = 0x1234_5678u32;
        for i in 0..200_000u32 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let f = match i % 4 {
                0 => f32::from_bits(s),
                1 => f32::from_bits((s & 0x807F_FFFF) | (((s >> 23) % 40 + 100) << 23)),
                2 => (s as f32 / u32::MAX as f32 - 0.5) * 1e-3,
                _ => half::f16::from_bits(s as u16).to_f32() + f32::EPSILON * (s >> 16) as f32,
            };
            if f.is_nan() {
                continue;
            }
            assert_eq!(
                fp32_to_fp16(f),
                half::f16::from_f32(f).to_bits(),
                "{f:e} ({:#x})",
                f.to_bits()
            );
        }
        assert_eq!(fp32_to_fp16(f32::NAN), 0x7E00);
    }

    #[test]
    fn k_quants_round_trip_within_their_steps() {
        let x = weights(8 * QK_K, 7);
        // Sub-block scales are 6-bit (Q6_K: 8-bit) fractions of the block's largest, so the
        // step that bounds the error is the super-block's: its range over 15, 31 or 63 levels.
        let y4 = round_trip::<BlockQ4K>(&x);
        let s4 = worst_relative_step(&x, &y4, QK_K);
        assert!(s4 < 1.0 / 15.0, "Q4_K worst error {s4} of the block range");
        let y5 = round_trip::<BlockQ5K>(&x);
        let s5 = worst_relative_step(&x, &y5, QK_K);
        assert!(s5 < 1.0 / 31.0, "Q5_K worst error {s5}");
        let y6 = round_trip::<BlockQ6K>(&x);
        let s6 = worst_relative_step(&x, &y6, QK_K);
        assert!(s6 < 1.0 / 63.0, "Q6_K worst error {s6}");
        // More bits, less error; all close to x.
        let (e4, e5, e6) = (rel_rms(&x, &y4), rel_rms(&x, &y5), rel_rms(&x, &y6));
        assert!(e6 < e5 && e5 < e4 && e4 < 0.1, "{e4} {e5} {e6}");
    }

    #[test]
    fn five_bit_blocks_round_trip_within_their_steps() {
        let x = weights(64 * QK, 11);
        let y0 = round_trip::<BlockQ5_0>(&x);
        // Q5_0: step max/16 over [−|max|, |max|]: half a step is 1/64 of the range; f16 d adds
        // a little.
        let s0 = worst_relative_step(&x, &y0, QK);
        assert!(s0 < 0.6 / 16.0, "Q5_0 worst error {s0}");
        let y1 = round_trip::<BlockQ5_1>(&x);
        let s1 = worst_relative_step(&x, &y1, QK);
        assert!(s1 < 0.6 / 31.0 + 1e-3, "Q5_1 worst error {s1}");
        assert!(rel_rms(&x, &y1) < rel_rms(&x, &y0));
    }

    #[test]
    fn zero_blocks_stay_zero() {
        let z = vec![0f32; 2 * QK_K];
        for y in [
            round_trip::<BlockQ4K>(&z),
            round_trip::<BlockQ5K>(&z),
            round_trip::<BlockQ6K>(&z),
            round_trip::<BlockQ5_0>(&z),
            round_trip::<BlockQ5_1>(&z),
        ] {
            assert!(y.iter().all(|&v| v == 0.0));
        }
        // ggml's bytes for a zero block: Q6_K all zero; Q5_0 d = 0/−16 = −0 (f16 0x8000) and
        // level 16 (the zero point) in every value, so every fifth bit set.
        assert_eq!(
            quantize_to_blocks::<BlockQ6K>(&z).unwrap()[0],
            BlockQ6K::default()
        );
        let b = quantize_to_blocks::<BlockQ5_0>(&z[..QK]).unwrap()[0];
        assert_eq!((b.d, b.qh, b.qs), (0x8000, [0xFF; 4], [0; 16]));
        let b = quantize_to_blocks::<BlockQ4K>(&z[..QK_K]).unwrap()[0];
        assert_eq!(b, BlockQ4K::default());
    }

    #[test]
    fn exact_grids_are_kept() {
        // Values already on a Q5_0 grid with an extreme at −16·d come back exactly.
        let d = 0.125f32;
        let x: Vec<f32> = (0..QK)
            .map(|i| d * ((i as i32 * 7) % 32 - 16) as f32)
            .collect();
        assert_eq!(round_trip::<BlockQ5_0>(&x), x);
        // A constant block in Q5_1 is its minimum.
        let c = vec![0.75f32; QK];
        assert_eq!(round_trip::<BlockQ5_1>(&c), c);
    }

    #[test]
    fn lengths_are_checked() {
        let x = vec![0.5f32; QK_K + 1];
        let mut out = vec![BlockQ4K::default(); 1];
        let e = quantize_q4_k(&x, &mut out).unwrap_err().to_string();
        assert!(e.contains("Q4_K") && e.contains("257"), "{e}");
        let mut out = vec![BlockQ6K::default(); 2];
        let e = quantize_q6_k(&x[..QK_K], &mut out).unwrap_err().to_string();
        assert!(e.contains("output holds 2"), "{e}");
        let mut out = vec![BlockQ5_0::default(); 1];
        assert!(quantize_q5_0(&x[..40], &mut out).is_err());
        let mut out = vec![BlockQ5_1::default(); 8];
        assert!(quantize_q5_1(&x[..QK_K], &mut out).is_ok());
        let mut out = vec![BlockQ5K::default(); 1];
        assert!(quantize_q5_k(&x[..QK_K], &mut out).is_ok());
    }

    #[test]
    fn threads_do_not_change_a_byte() {
        let x = weights(300 * QK_K, 3);
        let all = quantize_to_blocks::<BlockQ4K>(&x).unwrap();
        let one_by_one: Vec<BlockQ4K> = x.chunks_exact(QK_K).map(q4_k_block).collect();
        assert_eq!(all, one_by_one);
    }
}
