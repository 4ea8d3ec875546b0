//! Sparse weight matrices for decoding a pruned model: formats that store fewer bytes than
//! the dense matrix, and matrix-vector products that stream them once.
//!
//! Decoding at batch 1 is bound by the bytes of weights read per token, so a pruned weight
//! only saves time if its zeros are not stored — and if skipping them costs less than reading
//! them. Three formats, row-major [out, in] like the dense weights:
//!
//! - **Bitmask** (any unstructured mask): per row, one bit per weight (`⌈in/8⌉` bytes) and the
//!   non-zero values packed in column order. Bytes per weight: `4·density + 1/8` — 2.1 at 50%
//!   sparsity, 1.3 at 70%, 0.53 at 90% (dense f32: 4). The AVX2 kernel takes 8 columns per
//!   step: the mask byte selects a lane permutation from a 256-entry table that spreads the
//!   next `popcount` packed values over their columns, absent lanes are zeroed, one FMA.
//!   (A masked load of the packed values against permuted activations instead measured 2×
//!   slower here: AMD's `vmaskmovps` loads are slow.) Measured compute-bound at about the
//!   dense speed on 2 AVX2 cores, so the decode engine does not choose it.
//! - **2:4** (at most 2 non-zeros in every 4 consecutive weights, NVIDIA's semi-structured
//!   pattern): per row, exactly `in/2` values and a 2-bit position for each (16 bits per 16
//!   columns). Bytes per weight: 2.125. The AVX2 kernel takes 16 columns per step: the
//!   eight 2-bit positions become lane indices, two `permutevar8x32` gather the matching
//!   activations, one FMA.
//! - **Offsets** ([`OffsetMatrix`], what the decode engine uses for unstructured masks): the
//!   non-zeros with a byte column offset within 256-column blocks, 5 bytes each; its kernel's
//!   work follows the non-zeros: one scalar load of the activation per non-zero, four
//!   independent sums (AVX2's `vgatherdps` measured ~4 cycles per element on these AMD cores,
//!   slower than scalar loads).
//!
//! Where the f32 kernels run AVX-512 ([`crate::simd::f32_path`]), each format has a 16-lane
//! kernel: the bitmask's two mask bytes are the lane mask of one `vexpandps` load (no
//! permutation table; 50% sparsity 1.4–1.6× the dense matvec per matrix where AVX2's was
//! 1.0–1.5× on an Intel(R) Xeon(R) Processor, family 6 model 167, AVX-512, 2 threads, still about flat from 50% to 90% — the work follows the columns), 2:4 fetches
//! two steps' activations with one `vpermt2ps`, offsets gathers 16 with `vgatherdps`.
//!
//! All give the masked dense product up to float summation order (tests compare with the
//! dense kernel on random odd shapes, and every x86 kernel the CPU has with its scalar twin);
//! scalar twins run where AVX2 is missing.

use crate::check_len;
use rayon::prelude::*;
use slm_core::{Error, Result};

/// A matrix [rows, cols] stored as a bitmask and packed non-zero values (see module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct BitmaskMatrix {
    rows: usize,
    cols: usize,
    /// [rows, ⌈cols/8⌉]: bit j of byte g is set when column 8g + j is stored.
    masks: Vec<u8>,
    /// Non-zero values row by row, then 8 zeros so the kernel's 8-wide loads stay in bounds.
    values: Vec<f32>,
    /// [rows + 1]: row r's values are `values[starts[r]..starts[r + 1]]`.
    starts: Vec<u32>,
}

/// A matrix [rows, cols] with at most 2 non-zeros per 4 consecutive columns (see module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Sparse24Matrix {
    rows: usize,
    cols: usize,
    /// [rows, cols/2]: the two kept values of each group of 4, in column order.
    values: Vec<f32>,
    /// [rows, cols/16]: 2 bits per value (its column within its group), value k of a
    /// 16-column step in bits 2k..2k+2.
    positions: Vec<u16>,
}

fn check_shape(w: &[f32], rows: usize, cols: usize, multiple: usize, what: &str) -> Result<()> {
    check_len(what, w.len(), rows * cols)?;
    if !cols.is_multiple_of(multiple) {
        return Err(Error::invalid(format!(
            "{what}: {cols} columns is not a multiple of {multiple}"
        )));
    }
    Ok(())
}

