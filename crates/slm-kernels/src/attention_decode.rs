//! Attention of one new position over a KV cache (decoding): for each head, scores against
//! every cached key, softmax, weighted sum of the cached values.
//!
//! ```text
//! q [h·e], keys/vals [n, g·e] (positions 0..n), head i reads kv head i/(h/g) (GQA)
//! out[i] = Σ_t softmax_t(q_i·k_t / √e) · v_t
//! ```
//! Heads run in parallel on the current rayon pool once there is enough work (long caches).
//! One hand-written kernel (`head_kernel!`, generated for both cache types at 16 lanes with
//! AVX-512 F and heads a multiple of 16 wide, at 8 lanes with AVX2/FMA/F16C and heads a
//! multiple of 8) scores four positions per pass and keeps the weighted sum in registers;
//! otherwise the generic loop runs (the reference for the tests beside the definition in f64). The cache holds f32 or f16
//! values ([`Cache::F16`]: half the bytes read per position, as llama.cpp's default cache;
//! converted with F16C). The training kernels in [`crate::attention`] cover whole sequences;
//! this is the one-query case.

use crate::{check_len, simd};
use rayon::prelude::*;
use slm_core::{Error, Result};

/// Shape of a decode attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeAttn {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// A cached value type: f32, or f16 bits.
trait CacheValue: Copy {
    /// Σ q·k over a head.
    fn dot(q: &[f32], k: &[Self]) -> f32;
    /// o += p·v over a head.
    fn axpy(o: &mut [f32], p: f32, v: &[Self]);
}

impl CacheValue for f32 {
    #[inline(always)]
    fn dot(q: &[f32], k: &[f32]) -> f32 {
        simd::dot(q, k)
    }
    #[inline(always)]
    fn axpy(o: &mut [f32], p: f32, v: &[f32]) {
        o.iter_mut().zip(v).for_each(|(a, &v)| *a += p * v);
    }
}

impl CacheValue for u16 {
    #[inline(always)]
    fn dot(q: &[f32], k: &[u16]) -> f32 {
        q.iter()
            .zip(k)
            .map(|(a, &b)| a * half::f16::from_bits(b).to_f32())
            .sum()
    }
    #[inline(always)]
    fn axpy(o: &mut [f32], p: f32, v: &[u16]) {
        o.iter_mut()
            .zip(v)
            .for_each(|(a, &v)| *a += p * half::f16::from_bits(v).to_f32());
    }
}

/// One head: scores of `qh` against every cached key (head offset `off` within a position's
/// `kv` values), softmax, weighted sum of the cached values into `o`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn head_impl<T: CacheValue>(
    qh: &[f32],
    keys: &[T],
    vals: &[T],
    kv: usize,
    off: usize,
    scale: f32,
    scores: &mut [f32],
    o: &mut [f32],
) {
    let e = qh.len();
    for (t, sc) in scores.iter_mut().enumerate() {
        *sc = T::dot(qh, &keys[t * kv + off..t * kv + off + e]) * scale;
    }
    let max = simd::max(scores);
    let sum = simd::exp_shift_sum(scores, max);
    o.fill(0.0);
    for (t, &p) in scores.iter().enumerate() {
        T::axpy(o, p, &vals[t * kv + off..t * kv + off + e]);
    }
    let inv = 1.0 / sum;
    o.iter_mut().for_each(|a| *a *= inv);
}

crate::dispatch!(
    #[allow(clippy::too_many_arguments)]
    fn head_generic(qh: &[f32], keys: &[f32], vals: &[f32], kv: usize, off: usize, scale: f32,
            scores: &mut [f32], o: &mut [f32]) => head_impl
);

