//! `slm bench`: timings, reported as medians over repetitions.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use slm_train::engine::FastModel;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Training throughput: forward + backward + AdamW update, tokens/s.
    #[command(
        after_help = "Compare with PyTorch on the same machine: tools/reference/torch_train_bench.py \
(same architecture, batch, sequence and threads).\n\nExample:\n  slm --threads 2 bench train --preset 15m --seq 256 --batch 8"
    )]
    Train(TrainBenchArgs),
}

#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// Size preset.
    #[arg(long, default_value = "4m")]
    pub preset: String,
    /// Override the preset's vocabulary size.
    #[arg(long)]
    pub vocab: Option<usize>,
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Train(a) => bench_train(a),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

fn bench_train(a: TrainBenchArgs) -> Result<()> {
    if a.steps == 0 {
        bail!("--steps must be at least 1");
    }
    let mut cfg = slm_model::preset(&a.preset)?;
    if let Some(v) = a.vocab {
        cfg.vocab_size = v;
    }
    cfg.max_position_embeddings = cfg.max_position_embeddings.max(a.seq);
    let llama = slm_model::Llama::random(cfg.clone(), 1, &candle_core::Device::Cpu)?;
    let mut model = FastModel::from_llama(&llama)?;
    let mut opt = slm_train::optim::AdamW::new(Default::default(), model.flat_params().len());
    let n = a.batch * a.seq;
    let inputs: Vec<u32> = (0..n)
        .map(|i| ((i * 7919 + 13) % cfg.vocab_size) as u32)
        .collect();
    let targets: Vec<u32> = (0..n)
        .map(|i| ((i * 104_729 + 7) % cfg.vocab_size) as u32)
        .collect();
    let mut times = Vec::with_capacity(a.steps);
    for i in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        model.zero_grad();
        model.forward_backward(&inputs, &targets, a.batch, a.seq)?;
        opt.update(&mut model, 1e-4)?;
        if i >= a.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let step = median(times.clone());
    let tok_s = n as f64 / step;
    let threads = rayon::current_num_threads();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"preset": a.preset, "parameters": model.num_parameters(), "vocab": cfg.vocab_size,
                "seq": a.seq, "batch": a.batch, "threads": threads, "steps": a.steps,
                "median_step_s": step, "tokens_per_sec": tok_s,
                "min_step_s": times.iter().cloned().fold(f64::INFINITY, f64::min)})
        );
    } else {
        println!(
            "train step, preset {} ({:.2}M params, vocab {}), batch {} × seq {}, {} threads: median {:.1} ms over {} steps = {:.0} tokens/s",
            a.preset,
            model.num_parameters() as f64 / 1e6,
            cfg.vocab_size,
            a.batch,
            a.seq,
            threads,
            step * 1e3,
            a.steps,
            tok_s
        );
    }
    Ok(())
}