impl BitmaskMatrix {
    /// Packs the non-zeros of the dense `w` [rows, cols].
    pub fn from_dense(w: &[f32], rows: usize, cols: usize) -> Result<Self> {
        check_shape(w, rows, cols, 1, "bitmask matrix")?;
        let nonzero = w.iter().filter(|v| **v != 0.0).count();
        if nonzero > u32::MAX as usize - 8 {
            return Err(Error::invalid("bitmask matrix: more than 2^32 non-zeros"));
        }
        let mut masks = Vec::with_capacity(rows * cols.div_ceil(8));
        let mut values = Vec::with_capacity(nonzero + 8);
        let mut starts = Vec::with_capacity(rows + 1);
        starts.push(0);
        for row in w.chunks_exact(cols) {
            for group in row.chunks(8) {
                let mut m = 0u8;
                for (j, &v) in group.iter().enumerate() {
                    if v != 0.0 {
                        m |= 1 << j;
                        values.push(v);
                    }
                }
                masks.push(m);
            }
            starts.push(values.len() as u32);
        }
        values.extend([0.0; 8]);
        Ok(Self {
            rows,
            cols,
            masks,
            values,
            starts,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Stored non-zeros.
    pub fn nonzeros(&self) -> usize {
        self.values.len() - 8
    }

    /// Bytes a matrix-vector product streams (masks, values, row starts).
    pub fn bytes(&self) -> usize {
        self.masks.len() + 4 * self.values.len() + 4 * self.starts.len()
    }

    /// The dense matrix [rows, cols].
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for r in 0..self.rows {
            let mut p = self.starts[r] as usize;
            let masks = self.row_masks(r);
            for (g, &m) in masks.iter().enumerate() {
                for j in 0..8 {
                    if m & (1 << j) != 0 {
                        out[r * self.cols + 8 * g + j] = self.values[p];
                        p += 1;
                    }
                }
            }
        }
        out
    }

    fn row_masks(&self, r: usize) -> &[u8] {
        let per_row = self.cols.div_ceil(8);
        &self.masks[r * per_row..(r + 1) * per_row]
    }

    /// Row `r`'s dot product with `x` [cols].
    #[inline]
    fn row_dot(&self, r: usize, x: &[f32]) -> f32 {
        let masks = self.row_masks(r);
        let values = &self.values[self.starts[r] as usize..];
        #[cfg(target_arch = "x86_64")]
        if let Some((kernel, _)) = x86_kernels() {
            // SAFETY: features detected; `values` has ≥ 8 readable floats past the row's
            // last non-zero (the padding), `x` holds 8 floats per full mask byte.
            let full = x.len() / 8;
            let (sum, used) = unsafe { kernel(&masks[..full], values, x) };
            return sum + bitmask_dot_scalar(&masks[full..], &values[used..], &x[8 * full..]);
        }
        bitmask_dot_scalar(masks, values, x)
    }
}

fn bitmask_dot_scalar(masks: &[u8], values: &[f32], x: &[f32]) -> f32 {
    let mut p = 0;
    let mut sum = 0f32;
    for (g, &m) in masks.iter().enumerate() {
        for j in 0..8 {
            if m & (1 << j) != 0 {
                // A row's last mask byte has no bits beyond its columns.
                sum += values[p] * x[8 * g + j];
                p += 1;
            }
        }
    }
    sum
}

/// Whether every group of 4 consecutive weights in each row of `w` [.., cols] has at most
/// 2 non-zeros (false when `cols` is not a multiple of 4).
pub fn is_2_4(w: &[f32], cols: usize) -> bool {
    cols.is_multiple_of(4)
        && w.chunks_exact(4)
            .all(|g| g.iter().filter(|v| **v != 0.0).count() <= 2)
}

impl Sparse24Matrix {
    /// Packs `w` [rows, cols], which must follow the 2:4 pattern; `cols` must be a multiple
    /// of 16. A group with fewer than 2 non-zeros stores zeros at unused positions.
    pub fn from_dense(w: &[f32], rows: usize, cols: usize) -> Result<Self> {
        check_shape(w, rows, cols, 16, "2:4 matrix")?;
        if !is_2_4(w, cols) {
            return Err(Error::invalid(
                "2:4 matrix: some group of 4 weights has more than 2 non-zeros",
            ));
        }
        let mut values = Vec::with_capacity(rows * cols / 2);
        let mut positions = Vec::with_capacity(rows * cols / 16);
        for step in w.chunks_exact(16) {
            let mut bits = 0u16;
            for (gi, group) in step.chunks_exact(4).enumerate() {
                // The non-zero columns, filled up to two with the first unused columns.
                let mut kept: Vec<usize> = (0..4).filter(|&j| group[j] != 0.0).collect();
                for j in 0..4 {
                    if kept.len() == 2 {
                        break;
                    }
                    if !kept.contains(&j) {
                        kept.push(j);
                    }
                }
                kept.sort_unstable();
                for (k, &j) in kept.iter().enumerate() {
                    values.push(group[j]);
                    bits |= (j as u16) << (2 * (2 * gi + k));
                }
            }
            positions.push(bits);
        }
        Ok(Self {
            rows,
            cols,
            values,
            positions,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes a matrix-vector product streams.
    pub fn bytes(&self) -> usize {
        4 * self.values.len() + 2 * self.positions.len()
    }

    /// The dense matrix [rows, cols].
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (s, &bits) in self.positions.iter().enumerate() {
            for k in 0..8 {
                let col = 16 * s + 4 * (k / 2) + ((bits >> (2 * k)) & 3) as usize;
                out[col] += self.values[8 * s + k];
            }
        }
        out
    }

    #[inline]
    fn row_dot(&self, r: usize, x: &[f32]) -> f32 {
        let steps = self.cols / 16;
        let values = &self.values[r * self.cols / 2..(r + 1) * self.cols / 2];
        let positions = &self.positions[r * steps..(r + 1) * steps];
        #[cfg(target_arch = "x86_64")]
        if let Some((_, kernel)) = x86_kernels() {
            // SAFETY: features detected; values hold 8 and x 16 floats per position word.
            return unsafe { kernel(values, positions, x) };
        }
        sparse24_dot_scalar(values, positions, x)
    }
}

fn sparse24_dot_scalar(values: &[f32], positions: &[u16], x: &[f32]) -> f32 {
    let mut sum = 0f32;
    for (s, &bits) in positions.iter().enumerate() {
        for k in 0..8 {
            let col = 16 * s + 4 * (k / 2) + ((bits >> (2 * k)) & 3) as usize;
            sum += values[8 * s + k] * x[col];
        }
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("popcnt")
}

/// Whether the AVX-512 sparse kernels run: where the f32 kernels run AVX-512
/// ([`crate::simd::f32_path`]) and the CPU has BW too (the offsets kernel's masked byte loads).
#[cfg(target_arch = "x86_64")]
fn avx512_sparse() -> bool {
    crate::simd::f32_path() == crate::simd::F32Path::Avx512
        && std::arch::is_x86_feature_detected!("avx512bw")
}

/// A row kernel of the bitmask format: (Σ value·x, values used) over whole mask bytes.
#[cfg(target_arch = "x86_64")]
type BitmaskKernel = unsafe fn(&[u8], &[f32], &[f32]) -> (f32, usize);

/// A row kernel of the 2:4 format.
#[cfg(target_arch = "x86_64")]
type Sparse24Kernel = unsafe fn(&[f32], &[u16], &[f32]) -> f32;

/// The bitmask and 2:4 kernels this CPU runs: AVX-512 where [`avx512_sparse`], AVX2, or
/// none (the scalar loops).
#[cfg(target_arch = "x86_64")]
fn x86_kernels() -> Option<(BitmaskKernel, Sparse24Kernel)> {
    if avx512_sparse() {
        Some((avx512::bitmask_dot, avx512::sparse24_dot))
    } else if has_avx2() {
        Some((avx2::bitmask_dot, avx2::sparse24_dot))
    } else {
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::simd::hsum256 as hsum;

    /// For each mask byte, the lane permutation that moves packed value k to the column of
    /// the mask's k-th set bit (absent lanes take index 0 and are zeroed afterwards).
    static EXPAND: [[i32; 8]; 256] = {
        let mut t = [[0i32; 8]; 256];
        let mut m = 0;
        while m < 256 {
            let mut k = 0;
            let mut j = 0;
            while j < 8 {
                if m & (1 << j) != 0 {
                    t[m][j] = k;
                    k += 1;
                }
                j += 1;
            }
            m += 1;
        }
        t
    };

    /// One 8-column step: the packed values at `p` spread over the columns of mask `m`.
    #[inline(always)]
    unsafe fn expand(m: u8, p: *const f32, bit: __m256i) -> __m256 {
        let vals = _mm256_loadu_ps(p);
        let perm = _mm256_loadu_si256(EXPAND[m as usize].as_ptr() as *const __m256i);
        let present = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(m as i32), bit), bit);
        _mm256_and_ps(
            _mm256_permutevar8x32_ps(vals, perm),
            _mm256_castsi256_ps(present),
        )
    }

    /// Σ over the columns of `masks` of value·x (see `BitmaskMatrix`), and the number of
    /// values used.
    ///
    /// SAFETY: AVX2, FMA and POPCNT present; `x.len() ≥ 8·masks.len()`; `values` readable
    /// for the masks' non-zeros + 8.
    #[target_feature(enable = "avx2,fma,popcnt")]
    pub unsafe fn bitmask_dot(masks: &[u8], values: &[f32], x: &[f32]) -> (f32, usize) {
        let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut p = values.as_ptr();
        let xp = x.as_ptr();
        let pairs = masks.len() / 2;
        for i in 0..pairs {
            let (m0, m1) = (masks[2 * i], masks[2 * i + 1]);
            let v0 = expand(m0, p, bit);
            p = p.add(m0.count_ones() as usize);
            let v1 = expand(m1, p, bit);
            p = p.add(m1.count_ones() as usize);
            acc0 = _mm256_fmadd_ps(v0, _mm256_loadu_ps(xp.add(16 * i)), acc0);
            acc1 = _mm256_fmadd_ps(v1, _mm256_loadu_ps(xp.add(16 * i + 8)), acc1);
        }
        if masks.len() % 2 == 1 {
            let g = masks.len() - 1;
            let v = expand(masks[g], p, bit);
            p = p.add(masks[g].count_ones() as usize);
            acc0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(xp.add(8 * g)), acc0);
        }
        (
            hsum(_mm256_add_ps(acc0, acc1)),
            p.offset_from(values.as_ptr()) as usize,
        )
    }

    /// The 8 activations that the 8 values of 16-column step `s` multiply.
    #[inline(always)]
    unsafe fn gather24(bits: u16, xs: *const f32, shifts: __m256i, base: __m256i) -> __m256 {
        let idx = _mm256_add_epi32(
            _mm256_and_si256(
                _mm256_srlv_epi32(_mm256_set1_epi32(bits as i32), shifts),
                _mm256_set1_epi32(3),
            ),
            base,
        );
        let lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xs), idx);
        let hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xs.add(8)), idx);
        // Lanes 0..4 hold values 0..4 (columns 0..8), lanes 4..8 values 4..8 (8..16).
        _mm256_blend_ps::<0b1111_0000>(lo, hi)
    }

    /// Σ over the row of value·x (see `Sparse24Matrix`).
    ///
    /// SAFETY: AVX2 and FMA present; `values.len() = 8·positions.len()`,
    /// `x.len() ≥ 16·positions.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn sparse24_dot(values: &[f32], positions: &[u16], x: &[f32]) -> f32 {
        let shifts = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        // Values 0,1 / 4,5 come from the first 4 columns of an 8-column half, 2,3 / 6,7 from
        // the last 4.
        let base = _mm256_setr_epi32(0, 0, 4, 4, 0, 0, 4, 4);
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (vp, xp) = (values.as_ptr(), x.as_ptr());
        let n = positions.len();
        let mut s = 0;
        while s + 2 <= n {
            let g0 = gather24(positions[s], xp.add(16 * s), shifts, base);
            let g1 = gather24(positions[s + 1], xp.add(16 * s + 16), shifts, base);
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(8 * s)), g0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(8 * s + 8)), g1, acc1);
            s += 2;
        }
        if s < n {
            let g = gather24(positions[s], xp.add(16 * s), shifts, base);
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(vp.add(8 * s)), g, acc0);
        }
        hsum(_mm256_add_ps(acc0, acc1))
    }
}

