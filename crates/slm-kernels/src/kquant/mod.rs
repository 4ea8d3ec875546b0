//! The k-quant blocks (Q4_K, Q5_K, Q6_K) and the 5-bit blocks (Q5_0, Q5_1) of ggml/GGUF, byte
//! for byte, run as stored: the rows of blocks back to back, each row's dot product taken
//! with the activation quantised as llama.cpp quantises it for that type — Q8_K super-blocks
//! for the k-quants, Q8_0 for Q5_0/Q5_1 — integer sums inside a (sub-)block and one float
//! multiply-add per block. ([`quantize`] writes these blocks as llama.cpp's quantiser does.)
//!
//! Layouts (ggml's `block_*`; multi-byte fields little-endian):
//!
//! | type | bytes | values | layout | value |
//! |---|---|---|---|---|
//! | Q4_K | 144 | 256 | f16 d, f16 dmin, 12 B of eight 6-bit scales + eight 6-bit mins, 128 B nibbles | d·sc·q − dmin·m |
//! | Q5_K | 176 | 256 | as Q4_K + 32 B fifth bits before the nibbles | d·sc·q − dmin·m |
//! | Q6_K | 210 | 256 | 128 B low nibbles, 64 B high bit pairs, 16 i8 scales, f16 d | d·sc·(q − 32) |
//! | Q5_0 | 22 | 32 | f16 d, 4 B fifth bits, 16 B nibbles | d·(q − 16) |
//! | Q5_1 | 24 | 32 | f16 d, f16 m, 4 B fifth bits, 16 B nibbles | d·q + m |
//! | Q8_K | 292 | 256 | f32 d, 256 i8, 16 i16 sums of 16 (activations only) | d·q |
//!
//! Q4_K/Q5_K split 256 values into 8 sub-blocks of 32 (a 6-bit scale and minimum each); the
//! nibbles of 64-value chunk c hold value 64c + l in the low nibble of byte 32c + l and value
//! 64c + 32 + l in its high nibble; Q5_K's fifth bit of those values is bit 2c / 2c + 1 of
//! `qh[l]`. Q6_K splits 256 values into two halves of 128 and 16 sub-blocks of 16 (an i8
//! scale each): in half h, value l (< 32) takes the low nibble of `ql[64h + l]` and bits 0–1
//! of `qh[32h + l]`, value 32 + l the low nibble of `ql[64h + 32 + l]` and bits 2–3, value
//! 64 + l the high nibble of `ql[64h + l]` and bits 4–5, value 96 + l the high nibble of
//! `ql[64h + 32 + l]` and bits 6–7. Q5_0/Q5_1 hold value j (< 16) in the low nibble of byte j
//! and value 16 + j in its high nibble, the fifth bit of value i being bit i of `qh`.

use crate::check_len;
use crate::par::SendPtr;
use crate::quant::{BlockQ4_1, BlockQ8_0, QK};
use crate::quant_x8::QuantActs;
use half::f16;
use rayon::prelude::*;
use slm_core::{Error, Result};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

pub mod quantize;

/// Values per k-quant super-block.
pub const QK_K: usize = 256;

/// A block format read and written as ggml's bytes.
pub trait GgmlBlock: Copy + Default + Send + Sync + std::fmt::Debug + PartialEq {
    /// GGML's name of the type (`Q4_K`).
    const NAME: &'static str;
    /// Values per block.
    const VALUES: usize;
    /// Bytes per block in a GGUF file.
    const BYTES: usize;
    /// The block from its `BYTES` bytes.
    fn read(b: &[u8]) -> Self;
    /// Appends the block's `BYTES` bytes.
    fn write(&self, out: &mut Vec<u8>);
    /// The `VALUES` values the block stands for, as ggml's `dequantize_row_*` computes them.
    fn dequantize(&self, out: &mut [f32]);
}

#[inline(always)]
fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

#[inline(always)]
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// Q4_K: 256 values (ggml `block_q4_K`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ4K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// Q5_K: 256 values (ggml `block_q5_K`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ5K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// Q6_K: 256 values (ggml `block_q6_K`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: u16,
}

/// Q5_0: 32 values (ggml `block_q5_0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockQ5_0 {
    pub d: u16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// Q5_1: 32 values (ggml `block_q5_1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockQ5_1 {
    pub d: u16,
    pub m: u16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// Q8_K: 256 activation values (ggml `block_q8_K`), with the sums of each 16 quants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

impl Default for BlockQ4K {
    fn default() -> Self {
        Self {
            d: 0,
            dmin: 0,
            scales: [0; 12],
            qs: [0; 128],
        }
    }
}

impl Default for BlockQ5K {
    fn default() -> Self {
        Self {
            d: 0,
            dmin: 0,
            scales: [0; 12],
            qh: [0; 32],
            qs: [0; 128],
        }
    }
}

impl Default for BlockQ6K {
    fn default() -> Self {
        Self {
            ql: [0; 128],
            qh: [0; 64],
            scales: [0; 16],
            d: 0,
        }
    }
}

impl Default for BlockQ8K {
    fn default() -> Self {
        Self {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// The eight 6-bit scales and eight 6-bit minimums packed in a Q4_K/Q5_K block's 12 bytes
/// (ggml `get_scale_min_k4`).
#[inline]
pub fn scales_mins(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
    }
    for j in 4..8 {
        sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        m[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
    (sc, m)
}

/// The 256 unsigned values (0–15, or 0–31 with Q5_K's fifth bits `qh`) of a Q4_K/Q5_K block
/// in value order: chunk c's byte l holds value 64c + l (low nibble) and 64c + 32 + l (high).
#[inline(always)]
fn k4_values(qs: &[u8; 128], qh: Option<&[u8; 32]>) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for c in 0..4 {
        for l in 0..32 {
            let h = qh.map_or(0, |qh| qh[l] >> (2 * c));
            q[64 * c + l] = (qs[32 * c + l] & 0xF) | ((h & 1) << 4);
            q[64 * c + 32 + l] = (qs[32 * c + l] >> 4) | (((h >> 1) & 1) << 4);
        }
    }
    q
}

/// ggml's Q4_K/Q5_K dequantisation of values `q`: sub-block j's d·sc_j·q − dmin·m_j.
fn k4_dequantize(d: u16, dmin: u16, scales: &[u8; 12], q: &[u8; QK_K], out: &mut [f32]) {
    let (d, min) = (f16_to_f32(d), f16_to_f32(dmin));
    let (sc, m) = scales_mins(scales);
    for (j, (ys, qs)) in out.chunks_exact_mut(32).zip(q.chunks_exact(32)).enumerate() {
        let (dj, mj) = (d * sc[j] as f32, min * m[j] as f32);
        for (y, &v) in ys.iter_mut().zip(qs) {
            *y = dj * v as f32 - mj;
        }
    }
}

impl GgmlBlock for BlockQ4K {
    const NAME: &'static str = "Q4_K";
    const VALUES: usize = QK_K;
    const BYTES: usize = 144;
    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            dmin: u16_at(b, 2),
            scales: array(&b[4..]),
            qs: array(&b[16..]),
        }
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend_from_slice(&self.dmin.to_le_bytes());
        out.extend_from_slice(&self.scales);
        out.extend_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let q = k4_values(&self.qs, None);
        k4_dequantize(self.d, self.dmin, &self.scales, &q, out);
    }
}

impl GgmlBlock for BlockQ5K {
    const NAME: &'static str = "Q5_K";
    const VALUES: usize = QK_K;
    const BYTES: usize = 176;
    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            dmin: u16_at(b, 2),
            scales: array(&b[4..]),
            qh: array(&b[16..]),
            qs: array(&b[48..]),
        }
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend_from_slice(&self.dmin.to_le_bytes());
        out.extend_from_slice(&self.scales);
        out.extend_from_slice(&self.qh);
        out.extend_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let q = k4_values(&self.qs, Some(&self.qh));
        k4_dequantize(self.d, self.dmin, &self.scales, &q, out);
    }
}

impl GgmlBlock for BlockQ6K {
    const NAME: &'static str = "Q6_K";
    const VALUES: usize = QK_K;
    const BYTES: usize = 210;
    fn read(b: &[u8]) -> Self {
        let mut scales = [0i8; 16];
        for (s, &v) in scales.iter_mut().zip(&b[192..208]) {
            *s = v as i8;
        }
        Self {
            ql: array(b),
            qh: array(&b[128..]),
            scales,
            d: u16_at(b, 208),
        }
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ql);
        out.extend_from_slice(&self.qh);
        out.extend(self.scales.iter().map(|&s| s as u8));
        out.extend_from_slice(&self.d.to_le_bytes());
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = f16_to_f32(self.d);
        for h in 0..2 {
            let (ql, qh) = (&self.ql[64 * h..], &self.qh[32 * h..]);
            let sc = &self.scales[8 * h..];
            let y = &mut out[128 * h..];
            for l in 0..32 {
                let is = l / 16;
                let q = q6_values(ql, qh, l);
                y[l] = d * sc[is] as f32 * q[0] as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q[1] as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q[2] as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q[3] as f32;
            }
        }
    }
}

/// The signed 6-bit values l, 32 + l, 64 + l, 96 + l of a Q6_K half (`ql`, `qh` start at
/// the half).
#[inline(always)]
fn q6_values(ql: &[u8], qh: &[u8], l: usize) -> [i32; 4] {
    let h = qh[l];
    [
        ((ql[l] & 0xF) | ((h & 3) << 4)) as i32 - 32,
        ((ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) as i32 - 32,
        ((ql[l] >> 4) | (((h >> 4) & 3) << 4)) as i32 - 32,
        ((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) as i32 - 32,
    ]
}

/// The unsigned 5-bit values j and 16 + j of a Q5_0/Q5_1 block.
#[inline(always)]
fn q5_values(qs: &[u8; 16], qh: u32, j: usize) -> (i32, i32) {
    let h0 = ((qh >> j) << 4) & 0x10;
    let h1 = (qh >> (j + 12)) & 0x10;
    (
        ((qs[j] & 0xF) as u32 | h0) as i32,
        ((qs[j] >> 4) as u32 | h1) as i32,
    )
}

impl GgmlBlock for BlockQ5_0 {
    const NAME: &'static str = "Q5_0";
    const VALUES: usize = QK;
    const BYTES: usize = 22;
    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            qh: array(&b[2..]),
            qs: array(&b[6..]),
        }
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend_from_slice(&self.qh);
        out.extend_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let d = f16_to_f32(self.d);
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..16 {
            let (a, b) = q5_values(&self.qs, qh, j);
            out[j] = (a - 16) as f32 * d;
            out[j + 16] = (b - 16) as f32 * d;
        }
    }
}

