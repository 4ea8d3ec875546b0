//! Quantised matrices repacked for decoding: eight rows interleaved so that one AVX register
//! holds one value per row and a matrix-vector product computes eight outputs at once.
//!
//! The GGUF/ggml layout ([`crate::quant`]) stores each row's blocks back to back. A dot
//! product over it spends most of its instructions per block on bookkeeping: broadcasting and
//! converting the block's f16 scale, reducing 8 lanes to one sum per row. Repacked at load
//! time (llama.cpp's "repack" CPU buffers do the same), a group of 8 rows stores for each
//! block column `i`:
//!
//! ```text
//! scales [8 × f16]       one per row: a single F16C conversion gives the 8 lanes
//! (Q4_1) mins [8 × f16]
//! quants                 32-byte chunks, chunk j = for r in 0..8: 4 bytes of row r
//!   Q8_0: 8 chunks, chunk j holds weights 4j..4j+4 of each row
//!   Q4_0/Q4_1: 4 chunks, chunk j holds packed bytes 4j..4j+4 of each row: its low nibbles
//!         are weights 4j..4j+4, its high nibbles weights 16+4j..16+4j+4
//! ```
//!
//! so that lane r of `maddubs` + `madd` over a chunk and a broadcast of the matching 4
//! activation bytes is row r's partial sum. The activation is Q8_0 as before. Q4 weights are
//! multiplied as unsigned nibbles (no sign fix-ups): Σ (q − 8)·x = Σ q·x − 8·Σ x for Q4_0, and
//! Q4_1 adds m·d_x·Σ q_x. The same bytes are read as in the ggml layout; rows left over
//! after the last full group of 8 stay in that layout.
//!
//! On aarch64 the same layout feeds [`crate::neon`]'s kernels: a chunk is two 16-byte
//! registers (rows 0–3, rows 4–7) and `sdot` by element multiplies each row's 4 bytes by the
//! matching 4 activation bytes, the by-element form standing in for the broadcast.

use crate::check_len;
use crate::kquant::{quantize_q8_k, BlockQ8K, KActs, KPairs, KUnsigned, QK_K};
use crate::par::SendPtr;
use crate::quant::{quantize_q8_0, BlockQ8_0, QuantMatrix, QK};
use half::f16;
use rayon::prelude::*;
use slm_core::{Error, Result};

/// Rows per interleaved group.
pub const ROWS: usize = 8;

/// 32 bytes, aligned for AVX loads.
#[repr(C, align(32))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Chunk(pub [u8; 32]);

/// Which blocks were repacked.
pub use crate::quant::BlockKind as Kind;

/// Activation rows quantised to Q8_0 for the products here, with what every group kernel
/// needs of each block computed once per product instead of once per 8 output rows: the
/// block's scale as f32 and the sum of its quants (the Q4 kernels' zero-point term).
/// Reused across calls: [`QuantActs::quantize`] allocates only when a product needs more
/// blocks than any before it.
#[derive(Debug, Clone, Default)]
pub struct QuantActs {
    pub(crate) q: Vec<BlockQ8_0>,
    d: Vec<f32>,
    pub(crate) sum: Vec<i32>,
    /// For the k-quant products ([`crate::kquant`]): the rows as Q8_K super-blocks.
    pub(crate) k: Vec<BlockQ8K>,
    /// For the AVX-512 Q4_K and Q5_K kernels only: each Q8_K block's quants in the order
    /// their registers take them ([`crate::kquant::KPairs`]), laid out once per product.
    pub(crate) k_pairs: Vec<KPairs>,
    /// For the AVX-512 Q6_K multi-row kernel only (prefill): each Q8_K block's quants plus
    /// 128 ([`crate::kquant::KUnsigned`]).
    pub(crate) k_unsigned: Vec<KUnsigned>,
    /// For the AVX-512 kernels only: each block's quants as the four registers those
    /// kernels multiply with (`Pair` p: dword 2p of the block in lanes 0–7, dword 2p + 1 in
    /// lanes 8–15), laid out once per product instead of once per 8 output rows.
    pairs: Vec<Pair>,
}

/// 64 bytes, aligned for AVX-512 loads: one activation register of the AVX-512 kernels.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair(pub [u8; 64]);

impl Default for Pair {
    fn default() -> Self {
        Self([0; 64])
    }
}

/// Registers per activation block in [`QuantActs::pairs`].
const PAIRS: usize = 4;

/// Most activation blocks (all rows) whose registers are laid out ([`QuantActs::spread`]).
const SPREAD_MAX_BLOCKS: usize = 128;

/// One activation row's blocks as the kernels read them.
#[derive(Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub(crate) q: &'a [BlockQ8_0],
    pub(crate) d: &'a [f32],
    pub(crate) sum: &'a [i32],
    /// [nb·4] when the AVX-512 path is in use, else empty.
    pub(crate) pairs: &'a [Pair],
}