/// Columns per block of [`OffsetMatrix`] (offsets within a block fit a byte).
pub const OFFSET_BLOCK: usize = 256;

/// A matrix [rows, cols] stored as its non-zeros, each with its column offset (one byte)
/// within a block of 256 columns, and a count per (row, block). Bytes per weight:
/// `5·density` + 2 per 256 columns — 2.5 at 50% sparsity, 1.5 at 70%, 0.5 at 90%. The kernel's
/// work follows the non-zeros, not the columns: the bitmask format reads fewer bytes at 50–70%
/// but does work for every column and ends up compute-bound on two cores.
#[derive(Debug, Clone, PartialEq)]
pub struct OffsetMatrix {
    rows: usize,
    cols: usize,
    /// [rows, ⌈cols/256⌉] non-zeros per (row, column block).
    counts: Vec<u16>,
    /// Column offset within its block of every non-zero, row by row (+ 8 padding bytes).
    offsets: Vec<u8>,
    /// Every non-zero, in the same order (+ 8 padding values).
    values: Vec<f32>,
    /// [rows + 1]: row r's non-zeros are `starts[r]..starts[r + 1]`.
    starts: Vec<u32>,
}

impl OffsetMatrix {
    /// Packs the non-zeros of the dense `w` [rows, cols].
    pub fn from_dense(w: &[f32], rows: usize, cols: usize) -> Result<Self> {
        check_shape(w, rows, cols, 1, "offset matrix")?;
        let nonzero = w.iter().filter(|v| **v != 0.0).count();
        if nonzero > u32::MAX as usize - 8 {
            return Err(Error::invalid("offset matrix: more than 2^32 non-zeros"));
        }
        let bpr = cols.div_ceil(OFFSET_BLOCK);
        let mut counts = Vec::with_capacity(rows * bpr);
        let mut offsets = Vec::with_capacity(nonzero + 8);
        let mut values = Vec::with_capacity(nonzero + 8);
        let mut starts = Vec::with_capacity(rows + 1);
        starts.push(0);
        for row in w.chunks_exact(cols) {
            for block in row.chunks(OFFSET_BLOCK) {
                let before = values.len();
                for (j, &v) in block.iter().enumerate() {
                    if v != 0.0 {
                        offsets.push(j as u8);
                        values.push(v);
                    }
                }
                counts.push((values.len() - before) as u16);
            }
            starts.push(values.len() as u32);
        }
        offsets.extend([0; 8]);
        values.extend([0.0; 8]);
        Ok(Self {
            rows,
            cols,
            counts,
            offsets,
            values,
            starts,
        })
    }