/// One head over a cache of `$t` values, `$lanes` per register, each register read by
/// `$load` (a pointer → register expression in `$p`); `e` a multiple of `$lanes`. The vector
/// operations come from the module that instantiates it (`zero`, `splat`, `loadu`, `fmadd`,
/// `storeu`, `hsum` of one register, `sum4`: the four scores' horizontal sums, scaled,
/// stored at a pointer).
///
/// Scores four positions at a time: four independent FMA chains (one chain per position
/// was bound by FMA latency), each q chunk loaded once for the four, and the four
/// horizontal sums done together. Values accumulate in up to 8 registers per pass over the
/// positions (accumulating in memory made each position wait on the last one's store).
#[cfg(target_arch = "x86_64")]
macro_rules! head_kernel {
    ($name:ident, $t:ty, $features:literal, $lanes:literal,
     zero: $zero:path, splat: $splat:path, loadu: $loadu:path, fmadd: $fmadd:path,
     storeu: $storeu:path, hsum: $hsum:path, sum4: $sum4:path,
     $p:ident => $load:expr) => {
        /// # Safety
        /// The features named in `target_feature` present; `keys`/`vals` hold
        /// `scores.len()` positions of `kv` values, `off + qh.len() ≤ kv`,
        /// `o.len() = qh.len()`, `qh.len()` a multiple of the lane count.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $name(
            qh: &[f32],
            keys: &[$t],
            vals: &[$t],
            kv: usize,
            off: usize,
            scale: f32,
            scores: &mut [f32],
            o: &mut [f32],
        ) {
            let e = qh.len();
            let (kp, vp, qp) = (keys.as_ptr(), vals.as_ptr(), qh.as_ptr());
            let n = scores.len();
            let mut t = 0;
            while t + 4 <= n {
                let rows = [0, 1, 2, 3].map(|j| kp.add((t + j) * kv + off));
                let mut acc = [$zero(); 4];
                let mut c = 0;
                while c < e {
                    let qv = $loadu(qp.add(c));
                    for j in 0..4 {
                        let k = {
                            let $p = rows[j].add(c);
                            $load
                        };
                        acc[j] = $fmadd(qv, k, acc[j]);
                    }
                    c += $lanes;
                }
                $sum4(acc, scale, scores.as_mut_ptr().add(t));
                t += 4;
            }
            for (t, sc) in scores.iter_mut().enumerate().skip(t) {
                let row = kp.add(t * kv + off);
                let mut acc = $zero();
                // (Plain index loops: `step_by` kept its state on the stack here.)
                let mut c = 0;
                while c < e {
                    let k = {
                        let $p = row.add(c);
                        $load
                    };
                    acc = $fmadd($loadu(qp.add(c)), k, acc);
                    c += $lanes;
                }
                *sc = $hsum(acc) * scale;
            }
            let max = crate::simd::max(scores);
            let sum = crate::simd::exp_shift_sum(scores, max);
            let op = o.as_mut_ptr();
            let mut c0 = 0;
            while c0 < e {
                let chunks = ((e - c0) / $lanes).min(8);
                let mut acc = [$zero(); 8];
                for (t, &p) in scores.iter().enumerate() {
                    let row = vp.add(t * kv + off + c0);
                    let pv = $splat(p);
                    for (j, a) in acc.iter_mut().enumerate() {
                        if j < chunks {
                            let v = {
                                let $p = row.add($lanes * j);
                                $load
                            };
                            *a = $fmadd(pv, v, *a);
                        }
                    }
                }
                for (j, a) in acc.iter().enumerate().take(chunks) {
                    $storeu(op.add(c0 + $lanes * j), *a);
                }
                c0 += $lanes * chunks;
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|a| *a *= inv);
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// The four positions' sums: per 128-bit lane [Σa, Σb, Σc, Σd] over that lane's half,
    /// the halves added, scaled, stored at `out`.
    #[inline(always)]
    unsafe fn sum4(acc: [__m256; 4], scale: f32, out: *mut f32) {
        let s = _mm256_hadd_ps(
            _mm256_hadd_ps(acc[0], acc[1]),
            _mm256_hadd_ps(acc[2], acc[3]),
        );
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        _mm_storeu_ps(out, _mm_mul_ps(s, _mm_set1_ps(scale)));
    }

    use crate::simd::hsum256;
    head_kernel!(head_f32, f32, "avx2,fma,f16c", 8,
        zero: _mm256_setzero_ps, splat: _mm256_set1_ps, loadu: _mm256_loadu_ps,
        fmadd: _mm256_fmadd_ps, storeu: _mm256_storeu_ps, hsum: hsum256, sum4: sum4,
        p => _mm256_loadu_ps(p));
    head_kernel!(head_f16, u16, "avx2,fma,f16c", 8,
        zero: _mm256_setzero_ps, splat: _mm256_set1_ps, loadu: _mm256_loadu_ps,
        fmadd: _mm256_fmadd_ps, storeu: _mm256_storeu_ps, hsum: hsum256, sum4: sum4,
        p => _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)));
}