impl QuantActs {
    /// Room for `blocks` blocks (all rows together) without reallocating.
    pub fn with_capacity(blocks: usize) -> Self {
        Self {
            q: Vec::with_capacity(blocks),
            d: Vec::with_capacity(blocks),
            sum: Vec::with_capacity(blocks),
            k: Vec::new(),
            k_pairs: Vec::new(),
            k_unsigned: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// Quantises `x` (rows of a length divisible by 256, back to back) to Q8_K super-blocks,
    /// as llama.cpp quantises activations for its k-quant products; `layout`: what else the
    /// AVX-512 kernel of the weights' type reads, laid out when that path runs.
    pub fn quantize_k(&mut self, x: &[f32], layout: KActs) -> Result<()> {
        if !x.len().is_multiple_of(QK_K) {
            return Err(Error::invalid(format!(
                "activations: {} values is not a multiple of the {QK_K}-value super-block",
                x.len()
            )));
        }
        self.k.resize(x.len() / QK_K, BlockQ8K::default());
        quantize_q8_k(x, &mut self.k)?;
        self.k_pairs.clear();
        self.k_unsigned.clear();
        #[cfg(target_arch = "x86_64")]
        if group_path() == GroupPath::Avx512Vnni {
            match layout {
                KActs::Pairs => self.k_pairs.extend(self.k.iter().map(KPairs::of)),
                KActs::Unsigned => self.k_unsigned.extend(self.k.iter().map(KUnsigned::of)),
                KActs::Plain => {}
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = layout;
        Ok(())
    }

    /// Quantises `x` (rows of a length divisible by 32, back to back) and summarises its blocks.
    pub fn quantize(&mut self, x: &[f32]) -> Result<()> {
        if !x.len().is_multiple_of(QK) {
            return Err(Error::invalid(format!(
                "activations: {} values is not a multiple of the {QK}-value block",
                x.len()
            )));
        }
        let n = x.len() / QK;
        self.q.resize(n, BlockQ8_0::default());
        quantize_q8_0(x, &mut self.q)?;
        self.d.clear();
        self.d
            .extend(self.q.iter().map(|b| f16::from_bits(b.d).to_f32()));
        self.sum.clear();
        self.sum.extend(
            self.q
                .iter()
                .map(|b| b.qs.iter().map(|&v| v as i32).sum::<i32>()),
        );
        self.pairs.clear();
        Ok(())
    }

    /// Lays out the AVX-512 kernels' activation registers (4 × 64 bytes per block) when the
    /// AVX-512 path is in use and they stay small (≤ [`SPREAD_MAX_BLOCKS`] blocks, 32 KiB:
    /// within L1 for the kernels' repeated reads). Larger products (prefill) permute each
    /// block's quants in registers instead, which reads 8× fewer bytes per weight group.
    fn spread(&mut self) {
        self.pairs.clear();
        #[cfg(target_arch = "x86_64")]
        if group_path() == GroupPath::Avx512Vnni && self.q.len() <= SPREAD_MAX_BLOCKS {
            self.pairs.resize(self.q.len() * PAIRS, Pair::default());
            // SAFETY: the AVX-512 path is only chosen when the CPU has its features; `pairs`
            // holds 4 registers per block of `q`.
            unsafe { avx512::spread_pairs(&self.q, &mut self.pairs) };
        }
    }

    /// The quantised blocks.
    pub fn blocks(&self) -> &[BlockQ8_0] {
        &self.q
    }

    /// Row `r` of rows of `nb` blocks.
    fn row(&self, r: usize, nb: usize) -> ActRow<'_> {
        let at = r * nb..(r + 1) * nb;
        let pairs = if self.pairs.is_empty() {
            &[][..]
        } else {
            &self.pairs[at.start * PAIRS..at.end * PAIRS]
        };
        ActRow {
            q: &self.q[at.clone()],
            d: &self.d[at.clone()],
            sum: &self.sum[at],
            pairs,
        }
    }
}

impl Kind {
    /// Quant chunks per group and block column.
    fn chunks(self) -> usize {
        match self {
            Self::Q8_0 => 8,
            Self::Q4_0 | Self::Q4_1 => 4,
        }
    }
}

/// A quantised matrix [rows, nb·32] in the interleaved layout (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct InterleavedMatrix {
    kind: Kind,
    rows: usize,
    /// Blocks per row.
    nb: usize,
    /// [groups, nb, 8] f16 bits.
    scales: Vec<u16>,
    /// [groups, nb, 8] f16 bits (Q4_1 only).
    mins: Vec<u16>,
    /// [groups, nb, chunks]
    quants: Vec<Chunk>,
    /// The last rows % 8 rows, in the ggml layout.
    tail: QuantMatrix,
}

impl InterleavedMatrix {
    /// Repacks `w` [rows, cols] (ggml layout, `cols` a multiple of 32).
    pub fn new(w: &QuantMatrix, rows: usize, cols: usize) -> Result<Self> {
        if !cols.is_multiple_of(QK) || rows == 0 {
            return Err(Error::invalid(format!(
                "interleaved matrix: {rows} × {cols} (columns must be a multiple of {QK})"
            )));
        }
        let nb = cols / QK;
        check_len("interleaved matrix blocks", w.blocks(), rows * nb)?;
        let (groups, full) = (rows / ROWS, rows / ROWS * ROWS);
        let kind = match w {
            QuantMatrix::Q8_0(_) => Kind::Q8_0,
            QuantMatrix::Q4_0(_) => Kind::Q4_0,
            QuantMatrix::Q4_1(_) => Kind::Q4_1,
        };
        let chunks = kind.chunks();
        let mut scales = vec![0u16; groups * nb * ROWS];
        let mut mins = vec![
            0u16;
            if kind == Kind::Q4_1 {
                groups * nb * ROWS
            } else {
                0
            }
        ];
        let mut quants = vec![Chunk::default(); groups * nb * chunks];
        // Group g's block column i: the 8 rows' scales (and minima), then their quant chunks
        // (byte `k` of each row's block: Q8_0 weights, or packed Q4 nibble pairs). Groups are
        // independent: filled in parallel (large models repack ~1 GB at load, and k-quant
        // prefill repacks once per chunk).
        let fill = |g: usize, sc: &mut [u16], mn: &mut [u16], qs: &mut [Chunk]| {
            for i in 0..nb {
                let at = |r: usize| (g * ROWS + r) * nb + i;
                let (sc, qs) = (&mut sc[i * ROWS..][..ROWS], &mut qs[i * chunks..][..chunks]);
                match w {
                    QuantMatrix::Q8_0(b) => {
                        sc.iter_mut().enumerate().for_each(|(r, d)| *d = b[at(r)].d);
                        for (j, c) in qs.iter_mut().enumerate() {
                            *c = interleave(|r| {
                                std::array::from_fn(|k| b[at(r)].qs[4 * j + k] as u8)
                            });
                        }
                    }
                    QuantMatrix::Q4_0(b) => {
                        sc.iter_mut().enumerate().for_each(|(r, d)| *d = b[at(r)].d);
                        for (j, c) in qs.iter_mut().enumerate() {
                            *c = interleave(|r| std::array::from_fn(|k| b[at(r)].qs[4 * j + k]));
                        }
                    }
                    QuantMatrix::Q4_1(b) => {
                        sc.iter_mut().enumerate().for_each(|(r, d)| *d = b[at(r)].d);
                        let mn = &mut mn[i * ROWS..][..ROWS];
                        mn.iter_mut().enumerate().for_each(|(r, m)| *m = b[at(r)].m);
                        for (j, c) in qs.iter_mut().enumerate() {
                            *c = interleave(|r| std::array::from_fn(|k| b[at(r)].qs[4 * j + k]));
                        }
                    }
                }
            }
        };
        // Per-group slices of the three arrays; a matrix without minima hands out empty ones.
        let group_mins: Vec<&mut [u16]> = if mins.is_empty() {
            (0..groups).map(|_| <&mut [u16]>::default()).collect()
        } else {
            mins.chunks_mut(nb * ROWS).collect()
        };
        if groups > 0 && nb > 0 {
            scales
                .par_chunks_mut(nb * ROWS)
                .zip(quants.par_chunks_mut(nb * chunks))
                .zip(group_mins)
                .enumerate()
                .for_each(|(g, ((sc, qs), mn))| fill(g, sc, mn, qs));
        }
        let tail = match w {
            QuantMatrix::Q8_0(b) => QuantMatrix::Q8_0(b[full * nb..].to_vec()),
            QuantMatrix::Q4_0(b) => QuantMatrix::Q4_0(b[full * nb..].to_vec()),
            QuantMatrix::Q4_1(b) => QuantMatrix::Q4_1(b[full * nb..].to_vec()),
        };
        Ok(Self {
            kind,
            rows,
            nb,
            scales,
            mins,
            quants,
            tail,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.nb * QK
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Bytes a matrix-vector product streams (as many as the ggml layout).
    pub fn bytes(&self) -> usize {
        2 * (self.scales.len() + self.mins.len())
            + std::mem::size_of::<Chunk>() * self.quants.len()
            + self.tail.bytes()
    }

    fn groups(&self) -> usize {
        self.rows / ROWS
    }

    /// Group `g`'s scales [nb, 8], minima [nb, 8] (Q4_1; empty otherwise) and quant chunks
    /// [nb, chunks].
    fn group_slices(&self, g: usize) -> (&[u16], &[u16], &[Chunk]) {
        let nb = self.nb;
        let c = self.kind.chunks();
        let mins = match self.kind {
            Kind::Q4_1 => &self.mins[g * nb * ROWS..(g + 1) * nb * ROWS],
            _ => &[][..],
        };
        (
            &self.scales[g * nb * ROWS..(g + 1) * nb * ROWS],
            mins,
            &self.quants[g * nb * c..(g + 1) * nb * c],
        )
    }

    /// Rows `8g..8g + 8` dotted with `R` quantised activation rows at once (each weight chunk
    /// loaded once for all of them) by the SIMD kernel [`group_path`] chose — AVX-512 VNNI,
    /// AVX2 or NEON — or None for the scalar twin. Every row of `xs` must have nb blocks.
    #[inline]
    fn group_simd<const R: usize>(
        &self,
        g: usize,
        xs: [ActRow<'_>; R],
    ) -> Option<[[f32; ROWS]; R]> {
        let (scales, mins, quants) = self.group_slices(g);
        let path = group_path();
        #[cfg(target_arch = "x86_64")]
        if path == GroupPath::Avx512Vnni {
            // SAFETY: features detected by `group_path`; the slices hold nb block columns of
            // this group and every activation row has nb blocks.
            return Some(unsafe {
                match self.kind {
                    Kind::Q8_0 => avx512::group_q8_0(scales, quants, xs),
                    Kind::Q4_0 => avx512::group_q4(scales, None, quants, xs),
                    Kind::Q4_1 => avx512::group_q4(scales, Some(mins), quants, xs),
                }
            });
        }
        #[cfg(target_arch = "x86_64")]
        if path == GroupPath::Avx2 {
            // SAFETY: as above.
            return Some(unsafe {
                match self.kind {
                    Kind::Q8_0 => avx2::group_q8_0(scales, quants, xs),
                    Kind::Q4_0 => avx2::group_q4(scales, None, quants, xs),
                    Kind::Q4_1 => avx2::group_q4(scales, Some(mins), quants, xs),
                }
            });
        }
        #[cfg(target_arch = "aarch64")]
        if path == GroupPath::Neon {
            // SAFETY: as above (NEON is baseline on aarch64).
            return Some(unsafe {
                match self.kind {
                    Kind::Q8_0 => neon::group_q8_0(scales, quants, xs),
                    Kind::Q4_0 => neon::group_q4_0(scales, quants, xs),
                    Kind::Q4_1 => neon::group_q4_1(scales, mins, quants, xs),
                }
            });
        }
        let _ = (scales, mins, quants, xs, path);
        None
    }

    /// Rows `8g..8g + 8` dotted with the quantised activation `xq` [nb blocks].
    #[inline]
    fn group_dot(&self, g: usize, xq: ActRow<'_>, out: &mut [f32]) {
        match self.group_simd(g, [xq]) {
            Some([y]) => out[..ROWS].copy_from_slice(&y),
            None => {
                let (scales, mins, quants) = self.group_slices(g);
                group_dot_scalar(self.kind, scales, mins, quants, xq, out);
            }
        }
    }

    /// y [rows] for one quantised activation row: full groups, then the tail rows.
    fn rows_into(&self, xq: ActRow<'_>, g0: usize, ys: &mut [f32]) {
        for (k, yg) in ys.chunks_mut(ROWS).enumerate() {
            let g = g0 + k;
            if g < self.groups() && yg.len() == ROWS {
                self.group_dot(g, xq, yg);
            } else {
                let first = g * ROWS - self.groups() * ROWS;
                for (j, y) in yg.iter_mut().enumerate() {
                    *y = self.tail.row_dot(first + j, xq.q);
                }
            }
        }
    }
}

/// Chunk `j` of a block column: bytes 4j..4j+4 of each of the 8 rows, `word(r)` being
/// row r's 4 bytes.
#[inline(always)]
fn interleave(word: impl Fn(usize) -> [u8; 4]) -> Chunk {
    let mut c = Chunk::default();
    for (r, dst) in c.0.chunks_exact_mut(4).enumerate() {
        dst.copy_from_slice(&word(r));
    }
    c
}

/// Which kernel runs the interleaved group products (decode and prefill of quantised
/// weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPath {
    /// AVX-512 F/BW/VL with VNNI (`vpdpbusd`): two chunks per 512-bit register.
    Avx512Vnni,
    /// AVX2 + FMA + F16C (`vpmaddubsw` + `vpmaddwd`).
    Avx2,
    /// aarch64 NEON (`sdot` where the CPU has it).
    Neon,
    /// The scalar twin.
    Scalar,
}

impl GroupPath {
    /// The name `slm bench --json` reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512Vnni => "avx512-vnni",
            Self::Avx2 => "avx2",
            Self::Neon => "neon",
            Self::Scalar => "scalar",
        }
    }

    /// The best path this CPU offers, at most `cap` when given (`avx512-vnni`, `avx2`,
    /// `neon`, `scalar`; an unknown name caps nothing).
    fn detect(cap: Option<&str>) -> Self {
        let allowed = |p: Self| match cap {
            Some("scalar") => p == Self::Scalar,
            Some("avx2") => p != Self::Avx512Vnni,
            _ => true,
        };
        #[cfg(target_arch = "x86_64")]
        {
            if allowed(Self::Avx512Vnni) && has_avx512_vnni() {
                return Self::Avx512Vnni;
            }
            if allowed(Self::Avx2) && has_avx2() {
                return Self::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        if allowed(Self::Neon) {
            return Self::Neon;
        }
        Self::Scalar
    }
}

/// The group kernel in use: the best this CPU has, unless the environment variable
/// `SLM_QUANT_KERNEL` (`avx2` or `scalar`) caps it — for timing one path against another
/// on the same machine. Chosen once per process.
pub fn group_path() -> GroupPath {
    static PATH: std::sync::OnceLock<GroupPath> = std::sync::OnceLock::new();
    *PATH.get_or_init(|| {
        let cap = std::env::var("SLM_QUANT_KERNEL").ok();
        GroupPath::detect(cap.as_deref())
    })
}

/// AVX-512 F, BW, VL and VNNI, with FMA and F16C: what [`avx512`]'s kernels need.
#[cfg(target_arch = "x86_64")]
fn has_avx512_vnni() -> bool {
    has_avx2()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

fn scale(d: u16) -> f32 {
    f16::from_bits(d).to_f32()
}

/// The scalar twin of the AVX2 and NEON group kernels, reading the same layout.
fn group_dot_scalar(
    kind: Kind,
    scales: &[u16],
    mins: &[u16],
    quants: &[Chunk],
    xq: ActRow<'_>,
    out: &mut [f32],
) {
    let c = kind.chunks();
    let mut acc = [0f32; ROWS];
    for (i, xb) in xq.q.iter().enumerate() {
        let (sx, dx) = (xq.sum[i], xq.d[i]);
        for r in 0..ROWS {
            let mut s = 0i32;
            for j in 0..c {
                let w = &quants[i * c + j].0[4 * r..4 * r + 4];
                for (k, &b) in w.iter().enumerate() {
                    match kind {
                        Kind::Q8_0 => s += b as i8 as i32 * xb.qs[4 * j + k] as i32,
                        Kind::Q4_0 | Kind::Q4_1 => {
                            s += (b & 0x0F) as i32 * xb.qs[4 * j + k] as i32;
                            s += (b >> 4) as i32 * xb.qs[16 + 4 * j + k] as i32;
                        }
                    }
                }
            }
            let d = scale(scales[i * ROWS + r]) * dx;
            acc[r] += match kind {
                Kind::Q8_0 => d * s as f32,
                Kind::Q4_0 => d * (s - 8 * sx) as f32,
                Kind::Q4_1 => d * s as f32 + scale(mins[i * ROWS + r]) * dx * sx as f32,
            };
        }
    }
    out[..ROWS].copy_from_slice(&acc);
}

#[cfg(target_arch = "aarch64")]
use crate::neon;
#[cfg(target_arch = "x86_64")]
use crate::quant::has_avx2;

/// What the AVX2 and AVX-512 group kernels share once a block's integer sums are in: the
/// 8 rows' f16 scales (or minima), the block's scaled contribution, the final store.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{ActRow, ROWS};
    use std::arch::x86_64::*;

    /// Block column `i`'s 8 f16 values (one per row) of `p` [nb, 8], as f32.
    #[inline(always)]
    pub(super) unsafe fn row_halves(p: &[u16], i: usize) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.as_ptr().add(ROWS * i) as *const __m128i))
    }

    /// Q4 minima of block column `i` when the matrix has them (Q4_1).
    #[inline(always)]
    pub(super) unsafe fn minima(mins: Option<&[u16]>, i: usize) -> Option<__m256> {
        // (`match`, not `Option::map`: a closure would not get the caller's target features.)
        #[allow(clippy::manual_map)]
        match mins {
            Some(m) => Some(row_halves(m, i)),
            None => None,
        }
    }

    /// `acc` + block `i`'s contribution for 8 rows from their integer sums `s`: with minima
    /// `mw` (Q4_1) d_w·d_x·s + m·d_x·Σq_x, else d_w·d_x·(s − 2^ZERO·Σq_x) — ZERO 0 for
    /// Q8_0 under AVX2 (nothing subtracted), 3 for Q4_0 (the −8 offset), 7 for Q8_0 under
    /// AVX-512 (its weights were shifted by +128).
    #[inline(always)]
    pub(super) unsafe fn add_block<const ZERO: i32>(
        acc: __m256,
        dw: __m256,
        mw: Option<__m256>,
        s: __m256i,
        x: &ActRow<'_>,
        i: usize,
    ) -> __m256 {
        let sx = _mm256_set1_epi32(*x.sum.get_unchecked(i));
        let dx = _mm256_set1_ps(*x.d.get_unchecked(i));
        let d = _mm256_mul_ps(dw, dx);
        match mw {
            None if ZERO == 0 => _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc),
            None => {
                let centred = _mm256_sub_epi32(s, _mm256_slli_epi32::<ZERO>(sx));
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(centred), acc)
            }
            Some(mw) => {
                let acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc);
                let msx = _mm256_mul_ps(dx, _mm256_cvtepi32_ps(sx));
                _mm256_fmadd_ps(mw, msx, acc)
            }
        }
    }

    /// The R accumulators as arrays.
    #[inline(always)]
    pub(super) unsafe fn store<const R: usize>(acc: [__m256; R]) -> [[f32; ROWS]; R] {
        let mut rows: [[f32; ROWS]; R] = [[0.0; ROWS]; R];
        for (row, a) in rows.iter_mut().zip(acc) {
            _mm256_storeu_ps(row.as_mut_ptr(), a);
        }
        rows
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::x86::{add_block, minima, row_halves, store};
    use super::{ActRow, Chunk, ROWS};
    use std::arch::x86_64::*;

    /// 4 activation bytes `qs[at..at + 4]` in every 32-bit lane.
    #[inline(always)]
    unsafe fn bcast4(qs: &[i8; 32], at: usize) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(qs.as_ptr().add(at) as *const i32))
    }

    /// Σ over block columns of d_w·d_x·Σ q_w·q_x for 8 interleaved Q8_0 rows against `R`
    /// activation rows (each weight chunk is loaded once for all of them).
    ///
    /// # Safety
    /// AVX2, FMA and F16C present; `scales` holds 8·nb values and `quants` 8·nb chunks, with
    /// nb the block count of every `xs[r]`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn group_q8_0<const R: usize>(
        scales: &[u16],
        quants: &[Chunk],
        xs: [ActRow<'_>; R],
    ) -> [[f32; ROWS]; R] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        let qp = quants.as_ptr();
        let nb = xs[0].q.len();
        for i in 0..nb {
            crate::simd::prefetch_ahead(qp.add(8 * i), 4);
            let mut isum = [_mm256_setzero_si256(); R];
            for j in 0..8 {
                let w = _mm256_load_si256(qp.add(8 * i + j) as *const __m256i);
                let aw = _mm256_sign_epi8(w, w);
                for r in 0..R {
                    let x = bcast4(&xs[r].q.get_unchecked(i).qs, 4 * j);
                    // |w| · (x with w's sign): unsigned × signed, as maddubs wants.
                    let p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(p, ones));
                }
            }
            let dw = row_halves(scales, i);
            for r in 0..R {
                acc[r] = add_block::<0>(acc[r], dw, None, isum[r], &xs[r], i);
            }
        }
        store(acc)
    }

    /// Q4_0 (`mins` None: Σ (q − 8)·x) or Q4_1 (Σ q·x·d + m·d_x·Σ x) for 8 interleaved rows
    /// against `R` activation rows.
    ///
    /// # Safety
    /// AVX2, FMA and F16C present; `scales` (and `mins`) hold 8·nb values, `quants` 4·nb
    /// chunks, with nb the block count of every `xs[r]`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn group_q4<const R: usize>(
        scales: &[u16],
        mins: Option<&[u16]>,
        quants: &[Chunk],
        xs: [ActRow<'_>; R],
    ) -> [[f32; ROWS]; R] {
        let ones16 = _mm256_set1_epi16(1);
        let low = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); R];
        let qp = quants.as_ptr();
        let nb = xs[0].q.len();
        for i in 0..nb {
            crate::simd::prefetch_ahead(qp.add(4 * i), 2);
            // 16-bit partial sums: each maddubs lane is at most 2·15·127, so the 8 of a block
            // (4 chunks × low/high nibbles) stay below 2^15; one widening madd per block.
            let mut s16 = [_mm256_setzero_si256(); R];
            for j in 0..4 {
                let raw = _mm256_load_si256(qp.add(4 * i + j) as *const __m256i);
                let lo = _mm256_and_si256(raw, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
                for r in 0..R {
                    let xb = xs[r].q.get_unchecked(i);
                    let plo = _mm256_maddubs_epi16(lo, bcast4(&xb.qs, 4 * j));
                    let phi = _mm256_maddubs_epi16(hi, bcast4(&xb.qs, 16 + 4 * j));
                    s16[r] = _mm256_add_epi16(s16[r], _mm256_add_epi16(plo, phi));
                }
            }
            let mut isum = [_mm256_setzero_si256(); R];
            for r in 0..R {
                isum[r] = _mm256_madd_epi16(s16[r], ones16);
            }
            let (dw, mw) = (row_halves(scales, i), minima(mins, i));
            for r in 0..R {
                // The activation block's Σq and scale were computed once per product.
                acc[r] = add_block::<3>(acc[r], dw, mw, isum[r], &xs[r], i);
            }
        }
        store(acc)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! The group kernels with `vpdpbusd` (u8 × i8 products summed four at a time into i32
    //! lanes, one instruction for AVX2's `maddubs` + `madd`) on 512-bit registers: one
    //! register holds two chunks of the group (lanes 0–7 = rows 0–7 of chunk j, lanes 8–15 =
    //! rows 0–7 of chunk j + 1), and the activation's matching 4-byte groups are placed by a
    //! single `vpermd` per chunk pair. The two halves are added once per block.
    //!
    //! Q8_0 weights are signed; `vpdpbusd` wants the first operand unsigned, so the kernel
    //! flips their sign bit (w + 128, exact in u8) and subtracts 128·Σx, which the
    //! activation summary already holds. Q4 nibbles are unsigned as they are.
    use super::x86::{add_block, minima, row_halves, store};
    use super::{ActRow, Chunk, Pair, PAIRS, ROWS};
    use crate::quant::BlockQ8_0;
    use std::arch::x86_64::*;

    /// Writes each block's four activation registers (see [`super::QuantActs`]): register p
    /// holds dword 2p of the block's quants in lanes 0–7 and dword 2p + 1 in lanes 8–15 —
    /// for Q8_0 chunk pair p, for Q4 the low nibbles of chunk pair p (p < 2) or the high
    /// nibbles of pair p − 2.
    ///
    /// # Safety
    /// AVX-512 F present; `pairs` holds 4 registers per block of `q`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
    pub unsafe fn spread_pairs(q: &[BlockQ8_0], pairs: &mut [Pair]) {
        let idx = pair_indices();
        for (b, out) in q.iter().zip(pairs.chunks_exact_mut(PAIRS)) {
            let x = _mm512_castsi256_si512(_mm256_loadu_si256(b.qs.as_ptr() as *const __m256i));
            for (p, ix) in idx.iter().enumerate() {
                _mm512_store_si512(
                    out[p].0.as_mut_ptr() as *mut __m512i,
                    _mm512_permutexvar_epi32(*ix, x),
                );
            }
        }
    }

    /// The permutations that make activation register p from a block's 8 dwords.
    #[inline(always)]
    unsafe fn pair_indices() -> [__m512i; PAIRS] {
        [
            pair_index(0, 1),
            pair_index(2, 3),
            pair_index(4, 5),
            pair_index(6, 7),
        ]
    }

    /// Block `i` of every row of `xs`, in the low half of a register (to be permuted).
    #[inline(always)]
    unsafe fn blocks<const R: usize>(xs: &[ActRow<'_>; R], i: usize) -> [__m512i; R] {
        // (A loop, not `array::from_fn`: a closure would not get the target features.)
        let mut out = [_mm512_setzero_si512(); R];
        for r in 0..R {
            let q = xs[r].q.get_unchecked(i).qs.as_ptr();
            out[r] = _mm512_castsi256_si512(_mm256_loadu_si256(q as *const __m256i));
        }
        out
    }

    /// Activation register `p` of block `i` of `x` (laid out by [`spread_pairs`]).
    #[inline(always)]
    unsafe fn pair(x: &ActRow<'_>, i: usize, p: usize) -> __m512i {
        _mm512_load_si512(x.pairs.as_ptr().add(PAIRS * i + p) as *const __m512i)
    }

    /// Permutation indices putting activation dword `a` in lanes 0–7 and `b` in lanes 8–15.
    #[inline(always)]
    unsafe fn pair_index(a: i32, b: i32) -> __m512i {
        _mm512_set_epi32(b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a)
    }

    /// Lanes 0–7 plus lanes 8–15 of `v`.
    #[inline(always)]
    unsafe fn fold(v: __m512i) -> __m256i {
        _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
    }

    /// As `avx2::group_q8_0`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI, FMA and F16C present; `scales` holds 8·nb values and `quants`
    /// 8·nb chunks, with nb the block count of every `xs[r]`, whose `pairs` are filled.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn group_q8_0<const R: usize>(
        scales: &[u16],
        quants: &[Chunk],
        xs: [ActRow<'_>; R],
    ) -> [[f32; ROWS]; R] {
        let flip = _mm512_set1_epi8(-128);
        let idx = pair_indices();
        let spread = !xs[0].pairs.is_empty();
        let mut acc = [_mm256_setzero_ps(); R];
        let qp = quants.as_ptr();
        let nb = xs[0].q.len();
        for i in 0..nb {
            crate::simd::prefetch_ahead(qp.add(8 * i), 4);
            let mut isum = [_mm512_setzero_si512(); R];
            let xb = if spread {
                [_mm512_setzero_si512(); R]
            } else {
                blocks(&xs, i)
            };
            for p in 0..PAIRS {
                let w = _mm512_loadu_si512(qp.add(8 * i + 2 * p) as *const __m512i);
                let wu = _mm512_xor_si512(w, flip);
                for r in 0..R {
                    let x = if spread {
                        pair(&xs[r], i, p)
                    } else {
                        _mm512_permutexvar_epi32(idx[p], xb[r])
                    };
                    isum[r] = _mm512_dpbusd_epi32(isum[r], wu, x);
                }
            }
            let dw = row_halves(scales, i);
            for r in 0..R {
                // Σ (w + 128)·x − 128·Σx.
                acc[r] = add_block::<7>(acc[r], dw, None, fold(isum[r]), &xs[r], i);
            }
        }
        store(acc)
    }

    /// As `avx2::group_q4`: Q4_0 (`mins` None) or Q4_1.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI, FMA and F16C present; `scales` (and `mins`) hold 8·nb values,
    /// `quants` 4·nb chunks, with nb the block count of every `xs[r]`, whose `pairs` are
    /// filled.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn group_q4<const R: usize>(
        scales: &[u16],
        mins: Option<&[u16]>,
        quants: &[Chunk],
        xs: [ActRow<'_>; R],
    ) -> [[f32; ROWS]; R] {
        let low = _mm512_set1_epi8(0x0F);
        let idx = pair_indices();
        let spread = !xs[0].pairs.is_empty();
        let mut acc = [_mm256_setzero_ps(); R];
        let qp = quants.as_ptr();
        let nb = xs[0].q.len();
        for i in 0..nb {
            crate::simd::prefetch_ahead(qp.add(4 * i), 2);
            let mut isum = [_mm512_setzero_si512(); R];
            let xb = if spread {
                [_mm512_setzero_si512(); R]
            } else {
                blocks(&xs, i)
            };
            // Chunk pair p's low nibbles are weights 4j..4j+4 (activation register p), its
            // high nibbles weights 16 + 4j.. (register 2 + p).
            for p in 0..2 {
                let raw = _mm512_loadu_si512(qp.add(4 * i + 2 * p) as *const __m512i);
                let lo = _mm512_and_si512(raw, low);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), low);
                for r in 0..R {
                    let (xl, xh) = if spread {
                        (pair(&xs[r], i, p), pair(&xs[r], i, 2 + p))
                    } else {
                        (
                            _mm512_permutexvar_epi32(idx[p], xb[r]),
                            _mm512_permutexvar_epi32(idx[2 + p], xb[r]),
                        )
                    };
                    isum[r] = _mm512_dpbusd_epi32(isum[r], lo, xl);
                    isum[r] = _mm512_dpbusd_epi32(isum[r], hi, xh);
                }
            }
            let (dw, mw) = (row_halves(scales, i), minima(mins, i));
            for r in 0..R {
                acc[r] = add_block::<3>(acc[r], dw, mw, fold(isum[r]), &xs[r], i);
            }
        }
        store(acc)
    }
}