    /// Stored non-zeros.
    pub fn nonzeros(&self) -> usize {
        self.values.len() - 8
    }

    /// Bytes a matrix-vector product streams.
    pub fn bytes(&self) -> usize {
        2 * self.counts.len() + self.offsets.len() + 4 * self.values.len() + 4 * self.starts.len()
    }

    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        let bpr = self.cols.div_ceil(OFFSET_BLOCK);
        for r in 0..self.rows {
            let mut p = self.starts[r] as usize;
            for b in 0..bpr {
                for _ in 0..self.counts[r * bpr + b] {
                    out[r * self.cols + b * OFFSET_BLOCK + self.offsets[p] as usize] =
                        self.values[p];
                    p += 1;
                }
            }
        }
        out
    }

    #[inline]
    fn row_dot(&self, r: usize, x: &[f32]) -> f32 {
        let bpr = self.cols.div_ceil(OFFSET_BLOCK);
        let counts = &self.counts[r * bpr..(r + 1) * bpr];
        let p = self.starts[r] as usize;
        #[cfg(target_arch = "x86_64")]
        if avx512_sparse() {
            // SAFETY: AVX-512 F, BW, VL present; offsets and values hold this row's
            // non-zeros (+ 8 padding entries), each offset inside its block of x.
            return unsafe { avx512::offset_dot(counts, &self.offsets[p..], &self.values[p..], x) };
        }
        offset_dot(counts, &self.offsets[p..], &self.values[p..], x)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::OFFSET_BLOCK;
    use std::arch::x86_64::*;

    /// [`super::avx2::bitmask_dot`] with 16 columns per step: two mask bytes are the lane
    /// mask of one `vexpandps` load, which reads the next `popcount` packed values and
    /// spreads them over the set lanes (the rest zero) — no permutation table.
    ///
    /// # Safety
    /// AVX-512 F present; `x.len() ≥ 8·masks.len()`; `values` holds the masks' non-zeros.
    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub unsafe fn bitmask_dot(masks: &[u8], values: &[f32], x: &[f32]) -> (f32, usize) {
        let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut p = values.as_ptr();
        let xp = x.as_ptr();
        let steps = masks.len() / 2;
        let mask = |i: usize| u16::from_le_bytes([masks[2 * i], masks[2 * i + 1]]);
        let mut i = 0;
        while i + 2 <= steps {
            let (m0, m1) = (mask(i), mask(i + 1));
            let v0 = _mm512_maskz_expandloadu_ps(m0, p);
            p = p.add(m0.count_ones() as usize);
            let v1 = _mm512_maskz_expandloadu_ps(m1, p);
            p = p.add(m1.count_ones() as usize);
            acc0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(xp.add(16 * i)), acc0);
            acc1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(xp.add(16 * i + 16)), acc1);
            i += 2;
        }
        if i < steps {
            let m = mask(i);
            let v = _mm512_maskz_expandloadu_ps(m, p);
            p = p.add(m.count_ones() as usize);
            acc0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(xp.add(16 * i)), acc0);
        }
        if masks.len() % 2 == 1 {
            // The last 8 columns: a mask of one byte, x read through the same 8 lanes.
            let m = masks[masks.len() - 1] as u16;
            let v = _mm512_maskz_expandloadu_ps(m, p);
            p = p.add(m.count_ones() as usize);
            let xv = _mm512_maskz_loadu_ps(0x00FF, xp.add(16 * steps));
            acc1 = _mm512_fmadd_ps(v, xv, acc1);
        }
        (
            _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)),
            p.offset_from(values.as_ptr()) as usize,
        )
    }

    /// [`super::avx2::sparse24_dot`] with two 16-column steps (16 values) per register: the
    /// 16 two-bit positions become indices into the 32 activations of both steps, and one
    /// `vpermt2ps` fetches them.
    ///
    /// # Safety
    /// AVX-512 F present; `values.len() = 8·positions.len()`, `x.len() ≥ 16·positions.len()`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn sparse24_dot(values: &[f32], positions: &[u16], x: &[f32]) -> f32 {
        // Lane k takes bits 2k..2k + 2 of the two steps' 32 position bits; values 2j, 2j + 1
        // come from the group of columns 4j..4j + 4 (steps back to back: 32 columns).
        let shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let base = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
        let three = _mm512_set1_epi32(3);
        let index = |bits: u32| {
            let b = _mm512_srlv_epi32(_mm512_set1_epi32(bits as i32), shifts);
            _mm512_add_epi32(_mm512_and_si512(b, three), base)
        };
        let mut acc = _mm512_setzero_ps();
        let (vp, xp) = (values.as_ptr(), x.as_ptr());
        let n = positions.len();
        let mut s = 0;
        while s + 2 <= n {
            let bits = positions[s] as u32 | (positions[s + 1] as u32) << 16;
            let xs = _mm512_permutex2var_ps(
                _mm512_loadu_ps(xp.add(16 * s)),
                index(bits),
                _mm512_loadu_ps(xp.add(16 * s + 16)),
            );
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(8 * s)), xs, acc);
            s += 2;
        }
        if s < n {
            // One step left: its indices stay below 16, lanes 8..16 are masked off.
            let xs =
                _mm512_permutexvar_ps(index(positions[s] as u32), _mm512_loadu_ps(xp.add(16 * s)));
            let vs = _mm512_maskz_loadu_ps(0x00FF, vp.add(8 * s));
            acc = _mm512_fmadd_ps(vs, xs, acc);
        }
        _mm512_reduce_add_ps(acc)
    }

    /// [`super::offset_dot`] with 16 non-zeros per step: their byte offsets widened to 32
    /// bits and the matching activations fetched with one `vgatherdps`.
    ///
    /// # Safety
    /// AVX-512 F, BW, VL present; `offsets`/`values` hold at least Σ counts entries, each offset is a
    /// column of its 256-column block inside `x`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub unsafe fn offset_dot(counts: &[u16], offsets: &[u8], values: &[f32], x: &[f32]) -> f32 {
        let mut p = 0;
        let mut acc = _mm512_setzero_ps();
        for (b, &n) in counts.iter().enumerate() {
            let n = n as usize;
            let xb = x.as_ptr().add(b * OFFSET_BLOCK);
            let (offs, vals) = (offsets.as_ptr().add(p), values.as_ptr().add(p));
            let mut k = 0;
            while k + 16 <= n {
                let idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(offs.add(k) as *const __m128i));
                let xv = _mm512_i32gather_ps::<4>(idx, xb);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(vals.add(k)), xv, acc);
                k += 16;
            }
            if k < n {
                // The last n − k (< 16) non-zeros: the same gather under a lane mask (masked
                // lanes load nothing), instead of one scalar step each — at 90% sparsity a
                // 256-column block holds ~26 non-zeros, 10 of them past the last full step.
                let m: __mmask16 = (1u16 << (n - k)) - 1;
                let idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, offs.add(k) as *const i8));
                let xv = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, idx, xb);
                acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, vals.add(k)), xv, acc);
            }
            p += n;
        }
        _mm512_reduce_add_ps(acc)
    }
}