/// The same kernel with 16 lanes (AVX-512 F).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// The four positions' sums, scaled, stored at `out`.
    #[inline(always)]
    unsafe fn sum4(acc: [__m512; 4], scale: f32, out: *mut f32) {
        for (j, a) in acc.iter().enumerate() {
            *out.add(j) = _mm512_reduce_add_ps(*a) * scale;
        }
    }

    head_kernel!(head_f32, f32, "avx512f,avx2,fma,f16c", 16,
        zero: _mm512_setzero_ps, splat: _mm512_set1_ps, loadu: _mm512_loadu_ps,
        fmadd: _mm512_fmadd_ps, storeu: _mm512_storeu_ps, hsum: _mm512_reduce_add_ps,
        sum4: sum4, p => _mm512_loadu_ps(p));
    head_kernel!(head_f16, u16, "avx512f,avx2,fma,f16c", 16,
        zero: _mm512_setzero_ps, splat: _mm512_set1_ps, loadu: _mm512_loadu_ps,
        fmadd: _mm512_fmadd_ps, storeu: _mm512_storeu_ps, hsum: _mm512_reduce_add_ps,
        sum4: sum4, p => _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)));
}

/// The name of the head kernel decode attention runs for heads of width `head_dim` on this
/// CPU (`avx512`, `avx2`, `generic`), as `slm bench --json` reports it.
pub fn kernel_name(head_dim: usize) -> &'static str {
    match HeadPath::detect(head_dim) {
        HeadPath::Avx512 => "avx512",
        HeadPath::Avx2 => "avx2",
        HeadPath::Generic => "generic",
    }
}

/// Which head kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadPath {
    /// 16 lanes; where the quantised kernels run AVX-512 ([`crate::quant_x8::group_path`],
    /// so `SLM_QUANT_KERNEL=avx2` caps this too) and heads are a multiple of 16 wide.
    Avx512,
    /// 8 lanes (AVX2, FMA, F16C); heads a multiple of 8 wide.
    Avx2,
    /// The loop over [`CacheValue`] (the reference).
    Generic,
}

impl HeadPath {
    /// The best path for heads of width `e` on this CPU.
    fn detect(e: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::quant_x8::{group_path, GroupPath};
            if e.is_multiple_of(16) && group_path() == GroupPath::Avx512Vnni {
                return Self::Avx512;
            }
            if avx2_heads(e) {
                return Self::Avx2;
            }
        }
        let _ = e;
        Self::Generic
    }

    /// Every path this CPU can run for heads of width `e` (for the tests).
    #[cfg(test)]
    fn available(e: usize) -> Vec<Self> {
        let mut paths = vec![Self::Generic];
        #[cfg(target_arch = "x86_64")]
        {
            if avx2_heads(e) {
                paths.push(Self::Avx2);
            }
            if e.is_multiple_of(16)
                && avx2_heads(e)
                && std::arch::is_x86_feature_detected!("avx512f")
            {
                paths.push(Self::Avx512);
            }
        }
        paths
    }
}

/// Whether the AVX2 head kernels run here for heads of width `e`.
#[cfg(target_arch = "x86_64")]
fn avx2_heads(e: usize) -> bool {
    e.is_multiple_of(8)
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// One head over an f32 cache on `path` (one [`HeadPath::detect`] chose, or the tests).
#[allow(clippy::too_many_arguments)]
fn head_f32(
    path: HeadPath,
    qh: &[f32],
    keys: &[f32],
    vals: &[f32],
    kv: usize,
    off: usize,
    scale: f32,
    scores: &mut [f32],
    o: &mut [f32],
) {
    match path {
        // SAFETY (both): the path was detected for this head width; `attend_cache` checked
        // the lengths.
        #[cfg(target_arch = "x86_64")]
        HeadPath::Avx512 => unsafe { avx512::head_f32(qh, keys, vals, kv, off, scale, scores, o) },
        #[cfg(target_arch = "x86_64")]
        HeadPath::Avx2 => unsafe { avx2::head_f32(qh, keys, vals, kv, off, scale, scores, o) },
        _ => head_generic(qh, keys, vals, kv, off, scale, scores, o),
    }
}

/// One head over an f16 cache on `path`.
#[allow(clippy::too_many_arguments)]
fn head_f16(
    path: HeadPath,
    qh: &[f32],
    keys: &[u16],
    vals: &[u16],
    kv: usize,
    off: usize,
    scale: f32,
    scores: &mut [f32],
    o: &mut [f32],
) {
    match path {
        // SAFETY (both): as in `head_f32`.
        #[cfg(target_arch = "x86_64")]
        HeadPath::Avx512 => unsafe { avx512::head_f16(qh, keys, vals, kv, off, scale, scores, o) },
        #[cfg(target_arch = "x86_64")]
        HeadPath::Avx2 => unsafe { avx2::head_f16(qh, keys, vals, kv, off, scale, scores, o) },
        _ => head_impl(qh, keys, vals, kv, off, scale, scores, o),
    }
}

/// Cached keys/values of one layer, positions 0..n, [n, g·e].
#[derive(Debug, Clone, Copy)]
pub enum Cache<'a> {
    F32 {
        keys: &'a [f32],
        vals: &'a [f32],
    },
    /// f16 bits.
    F16 {
        keys: &'a [u16],
        vals: &'a [u16],
    },
}

