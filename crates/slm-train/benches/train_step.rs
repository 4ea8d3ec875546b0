//! Training-step throughput of the fast engine (forward + backward + AdamW), in tokens/s.
//!
//! The PyTorch twin is tools/reference/torch_train_bench.py (same presets, batch, seq and
//! thread count); run both and compare the ratio. Plain timing: warm-up steps, then the
//! median (and best/worst) over timed steps. Threads come from the rayon pool
//! (`RAYON_NUM_THREADS`), which the engine also hands to `gemm`.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench -p slm-train --bench train_step -- 4m 15m
//!   options: --batch 8 --seq 256 --steps 10 --warmup 2 --breakdown
//! ```
//! `--breakdown` also times forward-only (`forward_loss`) steps, so backward ≈ step − forward.
//! With `SLM_ENGINE_PROFILE=1` the time of every phase (summed over all steps) goes to stderr.
//! `--candle` also times the composed reference path (`slm_model::Llama` under candle
//! autograd, cross-entropy from candle ops, candle-nn's AdamW) on the same batch.

use slm_train::optim::{adamw_step, AdamWConfig};
use slm_train::FastModel;
use std::time::Instant;

struct Args {
    presets: Vec<String>,
    batch: usize,
    seq: usize,
    steps: usize,
    warmup: usize,
    breakdown: bool,
    candle: bool,
}

fn parse() -> Args {
    let mut a = Args {
        presets: Vec::new(),
        batch: 8,
        seq: 256,
        steps: 10,
        warmup: 2,
        breakdown: false,
        candle: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match s.as_str() {
            "--batch" => a.batch = num("--batch"),
            "--seq" => a.seq = num("--seq"),
            "--steps" => a.steps = num("--steps"),
            "--warmup" => a.warmup = num("--warmup"),
            "--breakdown" => a.breakdown = true,
            "--candle" => a.candle = true,
            "--bench" => {} // passed by `cargo bench`
            p if !p.starts_with('-') => a.presets.push(p.to_string()),
            other => panic!("unknown option {other}"),
        }
    }
    if a.presets.is_empty() {
        a.presets = vec!["4m".into(), "15m".into()];
    }
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn tokens(vocab: usize, n: usize, seed: u64) -> Vec<u32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % vocab as u64) as u32
        })
        .collect()
}