/// One row's dot product: scalar loads, eight independent sums (on this machine's AMD cores
/// `vgatherdps` costs about four cycles per element, more than a scalar load each).
fn offset_dot(counts: &[u16], offsets: &[u8], values: &[f32], x: &[f32]) -> f32 {
    let mut p = 0;
    let mut acc = [0f32; 8];
    for (b, &n) in counts.iter().enumerate() {
        let n = n as usize;
        let base = b * OFFSET_BLOCK;
        let width = OFFSET_BLOCK.min(x.len().saturating_sub(base));
        let xb = &x[base..base + width];
        let (offs, vals) = (&offsets[p..p + n], &values[p..p + n]);
        // SAFETY (the unchecked loads below): `OffsetMatrix::from_dense` stores an offset only
        // for a column of this block, so every offset is < width = xb.len() for a row of
        // `cols` = x.len() values (checked by the callers' length checks).
        let mut k = 0;
        while k + 8 <= n {
            for l in 0..8 {
                unsafe {
                    let o = *offs.get_unchecked(k + l) as usize;
                    acc[l] += *vals.get_unchecked(k + l) * *xb.get_unchecked(o);
                }
            }
            k += 8;
        }
        while k < n {
            acc[0] += vals[k] * xb[offs[k] as usize];
            k += 1;
        }
        p += n;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// A sparse matrix in either format.
#[derive(Debug, Clone, PartialEq)]
pub enum SparseMatrix {
    Bitmask(BitmaskMatrix),
    Offsets(OffsetMatrix),
    TwoFour(Sparse24Matrix),
}

impl SparseMatrix {
    pub fn rows(&self) -> usize {
        match self {
            Self::Bitmask(m) => m.rows,
            Self::Offsets(m) => m.rows,
            Self::TwoFour(m) => m.rows,
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Self::Bitmask(m) => m.cols,
            Self::Offsets(m) => m.cols,
            Self::TwoFour(m) => m.cols,
        }
    }

    pub fn bytes(&self) -> usize {
        match self {
            Self::Bitmask(m) => m.bytes(),
            Self::Offsets(m) => m.bytes(),
            Self::TwoFour(m) => m.bytes(),
        }
    }

    pub fn to_dense(&self) -> Vec<f32> {
        match self {
            Self::Bitmask(m) => m.to_dense(),
            Self::Offsets(m) => m.to_dense(),
            Self::TwoFour(m) => m.to_dense(),
        }
    }

    #[inline]
    fn row_dot(&self, r: usize, x: &[f32]) -> f32 {
        match self {
            Self::Bitmask(m) => m.row_dot(r, x),
            Self::Offsets(m) => m.row_dot(r, x),
            Self::TwoFour(m) => m.row_dot(r, x),
        }
    }

    /// y [rows] = W·x [cols], output rows split across the current rayon pool.
    pub fn matvec(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        check_len("sparse matvec x", x.len(), self.cols())?;
        check_len("sparse matvec y", y.len(), self.rows())?;
        let rows = self.rows();
        if rows == 0 {
            return Ok(());
        }
        let bytes_per_row = self.bytes() / rows;
        if self.bytes() < 64 * 1024 {
            y.iter_mut()
                .enumerate()
                .for_each(|(r, v)| *v = self.row_dot(r, x));
            return Ok(());
        }
        // ~32 KiB of weights per task.
        let per_task = (32 * 1024 / bytes_per_row.max(1)).max(1);
        y.par_chunks_mut(per_task).enumerate().for_each(|(c, ys)| {
            for (j, v) in ys.iter_mut().enumerate() {
                *v = self.row_dot(c * per_task + j, x);
            }
        });
        Ok(())
    }

    /// Y [n, rows] = X [n, cols]·Wᵀ (prefill): each task reads its rows' weights once and
    /// applies them to all n inputs while they are in cache, writing the transposed result
    /// into `y_t` [rows, n]; `y` gets it back in row-major order.
    pub fn matmul(&self, x: &[f32], n: usize, y_t: &mut [f32], y: &mut [f32]) -> Result<()> {
        let (rows, cols) = (self.rows(), self.cols());
        check_len("sparse matmul x", x.len(), n * cols)?;
        check_len("sparse matmul y_t", y_t.len(), n * rows)?;
        check_len("sparse matmul y", y.len(), n * rows)?;
        if n == 0 || rows == 0 {
            return Ok(());
        }
        let per_task = rows.div_ceil(4 * crate::par::num_threads()).max(1);
        y_t.par_chunks_mut(per_task * n)
            .enumerate()
            .for_each(|(c, yc)| {
                for (j, yo) in yc.chunks_exact_mut(n).enumerate() {
                    let o = c * per_task + j;
                    for (r, v) in yo.iter_mut().enumerate() {
                        *v = self.row_dot(o, &x[r * cols..(r + 1) * cols]);
                    }
                }
            });
        for r in 0..n {
            for o in 0..rows {
                y[r * rows + o] = y_t[o * n + r];
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A random [rows, cols] matrix with about `sparsity` of its entries zero.
    fn random(rows: usize, cols: usize, sparsity: f64, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as f64 / (1u64 << 31) as f64
        };
        (0..rows * cols)
            .map(|_| {
                let keep = next() >= sparsity;
                let v = (next() * 2.0 - 1.0) as f32;
                if keep {
                    v
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Keeps the 2 largest magnitudes of every group of 4.
    fn two_four(mut w: Vec<f32>) -> Vec<f32> {
        for g in w.chunks_exact_mut(4) {
            let mut idx = [0usize, 1, 2, 3];
            idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
            g[idx[2]] = 0.0;
            g[idx[3]] = 0.0;
        }
        w
    }

    fn dense_matvec(w: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows)
            .map(|r| {
                w[r * cols..(r + 1) * cols]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{what}[{i}]: {a} vs {b}"
            );
        }
    }

    /// Every x86 kernel pair (bitmask, 2:4) this CPU can run, by name.
    #[cfg(target_arch = "x86_64")]
    fn every_x86_kernel() -> Vec<(&'static str, BitmaskKernel, Sparse24Kernel)> {
        let mut k: Vec<(&'static str, BitmaskKernel, Sparse24Kernel)> = Vec::new();
        if has_avx2() {
            k.push(("avx2", avx2::bitmask_dot, avx2::sparse24_dot));
            if std::arch::is_x86_feature_detected!("avx512f") {
                k.push(("avx512", avx512::bitmask_dot, avx512::sparse24_dot));
            }
        }
        k
    }

    #[cfg(target_arch = "x86_64")]
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_x86_sparse_kernel_equals_its_scalar_twin(rows in 1usize..12, cols in 1usize..700,
                sparsity in 0.0f64..1.0, seed in 0u64..1000) {
            let w = random(rows, cols, sparsity, seed);
            let x = random(1, cols, 0.0, seed + 1);
            let m = BitmaskMatrix::from_dense(&w, rows, cols).unwrap();
            let (steps, c24) = (cols.div_ceil(16), 16 * cols.div_ceil(16));
            let w24 = two_four(random(rows, c24, sparsity / 2.0, seed + 2));
            let x24 = random(1, c24, 0.0, seed + 3);
            let m24 = Sparse24Matrix::from_dense(&w24, rows, c24).unwrap();
            // Offsets: the AVX-512 kernel (16 gathered per step, a masked gather for the
            // rest of each block) against the scalar loop.
            let mo = OffsetMatrix::from_dense(&w, rows, cols).unwrap();
            if avx512_sparse() {
                let bpr = cols.div_ceil(OFFSET_BLOCK);
                for r in 0..rows {
                    let counts = &mo.counts[r * bpr..(r + 1) * bpr];
                    let p = mo.starts[r] as usize;
                    // SAFETY: AVX-512 F/BW/VL detected; the row's non-zeros are in bounds.
                    let got = unsafe { avx512::offset_dot(counts, &mo.offsets[p..], &mo.values[p..], &x) };
                    let want = offset_dot(counts, &mo.offsets[p..], &mo.values[p..], &x);
                    prop_assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "avx512 offsets row {}: {} vs {}", r, got, want);
                }
            }
            for (name, bitmask, sparse24) in every_x86_kernel() {
                for r in 0..rows {
                    let (masks, values) = (m.row_masks(r), &m.values[m.starts[r] as usize..]);
                    let full = cols / 8;
                    // SAFETY: the kernel's features were detected; the matrix keeps its
                    // padding and x holds 8 floats per full mask byte.
                    let (sum, used) = unsafe { bitmask(&masks[..full], values, &x) };
                    let stored: usize = masks[..full].iter().map(|b| b.count_ones() as usize).sum();
                    prop_assert_eq!(used, stored, "{} row {}", name, r);
                    let got = sum + bitmask_dot_scalar(&masks[full..], &values[used..], &x[8 * full..]);
                    let want = bitmask_dot_scalar(masks, values, &x);
                    prop_assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{} bitmask row {}: {} vs {}", name, r, got, want);
                    let (v24, p24) = (&m24.values[r * c24 / 2..][..c24 / 2], &m24.positions[r * steps..][..steps]);
                    // SAFETY: as above; 8 values and 16 activations per position word.
                    let got = unsafe { sparse24(v24, p24, &x24) };
                    let want = sparse24_dot_scalar(v24, p24, &x24);
                    prop_assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{} 2:4 row {}: {} vs {}", name, r, got, want);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn bitmask_matvec_equals_dense(rows in 1usize..70, cols in 1usize..300,
                                       sparsity in 0.0f64..1.0, seed in 0u64..1000) {
            let w = random(rows, cols, sparsity, seed);
            let x = random(1, cols, 0.0, seed + 1);
            let m = BitmaskMatrix::from_dense(&w, rows, cols).unwrap();
            prop_assert_eq!(m.to_dense(), w.clone());
            prop_assert_eq!(m.nonzeros(), w.iter().filter(|v| **v != 0.0).count());
            let sm = SparseMatrix::Bitmask(m.clone());
            let mut y = vec![0f32; rows];
            sm.matvec(&x, &mut y).unwrap();
            assert_close(&y, &dense_matvec(&w, &x, rows, cols), "bitmask");
            for r in 0..rows {
                let scalar = bitmask_dot_scalar(
                    m.row_masks(r),
                    &m.values[m.starts[r] as usize..], &x);
                prop_assert!((scalar - y[r]).abs() <= 1e-4 * (1.0 + y[r].abs()));
            }
        }

        #[test]
        fn offset_matvec_equals_dense(rows in 1usize..40, cols in 1usize..700,
                                      sparsity in 0.0f64..1.0, seed in 0u64..1000) {
            let w = random(rows, cols, sparsity, seed);
            let x = random(1, cols, 0.0, seed + 1);
            let m = OffsetMatrix::from_dense(&w, rows, cols).unwrap();
            prop_assert_eq!(m.to_dense(), w.clone());
            prop_assert_eq!(m.nonzeros(), w.iter().filter(|v| **v != 0.0).count());
            let sm = SparseMatrix::Offsets(m.clone());
            let mut y = vec![0f32; rows];
            sm.matvec(&x, &mut y).unwrap();
            assert_close(&y, &dense_matvec(&w, &x, rows, cols), "offsets");
        }

        #[test]
        fn two_four_matvec_equals_dense(rows in 1usize..70, steps in 1usize..20,
                                        seed in 0u64..1000, extra in 0.0f64..0.6) {
            let cols = 16 * steps;
            // 2:4 from magnitudes, plus extra zeros so some groups keep fewer than 2.
            let w: Vec<f32> = two_four(random(rows, cols, 0.0, seed))
                .into_iter().zip(random(rows, cols, extra, seed + 7))
                .map(|(a, b)| if b == 0.0 { 0.0 } else { a }).collect();
            prop_assert!(is_2_4(&w, cols));
            let x = random(1, cols, 0.0, seed + 1);
            let m = Sparse24Matrix::from_dense(&w, rows, cols).unwrap();
            prop_assert_eq!(m.bytes(), rows * cols / 16 * 34);
            prop_assert_eq!(m.to_dense(), w.clone());
            let sm = SparseMatrix::TwoFour(m.clone());
            let mut y = vec![0f32; rows];
            sm.matvec(&x, &mut y).unwrap();
            assert_close(&y, &dense_matvec(&w, &x, rows, cols), "2:4");
            let steps_per_row = cols / 16;
            for r in 0..rows {
                let scalar = sparse24_dot_scalar(
                    &m.values[r * cols / 2..(r + 1) * cols / 2],
                    &m.positions[r * steps_per_row..(r + 1) * steps_per_row], &x);
                prop_assert!((scalar - y[r]).abs() <= 1e-4 * (1.0 + y[r].abs()));
            }
        }
    }

    #[test]
    fn large_matvec_and_matmul_use_threads_and_agree() {
        let (rows, cols, n) = (700, 512, 5);
        let w = random(rows, cols, 0.7, 3);
        let x = random(n, cols, 0.0, 4);
        let want: Vec<f32> = x
            .chunks_exact(cols)
            .flat_map(|xr| dense_matvec(&w, xr, rows, cols))
            .collect();
        for m in [
            SparseMatrix::Bitmask(BitmaskMatrix::from_dense(&w, rows, cols).unwrap()),
            SparseMatrix::Offsets(OffsetMatrix::from_dense(&w, rows, cols).unwrap()),
            SparseMatrix::TwoFour(
                Sparse24Matrix::from_dense(&two_four(w.clone()), rows, cols).unwrap(),
            ),
        ] {
            let dense = m.to_dense();
            let want_m: Vec<f32> = x
                .chunks_exact(cols)
                .flat_map(|xr| dense_matvec(&dense, xr, rows, cols))
                .collect();
            let mut y = vec![0f32; rows];
            m.matvec(&x[..cols], &mut y).unwrap();
            assert_close(&y, &want_m[..rows], "matvec");
            let (mut y_t, mut yn) = (vec![0f32; n * rows], vec![0f32; n * rows]);
            m.matmul(&x, n, &mut y_t, &mut yn).unwrap();
            assert_close(&yn, &want_m, "matmul");
        }
        // The bitmask keeps the 70%-sparse matrix exactly.
        let m = SparseMatrix::Bitmask(BitmaskMatrix::from_dense(&w, rows, cols).unwrap());
        let mut y = vec![0f32; rows];
        m.matvec(&x[..cols], &mut y).unwrap();
        assert_close(&y, &want[..rows], "bitmask vs original");
        assert!(
            m.bytes() < rows * cols * 4 * 40 / 100,
            "70% sparse: {} bytes",
            m.bytes()
        );
    }

    #[test]
    fn bad_shapes_are_errors() {
        let w = vec![1.0f32, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        assert!(BitmaskMatrix::from_dense(&w, 1, 8).is_ok());
        assert!(BitmaskMatrix::from_dense(&w, 2, 4).is_ok(), "4 columns");
        assert!(BitmaskMatrix::from_dense(&w, 1, 16).is_err(), "length");
        let mut w16 = vec![0f32; 16];
        w16[..3].copy_from_slice(&[1.0, 2.0, 3.0]);
        assert!(!is_2_4(&w16, 16));
        assert!(Sparse24Matrix::from_dense(&w16, 1, 16).is_err(), "3 of 4");
        w16[2] = 0.0;
        assert!(Sparse24Matrix::from_dense(&w16, 1, 16).is_ok());
        assert!(
            Sparse24Matrix::from_dense(&w16[..8], 1, 8).is_err(),
            "8 columns"
        );
        let m = SparseMatrix::Bitmask(BitmaskMatrix::from_dense(&w, 1, 8).unwrap());
        assert!(m.matvec(&[0.0; 7], &mut [0.0]).is_err());
    }
}