/// y = W·x for an interleaved `w`: `x` is quantised to Q8_0 into `xq` (reused storage), then
/// groups of 8 rows are split across the current rayon pool.
pub fn matvec_x8(
    w: &InterleavedMatrix,
    x: &[f32],
    xq: &mut QuantActs,
    y: &mut [f32],
) -> Result<()> {
    check_len("matvec_x8 x", x.len(), w.cols())?;
    check_len("matvec_x8 y", y.len(), w.rows)?;
    xq.quantize(x)?;
    xq.spread();
    let xq = xq.row(0, w.nb);
    if w.bytes() < 64 * 1024 {
        w.rows_into(xq, 0, y);
        return Ok(());
    }
    // ~32 KiB of weights per task, whole groups.
    let group_bytes = w.bytes() / w.rows.div_ceil(ROWS);
    let groups_per_task = (32 * 1024 / group_bytes.max(1)).max(1);
    y.par_chunks_mut(groups_per_task * ROWS)
        .enumerate()
        .for_each(|(t, ys)| w.rows_into(xq, t * groups_per_task, ys));
    Ok(())
}

/// Y [n, rows] = X [n, cols]·Wᵀ for an interleaved `w` (prefill, batched decoding): the n
/// rows of `x` are quantised into `xq` (reused storage); each task streams its groups'
/// weights once for all n inputs (they stay in cache), four activation rows per pass, and
/// writes the group's 8 outputs of each row straight into `y`.
pub fn matmul_x8(
    w: &InterleavedMatrix,
    x: &[f32],
    n: usize,
    xq: &mut QuantActs,
    y: &mut [f32],
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let (rows, nb) = (w.rows, w.nb);
    check_len("matmul_x8 x", x.len(), n * w.cols())?;
    check_len("matmul_x8 y", y.len(), n * rows)?;
    xq.quantize(x)?;
    xq.spread();
    let xq: &QuantActs = xq;
    let groups = rows.div_ceil(ROWS);
    let groups_per_task = groups.div_ceil(4 * crate::par::num_threads()).max(1);
    let tasks = groups.div_ceil(groups_per_task);
    let yp = SendPtr(y.as_mut_ptr());
    (0..tasks).into_par_iter().for_each(|t| {
        // Row r's outputs of group g: y[r·rows + 8g ..][..in_group].
        let put = |r: usize, g: usize, vals: &[f32]| {
            // SAFETY: y holds n·rows values; a task writes only the columns of its own
            // groups (8g..8g + in_group ≤ rows), so no two tasks write the same element, and
            // `y` stays mutably borrowed until every task is done.
            unsafe {
                let at = yp.get().add(r * rows + g * ROWS);
                std::ptr::copy_nonoverlapping(vals.as_ptr(), at, vals.len());
            }
        };
        let mut col = [0f32; ROWS];
        for g in t * groups_per_task..((t + 1) * groups_per_task).min(groups) {
            let in_group = (rows - g * ROWS).min(ROWS);
            let mut r0 = 0;
            if in_group == ROWS {
                // Eight activation rows per pass over the group's weights where the 32
                // AVX-512 registers hold their sums, then four.
                while group_path() == GroupPath::Avx512Vnni && r0 + 8 <= n {
                    let xs: [ActRow<'_>; 8] = std::array::from_fn(|q| xq.row(r0 + q, nb));
                    let Some(eight) = w.group_simd(g, xs) else {
                        break;
                    };
                    for (q, vals) in eight.iter().enumerate() {
                        put(r0 + q, g, vals);
                    }
                    r0 += 8;
                }
                while r0 + 4 <= n {
                    let xs: [ActRow<'_>; 4] = std::array::from_fn(|q| xq.row(r0 + q, nb));
                    let Some(four) = w.group_simd(g, xs) else {
                        break;
                    };
                    for (q, vals) in four.iter().enumerate() {
                        put(r0 + q, g, vals);
                    }
                    r0 += 4;
                }
            }
            for r in r0..n {
                w.rows_into(xq.row(r, nb), g, &mut col[..in_group]);
                put(r, g, &col[..in_group]);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::matvec_quant_naive;
    use crate::testutil::{quantized, rand_vec};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn interleaved_matvec_equals_dequantised_reference(
            rows in 1usize..90, blocks in 1usize..10, kind in 0usize..3, seed in 0u64..1000,
            shift in -1.0f32..1.0
        ) {
            let cols = blocks * QK;
            let wf: Vec<f32> = rand_vec(rows * cols, seed).iter().map(|v| v + shift).collect();
            let x = rand_vec(cols, seed + 3);
            let q = quantized(&wf, kind);
            let w = InterleavedMatrix::new(&q, rows, cols).unwrap();
            prop_assert_eq!(w.bytes(), q.bytes());
            let mut y = vec![0f32; rows];
            let mut xq = QuantActs::default();
            matvec_x8(&w, &x, &mut xq, &mut y).unwrap();
            let want = matvec_quant_naive(&q, &x, rows).unwrap();
            for (a, b) in y.iter().zip(&want) {
                prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{} vs {}", a, b);
            }
            // The scalar twin reads the same layout to the same sums.
            for g in 0..w.groups() {
                let (scales, mins, quants) = w.group_slices(g);
                let mut s = [0f32; ROWS];
                group_dot_scalar(w.kind, scales, mins, quants, xq.row(0, blocks), &mut s);
                for (j, v) in s.iter().enumerate() {
                    let b = want[g * ROWS + j];
                    prop_assert!((v - b).abs() <= 1e-4 * (1.0 + b.abs()), "scalar {} vs {}", v, b);
                }
            }
        }
    }

    /// On aarch64: the NEON group kernels, with and without `SDOT`, for one and four
    /// activation rows, give the scalar twin's sums (and the same bits as each other).
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_group_kernels_equal_the_scalar_twin() {
        use crate::neon;
        let (rows, blocks, n) = (19, 5, 4);
        let cols = blocks * QK;
        let wf: Vec<f32> = rand_vec(rows * cols, 31).iter().map(|v| v - 0.4).collect();
        let x = rand_vec(n * cols, 32);
        let mut xq = QuantActs::default();
        xq.quantize(&x).unwrap();
        for kind in 0..3 {
            let w = InterleavedMatrix::new(&quantized(&wf, kind), rows, cols).unwrap();
            for g in 0..w.groups() {
                let (sc, mins, qs) = w.group_slices(g);
                let xs: [ActRow<'_>; 4] = std::array::from_fn(|r| xq.row(r, blocks));
                // SAFETY: the slices hold `blocks` block columns; every row has `blocks` blocks.
                let (fast, base, one) = unsafe {
                    match w.kind {
                        Kind::Q8_0 => (
                            neon::group_q8_0(sc, qs, xs),
                            neon::baseline::group_q8_0(sc, qs, xs),
                            neon::group_q8_0(sc, qs, [xs[2]])[0],
                        ),
                        Kind::Q4_0 => (
                            neon::group_q4_0(sc, qs, xs),
                            neon::baseline::group_q4_0(sc, qs, xs),
                            neon::group_q4_0(sc, qs, [xs[2]])[0],
                        ),
                        Kind::Q4_1 => (
                            neon::group_q4_1(sc, mins, qs, xs),
                            neon::baseline::group_q4_1(sc, mins, qs, xs),
                            neon::group_q4_1(sc, mins, qs, [xs[2]])[0],
                        ),
                    }
                };
                assert_eq!(fast, base, "kind {kind}: SDOT and baseline differ");
                assert_eq!(one, fast[2], "kind {kind}: one row vs four");
                for (r, got) in fast.iter().enumerate() {
                    let mut want = [0f32; ROWS];
                    group_dot_scalar(w.kind, sc, mins, qs, xs[r], &mut want);
                    for (a, b) in got.iter().zip(&want) {
                        assert!(
                            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                            "kind {kind}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    /// On x86-64: every group kernel this CPU can run (AVX-512 VNNI, AVX2), for one and four
    /// activation rows, gives the scalar twin's sums, on weights whose Q8_0 values reach ±127
    /// and Q4 nibbles 0 and 15 (the ends of the unsigned and sign-flipped ranges).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_group_kernels_equal_the_scalar_twin() {
        let (rows, blocks, n) = (27, 7, 4);
        let cols = blocks * QK;
        let wf: Vec<f32> = rand_vec(rows * cols, 41)
            .iter()
            .map(|v| v * 3.0 - 0.7)
            .collect();
        let x: Vec<f32> = rand_vec(n * cols, 42).iter().map(|v| v * 5.0).collect();
        let mut plain = QuantActs::default();
        plain.quantize(&x).unwrap();
        // The AVX-512 kernels read laid-out registers (decode) or permute the blocks
        // themselves (prefill): both are checked.
        let mut spread = plain.clone();
        spread.spread();
        let mut ran = Vec::new();
        for (xq, kind) in [&plain, &spread]
            .into_iter()
            .flat_map(|q| (0..3).map(move |k| (q, k)))
        {
            let w = InterleavedMatrix::new(&quantized(&wf, kind), rows, cols).unwrap();
            for g in 0..w.groups() {
                let (sc, mins, qs) = w.group_slices(g);
                let xs: [ActRow<'_>; 4] = std::array::from_fn(|r| xq.row(r, blocks));
                let mut got: Vec<(&str, [[f32; ROWS]; 4], [f32; ROWS])> = Vec::new();
                if has_avx512_vnni() {
                    // SAFETY: features detected; the slices hold `blocks` block columns.
                    let (four, one) = unsafe {
                        match w.kind {
                            Kind::Q8_0 => (
                                avx512::group_q8_0(sc, qs, xs),
                                avx512::group_q8_0(sc, qs, [xs[2]])[0],
                            ),
                            Kind::Q4_0 => (
                                avx512::group_q4(sc, None, qs, xs),
                                avx512::group_q4(sc, None, qs, [xs[2]])[0],
                            ),
                            Kind::Q4_1 => (
                                avx512::group_q4(sc, Some(mins), qs, xs),
                                avx512::group_q4(sc, Some(mins), qs, [xs[2]])[0],
                            ),
                        }
                    };
                    let name = if xq.pairs.is_empty() {
                        "avx512-vnni"
                    } else {
                        "avx512-vnni laid out"
                    };
                    got.push((name, four, one));
                }
                if has_avx2() {
                    // SAFETY: as above.
                    let (four, one) = unsafe {
                        match w.kind {
                            Kind::Q8_0 => (
                                avx2::group_q8_0(sc, qs, xs),
                                avx2::group_q8_0(sc, qs, [xs[2]])[0],
                            ),
                            Kind::Q4_0 => (
                                avx2::group_q4(sc, None, qs, xs),
                                avx2::group_q4(sc, None, qs, [xs[2]])[0],
                            ),
                            Kind::Q4_1 => (
                                avx2::group_q4(sc, Some(mins), qs, xs),
                                avx2::group_q4(sc, Some(mins), qs, [xs[2]])[0],
                            ),
                        }
                    };
                    got.push(("avx2", four, one));
                }
                for (path, four, one) in &got {
                    ran.push(*path);
                    assert_eq!(*one, four[2], "{path} kind {kind}: one row vs four");
                    for (r, sums) in four.iter().enumerate() {
                        let mut want = [0f32; ROWS];
                        group_dot_scalar(w.kind, sc, mins, qs, xs[r], &mut want);
                        for (a, b) in sums.iter().zip(&want) {
                            assert!(
                                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                                "{path} kind {kind} group {g} row {r}: {a} vs {b}"
                            );
                        }
                    }
                }
            }
        }
        eprintln!("group kernels checked: {:?}", {
            ran.sort();
            ran.dedup();
            ran
        });
    }

    #[test]
    fn a_capped_path_is_never_better_than_the_cap() {
        assert_eq!(GroupPath::detect(Some("scalar")), GroupPath::Scalar);
        assert_ne!(GroupPath::detect(Some("avx2")), GroupPath::Avx512Vnni);
        #[cfg(target_arch = "x86_64")]
        if has_avx512_vnni() {
            assert_eq!(GroupPath::detect(None), GroupPath::Avx512Vnni);
        }
    }

    /// Activations as a real model's: mostly small, a few channels hundreds of times larger;
    /// weights of every magnitude; as many blocks as a 1,536-wide input.
    #[test]
    fn products_with_outlier_activations_equal_the_reference() {
        let (rows, blocks) = (64, 48);
        let cols = blocks * QK;
        let wf: Vec<f32> = rand_vec(rows * cols, 51).iter().map(|v| v * 0.05).collect();
        let mut x: Vec<f32> = rand_vec(cols, 52).iter().map(|v| v * 0.3).collect();
        for c in [5, 77, 300, 301, 1000, 1500] {
            x[c] = if c % 2 == 0 { 60.0 } else { -45.0 };
        }
        for kind in 0..3 {
            let q = quantized(&wf, kind);
            let w = InterleavedMatrix::new(&q, rows, cols).unwrap();
            let (mut y, mut xq) = (vec![0f32; rows], QuantActs::default());
            matvec_x8(&w, &x, &mut xq, &mut y).unwrap();
            let want = matvec_quant_naive(&q, &x, rows).unwrap();
            let worst = y
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / (1e-3 + b.abs()))
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "kind {kind}: relative error {worst}");
        }
    }

    #[test]
    fn reused_activations_equal_fresh_ones() {
        // One QuantActs across products of different widths, as the decode engine uses it.
        let mut shared = QuantActs::with_capacity(8);
        for (blocks, seed) in [(6usize, 1u64), (2, 2), (5, 3)] {
            let x = rand_vec(blocks * QK, seed);
            shared.quantize(&x).unwrap();
            shared.spread();
            let mut fresh = QuantActs::default();
            fresh.quantize(&x).unwrap();
            fresh.spread();
            assert_eq!(shared.blocks(), fresh.blocks());
            assert_eq!(shared.d, fresh.d);
            assert_eq!(shared.sum, fresh.sum);
            assert_eq!(shared.sum.len(), blocks);
            assert_eq!(shared.pairs, fresh.pairs);
            // Register p of a block: dword 2p in lanes 0–7, dword 2p + 1 in lanes 8–15.
            for (b, regs) in fresh.q.iter().zip(fresh.pairs.chunks_exact(PAIRS)) {
                for (p, reg) in regs.iter().enumerate() {
                    for (at, &byte) in reg.0.iter().enumerate() {
                        let (lane, k) = (at / 4, at % 4);
                        let dword = 2 * p + lane / ROWS;
                        assert_eq!(byte, b.qs[4 * dword + k] as u8);
                    }
                }
            }
            for (b, (&d, &s)) in fresh.q.iter().zip(fresh.d.iter().zip(&fresh.sum)) {
                assert_eq!(d, half::f16::from_bits(b.d).to_f32());
                assert_eq!(s, b.qs.iter().map(|&q| q as i32).sum::<i32>());
            }
        }
        assert!(shared.quantize(&[0.0; 33]).is_err());
    }

    #[test]
    fn large_matvec_and_matmul_agree() {
        let (rows, blocks, n) = (1003, 24, 13); // 8 + 4 + 1 rows per pass
        let cols = blocks * QK;
        let wf = rand_vec(rows * cols, 11);
        let x = rand_vec(n * cols, 12);
        for kind in 0..3 {
            let q = quantized(&wf, kind);
            let w = InterleavedMatrix::new(&q, rows, cols).unwrap();
            let (mut xq, mut y) = (QuantActs::with_capacity(n * blocks), vec![0f32; n * rows]);
            matmul_x8(&w, &x, n, &mut xq, &mut y).unwrap();
            for r in 0..n {
                let mut one = vec![0f32; rows];
                let mut xq1 = QuantActs::default();
                matvec_x8(&w, &x[r * cols..(r + 1) * cols], &mut xq1, &mut one).unwrap();
                assert_eq!(
                    &y[r * rows..(r + 1) * rows],
                    one.as_slice(),
                    "kind {kind} row {r}"
                );
                let want = matvec_quant_naive(&q, &x[r * cols..(r + 1) * cols], rows).unwrap();
                for (a, b) in one.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
        }
        let q = quantized(&wf[..QK * 3], 0);
        assert!(InterleavedMatrix::new(&q, 1, 3 * QK + 1).is_err());
        assert!(InterleavedMatrix::new(&q, 2, 3 * QK).is_err());
    }
}