impl GgmlBlock for BlockQ5_1 {
    const NAME: &'static str = "Q5_1";
    const VALUES: usize = QK;
    const BYTES: usize = 24;
    fn read(b: &[u8]) -> Self {
        Self {
            d: u16_at(b, 0),
            m: u16_at(b, 2),
            qh: array(&b[4..]),
            qs: array(&b[8..]),
        }
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.d.to_le_bytes());
        out.extend_from_slice(&self.m.to_le_bytes());
        out.extend_from_slice(&self.qh);
        out.extend_from_slice(&self.qs);
    }
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (f16_to_f32(self.d), f16_to_f32(self.m));
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..16 {
            let (a, b) = q5_values(&self.qs, qh, j);
            out[j] = a as f32 * d + m;
            out[j + 16] = b as f32 * d + m;
        }
    }
}

/// A Q8_K block's 256 quants in the order the AVX-512 Q4_K kernel's registers take them: for
/// each half h, values 128h..+32 and 128h + 64..+32 (the low nibbles of one weight register),
/// then 128h + 32..+32 and 128h + 96..+32 (its high nibbles).
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KPairs(pub [i8; QK_K]);

/// What the AVX-512 k-quant kernels read of an activation beside its Q8_K blocks
/// ([`crate::quant_x8::QuantActs::quantize_k`]; other paths read the blocks alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KActs {
    /// The Q8_K blocks alone.
    Plain,
    /// [`KPairs`]: the Q4_K and Q5_K kernels.
    Pairs,
    /// [`KUnsigned`]: Q6_K's multi-row kernel (prefill).
    Unsigned,
}

/// A Q8_K block's 256 quants plus 128, as unsigned bytes: Q6_K's multi-row kernel multiplies
/// them with the weights' signed q − 32 (`vpdpbusd` takes one unsigned operand), so a row's
/// sums need no −32 correction through the block sums.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KUnsigned(pub [u8; QK_K]);

impl KUnsigned {
    pub fn of(b: &BlockQ8K) -> Self {
        Self(b.qs.map(|v| (v as u8) ^ 0x80))
    }
}

impl KPairs {
    pub fn of(b: &BlockQ8K) -> Self {
        let mut out = [0i8; QK_K];
        for h in 0..2 {
            for (k, from) in [0, 64, 32, 96].into_iter().enumerate() {
                out[128 * h + 32 * k..][..32].copy_from_slice(&b.qs[128 * h + from..][..32]);
            }
        }
        Self(out)
    }
}

/// Blocks of type `B` from GGUF tensor bytes (a whole number of blocks).
pub fn blocks_from_bytes<B: GgmlBlock>(bytes: &[u8]) -> Result<Vec<B>> {
    if !bytes.len().is_multiple_of(B::BYTES) {
        return Err(Error::invalid(format!(
            "{}: {} bytes is not a whole number of {}-byte blocks",
            B::NAME,
            bytes.len(),
            B::BYTES
        )));
    }
    Ok(bytes.chunks_exact(B::BYTES).map(B::read).collect())
}

/// The GGUF bytes of `blocks`.
pub fn blocks_to_bytes<B: GgmlBlock>(blocks: &[B]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blocks.len() * B::BYTES);
    for b in blocks {
        b.write(&mut out);
    }
    out
}

/// The values `blocks` stand for, into `out` (exactly as many values as the blocks hold).
pub fn dequantize_blocks<B: GgmlBlock>(blocks: &[B], out: &mut [f32]) -> Result<()> {
    check_len("dequantize out", out.len(), blocks.len() * B::VALUES)?;
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(B::VALUES)) {
        b.dequantize(y);
    }
    Ok(())
}

/// ggml's `nearest_int`: round half to even through the float's mantissa (|f| < 2²²).
#[inline(always)]
pub(crate) fn nearest_int(f: f32) -> i32 {
    let v = f + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// ggml's `quantize_row_q8_K_ref`: each 256 values with d = max/−127 (the signed value of
/// largest magnitude maps to −127), and the sums of each 16 quants.
pub fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) -> Result<()> {
    if !x.len().is_multiple_of(QK_K) {
        return Err(Error::invalid(format!(
            "quantize_q8_k: {} values is not a multiple of the {QK_K}-value block",
            x.len()
        )));
    }
    check_len("quantize_q8_k out", out.len(), x.len() / QK_K)?;
    #[cfg(target_arch = "x86_64")]
    if avx512_path() {
        // SAFETY: the AVX-512 path is only chosen when the CPU has its features; lengths
        // checked above.
        unsafe { avx512::quantize_q8_k(x, out) };
        return Ok(());
    }
    quantize_q8_k_scalar(x, out);
    Ok(())
}

/// ggml's `quantize_row_q8_K_ref`: the value of largest magnitude (the first, on ties)
/// maps to −127, every quant is `nearest_int(−127/max · v)` capped at 127.
fn quantize_q8_k_scalar(x: &[f32], out: &mut [BlockQ8K]) {
    for (xs, y) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
        quantize_q8_k_block(xs, y);
    }
}

fn quantize_q8_k_block(xs: &[f32], y: &mut BlockQ8K) {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in xs {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        *y = BlockQ8K::default();
        return;
    }
    let iscale = -127.0 / max;
    for (q, &v) in y.qs.iter_mut().zip(xs) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, q) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
        *s = q.iter().map(|&v| v as i16).sum();
    }
    y.d = 1.0 / iscale;
}

/// Whether the AVX-512 VNNI k-quant kernels run (the CPU has them and `SLM_QUANT_KERNEL` does
/// not cap the quantised kernels below them).
#[cfg(target_arch = "x86_64")]
fn avx512_path() -> bool {
    crate::quant_x8::group_path() == crate::quant_x8::GroupPath::Avx512Vnni
}