/// One timed configuration of the composed candle path: forward, composed cross-entropy,
/// backward and candle-nn's AdamW over `Var`s. Returns the median step time.
fn candle_steps(cfg: &slm_model::LlamaConfig, inputs: &[u32], targets: &[u32], args: &Args) -> f64 {
    use candle_core::{Device, Tensor, Var, D};
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};
    let (b, t) = (args.batch, args.seq);
    let dev = Device::Cpu;
    let tensors = slm_model::llama::random_tensors(cfg, 0, &dev).expect("random tensors");
    let vars: Vec<(String, Var)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), Var::from_tensor(t).expect("var")))
        .collect();
    let model = slm_model::Llama::from_tensors(
        cfg.clone(),
        vars.iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect(),
        std::path::Path::new("<bench>"),
    )
    .expect("model");
    let params = ParamsAdamW {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let mut opt = AdamW::new(vars.iter().map(|(_, v)| v.clone()).collect(), params).expect("adamw");
    let ids = Tensor::from_slice(inputs, (b, t), &dev).expect("ids");
    let tgt = Tensor::from_slice(targets, (b * t, 1), &dev).expect("targets");
    let mut step = || {
        let logits = model
            .forward(&ids, None)
            .expect("forward")
            .reshape((b * t, cfg.vocab_size))
            .expect("reshape");
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).expect("log_softmax");
        let loss = (logp
            .gather(&tgt, 1)
            .expect("gather")
            .sum_all()
            .expect("sum")
            .neg()
            .expect("neg")
            / (b * t) as f64)
            .expect("mean");
        opt.backward_step(&loss).expect("backward + adamw");
    };
    for _ in 0..args.warmup {
        step();
    }
    let times: Vec<f64> = (0..args.steps)
        .map(|_| {
            let t0 = Instant::now();
            step();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    median(times)
}

/// A preset, or `shakespeare`: nanoGPT's CPU tinyshakespeare model in our block (4 layers,
/// 4 heads, width 128, SwiGLU hidden 344, 67 characters, context 64; run it with
/// `--batch 12 --seq 64`).
fn bench_config(name: &str) -> slm_model::LlamaConfig {
    if name == "shakespeare" {
        let mut c = slm_model::preset("1m").expect("preset");
        c.num_hidden_layers = 4;
        c.hidden_size = 128;
        c.num_attention_heads = 4;
        c.num_key_value_heads = 4;
        c.head_dim = 32;
        c.intermediate_size = 344;
        c.vocab_size = 67;
        c.max_position_embeddings = 64;
        c.validate().expect("config");
        return c;
    }
    slm_model::preset(name).expect("preset")
}

fn main() {
    let args = parse();
    let threads = rayon::current_num_threads();
    for name in &args.presets {
        let cfg = bench_config(name);
        let device = candle_core::Device::Cpu;
        let tensors = slm_model::llama::random_tensors(&cfg, 0, &device).expect("random tensors");
        let mut model = FastModel::new(&cfg, &tensors).expect("model");
        let (b, t) = (args.batch, args.seq);
        let seq = tokens(cfg.vocab_size, b * (t + 1), 1);
        // inputs = seq[:, :-1], targets = seq[:, 1:]
        let inputs: Vec<u32> = seq.chunks(t + 1).flat_map(|r| r[..t].to_vec()).collect();
        let targets: Vec<u32> = seq.chunks(t + 1).flat_map(|r| r[1..].to_vec()).collect();
        let n = model.num_parameters();
        let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
        let hp = AdamWConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut step_no = 0u64;
        let mut step = |model: &mut FastModel| -> (f32, f64, f64) {
            step_no += 1;
            let t0 = Instant::now();
            model.zero_grad();
            let loss = model
                .forward_backward(&inputs, &targets, b, t)
                .expect("step");
            let t1 = Instant::now();
            for p in model.params_mut() {
                let wd = if p.info.is_matrix() {
                    hp.weight_decay
                } else {
                    0.0
                };
                let r = p.info.range();
                adamw_step(
                    p.value,
                    p.grad,
                    &mut m[r.clone()],
                    &mut v[r],
                    step_no,
                    &AdamWConfig {
                        weight_decay: wd,
                        ..hp
                    },
                )
                .expect("adamw");
            }
            let t2 = Instant::now();
            (loss, (t2 - t0).as_secs_f64(), (t2 - t1).as_secs_f64())
        };
        for _ in 0..args.warmup {
            step(&mut model);
        }
        let (mut times, mut opt_times, mut last) = (Vec::new(), Vec::new(), 0.0);
        for _ in 0..args.steps {
            let (loss, dt, dopt) = step(&mut model);
            times.push(dt);
            opt_times.push(dopt);
            last = loss;
        }
        let ntok = (b * t) as f64;
        let med = median(times.clone());
        let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
        let worst = times.iter().cloned().fold(0.0, f64::max);
        let mut line = format!(
            "{{\"impl\": \"slm-fast\", \"preset\": \"{name}\", \"params\": {n}, \"batch\": {b}, \"seq\": {t}, \
             \"threads\": {threads}, \"steps\": {}, \"median_step_s\": {med:.4}, \"tokens_per_s\": {:.1}, \
             \"tokens_per_s_best\": {:.1}, \"tokens_per_s_worst\": {:.1}, \"adamw_s\": {:.4}, \"last_loss\": {last:.4}, \
             \"activation_mib\": {:.0}",
            args.steps,
            ntok / med,
            ntok / best,
            ntok / worst,
            median(opt_times),
            model.activation_bytes() as f64 / (1 << 20) as f64,
        );
        if args.breakdown {
            let mut fwd = Vec::new();
            for _ in 0..args.steps.max(3) {
                let t0 = Instant::now();
                model
                    .forward_loss(&inputs, &targets, b, t)
                    .expect("forward");
                fwd.push(t0.elapsed().as_secs_f64());
            }
            line += &format!(", \"forward_s\": {:.4}", median(fwd));
        }
        println!("{line}}}");
        if args.candle {
            let med = candle_steps(&cfg, &inputs, &targets, &args);
            println!(
                "{{\"impl\": \"candle-composed\", \"preset\": \"{name}\", \"batch\": {b}, \"seq\": {t}, \
                 \"threads\": {threads}, \"steps\": {}, \"median_step_s\": {med:.4}, \"tokens_per_s\": {:.1}}}",
                args.steps,
                ntok / med
            );
        }
        // With SLM_ENGINE_PROFILE set: time per phase over all steps above.
        for (phase, secs, calls) in slm_train::engine::profile_report() {
            eprintln!("  {name} {phase:<16} {secs:8.3} s {calls:6} calls");
        }
    }
}
