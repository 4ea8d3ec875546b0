//! `slm finetune`: supervised fine-tuning (full or LoRA) on instruction, chat, completion or
//! text files.

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use slm_recipes::finetune::{resume, run as run_finetune, start, Finetune};
use slm_recipes::train::outcome_line;
use slm_train::finetune::{BaseType, FinetuneSettings, LoraConfig, Packing, TrainOn};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TrainOnArg {
    /// Assistant turns (chat), the completion (prompt/completion), everything (text).
    Completion,
    /// Every token of every example.
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PackingArg {
    /// Several examples per row; attention and positions restart at each example.
    On,
    /// One example per row, padded.
    Off,
}

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Data: JSONL (one object per line) or a JSON array, one format per file, \
detected from its keys: {\"messages\": [{\"role\", \"content\"}...]} (chat), {\"prompt\", \"completion\"} \
(plain text, not templated; or lists of messages), Alpaca {\"instruction\", \"input\", \"output\"}, \
ShareGPT {\"conversations\": [{\"from\", \"value\"}...]}, and {\"text\"}. Conversations are rendered with the \
model's chat template (or --chat-template) and, by default, only assistant turns are trained; a row that fits \
no format is refused with its line number.\n\n\
Defaults that work without tuning: rows of 512 tokens, 8,192 tokens per optimiser step (micro-batches of 4 \
rows, 4 accumulated), 3 epochs, lr 2e-5 full / 2e-4 LoRA with 3% warmup and cosine decay, 5% of the examples \
held out for the evaluation loss. The run directory gets config.toml, metrics.jsonl, checkpoints/, report.md, \
plots/loss.png and, at the end, the model in Hugging Face layout (full) or a PEFT adapter \
(adapter_config.json + adapter_model.safetensors; with --merge also merged/). Use an adapter with \
`slm generate/chat/eval -m BASE --adapter DIR`. Ctrl-C writes a checkpoint; --resume continues exactly.\n\n\
Examples:\n  slm finetune -m SmolLM2-135M-Instruct.Q4_1.gguf --data chats.jsonl --out runs/ft\n  \
slm finetune -m base.gguf --data alpaca.json --lora-rank 16 --out runs/lora --merge\n  \
slm finetune -m base.gguf --data train.jsonl --eval-data heldout.jsonl --epochs 1 --lr 1e-4 --out runs/task\n  \
slm finetune --resume runs/ft"
)]
pub struct Args {
    /// Base model: a Hugging Face directory, a .gguf file or a llama2.c checkpoint.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Training files (repeatable).
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Held-out files for the evaluation loss (instead of --eval-fraction).
    #[arg(long, num_args = 1..)]
    pub eval_data: Vec<PathBuf>,
    /// Share of the training examples held out for the evaluation loss [default: 0.05].
    #[arg(long)]
    pub eval_fraction: Option<f64>,
    /// Run directory.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Overwrite a non-empty --out.
    #[arg(long)]
    pub force: bool,
    /// Which tokens the loss is on.
    #[arg(long, value_enum, default_value_t = TrainOnArg::Completion)]
    pub train_on: TrainOnArg,
    /// Pack examples into rows, or pad one per row.
    #[arg(long, value_enum, default_value_t = PackingArg::On)]
    pub packing: PackingArg,
    /// A Jinja chat template file instead of the model's own.
    #[arg(long)]
    pub chat_template: Option<PathBuf>,
    /// Tokens per row (longer examples are cut, and counted) [default: 512].
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Tokens per optimiser step, rounded to whole rows [default: 8192].
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Rows per forward pass (memory grows with it) [default: 4].
    #[arg(long)]
    pub micro_batch: Option<usize>,
    /// Passes over the training rows [default: 3].
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Optimiser steps (instead of --epochs).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Peak learning rate [default: 2e-5 full, 2e-4 LoRA].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Evaluate every N steps (and at the end).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Checkpoint every N steps (and at the end, and on Ctrl-C).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Seed for the adapters' initialisation, the held-out split and the data order.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train LoRA adapters of this rank on a frozen base (full fine-tune without it).
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA alpha (the adapters' output is scaled by alpha/rank) [default: 2 × rank].
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Dropout on the adapters' input while training [default: 0].
    #[arg(long)]
    pub lora_dropout: Option<f64>,
    /// Linears to adapt, comma-separated from q,k,v,o,gate,up,down [default: all].
    #[arg(long, value_delimiter = ',')]
    pub lora_targets: Vec<String>,
    /// Scale the adapters by alpha/√rank (rank-stabilised LoRA).
    #[arg(long)]
    pub rslora: bool,
    /// Hold the frozen base's block linears as q8_0 or q4_0 blocks while the adapters train
    /// (QLoRA-style: ~4× / ~7× less memory for them; implies LoRA, rank 8 unless
    /// --lora-rank). The adapters learn on the quantised base; --merge merges them into
    /// that base dequantised.
    #[arg(long, value_parser = ["f32", "q8_0", "q4_0"])]
    pub base_type: Option<String>,
    /// Keep only each block's input in the forward and recompute the rest in the backward:
    /// far less activation memory (the largest share at long rows) for ~30% more time.
    #[arg(long)]
    pub activation_checkpointing: bool,
    /// With LoRA: also write the base with the adapters merged in (merged/).
    #[arg(long)]
    pub merge: bool,
    /// A TOML settings file ([train] and [finetune] tables, as the run's config.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
}

/// The settings the flags describe (over the --config file, over the defaults).
fn settings(a: &Args) -> Result<FinetuneSettings> {
    let base_type = a.base_type.as_deref().map(BaseType::parse).transpose()?;
    let quantized = base_type.is_some_and(|b| b != BaseType::F32);
    let lora = a.lora_rank.is_some() || quantized;
    let mut s = match &a.config {
        Some(p) => FinetuneSettings::from_toml(
            &std::fs::read_to_string(p).with_context(|| p.display().to_string())?,
        )
        .with_context(|| p.display().to_string())?,
        None => FinetuneSettings::defaults(lora),
    };
    if let Some(m) = &a.model {
        s.train.init = Some(m.clone());
    }
    let f = &mut s.finetune;
    if !a.data.is_empty() {
        f.data = a.data.iter().map(|p| p.display().to_string()).collect();
    }
    if !a.eval_data.is_empty() {
        f.eval_data = a
            .eval_data
            .iter()
            .map(|p| p.display().to_string())
            .collect();
    }
    if let Some(x) = a.eval_fraction {
        f.eval_fraction = x;
    }
    f.train_on = match a.train_on {
        TrainOnArg::Completion => TrainOn::Completion,
        TrainOnArg::All => TrainOn::All,
    };
    f.packing = match a.packing {
        PackingArg::On => Packing::On,
        PackingArg::Off => Packing::Off,
    };
    if let Some(t) = &a.chat_template {
        f.chat_template = Some(t.display().to_string());
    }
    if let Some(e) = a.epochs {
        f.epochs = e;
    }
    if let Some(r) = a.lora_rank {
        let mut l = f.lora.clone().unwrap_or_default();
        l.rank = r;
        l.alpha = a.lora_alpha.unwrap_or(2.0 * r as f64);
        if let Some(d) = a.lora_dropout {
            l.dropout = d;
        }
        if !a.lora_targets.is_empty() {
            l.targets = a.lora_targets.clone();
        }
        l.rslora |= a.rslora;
        f.lora = Some(l);
    } else if a.lora_alpha.is_some()
        || a.lora_dropout.is_some()
        || !a.lora_targets.is_empty()
        || a.rslora
    {
        bail!("--lora-alpha, --lora-dropout, --lora-targets and --rslora need --lora-rank");
    }
    if quantized && f.lora.is_none() {
        f.lora = Some(LoraConfig::default());
    }
    if let (Some(b), Some(l)) = (base_type, f.lora.as_mut()) {
        l.base_type = b;
    } else if base_type.is_some() {
        bail!("--base-type is how LoRA's frozen base is held: add --lora-rank R");
    }
    if a.merge && f.lora.is_none() {
        bail!("--merge is for LoRA runs (--lora-rank); a full fine-tune writes the model itself");
    }
    let t = &mut s.train;
    if let Some(n) = a.seq_len {
        t.seq_len = n;
    }
    if let Some(n) = a.micro_batch {
        t.batch_size = n;
    }
    if let Some(n) = a.batch_tokens {
        let rows = (n / t.seq_len.max(1)).max(1);
        t.grad_accum = rows.div_ceil(t.batch_size.max(1)).max(1);
        if rows < t.batch_size {
            t.batch_size = rows;
            t.grad_accum = 1;
        }
    }
    if let Some(n) = a.steps {
        t.steps = n;
    }
    if let Some(x) = a.lr {
        t.lr = x;
        t.min_lr = x / 10.0;
    }
    if let Some(n) = a.eval_every {
        t.eval_every = n;
    }
    if let Some(n) = a.checkpoint_every {
        t.checkpoint_every = n;
    }
    if let Some(n) = a.seed {
        t.seed = n;
    }
    t.activation_checkpointing |= a.activation_checkpointing;
    Ok(s)
}

fn describe(ft: &Finetune) {
    println!("{}", ft.summary);
    let m = &ft.trainer.model;
    let t = &ft.trainer.cfg;
    let what = match m.lora() {
        Some(l) => format!(
            "LoRA rank {} on {} linears: {} trainable parameters ({:.2}% of {}), base frozen{}",
            l.spec().rank,
            l.targets().len(),
            l.num_parameters(),
            100.0 * l.num_parameters() as f64 / m.num_parameters() as f64,
            m.num_parameters(),
            match m.base_kind() {
                Some(k) => format!(
                    " with its block linears as {k:?} blocks ({:.0} MB of weights)",
                    m.weight_bytes() as f64 / 1e6
                ),
                None => String::new(),
            }
        ),
        None => format!("full fine-tune of {} parameters", m.num_parameters()),
    };
    println!(
        "{what}; {} steps of {} × {} rows of {} tokens, lr {:.1e}",
        t.steps, t.grad_accum, t.batch_size, t.seq_len, t.lr
    );
}

pub fn run(a: Args) -> Result<()> {
    let mut ft = if let Some(dir) = &a.resume {
        let only_steps = a.model.is_none()
            && a.data.is_empty()
            && a.eval_data.is_empty()
            && a.config.is_none()
            && a.lora_rank.is_none()
            && a.base_type.is_none()
            && !a.activation_checkpointing
            && a.out.is_none();
        if !only_steps {
            bail!("--resume continues with the run's own config.toml; only --steps may change");
        }
        resume(dir, a.steps)?
    } else {
        let Some(out) = &a.out else {
            bail!("give --out DIR for the run directory")
        };
        if a.model.is_none() && a.config.is_none() {
            bail!("give the base model with -m MODEL");
        }
        start(settings(&a)?, out, a.force)?
    };
    describe(&ft);
    let (outcome, written) = run_finetune(&mut ft, a.merge)?;
    println!(
        "{}",
        outcome_line(&outcome, ft.trainer.run_dir(), "slm finetune --resume")
    );
    if let Some(d) = &written.adapter {
        println!("adapter (PEFT format): {}", d.display());
    }
    if let Some(d) = &written.model {
        println!("model: {}", d.display());
    }
    Ok(())
}
