//! Runtime CPU-feature dispatch and the vectorisable scalar math the kernels share.
//!
//! The workspace builds for the baseline target (x86-64 with SSE2, or aarch64 with NEON), so
//! the compiler may not assume AVX2. [`dispatch!`](crate::dispatch) compiles a kernel body
//! three times — inside `#[target_feature]` functions for AVX-512 F/VL and for AVX2+FMA,
//! chosen at run time when the CPU has those features, and once for the baseline — so the
//! plain loops below are auto-vectorised to 16-wide AVX-512 or 8-wide AVX2 where they exist
//! (f32 decoding of SmolLM2-135M: 33.8 → 39.1 tokens/s on an Intel(R) Xeon(R) Processor, family 6 model 167, AVX-512, 2 threads). Helpers here are `#[inline(always)]` so
//! they inherit the features of the function they are inlined into.
//!
//! Reductions use 16 independent accumulators: floating-point addition is not associative,
//! so the compiler only vectorises a sum whose lanes are spelled out.

/// Defines `$vis fn $name(args) -> ret` that runs `$imp(args)` compiled with AVX-512 F/VL
/// or AVX2+FMA when the CPU has them ([`f32_path`], checked once), else compiled for the
/// baseline.
/// `$imp` must be `#[inline(always)]`.
#[macro_export]
macro_rules! dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $imp:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn with_avx512($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn with_avx2($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                match $crate::simd::f32_path() {
                    // SAFETY: the CPU supports the features `with_avx512` was compiled for.
                    $crate::simd::F32Path::Avx512 => return unsafe { with_avx512($($arg),*) },
                    // SAFETY: the CPU supports the features `with_avx2` was compiled for.
                    $crate::simd::F32Path::Avx2 => return unsafe { with_avx2($($arg),*) },
                    $crate::simd::F32Path::Baseline => {}
                }
            }
            $imp($($arg),*)
        }
    };
}

/// The build [`dispatch!`](crate::dispatch) picks for the f32 kernels on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F32Path {
    /// AVX-512 F + VL, with AVX2 and FMA.
    Avx512,
    /// AVX2 + FMA.
    Avx2,
    /// SSE2 on x86-64, NEON on aarch64.
    Baseline,
}

impl F32Path {
    /// The name `slm bench --json` reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512f",
            Self::Avx2 => "avx2+fma",
            Self::Baseline => "baseline",
        }
    }
}

/// The f32 kernels' build for this CPU; the environment variable `SLM_F32_KERNEL` caps it
/// at `avx2` or `baseline` (to time one against the other, and for the tests to run every
/// build). Chosen once per process.
pub fn f32_path() -> F32Path {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        static PATH: std::sync::OnceLock<F32Path> = std::sync::OnceLock::new();
        *PATH.get_or_init(|| {
            let cap = std::env::var("SLM_F32_KERNEL").unwrap_or_default();
            let avx2 = has!("avx2") && has!("fma") && cap != "baseline";
            let capped = cap == "avx2" || cap == "baseline";
            if !capped && avx2 && has!("avx512f") && has!("avx512vl") {
                F32Path::Avx512
            } else if avx2 {
                F32Path::Avx2
            } else {
                F32Path::Baseline
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    F32Path::Baseline
}

/// `e^x` to about 2 ulp for x in [-87, 88] (inputs outside are clamped; e^-87 ≈ 1.6e-38
/// stands for 0), branch-free so loops over it vectorise. Cephes' `expf`: x = n·ln2 + r with
/// |r| ≤ ln2/2, e^r by a degree-7 polynomial, 2^n written into the exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC; // round(x·log2 e), exact
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // bits(t) = bits(MAGIC) + n for |n| < 2^22; 2^n = (n + 127) << 23.
    let n_int = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let scale = f32::from_bits((n_int.wrapping_add(127) << 23) as u32);
    y * scale
}

/// `1 / (1 + e^-x)` using [`exp`].
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Σ a[i]·b[i] over the common length, 16 lanes.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    reduce16(&acc) + tail
}

/// Σ a[i]², 16 lanes.
#[inline(always)]
pub fn sum_sq(a: &[f32]) -> f32 {
    dot(a, a)
}

/// max a[i] (−∞ for an empty slice), 16 lanes.
#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut c = a.chunks_exact(16);
    for x in &mut c {
        for l in 0..16 {
            acc[l] = if x[l] > acc[l] { x[l] } else { acc[l] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(c.remainder()) {
        m = if v > m { v } else { m };
    }
    m
}

/// Replaces a[i] by e^(a[i] − shift) and returns their sum, 16 lanes.
#[inline(always)]
pub fn exp_shift_sum(a: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut c = a.chunks_exact_mut(16);
    for x in &mut c {
        for l in 0..16 {
            let e = exp(x[l] - shift);
            x[l] = e;
            acc[l] += e;
        }
    }
    let mut tail = 0f32;
    for x in c.into_remainder() {
        *x = exp(*x - shift);
        tail += *x;
    }
    reduce16(&acc) + tail
}

/// a[i] *= s.
#[inline(always)]
pub fn scale(a: &mut [f32], s: f32) {
    for x in a {
        *x *= s;
    }
}

/// Pairwise sum of 16 lanes.
#[inline(always)]
fn reduce16(acc: &[f32; 16]) -> f32 {
    let mut h = [0f32; 8];
    for l in 0..8 {
        h[l] = acc[l] + acc[l + 8];
    }
    (h[0] + h[4]) + (h[1] + h[5]) + ((h[2] + h[6]) + (h[3] + h[7]))
}

/// Horizontal sum of the 8 lanes of an AVX register (for the intrinsic kernels in `quant`
/// and `sparse`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn hsum256(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_useful_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert!(exp(-1e4) < 2e-38);
        assert!(exp(f32::NEG_INFINITY) < 2e-38);
        assert!(exp(1e4).is_finite());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn reductions_match_plain_loops() {
        let a: Vec<f32> = (0..37).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3).collect();
        let b: Vec<f32> = (0..37).map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.2).collect();
        let d: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - d).abs() < 1e-5);
        assert_eq!(max(&a), a.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
        let mut e = a.clone();
        let s = exp_shift_sum(&mut e, 1.0);
        let want: f32 = a.iter().map(|x| (x - 1.0).exp()).sum();
        assert!((s - want).abs() < 1e-4 * want);
    }
}

/// Asks for the `lines` cache lines 1 KiB past `p` in a weight stream. The block kernels read
/// their weights in order, and the hardware prefetcher alone left them waiting on each
/// block's first load (about half their time); a prefetch this far ahead hides it. A prefetch
/// never faults, so the address may lie past the end of the matrix.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_ahead<T>(p: *const T, lines: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let p = (p as *const i8).wrapping_add(1024);
    for l in 0..lines {
        // SAFETY: prefetching is a hint: it reads nothing architecturally and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * l)) };
    }
}