/// Σ w·x over a Q4_K row and a Q8_K activation row (same block count); `pairs` is the
/// activation laid out for the AVX-512 kernel ([`KPairs`], one per block), or empty.
pub fn dot_q4_k(w: &[BlockQ4K], x: &[BlockQ8K], pairs: &[KPairs]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512_path() && pairs.len() == x.len() && x.len() >= w.len() {
        // SAFETY: the AVX-512 path is only chosen when the CPU has its features; both
        // activation forms hold w.len() blocks.
        return unsafe { avx512::dot_q4_k(w, [x], [pairs])[0] };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pairs;
    #[cfg(target_arch = "x86_64")]
    if crate::quant::has_avx2() {
        // SAFETY: features detected; the kernel zips the two rows.
        return unsafe { avx2::dot_q4_k(w, x) };
    }
    scalar::dot_q4_k(w, x)
}

/// Σ w·x over a Q5_K row and a Q8_K activation row; `pairs` as for [`dot_q4_k`].
pub fn dot_q5_k(w: &[BlockQ5K], x: &[BlockQ8K], pairs: &[KPairs]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512_path() && pairs.len() == x.len() && x.len() >= w.len() {
        // SAFETY: the AVX-512 path is only chosen when the CPU has its features; both
        // activation forms hold w.len() blocks.
        return unsafe { avx512::dot_q5_k(w, [x], [pairs])[0] };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pairs;
    #[cfg(target_arch = "x86_64")]
    if crate::quant::has_avx2() {
        // SAFETY: as above.
        return unsafe { avx2::dot_q5_k(w, x) };
    }
    scalar::dot_q5_k(w, x)
}

/// Σ w·x over a Q6_K row and a Q8_K activation row.
pub fn dot_q6_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512_path() {
        // SAFETY: as above.
        return unsafe { avx512::dot_q6_k(w, x) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::quant::has_avx2() {
        // SAFETY: as above.
        return unsafe { avx2::dot_q6_k(w, x) };
    }
    scalar::dot_q6_k(w, x)
}

/// Σ w·x over a Q5_0 row and a Q8_0 activation row.
pub fn dot_q5_0(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512_path() {
        // SAFETY: as above.
        return unsafe { avx512::dot_q5_0(w, x) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::quant::has_avx2() {
        // SAFETY: as above.
        return unsafe { avx2::dot_q5_0(w, x) };
    }
    scalar::dot_q5_0(w, x)
}

/// Σ w·x over a Q5_1 row and a Q8_0 activation row whose blocks' quants sum to `xsum`.
pub fn dot_q5_1(w: &[BlockQ5_1], x: &[BlockQ8_0], xsum: &[i32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512_path() {
        // SAFETY: as above.
        return unsafe { avx512::dot_q5_1(w, x, xsum) };
    }
    #[cfg(target_arch = "x86_64")]
    if crate::quant::has_avx2() {
        // SAFETY: as above.
        return unsafe { avx2::dot_q5_1(w, x, xsum) };
    }
    scalar::dot_q5_1(w, x, xsum)
}

/// The portable dot products: ggml's generic kernels' integer sums, one float step per block.
pub(crate) mod scalar {
    use super::*;

    /// Σ_sub sc·Σ q·x and Σ_sub m·Σ x of a Q4_K/Q5_K block whose values are `q`.
    fn k4_sums(q: &[u8; QK_K], scales: &[u8; 12], x: &BlockQ8K) -> (i32, i32) {
        let (sc, m) = scales_mins(scales);
        let mut isum = 0i32;
        for (j, (qs, xs)) in q.chunks_exact(32).zip(x.qs.chunks_exact(32)).enumerate() {
            let s: i32 = qs.iter().zip(xs).map(|(&a, &b)| a as i32 * b as i32).sum();
            isum += sc[j] as i32 * s;
        }
        let msum: i32 = (0..8)
            .map(|j| m[j] as i32 * (x.bsums[2 * j] as i32 + x.bsums[2 * j + 1] as i32))
            .sum();
        (isum, msum)
    }

    /// A Q4_K/Q5_K block's contribution: d·d_x·Σ sc·q·x − dmin·d_x·Σ m·x.
    fn k4_block(d: u16, dmin: u16, scales: &[u8; 12], q: &[u8; QK_K], a: &BlockQ8K) -> f32 {
        let (isum, msum) = k4_sums(q, scales, a);
        f16_to_f32(d) * a.d * isum as f32 - f16_to_f32(dmin) * a.d * msum as f32
    }

    pub fn dot_q4_k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
        w.iter()
            .zip(x)
            .map(|(b, a)| k4_block(b.d, b.dmin, &b.scales, &k4_values(&b.qs, None), a))
            .sum()
    }

    pub fn dot_q5_k(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
        w.iter()
            .zip(x)
            .map(|(b, a)| k4_block(b.d, b.dmin, &b.scales, &k4_values(&b.qs, Some(&b.qh)), a))
            .sum()
    }

    pub fn dot_q6_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
        let mut sum = 0f32;
        for (b, a) in w.iter().zip(x) {
            let mut isum = 0i32;
            for h in 0..2 {
                let (ql, qh) = (&b.ql[64 * h..], &b.qh[32 * h..]);
                let xs = &a.qs[128 * h..];
                let mut sub = [0i32; 8];
                for l in 0..32 {
                    let q = q6_values(ql, qh, l);
                    for (k, &v) in q.iter().enumerate() {
                        sub[2 * k + l / 16] += v * xs[32 * k + l] as i32;
                    }
                }
                for (j, s) in sub.iter().enumerate() {
                    isum += b.scales[8 * h + j] as i32 * s;
                }
            }
            sum += f16_to_f32(b.d) * a.d * isum as f32;
        }
        sum
    }

    pub fn dot_q5_0(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
        let mut sum = 0f32;
        for (b, a) in w.iter().zip(x) {
            let qh = u32::from_le_bytes(b.qh);
            let mut isum = 0i32;
            for j in 0..16 {
                let (v0, v1) = q5_values(&b.qs, qh, j);
                isum += (v0 - 16) * a.qs[j] as i32 + (v1 - 16) * a.qs[j + 16] as i32;
            }
            sum += f16_to_f32(b.d) * f16_to_f32(a.d) * isum as f32;
        }
        sum
    }

    pub fn dot_q5_1(w: &[BlockQ5_1], x: &[BlockQ8_0], xsum: &[i32]) -> f32 {
        let mut sum = 0f32;
        for ((b, a), &s) in w.iter().zip(x).zip(xsum) {
            let qh = u32::from_le_bytes(b.qh);
            let mut isum = 0i32;
            for j in 0..16 {
                let (v0, v1) = q5_values(&b.qs, qh, j);
                isum += v0 * a.qs[j] as i32 + v1 * a.qs[j + 16] as i32;
            }
            let dx = f16_to_f32(a.d);
            sum += f16_to_f32(b.d) * dx * isum as f32 + f16_to_f32(b.m) * dx * s as f32;
        }
        sum
    }
}

/// AVX2 twins of [`scalar`]: unsigned weight quants times signed activation bytes through
/// `maddubs` (no sign fix-ups: every weight value here is < 64), 32-bit sums scaled per
/// (sub-)block with `madd`, one FMA per block; Q6_K's −32 and Q4_K/Q5_K's minimums come
/// from the activation's sums of 16 (Q8_K `bsums`).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[inline(always)]
    unsafe fn load(p: &[u8]) -> __m256i {
        debug_assert!(p.len() >= 32);
        _mm256_loadu_si256(p.as_ptr() as *const __m256i)
    }

    #[inline(always)]
    unsafe fn load_i8(p: &[i8]) -> __m256i {
        debug_assert!(p.len() >= 32);
        _mm256_loadu_si256(p.as_ptr() as *const __m256i)
    }

    /// [`scales_mins`] with four 32-bit masks and shifts (ggml's `kmask` unpacking): the
    /// eight scales in bytes 0–7, the eight minimums in bytes 8–15.
    #[inline(always)]
    pub(super) fn scales_mins_packed(s: &[u8; 12]) -> [u8; 16] {
        const KMASK1: u32 = 0x3f3f_3f3f;
        const KMASK2: u32 = 0x0f0f_0f0f;
        const KMASK3: u32 = 0x0303_0303;
        let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
        let (u0, u1, u2) = (w(0), w(1), w(2));
        let t = [
            u0 & KMASK1,
            (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4),
            u1 & KMASK1,
            ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4),
        ];
        let mut out = [0u8; 16];
        for (o, v) in out.chunks_exact_mut(4).zip(t) {
            o.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Σ_j m_j·(bsum_2j + bsum_2j+1), the minimums' term of a Q4_K/Q5_K block, as four i32
    /// lanes: pairs of the activation's sums of 16 added (`hadd`), times the eight minimums.
    #[inline(always)]
    pub(super) unsafe fn min_sums(mins: &[u8], x: &BlockQ8K) -> __m128i {
        let bs = _mm256_loadu_si256(x.bsums.as_ptr() as *const __m256i);
        let pairs = _mm_hadd_epi16(
            _mm256_castsi256_si128(bs),
            _mm256_extracti128_si256::<1>(bs),
        );
        let m = _mm_cvtepu8_epi16(_mm_loadl_epi64(mins.as_ptr() as *const __m128i));
        _mm_madd_epi16(m, pairs)
    }

    #[inline(always)]
    pub(super) unsafe fn hsum128(v: __m128) -> f32 {
        let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// The Q4_K/Q5_K block sum Σ_c sc·(lo·x) + sc'·(hi·x) with `fifth(c)` the fifth bits to
    /// OR into chunk c's low and high values (zero for Q4_K).
    #[inline(always)]
    unsafe fn k4_block(
        qs: &[u8; 128],
        sc: &[u8],
        x: &BlockQ8K,
        mut fifth: impl FnMut(usize) -> (__m256i, __m256i),
    ) -> __m256i {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut sumi = _mm256_setzero_si256();
        for c in 0..4 {
            let q = load(&qs[32 * c..]);
            let (h_lo, h_hi) = fifth(c);
            let lo = _mm256_or_si256(_mm256_and_si256(q, m4), h_lo);
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q), m4), h_hi);
            let xl = load_i8(&x.qs[64 * c..]);
            let xh = load_i8(&x.qs[64 * c + 32..]);
            let pl = _mm256_madd_epi16(
                _mm256_maddubs_epi16(lo, xl),
                _mm256_set1_epi16(sc[2 * c] as i16),
            );
            let ph = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, xh),
                _mm256_set1_epi16(sc[2 * c + 1] as i16),
            );
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        sumi
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4_k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
        let zero = _mm256_setzero_si256();
        let (mut acc, mut mins) = (_mm256_setzero_ps(), _mm_setzero_ps());
        for (b, a) in w.iter().zip(x) {
            crate::simd::prefetch_ahead(b, 3);
            let sm = scales_mins_packed(&b.scales);
            let dmin = _mm_set1_ps(f16_to_f32(b.dmin) * a.d);
            mins = _mm_fmadd_ps(dmin, _mm_cvtepi32_ps(min_sums(&sm[8..], a)), mins);
            let sumi = k4_block(&b.qs, &sm, a, |_| (zero, zero));
            let d = _mm256_set1_ps(f16_to_f32(b.d) * a.d);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum(acc) - hsum128(mins)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q5_k(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
        let (one, two) = (_mm256_set1_epi8(1), _mm256_set1_epi8(2));
        let (mut acc, mut mins) = (_mm256_setzero_ps(), _mm_setzero_ps());
        for (b, a) in w.iter().zip(x) {
            crate::simd::prefetch_ahead(b, 3);
            let sm = scales_mins_packed(&b.scales);
            let dmin = _mm_set1_ps(f16_to_f32(b.dmin) * a.d);
            mins = _mm_fmadd_ps(dmin, _mm_cvtepi32_ps(min_sums(&sm[8..], a)), mins);
            let mut hb = load(&b.qh);
            let sumi = k4_block(&b.qs, &sm, a, |_| {
                // Bits 2c and 2c + 1 of each byte, moved to bit 4 (16).
                let lo = _mm256_slli_epi16::<4>(_mm256_and_si256(hb, one));
                let hi = _mm256_slli_epi16::<3>(_mm256_and_si256(hb, two));
                hb = _mm256_srli_epi16::<2>(hb);
                (lo, hi)
            });
            let d = _mm256_set1_ps(f16_to_f32(b.d) * a.d);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum(acc) - hsum128(mins)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q6_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut acc = _mm256_setzero_ps();
        for (b, a) in w.iter().zip(x) {
            crate::simd::prefetch_ahead(b, 4);
            let mut sumi = _mm256_setzero_si256();
            for h in 0..2 {
                let qa = load(&b.ql[64 * h..]);
                let qb = load(&b.ql[64 * h + 32..]);
                let hh = load(&b.qh[32 * h..]);
                // Values 32k..32k + 32 of the half, unsigned 0..63.
                let v = [
                    _mm256_or_si256(
                        _mm256_and_si256(qa, m4),
                        _mm256_slli_epi16::<4>(_mm256_and_si256(hh, _mm256_set1_epi8(0x03))),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(qb, m4),
                        _mm256_slli_epi16::<2>(_mm256_and_si256(hh, _mm256_set1_epi8(0x0C))),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(qa), m4),
                        _mm256_and_si256(hh, _mm256_set1_epi8(0x30)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(qb), m4),
                        _mm256_srli_epi16::<2>(_mm256_and_si256(
                            hh,
                            _mm256_set1_epi8(0xC0u8 as i8),
                        )),
                    ),
                ];
                let sc = &b.scales[8 * h..];
                for (k, vk) in v.iter().enumerate() {
                    let xs = load_i8(&a.qs[128 * h + 32 * k..]);
                    let p = _mm256_maddubs_epi16(*vk, xs);
                    // Values 0..16 take scale 2k, values 16..32 scale 2k + 1.
                    let s = _mm256_set_m128i(
                        _mm_set1_epi16(sc[2 * k + 1] as i16),
                        _mm_set1_epi16(sc[2 * k] as i16),
                    );
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
                }
            }
            // Σ sc·(q − 32)·x = Σ sc·q·x − 32·Σ_j sc_j·bsum_j.
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.scales.as_ptr() as *const __m128i));
            let bs = _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i);
            let off = _mm256_madd_epi16(sc16, bs);
            let sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32::<5>(off));
            let d = f16_to_f32(b.d) * a.d;
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum(acc)
    }

    /// A Q5_0/Q5_1 block's 32 unsigned values (0..31), value i in byte i.
    #[inline(always)]
    pub(super) unsafe fn q5_bytes(qs: &[u8; 16], qh: [u8; 4]) -> __m256i {
        let m4 = _mm_set1_epi8(0x0F);
        let q = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
        let lo = _mm_and_si128(q, m4);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), m4);
        let nib = _mm256_set_m128i(hi, lo);
        // Byte i takes bit i of qh: bytes 0..8 from qh[0], 8..16 from qh[1], ….
        let bits = _mm256_set1_epi32(i32::from_le_bytes(qh));
        let spread = _mm256_shuffle_epi8(
            bits,
            _mm256_set_epi64x(
                0x0303_0303_0303_0303,
                0x0202_0202_0202_0202,
                0x0101_0101_0101_0101,
                0,
            ),
        );
        let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, mask), mask);
        _mm256_or_si256(nib, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q5_0(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let sixteen = _mm256_set1_epi8(16);
        let mut acc = _mm256_setzero_ps();
        for (b, a) in w.iter().zip(x) {
            crate::simd::prefetch_ahead(b, 1);
            let q = q5_bytes(&b.qs, b.qh);
            let xs = load_i8(&a.qs);
            // Σ (q − 16)·x in 16-bit pairs, then 32-bit.
            let p = _mm256_sub_epi16(
                _mm256_maddubs_epi16(q, xs),
                _mm256_maddubs_epi16(sixteen, xs),
            );
            let d = _mm256_set1_ps(f16_to_f32(b.d) * f16_to_f32(a.d));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), acc);
        }
        hsum(acc)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q5_1(w: &[BlockQ5_1], x: &[BlockQ8_0], xsum: &[i32]) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let (mut acc, mut mins) = (_mm256_setzero_ps(), 0f32);
        for ((b, a), &s) in w.iter().zip(x).zip(xsum) {
            crate::simd::prefetch_ahead(b, 1);
            let q = q5_bytes(&b.qs, b.qh);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, load_i8(&a.qs)), ones);
            let dx = f16_to_f32(a.d);
            let d = _mm256_set1_ps(f16_to_f32(b.d) * dx);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
            mins += f16_to_f32(b.m) * dx * s as f32;
        }
        hsum(acc) + mins
    }
}