impl Cache<'_> {
    fn len(&self) -> (usize, usize) {
        match self {
            Self::F32 { keys, vals } => (keys.len(), vals.len()),
            Self::F16 { keys, vals } => (keys.len(), vals.len()),
        }
    }
}

/// `out` [h·e] = attention of `q` [h·e] over `keys`, `vals` [n, g·e]; `scores` is scratch of
/// at least h·n values.
pub fn attend(
    s: DecodeAttn,
    q: &[f32],
    keys: &[f32],
    vals: &[f32],
    scores: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    attend_cache(s, q, Cache::F32 { keys, vals }, scores, out)
}

/// [`attend`] over either cache type.
pub fn attend_cache(
    s: DecodeAttn,
    q: &[f32],
    cache: Cache<'_>,
    scores: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    attend_on(HeadPath::detect(s.head_dim), s, q, cache, scores, out)
}

/// [`attend_cache`] with each head on `path`.
fn attend_on(
    path: HeadPath,
    s: DecodeAttn,
    q: &[f32],
    cache: Cache<'_>,
    scores: &mut [f32],
    out: &mut [f32],
) -> Result<()> {
    let (h, g, e) = (s.heads, s.kv_heads, s.head_dim);
    if g == 0 || h % g != 0 || e == 0 {
        return Err(Error::invalid(format!(
            "decode attention: {h} heads over {g} kv heads of width {e}"
        )));
    }
    let kv = g * e;
    let (nk, nv) = cache.len();
    let n = nk / kv;
    check_len("decode attention q", q.len(), h * e)?;
    check_len("decode attention out", out.len(), h * e)?;
    check_len("decode attention keys", nk, n * kv)?;
    check_len("decode attention vals", nv, n * kv)?;
    if n == 0 || scores.len() < h * n {
        return Err(Error::invalid(format!(
            "decode attention: {n} positions, {} scores of scratch for {h} heads",
            scores.len()
        )));
    }
    let scale = 1.0 / (e as f32).sqrt();
    let per_group = h / g;
    let one = |(i, (o, sc)): (usize, (&mut [f32], &mut [f32]))| {
        let off = (i / per_group) * e;
        let qh = &q[i * e..(i + 1) * e];
        match cache {
            Cache::F32 { keys, vals } => head_f32(path, qh, keys, vals, kv, off, scale, sc, o),
            Cache::F16 { keys, vals } => head_f16(path, qh, keys, vals, kv, off, scale, sc, o),
        }
    };
    let scores = &mut scores[..h * n];
    // Two passes over n·e values per head: worth a fork-join from ~16k multiply-adds, unless
    // the caller already runs on a pool thread (prefill parallelises over rows).
    let nested = rayon::current_thread_index().is_some();
    if h * n * e >= 16 * 1024 && crate::par::num_threads() > 1 && !nested {
        out.par_chunks_mut(e)
            .zip(scores.par_chunks_mut(n))
            .enumerate()
            .for_each(one);
    } else {
        out.chunks_mut(e)
            .zip(scores.chunks_mut(n))
            .enumerate()
            .for_each(one);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::rand_vec;

    /// Straight from the definition, in f64.
    fn naive(s: DecodeAttn, q: &[f32], keys: &[f32], vals: &[f32]) -> Vec<f32> {
        let (h, g, e) = (s.heads, s.kv_heads, s.head_dim);
        let kv = g * e;
        let n = keys.len() / kv;
        let mut out = vec![0f32; h * e];
        for i in 0..h {
            let off = (i / (h / g)) * e;
            let sc: Vec<f64> = (0..n)
                .map(|t| {
                    (0..e)
                        .map(|d| q[i * e + d] as f64 * keys[t * kv + off + d] as f64)
                        .sum::<f64>()
                        / (e as f64).sqrt()
                })
                .collect();
            let m = sc.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = sc.iter().map(|v| (v - m).exp()).sum();
            for d in 0..e {
                out[i * e + d] = (0..n)
                    .map(|t| (sc[t] - m).exp() / z * vals[t * kv + off + d] as f64)
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    #[test]
    fn equals_the_definition_with_and_without_threads() {
        for (h, g, e, n) in [
            (4, 2, 16, 5),
            (6, 6, 8, 1),
            (16, 4, 64, 300),
            (2, 1, 128, 7),
            (3, 3, 48, 10),
            (2, 2, 12, 6),
            (9, 3, 64, 257),
            (2, 1, 256, 5),
            (4, 2, 32, 3),
        ] {
            let s = DecodeAttn {
                heads: h,
                kv_heads: g,
                head_dim: e,
            };
            let q = rand_vec(h * e, 1);
            let (keys, vals) = (rand_vec(n * g * e, 2), rand_vec(n * g * e, 3));
            let mut scores = vec![0f32; h * n];
            let mut out = vec![0f32; h * e];
            let want = naive(s, &q, &keys, &vals);
            attend(s, &q, &keys, &vals, &mut scores, &mut out).unwrap();
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{h}/{g}/{e}/{n}: {a} vs {b}");
            }
            // Every path this CPU has, each against the definition.
            for path in HeadPath::available(e) {
                out.fill(f32::NAN);
                let cache = Cache::F32 {
                    keys: &keys,
                    vals: &vals,
                };
                attend_on(path, s, &q, cache, &mut scores, &mut out).unwrap();
                for (a, b) in out.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-5, "{path:?} {h}/{g}/{e}/{n}: {a} vs {b}");
                }
            }
        }
        // An f16 cache: the definition over the f16-rounded keys and values.
        // (head_dim 128 and 48: two register passes over the values, and six chunks.)
        for (h, g, e, n) in [
            (4, 2, 16, 5),
            (2, 1, 12, 3),
            (16, 4, 64, 300),
            (2, 1, 128, 7),
            (3, 3, 48, 10),
            (9, 3, 64, 257),
            (2, 1, 256, 5),
        ] {
            let s = DecodeAttn {
                heads: h,
                kv_heads: g,
                head_dim: e,
            };
            let q = rand_vec(h * e, 4);
            let (keys, vals) = (rand_vec(n * g * e, 5), rand_vec(n * g * e, 6));
            let bits = |v: &[f32]| -> Vec<u16> {
                v.iter()
                    .map(|&x| half::f16::from_f32(x).to_bits())
                    .collect()
            };
            let round = |v: &[f32]| -> Vec<f32> {
                v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
            };
            let mut scores = vec![0f32; h * n];
            let mut out = vec![0f32; h * e];
            let (kb, vb) = (bits(&keys), bits(&vals));
            let cache = Cache::F16 {
                keys: &kb,
                vals: &vb,
            };
            let want = naive(s, &q, &round(&keys), &round(&vals));
            attend_cache(s, &q, cache, &mut scores, &mut out).unwrap();
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "f16 {h}/{g}/{e}/{n}: {a} vs {b}");
            }
            for path in HeadPath::available(e) {
                out.fill(f32::NAN);
                attend_on(path, s, &q, cache, &mut scores, &mut out).unwrap();
                for (a, b) in out.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "f16 {path:?} {h}/{g}/{e}/{n}: {a} vs {b}"
                    );
                }
            }
        }
        let s = DecodeAttn {
            heads: 3,
            kv_heads: 2,
            head_dim: 4,
        };
        assert!(attend(
            s,
            &[0.0; 12],
            &[0.0; 8],
            &[0.0; 8],
            &mut [0.0; 3],
            &mut [0.0; 12]
        )
        .is_err());
    }
}
