//! Throughput of the training kernels at the shapes of one preset's training step
//! (batch 8, seq 256 by default): GFLOP/s for the matmuls and attention, GB/s-ish wall time
//! for the elementwise kernels. Plain timing, median of repeated calls.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench -p slm-kernels --bench kernels -- [4m|15m|110m|336m|shakespeare] [--reps N]
//!     [--only linear|attention|elementwise|decode|sparse]
//! ```

use slm_kernels::attention::{
    attention_bwd, attention_bwd_lse, attention_fwd, attention_fwd_lse, AttnShape,
};
use slm_kernels::cross_entropy::cross_entropy_fwd_bwd;
use slm_kernels::matmul::{linear_bwd_input, linear_bwd_weight, linear_fwd, LinearDims};
use slm_kernels::rmsnorm::{rmsnorm_bwd, rmsnorm_fwd};
use slm_kernels::swiglu::{swiglu_bwd, swiglu_fwd};
use std::time::Instant;

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut preset = "4m".to_string();
    let mut reps = 10;
    let mut only = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reps" => reps = args.next().and_then(|v| v.parse().ok()).expect("--reps N"),
            "--only" => only = args.next().expect("--only NAME"),
            "--bench" => {}
            p => preset = p.to_string(),
        }
    }
    // (dim, heads, kv_heads, hidden, vocab) as in slm-model's presets
    let (d, h, g, inter, vocab) = match preset.as_str() {
        "15m" => (288, 6, 6, 768, 32000),
        "110m" => (768, 12, 12, 2048, 32000),
        "336m" => (1024, 16, 4, 2816, 32000),
        "shakespeare" => (128, 4, 4, 344, 67),
        _ => (256, 8, 8, 704, 4096),
    };
    // nanoGPT's CPU tinyshakespeare run: batch 12 × context 64.
    let (b, t) = if preset == "shakespeare" {
        (12, 64)
    } else {
        (8, 256)
    };
    let n = b * t;
    let e = d / h;
    println!(
        "preset {preset}: n {n}, d {d}, heads {h}/{g}, inter {inter}, vocab {vocab}, threads {}",
        rayon::current_num_threads()
    );
    let want = |name: &str| only.is_empty() || name.contains(only.as_str());
    let report = |name: &str, secs: f64, flops: f64| {
        if flops > 0.0 {
            println!(
                "{name:<28} {:8.3} ms  {:6.1} GFLOP/s",
                secs * 1e3,
                flops / secs / 1e9
            );
        } else {
            println!("{name:<28} {:8.3} ms", secs * 1e3);
        }
    };

    // Decode: one activation row against each matrix (and the output head), f32 vs blocks.
    if want("decode") {
        use slm_kernels::matvec::matvec;
        use slm_kernels::quant::{
            matvec_quant, quantize_q4_0, quantize_q8_0, BlockQ4_0, BlockQ8_0, QuantMatrix,
        };
        for (name, k, o) in [
            ("qkv", d, (h + 2 * g) * e),
            ("gate_up", d, 2 * inter),
            ("down", inter, d),
            ("head", d, vocab),
        ] {
            let wf = rand_vec(o * k, 3);
            let x = rand_vec(k, 4);
            let mut y = vec![0.0; o];
            let f32_s = median_secs(reps, || matvec(&wf, None, &x, 1, k, o, &mut y).unwrap());
            let mut b8 = vec![BlockQ8_0::default(); o * k / 32];
            let mut b4 = vec![BlockQ4_0::default(); o * k / 32];
            quantize_q8_0(&wf, &mut b8).unwrap();
            quantize_q4_0(&wf, &mut b4).unwrap();
            let (q8, q4) = (QuantMatrix::Q8_0(b8), QuantMatrix::Q4_0(b4));
            let mut xq = vec![BlockQ8_0::default(); k / 32];
            let q8_s = median_secs(reps, || matvec_quant(&q8, &x, &mut xq, o, &mut y).unwrap());
            let q4_s = median_secs(reps, || matvec_quant(&q4, &x, &mut xq, o, &mut y).unwrap());
            println!(
                "matvec {name:<8} [{o} × {k}]  f32 {:7.1} µs {:5.1} GB/s | q8_0 {:7.1} µs {:5.1} GB/s | q4_0 {:7.1} µs {:5.1} GB/s",
                f32_s * 1e6, (4 * o * k) as f64 / f32_s / 1e9,
                q8_s * 1e6, q8.bytes() as f64 / q8_s / 1e9,
                q4_s * 1e6, q4.bytes() as f64 / q4_s / 1e9,
            );
            // The same blocks repacked 8 rows at a time (what the decode engine uses).
            use slm_kernels::quant::{quantize_q4_1, BlockQ4_1};
            use slm_kernels::quant_x8::{matvec_x8, InterleavedMatrix, QuantActs};
            let mut acts = QuantActs::default();
            let mut b41 = vec![BlockQ4_1::default(); o * k / 32];
            quantize_q4_1(&wf, &mut b41).unwrap();
            let q41 = QuantMatrix::Q4_1(b41);
            let mut line = format!("  interleaved x8 {:<13}", "");
            for (label, q) in [("q8_0", &q8), ("q4_0", &q4), ("q4_1", &q41)] {
                let w = InterleavedMatrix::new(q, o, k).unwrap();
                let t = median_secs(reps, || matvec_x8(&w, &x, &mut acts, &mut y).unwrap());
                line += &format!(
                    " | {label} {:7.1} µs {:5.1} GB/s",
                    t * 1e6,
                    w.bytes() as f64 / t / 1e9
                );
            }
            println!("{line}");
        }
    }

    // Sparse decode: the gate|up and down matrices pruned at random to 50/70/90% (bitmask
    // format) and to 2:4, against the dense f32 matvec of the same matrix.
    if want("sparse") {
        use slm_kernels::matvec::matvec;
        use slm_kernels::sparse::{BitmaskMatrix, OffsetMatrix, Sparse24Matrix, SparseMatrix};
        for (name, k, o) in [("gate_up", d, 2 * inter), ("down", inter, d)] {
            let wf = rand_vec(o * k, 3);
            let x = rand_vec(k, 4);
            let mut y = vec![0.0; o];
            let dense_s = median_secs(reps, || matvec(&wf, None, &x, 1, k, o, &mut y).unwrap());
            print!(
                "sparse {name:<8} [{o} × {k}] dense {:7.1} µs",
                dense_s * 1e6
            );
            let mut row = |label: &str, m: SparseMatrix| {
                let t = median_secs(reps, || m.matvec(&x, &mut y).unwrap());
                println!(
                    "    {label:<12} {:7.1} µs {:4.2}× ({:4.2} B/w)",
                    t * 1e6,
                    dense_s / t,
                    m.bytes() as f64 / (o * k) as f64
                );
            };
            for sparsity in [0.5, 0.7, 0.9] {
                // Zero the entries whose |value| falls in the lowest `sparsity` share.
                let mut mags: Vec<f32> = wf.iter().map(|v| v.abs()).collect();
                let cut = (sparsity * mags.len() as f64) as usize;
                let thr = *mags.select_nth_unstable_by(cut, f32::total_cmp).1;
                let w: Vec<f32> = wf
                    .iter()
                    .map(|&v| if v.abs() < thr { 0.0 } else { v })
                    .collect();
                let m = SparseMatrix::Bitmask(BitmaskMatrix::from_dense(&w, o, k).unwrap());
                row(&format!("{:.0}% bitmask", sparsity * 100.0), m);
                let m = SparseMatrix::Offsets(OffsetMatrix::from_dense(&w, o, k).unwrap());
                row(&format!("{:.0}% offsets", sparsity * 100.0), m);
            }
            let mut w24 = wf.clone();
            for g in w24.chunks_exact_mut(4) {
                let mut idx = [0usize, 1, 2, 3];
                idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
                g[idx[2]] = 0.0;
                g[idx[3]] = 0.0;
            }
            row(
                "2:4",
                SparseMatrix::TwoFour(Sparse24Matrix::from_dense(&w24, o, k).unwrap()),
            );
            println!();
        }
    }

    for (name, k, o) in [
        ("qkv", d, (h + 2 * g) * e),
        ("o", h * e, d),
        ("gate_up", d, 2 * inter),
        ("down", inter, d),
    ] {
        if !want("linear") {
            continue;
        }
        let dims = LinearDims::new(n, k, o);
        let x = rand_vec(n * k, 1);
        let w = rand_vec(o * k, 2);
        let mut y = vec![0.0; n * o];
        let fl = 2.0 * (n * k * o) as f64;
        report(
            &format!("linear_fwd {name}"),
            median_secs(reps, || {
                linear_fwd(&mut y, &x, &w, None, dims, false).unwrap()
            }),
            fl,
        );
        let mut dx = vec![0.0; n * k];
        report(
            &format!("linear_bwd_input {name}"),
            median_secs(reps, || {
                linear_bwd_input(&mut dx, &y, &w, dims, false).unwrap()
            }),
            fl,
        );
        let mut dw = vec![0.0; o * k];
        report(
            &format!("linear_bwd_weight {name}"),
            median_secs(reps, || linear_bwd_weight(&mut dw, &y, &x, dims).unwrap()),
            fl,
        );
    }

    // Decode attention: one query over 256 cached positions, f32 and f16 caches.
    if want("decode_attn") {
        use slm_kernels::attention_decode::{attend_cache, Cache, DecodeAttn};
        let s = DecodeAttn {
            heads: h,
            kv_heads: g,
            head_dim: e,
        };
        let n = 256;
        let q = rand_vec(h * e, 7);
        let (keys, vals) = (rand_vec(n * g * e, 8), rand_vec(n * g * e, 9));
        let bits = |v: &[f32]| -> Vec<u16> {
            v.iter()
                .map(|&x| half::f16::from_f32(x).to_bits())
                .collect()
        };
        let (kb, vb) = (bits(&keys), bits(&vals));
        let mut scores = vec![0f32; h * n];
        let mut out = vec![0f32; h * e];
        let flops = 4.0 * (h * n * e) as f64;
        for (label, cache) in [
            (
                "f32",
                Cache::F32 {
                    keys: &keys,
                    vals: &vals,
                },
            ),
            (
                "f16",
                Cache::F16 {
                    keys: &kb,
                    vals: &vb,
                },
            ),
        ] {
            report(
                &format!("decode_attn {label} (256 positions)"),
                median_secs(reps, || {
                    attend_cache(s, &q, cache, &mut scores, &mut out).unwrap()
                }),
                flops,
            );
        }
    }

    if want("attention") {
        let s = AttnShape {
            batch: b,
            seq: t,
            heads: h,
            kv_heads: g,
            head_dim: e,
        };
        let qkv = rand_vec(n * s.qkv_width(), 3);
        let mut y = vec![0.0; n * h * e];
        let mut p = vec![0.0; b * h * t * t];
        // causal half of QKᵀ and PV
        let fl = 2.0 * 2.0 * (b * h * e) as f64 * (t * (t + 1) / 2) as f64;
        report(
            "attention_fwd",
            median_secs(reps, || {
                attention_fwd(&mut y, &mut p, &qkv, None, s).unwrap()
            }),
            fl,
        );
        let mut dqkv = vec![0.0; qkv.len()];
        let dy = rand_vec(y.len(), 4);
        report(
            "attention_bwd",
            median_secs(reps, || {
                attention_bwd(&mut dqkv, &dy, &qkv, &p, None, s).unwrap()
            }),
            2.0 * fl,
        );
        let mut lse = vec![0.0; b * h * t];
        report(
            "attention_fwd_lse",
            median_secs(reps, || {
                attention_fwd_lse(&mut y, &mut lse, &qkv, None, s).unwrap()
            }),
            fl,
        );
        report(
            "attention_bwd_lse",
            median_secs(reps, || {
                attention_bwd_lse(&mut dqkv, &dy, &qkv, &lse, None, s).unwrap()
            }),
            2.0 * fl,
        );
        // Packed rows: four examples of t/4 tokens each (FLOP/s counted as for one causal
        // row, so the rate shows the work skipped).
        let starts: Vec<u32> = (0..n)
            .map(|r| ((r % t) / (t / 4).max(1) * (t / 4).max(1)) as u32)
            .collect();
        report(
            "attention_fwd packed t/4",
            median_secs(reps, || {
                attention_fwd(&mut y, &mut p, &qkv, Some(&starts), s).unwrap()
            }),
            fl,
        );
        report(
            "attention_bwd packed t/4",
            median_secs(reps, || {
                attention_bwd(&mut dqkv, &dy, &qkv, &p, Some(&starts), s).unwrap()
            }),
            2.0 * fl,
        );
    }
    if !want("elementwise") {
        return;
    }

    let rows = (4 << 20) / vocab;
    let logits0 = rand_vec(rows * vocab, 5);
    let targets: Vec<u32> = (0..rows).map(|i| (i * 7 % vocab) as u32).collect();
    let mut logits = logits0.clone();
    report(
        &format!("cross_entropy {rows} rows"),
        median_secs(reps, || {
            logits.copy_from_slice(&logits0);
            cross_entropy_fwd_bwd(&mut logits, &targets, vocab, 1.0).unwrap();
        }),
        0.0,
    );
    let gu = rand_vec(n * 2 * inter, 6);
    let mut act = vec![0.0; n * inter];
    report(
        "swiglu_fwd",
        median_secs(reps, || swiglu_fwd(&mut act, &gu, n, inter).unwrap()),
        0.0,
    );
    let mut dgu = vec![0.0; gu.len()];
    report(
        "swiglu_bwd",
        median_secs(reps, || swiglu_bwd(&mut dgu, &act, &gu, n, inter).unwrap()),
        0.0,
    );
    let x = rand_vec(n * d, 7);
    let w = rand_vec(d, 8);
    let (mut yn, mut r) = (vec![0.0; n * d], vec![0.0; n]);
    report(
        "rmsnorm_fwd",
        median_secs(reps, || {
            rmsnorm_fwd(&mut yn, &mut r, &x, &w, n, 1e-5).unwrap()
        }),
        0.0,
    );
    let (mut dx, mut dw) = (vec![0.0; n * d], vec![0.0; d]);
    report(
        "rmsnorm_bwd",
        median_secs(reps, || {
            rmsnorm_bwd(&mut dx, &mut dw, &yn, &x, &r, &w, n, true).unwrap()
        }),
        0.0,
    );
}