/// AVX-512 VNNI twins of every kernel here. The k-quants: 64 weight bytes per register,
/// `vpdpbusd` for the 4-product sums, each 32-bit lane scaled by its sub-block's scale
/// (`vpmulld` with the scales spread by `vpermd`), one FMA per block. Q5_0/Q5_1: two 32-value
/// blocks per register, each half scaled by its own blocks' scales.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::avx2::{hsum128, min_sums, scales_mins_packed};
    use super::*;
    use std::arch::x86_64::*;

    /// Lanes 0–7 take element `a` of a register, lanes 8–15 element `b` (a `vpermd` index).
    #[inline(always)]
    unsafe fn halves(a: i32, b: i32) -> __m512i {
        _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a)
    }

    /// Four lanes each of elements `a`..`a + 4`.
    #[inline(always)]
    unsafe fn quarters(a: i32) -> __m512i {
        let (b, c, d) = (a + 1, a + 2, a + 3);
        _mm512_set_epi32(d, d, d, d, c, c, c, c, b, b, b, b, a, a, a, a)
    }

    /// [`super::quantize_q8_k_scalar`] 16 values per register, the same blocks bit for bit:
    /// the first value of largest magnitude found by a compare over the block's maximum,
    /// `vrndscaleps` to nearest-even standing in for ggml's magic-number rounding (the same
    /// for |v| < 2²²), the sums of 16 reduced per register. Blocks with a NaN, an infinity
    /// or only zeros go through the scalar loop.
    ///
    /// # Safety
    /// AVX-512 F present; `out.len()·256 = x.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub unsafe fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
        const CHUNKS: usize = QK_K / 16;
        let cap = _mm512_set1_epi32(127);
        for (xs, y) in x.chunks_exact(QK_K).zip(out.iter_mut()) {
            let v: [__m512; CHUNKS] =
                std::array::from_fn(|c| _mm512_loadu_ps(xs.as_ptr().add(16 * c)));
            // max(|v|, m) keeps m where |v| is NaN, as the scalar comparison skips NaNs.
            let m = v.iter().fold(_mm512_setzero_ps(), |m, &vc| {
                _mm512_max_ps(_mm512_abs_ps(vc), m)
            });
            let amax = _mm512_reduce_max_ps(m);
            let nan = v
                .iter()
                .any(|&vc| _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(vc, vc) != 0);
            if amax == 0.0 || !amax.is_finite() || nan {
                super::quantize_q8_k_block(xs, y);
                continue;
            }
            let target = _mm512_set1_ps(amax);
            let mut max = amax;
            for (c, &vc) in v.iter().enumerate() {
                let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(vc), target);
                if hit != 0 {
                    max = xs[16 * c + hit.trailing_zeros() as usize];
                    break;
                }
            }
            let iscale = -127.0 / max;
            let is = _mm512_set1_ps(iscale);
            for (c, &vc) in v.iter().enumerate() {
                let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_mul_ps(is, vc),
                );
                let q = _mm512_min_epi32(_mm512_cvtps_epi32(r), cap);
                y.bsums[c] = _mm512_reduce_add_epi32(q) as i16;
                _mm_storeu_si128(
                    y.qs.as_mut_ptr().add(16 * c) as *mut __m128i,
                    _mm512_cvtsepi32_epi8(q),
                );
            }
            y.d = 1.0 / iscale;
        }
    }

    /// `start` + Σ_k sc_k · (the 4-byte sums of `a[k]`·`b[k]`, unsigned by signed bytes) in 16
    /// i32 lanes: `vpdpbusd` per register pair (every caller keeps each lane's sum below 2¹⁵
    /// in magnitude, so it is its own low word), scaled and added by `vpdpwssd` with `sc[k]`
    /// (scales as words, high half zero), in two chains of two: decoding waits on their
    /// latency.
    #[inline(always)]
    unsafe fn scaled_dot4(
        start: __m512i,
        a: [__m512i; 4],
        b: [__m512i; 4],
        sc: &[__m512i; 4],
    ) -> __m512i {
        let zero = _mm512_setzero_si512();
        let mut sums = [start, zero];
        for k in 0..4 {
            let p = _mm512_dpbusd_epi32(zero, a[k], b[k]);
            sums[k / 2] = _mm512_dpwssd_epi32(sums[k / 2], p, sc[k]);
        }
        _mm512_add_epi32(sums[0], sums[1])
    }

    /// 64 bytes at each of `p`, `p + 64`, `p + 128`, `p + 192`.
    #[inline(always)]
    unsafe fn load4<T>(p: *const T) -> [__m512i; 4] {
        let p = p as *const u8;
        std::array::from_fn(|k| _mm512_loadu_si512(p.add(64 * k) as *const _))
    }

    /// One Q4_K/Q5_K super-block unpacked for [`k4_row`]: its values as unsigned bytes in four
    /// registers (register 2h + 0: the low nibbles of `qs[64h..64h + 64]`, sub-blocks 4h and
    /// 4h + 2; register 2h + 1: the high nibbles, sub-blocks 4h + 1 and 4h + 3; the activation
    /// laid out to match, [`KPairs`]); for each register its sub-blocks' scales in the lanes
    /// that sum them (`vpermd`), as words with a zero high half (for `vpdpwssd`); the packed
    /// scales and minimums; d and dmin. `qh`: Q5_K's fifth bits — value 64c + l takes bit 2c
    /// of `qh[l]`, value 64c + 32 + l bit 2c + 1, so sub-block j's bits are bit j of each
    /// byte, and register h shifts the two halves of `qh` (repeated) by different counts.
    struct K4Unpacked {
        v: [__m512i; 4],
        sc: [__m512i; 4],
        sm: [u8; 16],
        d: f32,
        dmin: f32,
    }

    #[inline(always)]
    unsafe fn k4_unpack(
        (d, dmin): (u16, u16),
        scales: &[u8; 12],
        qs: &[u8; 128],
        qh: Option<&[u8; 32]>,
    ) -> K4Unpacked {
        let m4 = _mm512_set1_epi8(0x0F);
        let zero = _mm512_setzero_si512();
        let idx = [halves(0, 2), halves(1, 3), halves(4, 6), halves(5, 7)];
        let shift = [words(0, 2), words(1, 3), words(4, 6), words(5, 7)];
        let sm = scales_mins_packed(scales);
        // The scales are 6-bit: as i32 their high words are zero already.
        let sc = _mm512_cvtepu8_epi32(_mm_loadu_si128(sm.as_ptr() as *const __m128i));
        let qh =
            qh.map(|h| _mm512_broadcast_i64x4(_mm256_loadu_si256(h.as_ptr() as *const __m256i)));
        // Bit `s` of each byte (s < 8, per 16-bit word) moved to bit 4; nothing for Q4_K.
        let fifth = |s: __m512i| match qh {
            Some(qh) => _mm512_slli_epi16::<4>(_mm512_and_si512(
                _mm512_srlv_epi16(qh, s),
                _mm512_set1_epi8(1),
            )),
            None => zero,
        };
        let mut v = [zero; 4];
        for h in 0..2 {
            let q = _mm512_loadu_si512(qs.as_ptr().add(64 * h) as *const _);
            v[2 * h] = _mm512_or_si512(_mm512_and_si512(q, m4), fifth(shift[2 * h]));
            v[2 * h + 1] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4),
                fifth(shift[2 * h + 1]),
            );
        }
        K4Unpacked {
            v,
            sc: idx.map(|i| _mm512_permutexvar_epi32(i, sc)),
            sm,
            d: f16_to_f32(d),
            dmin: f16_to_f32(dmin),
        }
    }

    /// One unpacked Q4_K/Q5_K block against one activation block into `acc` (16 lanes of
    /// d·dx·Σ_j sc_j·Σ q·x) and `mins` (dmin·dx·Σ_j m_j·Σ x) through [`scaled_dot4`]
    /// (|sum| ≤ 4·31·128 < 2¹⁵).
    #[inline(always)]
    unsafe fn k4_row(
        u: &K4Unpacked,
        a: &BlockQ8K,
        p: &KPairs,
        acc: &mut __m512,
        mins: &mut __m128,
    ) {
        let dm = _mm_set1_ps(u.dmin * a.d);
        *mins = _mm_fmadd_ps(dm, _mm_cvtepi32_ps(min_sums(&u.sm[8..], a)), *mins);
        let sumi = scaled_dot4(_mm512_setzero_si512(), u.v, load4(p.0.as_ptr()), &u.sc);
        *acc = _mm512_fmadd_ps(_mm512_set1_ps(u.d * a.d), _mm512_cvtepi32_ps(sumi), *acc);
    }

    /// Σ w·x of `blocks` Q4_K/Q5_K blocks (`unpack(i)` the i-th) with `R` activation rows at
    /// once (`R` = 1 for decoding): each block is unpacked once for all of them.
    #[inline(always)]
    unsafe fn k4_rows<const R: usize>(
        blocks: usize,
        unpack: impl Fn(usize) -> K4Unpacked,
        x: [&[BlockQ8K]; R],
        p: [&[KPairs]; R],
    ) -> [f32; R] {
        let (mut acc, mut mins) = ([_mm512_setzero_ps(); R], [_mm_setzero_ps(); R]);
        for i in 0..blocks {
            let u = unpack(i);
            for j in 0..R {
                let (a, pj) = (x[j].get_unchecked(i), p[j].get_unchecked(i));
                k4_row(&u, a, pj, &mut acc[j], &mut mins[j]);
            }
        }
        std::array::from_fn(|j| _mm512_reduce_add_ps(acc[j]) - hsum128(mins[j]))
    }

    /// Σ w·x of one Q4_K row with `R` activation rows (their Q8_K blocks and [`KPairs`]).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI present; every `x[j]` and `p[j]` holds at least `w.len()` blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_q4_k<const R: usize>(
        w: &[BlockQ4K],
        x: [&[BlockQ8K]; R],
        p: [&[KPairs]; R],
    ) -> [f32; R] {
        let unpack = |i: usize| {
            let b = w.get_unchecked(i);
            crate::simd::prefetch_ahead(b, 3);
            k4_unpack((b.d, b.dmin), &b.scales, &b.qs, None)
        };
        k4_rows(w.len(), unpack, x, p)
    }

    /// Σ w·x of one Q5_K row with `R` activation rows, as [`dot_q4_k`].
    ///
    /// # Safety
    /// As [`dot_q4_k`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_q5_k<const R: usize>(
        w: &[BlockQ5K],
        x: [&[BlockQ8K]; R],
        p: [&[KPairs]; R],
    ) -> [f32; R] {
        let unpack = |i: usize| {
            let b = w.get_unchecked(i);
            crate::simd::prefetch_ahead(b, 3);
            k4_unpack((b.d, b.dmin), &b.scales, &b.qs, Some(&b.qh))
        };
        k4_rows(w.len(), unpack, x, p)
    }

    /// One Q6_K super-block unpacked for [`q6_block_sum`]: its 256 values as unsigned 6-bit
    /// bytes in four registers (register 2h takes values 0..64 of half h from the low nibbles
    /// of `ql`, register 2h + 1 values 64..128 from the high nibbles; their top two bits come
    /// from qh: bits 0–1 for values 0..32, 2–3 for 32..64, 4–5 for 64..96, 6–7 for 96..128),
    /// and for each register the scales of its four 16-value sub-blocks as words in the low
    /// half of the lanes that sum them, the high half zero (for `vpdpwssd`).
    struct Q6Unpacked {
        v: [__m512i; 4],
        sc: [__m512i; 4],
        /// The 16 scales as words, for the −32 through the activation's sums of 16.
        sc16: __m256i,
        d: f32,
    }

    #[inline(always)]
    unsafe fn q6_unpack(b: &BlockQ6K) -> Q6Unpacked {
        let m4 = _mm512_set1_epi8(0x0F);
        let m3 = _mm512_set1_epi8(0x03);
        let low_words = _mm512_set1_epi32(0xFFFF);
        let sc_bytes = _mm_loadu_si128(b.scales.as_ptr() as *const __m128i);
        let sc = _mm512_cvtepi8_epi32(sc_bytes);
        let scw =
            |k: i32| _mm512_and_si512(_mm512_permutexvar_epi32(quarters(4 * k), sc), low_words);
        let mut v = [_mm512_setzero_si512(); 4];
        for h in 0..2 {
            let q = _mm512_loadu_si512(b.ql.as_ptr().add(64 * h) as *const _);
            let hh = _mm256_loadu_si256(b.qh.as_ptr().add(32 * h) as *const __m256i);
            let h01 =
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(hh), _mm256_srli_epi16::<2>(hh));
            let h23 = _mm512_srli_epi16::<4>(h01);
            v[2 * h] = _mm512_or_si512(
                _mm512_and_si512(q, m4),
                _mm512_slli_epi16::<4>(_mm512_and_si512(h01, m3)),
            );
            v[2 * h + 1] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4),
                _mm512_slli_epi16::<4>(_mm512_and_si512(h23, m3)),
            );
        }
        Q6Unpacked {
            v,
            sc: [scw(0), scw(1), scw(2), scw(3)],
            sc16: _mm256_cvtepi8_epi16(sc_bytes),
            d: f16_to_f32(b.d),
        }
    }

    /// Σ sc·(q − 32)·x of one unpacked Q6_K block and one Q8_K block, in 16 i32 lanes: each
    /// register's 4-byte products scaled by [`scaled_dot4`] (|sum| ≤ 4·63·128 < 2¹⁵); the −32
    /// is −32·Σ_j sc_j·bsum_j.
    #[inline(always)]
    unsafe fn q6_block_sum(u: &Q6Unpacked, a: &BlockQ8K) -> __m512i {
        let sumi = scaled_dot4(_mm512_setzero_si512(), u.v, load4(a.qs.as_ptr()), &u.sc);
        let bs = _mm256_loadu_si256(a.bsums.as_ptr() as *const __m256i);
        let off = _mm256_slli_epi32::<5>(_mm256_madd_epi16(u.sc16, bs));
        _mm512_sub_epi32(sumi, _mm512_zextsi256_si512(off))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_q6_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
        let mut acc = _mm512_setzero_ps();
        for (b, a) in w.iter().zip(x) {
            crate::simd::prefetch_ahead(b, 3);
            let u = q6_unpack(b);
            let d = _mm512_set1_ps(u.d * a.d);
            acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(q6_block_sum(&u, a)), acc);
        }
        _mm512_reduce_add_ps(acc)
    }

    /// A Q6_K block as prefill's multi-row kernel takes it: the values q − 32 as signed bytes
    /// (the activations come as x + 128, [`KUnsigned`], so that `vpdpbusd` has its unsigned
    /// operand), and what the +128 adds, to start each row's sums from: lane l holds
    /// −128 · Σ_k sc · Σ (q − 32) over the 4 values of lane l of register k. Per block that
    /// costs more than the sums of 16 of [`q6_block_sum`]; per row, less.
    struct Q6Signed {
        v: [__m512i; 4],
        sc: [__m512i; 4],
        start: __m512i,
        d: f32,
    }

    #[inline(always)]
    unsafe fn q6_signed(b: &BlockQ6K) -> Q6Signed {
        let u = q6_unpack(b);
        let zero = _mm512_setzero_si512();
        let (c32, c128) = (_mm512_set1_epi8(32), _mm512_set1_epi8(-128));
        let v = u.v.map(|v| _mm512_sub_epi8(v, c32));
        let plus = scaled_dot4(zero, [c128; 4], v, &u.sc);
        let start = _mm512_sub_epi32(zero, plus);
        Q6Signed {
            v,
            sc: u.sc,
            start,
            d: u.d,
        }
    }

    /// [`dot_q6_k`] of one weight row with `R` activation rows at once (prefill): each block
    /// is unpacked once for all of them, and a row's sums need no −32 correction
    /// ([`Q6Signed`]): |Σ of 4 products| ≤ 4·255·32 < 2¹⁵, still its own low word for
    /// `vpdpwssd`. The block sums equal [`dot_q6_k`]'s; spread over other lanes, their f32
    /// total may differ from it in the last bits.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI present; every `x[j]` and `xu[j]` holds at least `w.len()` blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_q6_k_rows<const R: usize>(
        w: &[BlockQ6K],
        x: [&[BlockQ8K]; R],
        xu: [&[KUnsigned]; R],
    ) -> [f32; R] {
        let mut acc = [_mm512_setzero_ps(); R];
        for (i, b) in w.iter().enumerate() {
            let u = q6_signed(b);
            for j in 0..R {
                let xs = load4(xu[j].get_unchecked(i).0.as_ptr());
                let sumi = scaled_dot4(u.start, xs, u.v, &u.sc);
                let d = _mm512_set1_ps(u.d * x[j].get_unchecked(i).d);
                acc[j] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc[j]);
            }
        }
        acc.map(|a| _mm512_reduce_add_ps(a))
    }

    /// 32 words: `a` in the low 16 (bytes 0–31), `b` in the high 16 (bytes 32–63).
    #[inline(always)]
    unsafe fn words(a: i16, b: i16) -> __m512i {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(a)),
            _mm256_set1_epi16(b),
        )
    }

    /// Two 32-value blocks' unsigned 5-bit values (AVX2's unpacking of each) and their
    /// activations' quants, one block per 256-bit half.
    #[inline(always)]
    unsafe fn q5_pair(w: [(&[u8; 16], [u8; 4]); 2], x: [&BlockQ8_0; 2]) -> (__m512i, __m512i) {
        let q = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(super::avx2::q5_bytes(w[0].0, w[0].1)),
            super::avx2::q5_bytes(w[1].0, w[1].1),
        );
        let xs = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_loadu_si256(x[0].qs.as_ptr() as *const __m256i)),
            _mm256_loadu_si256(x[1].qs.as_ptr() as *const __m256i),
        );
        (q, xs)
    }

    /// Per-half scales: `a` in lanes 0–7, `b` in lanes 8–15.
    #[inline(always)]
    unsafe fn scale_halves(a: f32, b: f32) -> __m512 {
        // (`vinsertf64x4` on the bits: AVX-512 F, where `vinsertf32x8` would need DQ.)
        _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castps_pd(_mm512_castps256_ps512(_mm256_set1_ps(a))),
            _mm256_castps_pd(_mm256_set1_ps(b)),
        ))
    }

    /// Q5_0 · Q8_0 two blocks per register: Σ q·x by `vpdpbusd` on the unsigned values, minus
    /// 16·Σ x (the same `vpdpbusd` on a register of 16s), each half scaled by its blocks'
    /// scales. An odd last block goes through the AVX2 kernel.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_q5_0(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
        let sixteen = _mm512_set1_epi8(16);
        let zero = _mm512_setzero_si512();
        let mut acc = _mm512_setzero_ps();
        let pairs = w.len().min(x.len()) / 2;
        for i in 0..pairs {
            let (b0, b1, a0, a1) = (&w[2 * i], &w[2 * i + 1], &x[2 * i], &x[2 * i + 1]);
            crate::simd::prefetch_ahead(b0, 1);
            let (q, xs) = q5_pair([(&b0.qs, b0.qh), (&b1.qs, b1.qh)], [a0, a1]);
            let p = _mm512_sub_epi32(
                _mm512_dpbusd_epi32(zero, q, xs),
                _mm512_dpbusd_epi32(zero, sixteen, xs),
            );
            let d = scale_halves(
                f16_to_f32(b0.d) * f16_to_f32(a0.d),
                f16_to_f32(b1.d) * f16_to_f32(a1.d),
            );
            acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
        }
        let rest = 2 * pairs;
        _mm512_reduce_add_ps(acc) + super::avx2::dot_q5_0(&w[rest..], &x[rest..])
    }

    /// Q5_1 · Q8_0 two blocks per register, as [`dot_q5_0`] without the −16 and with each
    /// block's minimum times its activation's quant sum.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_q5_1(w: &[BlockQ5_1], x: &[BlockQ8_0], xsum: &[i32]) -> f32 {
        let zero = _mm512_setzero_si512();
        let (mut acc, mut mins) = (_mm512_setzero_ps(), 0f32);
        let pairs = w.len().min(x.len()).min(xsum.len()) / 2;
        for i in 0..pairs {
            let (b0, b1, a0, a1) = (&w[2 * i], &w[2 * i + 1], &x[2 * i], &x[2 * i + 1]);
            crate::simd::prefetch_ahead(b0, 1);
            let (q, xs) = q5_pair([(&b0.qs, b0.qh), (&b1.qs, b1.qh)], [a0, a1]);
            let (dx0, dx1) = (f16_to_f32(a0.d), f16_to_f32(a1.d));
            let d = scale_halves(f16_to_f32(b0.d) * dx0, f16_to_f32(b1.d) * dx1);
            acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, q, xs)), acc);
            mins += f16_to_f32(b0.m) * dx0 * xsum[2 * i] as f32
                + f16_to_f32(b1.m) * dx1 * xsum[2 * i + 1] as f32;
        }
        let rest = 2 * pairs;
        _mm512_reduce_add_ps(acc)
            + mins
            + super::avx2::dot_q5_1(&w[rest..], &x[rest..], &xsum[rest..])
    }
}

