//! slm-kernels: CPU hot paths that candle lacks, each fast kernel beside a naive reference.
//!
//! Every kernel works on flat `f32` slices in row-major layout, never allocates buffers
//! proportional to its inputs, and has a `*_naive` twin written as plain loops that is
//! obviously correct; the property tests compare the two on odd shapes.
//!
//! Families (one file each):
//! - [`matmul`]: linear layers over the `gemm` crate (forward, input and weight gradients).
//! - [`rmsnorm`]: RMSNorm forward (saving `rstd`) and backward.
//! - [`rope`]: rotary embeddings in the Hugging Face "rotate half" layout, forward and inverse.
//! - [`attention`]: causal grouped-query attention forward and backward.
//! - [`segments`]: packed sequences (several examples per row): the per-position example
//!   starts that attention and RoPE take, and their check.
//! - [`swiglu`]: `silu(gate) * up` forward and backward.
//! - [`cross_entropy`]: fused softmax cross-entropy over the vocabulary.
//! - [`distill`]: fused distillation loss (hard-label CE mixed with a teacher divergence).
//! - [`embedding`]: token-embedding gather and scatter-add.
//! - [`quant`]: Q8_0 / Q4_0 blocks (ggml layout): quantise, dequantise, integer dot products,
//!   matrix-vector products for decoding.
//!
//! [`simd`] holds the runtime CPU-feature dispatch and the vectorisable math the kernels
//! share; [`par`] the threading helpers. Written here rather than taken from a crate because
//! these fused forms with hand-written backward passes are the product (docs/ARCHITECTURE.md).

pub mod attention;
pub mod attention_decode;
pub mod cross_entropy;
pub mod distill;
pub mod embedding;
pub mod kquant;
pub mod matmul;
pub mod matvec;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod par;
pub mod quant;
pub mod quant_x8;
pub mod rmsnorm;
pub mod rope;
pub mod segments;
pub mod simd;
pub mod sparse;
pub mod swiglu;

pub use cross_entropy::IGNORE_INDEX;

use slm_core::{Error, Result};

/// Fails with a message naming `what` unless a buffer of `len` elements matches a shape of
/// `needed` elements exactly.
pub(crate) fn check_len(what: &str, len: usize, needed: usize) -> Result<()> {
    if len != needed {
        return Err(Error::invalid(format!(
            "{what}: buffer holds {len} elements, the shape needs {needed}"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::quant::{
        quantize_q4_0, quantize_q4_1, quantize_q8_0, BlockQ4_0, BlockQ4_1, BlockQ8_0, QuantMatrix,
        QK,
    };

    /// `wf` (rows of a multiple of 32 values) as Q8_0 (kind 0), Q4_0 (1) or Q4_1 (2 or more).
    pub fn quantized(wf: &[f32], kind: usize) -> QuantMatrix {
        let n = wf.len() / QK;
        match kind {
            0 => {
                let mut b = vec![BlockQ8_0::default(); n];
                quantize_q8_0(wf, &mut b).unwrap();
                QuantMatrix::Q8_0(b)
            }
            1 => {
                let mut b = vec![BlockQ4_0::default(); n];
                quantize_q4_0(wf, &mut b).unwrap();
                QuantMatrix::Q4_0(b)
            }
            _ => {
                let mut b = vec![BlockQ4_1::default(); n];
                quantize_q4_1(wf, &mut b).unwrap();
                QuantMatrix::Q4_1(b)
            }
        }
    }

    /// Deterministic values in [-1, 1) from a 64-bit LCG.
    pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Random valid example starts for `batch` rows of `seq` (see [`crate::segments`]):
    /// examples of random lengths (some longer than an attention block, some of one token,
    /// like padding). `kind` 0 is one example per row, 1 every position its own example.
    pub fn rand_starts(batch: usize, seq: usize, kind: usize, seed: u64) -> Vec<u32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = |m: u64| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) % m
        };
        let mut out = Vec::with_capacity(batch * seq);
        for _ in 0..batch {
            // Mean example length for this row: 1 (all pads) to ~100.
            let mean = [1, 2, 5, 17, 40, 100][next(6) as usize];
            for p in 0..seq {
                let new = match kind {
                    0 => p == 0,
                    1 => true,
                    _ => p == 0 || next(mean) == 0,
                };
                out.push(if new {
                    p as u32
                } else {
                    *out.last().unwrap_or(&0)
                });
            }
        }
        out
    }

    /// The examples of `starts` [batch·seq] as (first row, length) over all rows.
    pub fn segments_of(starts: &[u32], seq: usize) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        for (r, &st) in starts.iter().enumerate() {
            if r % seq == st as usize {
                out.push((r, 1));
            } else if let Some(last) = out.last_mut() {
                last.1 += 1;
            }
        }
        out
    }

    /// Asserts max |a − b| ≤ tol · max(1, max |b|).
    pub fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths differ");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        let (mut worst, mut at) = (0f32, 0);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let d = (x - y).abs();
            if d > worst || d.is_nan() {
                worst = d;
                at = i;
            }
        }
        assert!(
            worst <= tol * scale,
            "{what}: max |diff| {worst} at {at} ({} vs {}), scale {scale}",
            a[at],
            b[at]
        );
    }
}

/// The kernel tests again under every lower path this CPU can be capped to: the unit-test
/// binary runs itself with `SLM_F32_KERNEL` (the [`dispatch!`] builds) and `SLM_QUANT_KERNEL`
/// (the quantised group and k-quant kernels, decode attention's 16-lane kernel) set, so every
/// build and hand-written path the CPU offers meets the naive twins — not only the one it
/// picks by default.
#[cfg(test)]
mod capped_paths {
    #[test]
    fn kernel_tests_pass_on_every_capped_path() {
        if std::env::var_os("SLM_CAPPED_CHILD").is_some() {
            return;
        }
        let mut caps: Vec<(&str, &str)> = vec![("baseline", "scalar")];
        #[cfg(target_arch = "x86_64")]
        if crate::simd::f32_path() == crate::simd::F32Path::Avx512 {
            caps.push(("avx2", "avx2"));
        }
        let exe = std::env::current_exe().expect("the test binary's path");
        for (f32_cap, quant_cap) in caps {
            let out = std::process::Command::new(&exe)
                .args(["--skip", "capped_paths", "--test-threads", "2", "-q"])
                .env("SLM_CAPPED_CHILD", "1")
                .env("SLM_F32_KERNEL", f32_cap)
                .env("SLM_QUANT_KERNEL", quant_cap)
                .output()
                .expect("run the test binary");
            assert!(
                out.status.success(),
                "kernel tests with SLM_F32_KERNEL={f32_cap} SLM_QUANT_KERNEL={quant_cap}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