/// `$body` with `$b` bound to the block slice of whichever type `$blocks` holds.
macro_rules! with_blocks {
    ($blocks:expr, $b:ident => $body:expr) => {
        match $blocks {
            RowBlocks::Q4K($b) => $body,
            RowBlocks::Q5K($b) => $body,
            RowBlocks::Q6K($b) => $body,
            RowBlocks::Q5_0($b) => $body,
            RowBlocks::Q5_1($b) => $body,
        }
    };
}

/// GGML's name of blocks `_b`'s type.
fn name_of<B: GgmlBlock>(_b: &[B]) -> &'static str {
    B::NAME
}

/// The GGUF bytes blocks `b` take.
fn bytes_of<B: GgmlBlock>(b: &[B]) -> usize {
    b.len() * B::BYTES
}

/// Rows `rows` of the matrix whose rows of `cols` values are blocks `b`, dequantised into `out`.
fn dequantize_rows<B: GgmlBlock>(b: &[B], cols: usize, rows: Range<usize>, out: &mut [f32]) {
    let per_row = cols / B::VALUES;
    // The lengths agree by construction: whole rows of whole blocks.
    let _ = dequantize_blocks(&b[rows.start * per_row..rows.end * per_row], out);
}

/// The blocks of a [`RowMatrix`], row after row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowBlocks {
    Q4K(Vec<BlockQ4K>),
    Q5K(Vec<BlockQ5K>),
    Q6K(Vec<BlockQ6K>),
    Q5_0(Vec<BlockQ5_0>),
    Q5_1(Vec<BlockQ5_1>),
}

/// A weight matrix [rows = out, cols = in] in one of this module's block types, as stored
/// in a GGUF file (each row's blocks back to back).
#[derive(Debug, Clone, PartialEq)]
pub struct RowMatrix {
    blocks: RowBlocks,
    rows: usize,
    cols: usize,
}

impl RowMatrix {
    /// The GGML types this module runs.
    pub const TYPES: [&'static str; 5] = ["Q4_K", "Q5_K", "Q6_K", "Q5_0", "Q5_1"];

    /// Values per block of GGML type `ggml_type`, if this module runs it.
    pub fn block_values(ggml_type: &str) -> Option<usize> {
        match ggml_type {
            "Q4_K" | "Q5_K" | "Q6_K" => Some(QK_K),
            "Q5_0" | "Q5_1" => Some(QK),
            _ => None,
        }
    }

    /// The matrix [rows, cols] stored as GGUF tensor bytes of type `ggml_type`.
    pub fn from_ggml(ggml_type: &str, bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        let per = Self::block_values(ggml_type).ok_or_else(|| {
            Error::Unsupported(format!(
                "{ggml_type} blocks: the row kernels run {}",
                Self::TYPES.join(", ")
            ))
        })?;
        if !cols.is_multiple_of(per) {
            return Err(Error::invalid(format!(
                "{ggml_type}: rows of {cols} values do not fill {per}-value blocks"
            )));
        }
        let blocks = match ggml_type {
            "Q4_K" => RowBlocks::Q4K(blocks_from_bytes(bytes)?),
            "Q5_K" => RowBlocks::Q5K(blocks_from_bytes(bytes)?),
            "Q6_K" => RowBlocks::Q6K(blocks_from_bytes(bytes)?),
            "Q5_0" => RowBlocks::Q5_0(blocks_from_bytes(bytes)?),
            _ => RowBlocks::Q5_1(blocks_from_bytes(bytes)?),
        };
        let m = Self { blocks, rows, cols };
        check_len(
            &format!("{ggml_type} matrix {rows} × {cols} (blocks)"),
            m.block_count(),
            rows * cols / per,
        )?;
        Ok(m)
    }

    /// `parts` (the same type and width) stacked: their rows one after another.
    pub fn stack(parts: &[&RowMatrix]) -> Result<Self> {
        let first = parts
            .first()
            .ok_or_else(|| Error::invalid("stacking no matrices"))?;
        let mut out = (*first).clone();
        for p in &parts[1..] {
            if p.cols != out.cols {
                return Err(Error::invalid(format!(
                    "stacking rows of {} values onto rows of {}",
                    p.cols, out.cols
                )));
            }
            match (&mut out.blocks, &p.blocks) {
                (RowBlocks::Q4K(a), RowBlocks::Q4K(b)) => a.extend_from_slice(b),
                (RowBlocks::Q5K(a), RowBlocks::Q5K(b)) => a.extend_from_slice(b),
                (RowBlocks::Q6K(a), RowBlocks::Q6K(b)) => a.extend_from_slice(b),
                (RowBlocks::Q5_0(a), RowBlocks::Q5_0(b)) => a.extend_from_slice(b),
                (RowBlocks::Q5_1(a), RowBlocks::Q5_1(b)) => a.extend_from_slice(b),
                _ => {
                    return Err(Error::invalid(format!(
                        "stacking {} rows onto {} rows",
                        p.type_name(),
                        out.type_name()
                    )))
                }
            }
            out.rows += p.rows;
        }
        Ok(out)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// GGML's name of the block type (`Q4_K`).
    pub fn type_name(&self) -> &'static str {
        with_blocks!(&self.blocks, b => name_of(b))
    }

    fn block_count(&self) -> usize {
        with_blocks!(&self.blocks, b => b.len())
    }

    /// Bytes of weight data (what a matrix-vector product streams).
    pub fn bytes(&self) -> usize {
        with_blocks!(&self.blocks, b => bytes_of(b))
    }

    /// The values the blocks stand for, [rows, cols] (bands of 64 rows across the current
    /// rayon pool).
    pub fn dequantize(&self) -> Vec<f32> {
        const BAND: usize = 64;
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(BAND * self.cols)
            .enumerate()
            .for_each(|(i, ys)| {
                let rows = i * BAND..i * BAND + ys.len() / self.cols;
                with_blocks!(&self.blocks, b => dequantize_rows(b, self.cols, rows, ys))
            });
        out
    }

    /// A Q5_0 matrix as the Q8_0 blocks that hold exactly its values (q − 16 with the same
    /// scale): their products with a Q8_0 activation are Q5_0's to the bit (the same integer
    /// sums, the same scale product), through the repacked 8-bit kernels
    /// ([`crate::quant_x8`]) — 34 bytes per 32 values instead of 22. None for other types.
    pub fn q5_0_as_q8_0(&self) -> Option<Vec<BlockQ8_0>> {
        let RowBlocks::Q5_0(blocks) = &self.blocks else {
            return None;
        };
        Some(
            blocks
                .iter()
                .map(|b| {
                    let qh = u32::from_le_bytes(b.qh);
                    let mut qs = [0i8; QK];
                    for j in 0..16 {
                        let (v0, v1) = q5_values(&b.qs, qh, j);
                        qs[j] = (v0 - 16) as i8;
                        qs[j + 16] = (v1 - 16) as i8;
                    }
                    BlockQ8_0 { d: b.d, qs }
                })
                .collect(),
        )
    }

    /// A Q4_K matrix as Q4_1 blocks, one per 32-value sub-block: scale d·sc_j and minimum
    /// −dmin·m_j rounded to f16 (relative error ≤ 2⁻¹¹ of the sub-block's scale, some 60×
    /// below the 4-bit rounding itself), the same 4-bit values. For prefill, where the
    /// repacked Q4_1 tiles ([`crate::quant_x8::matmul_x8`]) reuse each weight block across
    /// many activation rows. None for other types, or if a scale leaves f16's range.
    pub fn q4_k_as_q4_1(&self) -> Option<Vec<BlockQ4_1>> {
        let RowBlocks::Q4K(blocks) = &self.blocks else {
            return None;
        };
        let mut out = vec![BlockQ4_1::default(); blocks.len() * (QK_K / QK)];
        let finite = AtomicBool::new(true);
        out.par_chunks_mut(1024)
            .zip(blocks.par_chunks(1024 / (QK_K / QK)))
            .for_each(|(ys, bs)| {
                for (y, b) in ys.chunks_exact_mut(QK_K / QK).zip(bs) {
                    let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
                    let (sc, m) = scales_mins(&b.scales);
                    for (j, o) in y.iter_mut().enumerate() {
                        let (scale, min) = (
                            f16::from_f32(d * sc[j] as f32),
                            f16::from_f32(-(dmin * m[j] as f32)),
                        );
                        if !scale.is_finite() || !min.is_finite() {
                            finite.store(false, Ordering::Relaxed);
                        }
                        o.d = scale.to_bits();
                        o.m = min.to_bits();
                        // Chunk c's bytes: sub-block 2c in the low nibbles, 2c + 1 in the high.
                        let qs = &b.qs[32 * (j / 2)..][..32];
                        for k in 0..16 {
                            let (a, b) = (qs[k], qs[k + 16]);
                            o.qs[k] = if j % 2 == 0 {
                                (a & 0x0F) | (b << 4)
                            } else {
                                (a >> 4) | (b & 0xF0)
                            };
                        }
                    }
                }
            });
        finite.into_inner().then_some(out)
    }

    /// Whether the activation is quantised to Q8_K (the k-quants) rather than Q8_0.
    fn takes_q8_k(&self) -> bool {
        matches!(
            self.blocks,
            RowBlocks::Q4K(_) | RowBlocks::Q5K(_) | RowBlocks::Q6K(_)
        )
    }

    /// Quantises the activation rows `x` as this type's products need; `multi`: also as
    /// [`Self::multi_row_dot`]'s Q6_K kernel takes them.
    fn quantize_acts(&self, x: &[f32], acts: &mut QuantActs, multi: bool) -> Result<()> {
        if self.takes_q8_k() {
            let layout = match self.blocks {
                RowBlocks::Q4K(_) | RowBlocks::Q5K(_) => KActs::Pairs,
                RowBlocks::Q6K(_) if multi => KActs::Unsigned,
                _ => KActs::Plain,
            };
            acts.quantize_k(x, layout)
        } else {
            acts.quantize(x)
        }
    }

    /// Whether [`Self::multi_row_dot`] has a kernel of its own for this type on this CPU
    /// (the k-quants with AVX-512 VNNI) rather than [`MULTI_ROWS`] calls of
    /// [`Self::row_dot`]: then [`matmul_rows`] unpacks each weight block once per
    /// [`MULTI_ROWS`] activation rows, and prefill runs the blocks as they are instead of
    /// expanding them to f32.
    pub fn has_multi_row_dot(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if avx512_path() {
            return self.takes_q8_k();
        }
        false
    }

    /// Row `o`'s dot products with activation rows `r..r + MULTI_ROWS` of `acts`: each equal
    /// bit for bit to [`Self::row_dot`]'s for Q4_K and Q5_K; for Q6_K the same integer sums
    /// per block, whose f32 total may differ in the last bits ([`avx512::dot_q6_k_rows`]).
    #[inline]
    fn multi_row_dot(&self, o: usize, r: usize, acts: &QuantActs) -> [f32; MULTI_ROWS] {
        #[cfg(target_arch = "x86_64")]
        if avx512_path() && self.takes_q8_k() {
            let nb = self.cols / QK_K;
            let x: [&[BlockQ8K]; MULTI_ROWS] =
                std::array::from_fn(|j| &acts.k[(r + j) * nb..][..nb]);
            let pairs = |j: usize| acts.k_pairs.get((r + j) * nb..(r + j + 1) * nb);
            // SAFETY (each call): the AVX-512 path was detected; every activation row holds
            // nb blocks (the slices are bounds-checked above), in both forms for Q4_K/Q5_K.
            match &self.blocks {
                RowBlocks::Q4K(b) if pairs(MULTI_ROWS - 1).is_some() => {
                    let p = std::array::from_fn(|j| pairs(j).unwrap_or(&[]));
                    return unsafe { avx512::dot_q4_k(&b[o * nb..][..nb], x, p) };
                }
                RowBlocks::Q5K(b) if pairs(MULTI_ROWS - 1).is_some() => {
                    let p = std::array::from_fn(|j| pairs(j).unwrap_or(&[]));
                    return unsafe { avx512::dot_q5_k(&b[o * nb..][..nb], x, p) };
                }
                RowBlocks::Q6K(b) if acts.k_unsigned.len() == acts.k.len() => {
                    let xu = std::array::from_fn(|j| &acts.k_unsigned[(r + j) * nb..][..nb]);
                    return unsafe { avx512::dot_q6_k_rows(&b[o * nb..][..nb], x, xu) };
                }
                _ => {}
            }
        }
        std::array::from_fn(|j| self.row_dot(o, r + j, acts))
    }

    /// Row `o`'s dot product with activation row `r` of `acts`.
    #[inline]
    fn row_dot(&self, o: usize, r: usize, acts: &QuantActs) -> f32 {
        match &self.blocks {
            RowBlocks::Q4K(b) => {
                let nb = self.cols / QK_K;
                let pairs = acts.k_pairs.get(r * nb..(r + 1) * nb).unwrap_or(&[]);
                dot_q4_k(&b[o * nb..][..nb], &acts.k[r * nb..][..nb], pairs)
            }
            RowBlocks::Q5K(b) => {
                let nb = self.cols / QK_K;
                let pairs = acts.k_pairs.get(r * nb..(r + 1) * nb).unwrap_or(&[]);
                dot_q5_k(&b[o * nb..][..nb], &acts.k[r * nb..][..nb], pairs)
            }
            RowBlocks::Q6K(b) => {
                let nb = self.cols / QK_K;
                dot_q6_k(&b[o * nb..][..nb], &acts.k[r * nb..][..nb])
            }
            RowBlocks::Q5_0(b) => {
                let nb = self.cols / QK;
                dot_q5_0(&b[o * nb..][..nb], &acts.q[r * nb..][..nb])
            }
            RowBlocks::Q5_1(b) => {
                let nb = self.cols / QK;
                dot_q5_1(
                    &b[o * nb..][..nb],
                    &acts.q[r * nb..][..nb],
                    &acts.sum[r * nb..][..nb],
                )
            }
        }
    }
}

/// Rows per parallel task: ~32 KiB of weights each.
fn rows_per_task(w: &RowMatrix) -> usize {
    (32 * 1024 / (w.bytes() / w.rows.max(1)).max(1)).max(1)
}

/// y [rows] = W·x [cols]: `x` is quantised into `acts` (reused storage) as llama.cpp
/// quantises it for `w`'s type, then rows are split across the current rayon pool.
pub fn matvec_rows(w: &RowMatrix, x: &[f32], acts: &mut QuantActs, y: &mut [f32]) -> Result<()> {
    check_len("matvec_rows x", x.len(), w.cols)?;
    check_len("matvec_rows y", y.len(), w.rows)?;
    w.quantize_acts(x, acts, false)?;
    let acts: &QuantActs = acts;
    if w.bytes() < 64 * 1024 {
        y.iter_mut()
            .enumerate()
            .for_each(|(o, v)| *v = w.row_dot(o, 0, acts));
        return Ok(());
    }
    let per = rows_per_task(w);
    y.par_chunks_mut(per).enumerate().for_each(|(t, ys)| {
        for (j, v) in ys.iter_mut().enumerate() {
            *v = w.row_dot(t * per + j, 0, acts);
        }
    });
    Ok(())
}

/// Activation rows [`matmul_rows`] takes at once through [`RowMatrix::multi_row_dot`].
pub const MULTI_ROWS: usize = 8;

/// Y [n, rows] = X [n, cols]·Wᵀ (prefill, batched decoding): each task takes a band of
/// output rows and, while those weights stay in cache, every activation row.
pub fn matmul_rows(
    w: &RowMatrix,
    x: &[f32],
    n: usize,
    acts: &mut QuantActs,
    y: &mut [f32],
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let rows = w.rows;
    check_len("matmul_rows x", x.len(), n * w.cols)?;
    check_len("matmul_rows y", y.len(), n * rows)?;
    let multi = w.has_multi_row_dot() && n >= MULTI_ROWS;
    w.quantize_acts(x, acts, multi)?;
    let acts: &QuantActs = acts;
    let per = rows_per_task(w).min(rows.div_ceil(4 * crate::par::num_threads()).max(1));
    let tasks = rows.div_ceil(per);
    let yp = SendPtr(y.as_mut_ptr());
    (0..tasks).into_par_iter().for_each(|t| {
        let band = t * per..((t + 1) * per).min(rows);
        // SAFETY (both writes): y holds n·rows values and r·rows + o < n·rows; a task writes
        // only its own band of columns o, so no two tasks write the same element, and `y`
        // stays mutably borrowed until every task is done.
        let mut r = 0;
        while multi && r + MULTI_ROWS <= n {
            for o in band.clone() {
                for (j, v) in w.multi_row_dot(o, r, acts).into_iter().enumerate() {
                    unsafe { *yp.get().add((r + j) * rows + o) = v };
                }
            }
            r += MULTI_ROWS;
        }
        for r in r..n {
            for o in band.clone() {
                let v = w.row_dot(o, r, acts);
                unsafe { *yp.get().add(r * rows + o) = v };
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{dequantize_q8_0, quantize_q8_0};
    use crate::testutil::rand_vec;

    /// Pseudo-random bytes (xorshift).
    fn rand_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    /// A random matrix of `ggml_type` [rows, cols] with sane f16 scales (0.001–0.03).
    fn rand_matrix(ggml_type: &str, rows: usize, cols: usize, seed: u64) -> RowMatrix {
        let per = RowMatrix::block_values(ggml_type).unwrap();
        let (bytes_per, scale_at): (usize, &[usize]) = match ggml_type {
            "Q4_K" => (144, &[0, 2]),
            "Q5_K" => (176, &[0, 2]),
            "Q6_K" => (210, &[208]),
            "Q5_0" => (22, &[0]),
            _ => (24, &[0, 2]),
        };
        let n = rows * cols / per;
        let mut b = rand_bytes(n * bytes_per, seed);
        let r = rand_bytes(n * 2, seed + 1);
        for i in 0..n {
            for (k, &at) in scale_at.iter().enumerate() {
                let v = 0.001 + 0.03 * (r[2 * i + k % 2] as f32 / 255.0);
                let v = if ggml_type == "Q5_1" && at == 2 {
                    -v * 8.0
                } else {
                    v
                };
                b[i * bytes_per + at..][..2]
                    .copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
            }
        }
        RowMatrix::from_ggml(ggml_type, &b, rows, cols).unwrap()
    }

    /// y = W·x in f64 from the dequantised weights and the activation as the kernels see it.
    fn reference(w: &RowMatrix, x: &[f32]) -> Vec<f64> {
        let wf = w.dequantize();
        let xd: Vec<f32> = if w.takes_q8_k() {
            let mut q = vec![BlockQ8K::default(); x.len() / QK_K];
            quantize_q8_k(x, &mut q).unwrap();
            q.iter()
                .flat_map(|b| b.qs.iter().map(move |&v| b.d * v as f32))
                .collect()
        } else {
            let mut q = vec![BlockQ8_0::default(); x.len() / QK];
            quantize_q8_0(x, &mut q).unwrap();
            let mut d = vec![0f32; x.len()];
            dequantize_q8_0(&q, &mut d).unwrap();
            d
        };
        wf.chunks_exact(w.cols)
            .map(|row| {
                row.iter()
                    .zip(&xd)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn blocks_round_trip_through_bytes() {
        for ty in RowMatrix::TYPES {
            let w = rand_matrix(ty, 3, 512, 7);
            let bytes = with_blocks!(&w.blocks, b => blocks_to_bytes(b));
            assert_eq!(bytes.len(), w.bytes(), "{ty}");
            assert_eq!(RowMatrix::from_ggml(ty, &bytes, 3, 512).unwrap(), w, "{ty}");
            assert!(RowMatrix::from_ggml(ty, &bytes[1..], 3, 512).is_err());
        }
        assert!(RowMatrix::from_ggml("Q4_K", &[0; 144], 1, 32).is_err());
        assert!(RowMatrix::from_ggml("Q8_0", &[0; 34], 1, 32).is_err());
    }

    #[test]
    fn q8_k_is_ggml_s() {
        let x = rand_vec(2 * QK_K, 5);
        let mut q = vec![BlockQ8K::default(); 2];
        quantize_q8_k(&x, &mut q).unwrap();
        for (b, xs) in q.iter().zip(x.chunks(QK_K)) {
            // The value of largest magnitude maps to −127 (d carries its sign).
            let i = (0..QK_K)
                .max_by(|&a, &c| xs[a].abs().total_cmp(&xs[c].abs()))
                .unwrap();
            assert_eq!(b.qs[i], -127);
            for (j, s) in b.bsums.iter().enumerate() {
                assert_eq!(
                    *s,
                    b.qs[16 * j..16 * j + 16]
                        .iter()
                        .map(|&v| v as i16)
                        .sum::<i16>()
                );
            }
            for (&v, &qv) in xs.iter().zip(&b.qs) {
                assert!((v - b.d * qv as f32).abs() <= 0.5 * b.d.abs() * 1.001);
            }
        }
        quantize_q8_k(&[0.0; QK_K], &mut q[..1]).unwrap();
        assert_eq!(q[0], BlockQ8K::default());
        // The AVX-512 twin gives the scalar loop's blocks bit for bit: random values, a
        // tie of magnitudes with opposite signs (the first wins), exact halves after
        // scaling (nearest-even), an outlier, zeros and a NaN.
        #[cfg(target_arch = "x86_64")]
        if avx512_path() {
            let mut x = rand_vec(8 * QK_K, 6);
            x[QK_K + 3] = -5.0;
            x[QK_K + 200] = 5.0;
            for (i, v) in x[2 * QK_K..3 * QK_K].iter_mut().enumerate() {
                *v = (i as f32 - 128.0) * 0.5;
            }
            x[3 * QK_K + 17] = 1e4;
            x[4 * QK_K..5 * QK_K].fill(0.0);
            x[5 * QK_K + 9] = f32::NAN;
            x[6 * QK_K + 100] = f32::INFINITY;
            let (mut a, mut b) = (vec![BlockQ8K::default(); 8], vec![BlockQ8K::default(); 8]);
            // SAFETY: the AVX-512 path runs here; 8 blocks for 8·256 values.
            unsafe { avx512::quantize_q8_k(&x, &mut a) };
            quantize_q8_k_scalar(&x, &mut b);
            for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                assert_eq!(a.qs, b.qs, "block {i}");
                assert_eq!(a.bsums, b.bsums, "block {i}");
                assert_eq!(a.d.to_bits(), b.d.to_bits(), "block {i}");
            }
        }
        assert!(quantize_q8_k(&x[..100], &mut q[..1]).is_err());
    }

    #[test]
    fn dots_equal_the_dequantised_reference_on_every_path() {
        for ty in RowMatrix::TYPES {
            // 288 columns: an odd number of 32-value blocks (the AVX-512 Q5_0/Q5_1 kernels
            // take them two at a time).
            let shapes = [(5, 256usize, 1u64), (3, 768, 2), (9, 1536, 3), (4, 288, 4)];
            for (rows, cols, seed) in shapes {
                if !cols.is_multiple_of(RowMatrix::block_values(ty).unwrap_or(QK_K)) {
                    continue;
                }
                let w = rand_matrix(ty, rows, cols, seed);
                let x: Vec<f32> = rand_vec(cols, seed + 10).iter().map(|v| v + 0.2).collect();
                let want = reference(&w, &x);
                let mut acts = QuantActs::default();
                w.quantize_acts(&x, &mut acts, true).unwrap();
                for (o, &r) in want.iter().enumerate() {
                    // Every x86 path the CPU has: AVX-512 (dispatched where present), AVX2
                    // (called directly), and the scalar twin below.
                    #[cfg(target_arch = "x86_64")]
                    if crate::quant::has_avx2() {
                        let nb = cols / QK_K;
                        // SAFETY: AVX2 detected; both rows hold nb blocks.
                        let avx2 = unsafe {
                            match &w.blocks {
                                RowBlocks::Q4K(b) => avx2::dot_q4_k(&b[o * nb..][..nb], &acts.k),
                                RowBlocks::Q5K(b) => avx2::dot_q5_k(&b[o * nb..][..nb], &acts.k),
                                RowBlocks::Q6K(b) => avx2::dot_q6_k(&b[o * nb..][..nb], &acts.k),
                                RowBlocks::Q5_0(b) => {
                                    let nb = cols / QK;
                                    avx2::dot_q5_0(&b[o * nb..][..nb], &acts.q)
                                }
                                RowBlocks::Q5_1(b) => {
                                    let nb = cols / QK;
                                    avx2::dot_q5_1(&b[o * nb..][..nb], &acts.q, &acts.sum)
                                }
                            }
                        };
                        assert!(
                            (avx2 as f64 - r).abs() <= 1e-4 * (1.0 + r.abs()),
                            "{ty} avx2 row {o}: {avx2} vs {r}"
                        );
                    }
                    let fast = w.row_dot(o, 0, &acts);
                    let nb = |per| cols / per;
                    let slow = match &w.blocks {
                        RowBlocks::Q4K(b) => {
                            scalar::dot_q4_k(&b[o * nb(QK_K)..][..nb(QK_K)], &acts.k)
                        }
                        RowBlocks::Q5K(b) => {
                            scalar::dot_q5_k(&b[o * nb(QK_K)..][..nb(QK_K)], &acts.k)
                        }
                        RowBlocks::Q6K(b) => {
                            scalar::dot_q6_k(&b[o * nb(QK_K)..][..nb(QK_K)], &acts.k)
                        }
                        RowBlocks::Q5_0(b) => scalar::dot_q5_0(&b[o * nb(QK)..][..nb(QK)], &acts.q),
                        RowBlocks::Q5_1(b) => {
                            scalar::dot_q5_1(&b[o * nb(QK)..][..nb(QK)], &acts.q, &acts.sum)
                        }
                    };
                    let tol = 1e-4 * (1.0 + r.abs());
                    assert!(
                        (fast as f64 - r).abs() <= tol,
                        "{ty} row {o}: {fast} vs {r}"
                    );
                    assert!(
                        (slow as f64 - r).abs() <= tol,
                        "{ty} row {o}: {slow} vs {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn products_equal_row_dots_and_split_across_threads() {
        for ty in RowMatrix::TYPES {
            // 300 rows × 1024: above the threading threshold.
            let (rows, cols, n) = (300, 1024, MULTI_ROWS + 3);
            let w = rand_matrix(ty, rows, cols, 40);
            let x = rand_vec(n * cols, 41);
            let mut acts = QuantActs::default();
            let mut y = vec![0f32; n * rows];
            matmul_rows(&w, &x, n, &mut acts, &mut y).unwrap();
            let mut one = vec![0f32; rows];
            for r in 0..n {
                matvec_rows(&w, &x[r * cols..][..cols], &mut acts, &mut one).unwrap();
                if ty == "Q6_K" {
                    crate::testutil::assert_close(&y[r * rows..][..rows], &one, 1e-6, ty);
                } else {
                    assert_eq!(&y[r * rows..][..rows], &one[..], "{ty} row {r}");
                }
                let want = reference(&w, &x[r * cols..][..cols]);
                for (a, b) in one.iter().zip(&want) {
                    assert!((*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()), "{ty}");
                }
            }
            assert!(matvec_rows(&w, &x[..cols - 1], &mut acts, &mut one).is_err());
        }
    }

    /// Prefill's multi-row products (their own kernels where the CPU has them) against the
    /// one-row dot of each row at odd block counts: bit for bit, but for Q6_K's kernel, whose
    /// block sums lie in other lanes (f32 rounding of the total only).
    #[test]
    fn multi_row_dots_equal_one_row_dots() {
        for ty in RowMatrix::TYPES {
            for nb in [1, 3, 5] {
                let cols = nb * QK_K;
                let w = rand_matrix(ty, 3, cols, 50 + nb as u64);
                let x = rand_vec((MULTI_ROWS + 3) * cols, 51);
                let mut acts = QuantActs::default();
                w.quantize_acts(&x, &mut acts, true).unwrap();
                for o in 0..3 {
                    for r in [0, 3] {
                        let multi = w.multi_row_dot(o, r, &acts);
                        let one: Vec<f32> = (r..r + MULTI_ROWS)
                            .map(|j| w.row_dot(o, j, &acts))
                            .collect();
                        if ty == "Q6_K" {
                            crate::testutil::assert_close(&multi, &one, 1e-6, ty);
                        } else {
                            assert_eq!(&multi[..], &one[..], "{ty}, {nb} blocks, row {o}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn q5_0_as_q8_0_is_exact() {
        let w = rand_matrix("Q5_0", 4, 96, 9);
        let q8 = w.q5_0_as_q8_0().unwrap();
        let mut back = vec![0f32; 4 * 96];
        dequantize_q8_0(&q8, &mut back).unwrap();
        assert_eq!(back, w.dequantize());
        let x = rand_vec(96, 10);
        let mut acts = QuantActs::default();
        w.quantize_acts(&x, &mut acts, true).unwrap();
        for o in 0..4 {
            let a = w.row_dot(o, 0, &acts);
            let b = crate::quant::vec_dot_q8_0(&q8[o * 3..o * 3 + 3], &acts.q);
            assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{a} vs {b}");
        }
        assert!(rand_matrix("Q4_K", 1, 256, 1).q5_0_as_q8_0().is_none());
    }

    #[test]
    fn q4_k_as_q4_1_holds_its_values_to_f16_scale_rounding() {
        // 2048 blocks: every scale and min of 0–63 and both nibbles of each byte.
        let (rows, cols) = (9, 256 * 4);
        let w = rand_matrix("Q4_K", rows, cols, 21);
        let q41 = w.q4_k_as_q4_1().unwrap();
        let mut back = vec![0f32; rows * cols];
        crate::quant::dequantize_q4_1(&q41, &mut back).unwrap();
        let want = w.dequantize();
        let RowBlocks::Q4K(blocks) = &w.blocks else {
            unreachable!()
        };
        for (i, (ys, xs)) in back.chunks_exact(32).zip(want.chunks_exact(32)).enumerate() {
            let b = &blocks[i / 8];
            let (sc, m) = scales_mins(&b.scales);
            let (dj, mj) = (
                f16_to_f32(b.d) * sc[i % 8] as f32,
                f16_to_f32(b.dmin) * m[i % 8] as f32,
            );
            // f16 keeps 11 significant bits: each of scale and min moves by ≤ 2⁻¹¹ of itself.
            let bound = (15.0 * dj + mj) * 2f32.powi(-11) + 1e-6;
            for (y, x) in ys.iter().zip(xs) {
                assert!(
                    (y - x).abs() <= bound,
                    "block {i}: {y} vs {x} (bound {bound})"
                );
            }
        }
        // Through the repacked tiles, many activation rows at once: the f64 product of these
        // Q4_1 values with the activation as its Q8_0 blocks hold it.
        let n = 5;
        let x = rand_vec(n * cols, 22);
        let tiles = crate::quant_x8::InterleavedMatrix::new(
            &crate::quant::QuantMatrix::Q4_1(q41),
            rows,
            cols,
        )
        .unwrap();
        let mut y = vec![0f32; n * rows];
        let mut acts = QuantActs::default();
        crate::quant_x8::matmul_x8(&tiles, &x, n, &mut acts, &mut y).unwrap();
        let mut xq = vec![BlockQ8_0::default(); cols / QK];
        let mut xd = vec![0f32; cols];
        for r in 0..n {
            quantize_q8_0(&x[r * cols..][..cols], &mut xq).unwrap();
            dequantize_q8_0(&xq, &mut xd).unwrap();
            for o in 0..rows {
                let terms = back[o * cols..][..cols]
                    .iter()
                    .zip(&xd)
                    .map(|(&a, &b)| a as f64 * b as f64);
                let (exact, size) = terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
                let got = y[r * rows + o] as f64;
                assert!(
                    (got - exact).abs() <= 1e-5 * size + 1e-6,
                    "row {r}, output {o}: {got} vs {exact}"
                );
            }
        }
        assert!(rand_matrix("Q6_K", 1, 256, 1).q4_k_as_q4_1().is_none());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn packed_scales_equal_ggml_s_unpacking() {
        for seed in 0..50 {
            let b: [u8; 12] = rand_bytes(12, seed).try_into().unwrap();
            let (sc, m) = scales_mins(&b);
            let p = avx2::scales_mins_packed(&b);
            assert_eq!(&p[..8], &sc[..]);
            assert_eq!(&p[8..], &m[..]);
        }
    }

    #[test]
    fn stacking_appends_rows() {
        let (a, b) = (
            rand_matrix("Q6_K", 2, 256, 1),
            rand_matrix("Q6_K", 3, 256, 2),
        );
        let s = RowMatrix::stack(&[&a, &b]).unwrap();
        assert_eq!(s.rows(), 5);
        let (da, db, ds) = (a.dequantize(), b.dequantize(), s.dequantize());
        assert_eq!(&ds[..512], &da[..]);
        assert_eq!(&ds[512..], &db[..]);
        assert!(RowMatrix::stack(&[&a, &rand_matrix("Q4_K", 1, 256, 3)]).is_err());
        assert!(RowMatrix::stack(&[&a, &rand_matrix("Q6_K", 1, 512, 3)]).is_err());
    }
}
