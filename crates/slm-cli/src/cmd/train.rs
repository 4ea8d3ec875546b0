//! `slm train`: train a model from scratch (or continue one) on prepared token shards.

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use slm_recipes::train::{initial_model, toml_str, train_run};
use slm_train::{TrainConfig, Trainer};
use std::path::PathBuf;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Settings come from defaults, then --config FILE (TOML), then --set key=value. \
Keys: data preset init layers dim heads kv_heads hidden context seq_len batch_size grad_accum steps \
lr min_lr warmup_steps weight_decay beta1 beta2 eps grad_clip eval_every eval_windows checkpoint_every seed \
hold_masks teacher kd_loss kd_weight kd_temperature prune_sparsity prune_initial prune_start prune_end prune_every.\n\
Recovery after `slm prune`: start from the pruned model, hold its zeros, distil from the dense parent \
(loss (1-kd_weight)·CE + kd_weight·T²·KL(teacher‖student), kd_weight 1 by default). Gradual pruning: \
prune_sparsity=S prunes every linear weight by magnitude on Zhu & Gupta's cubic schedule from prune_start \
to prune_end (default 3/4 of steps), holding the masks between updates.\n\
The run directory gets config.toml, metrics.jsonl, checkpoints/, report.md, plots/loss.png and, at the end, \
the model in Hugging Face layout. Ctrl-C writes a checkpoint; --resume continues exactly.\n\n\
Examples:\n  slm train --preset 15m --data data/ --out runs/teacher\n  \
slm train --data data/ --out runs/tiny --set layers=4 --set dim=128 --set steps=2000\n  slm train --resume runs/tiny\n  \
slm train --data data/ --init runs/p50 --hold-masks --teacher runs/dense --out runs/p50-rec --set steps=200 --set lr=3e-4\n  \
slm train --data data/ --init runs/dense --out runs/g80 --set prune_sparsity=0.8 --set steps=1000"
)]
pub struct Args {
    /// Folder made by `slm data prepare`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Size preset (260k, 1m, 4m, 15m, 42m, 110m).
    #[arg(long)]
    pub preset: Option<String>,
    /// Start from this model instead of random weights (same as --set init=M).
    #[arg(long)]
    pub init: Option<String>,
    /// Distil from this model (same as --set teacher=M); e.g. the dense parent of a pruned
    /// model.
    #[arg(long)]
    pub teacher: Option<String>,
    /// Keep the starting model's zero weights at zero (recovery after `slm prune`).
    #[arg(long)]
    pub hold_masks: bool,
    /// Run directory.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// TOML file with settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a setting (repeatable), e.g. --set lr=3e-4.
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Continue the run in this directory from its latest checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// With --resume: train until this many steps in total.
    #[arg(long)]
    pub steps: Option<u64>,
}

pub fn run(a: Args) -> Result<()> {
    let mut trainer = if let Some(dir) = &a.resume {
        if !a.set.is_empty()
            || a.config.is_some()
            || a.init.is_some()
            || a.teacher.is_some()
            || a.hold_masks
        {
            bail!("--resume continues with the run's own config.toml; only --steps may change");
        }
        Trainer::resume(dir, a.steps)?
    } else {
        let text = match &a.config {
            Some(p) => Some(std::fs::read_to_string(p).with_context(|| p.display().to_string())?),
            None => None,
        };
        let mut sets = Vec::new();
        if let Some(d) = &a.data {
            sets.push(format!("data={}", toml_str(&d.display().to_string())));
        }
        if let Some(p) = &a.preset {
            sets.push(format!("preset={}", toml_str(p)));
        }
        if let Some(m) = &a.init {
            sets.push(format!("init={}", toml_str(m)));
        }
        if let Some(m) = &a.teacher {
            sets.push(format!("teacher={}", toml_str(m)));
        }
        if a.hold_masks {
            sets.push("hold_masks=true".into());
        }
        sets.extend(a.set.iter().cloned());
        let cfg = TrainConfig::resolve(text.as_deref(), &sets)?;
        let Some(out) = &a.out else {
            bail!("give --out DIR for the run directory")
        };
        let model = initial_model(&cfg)?;
        println!(
            "model: {} parameters ({} layers, dim {}, vocab {}); {} steps of {} × {} tokens",
            model.num_parameters(),
            model.config().num_hidden_layers,
            model.config().hidden_size,
            model.config().vocab_size,
            cfg.steps,
            cfg.batch_size * cfg.grad_accum,
            cfg.seq_len
        );
        Trainer::new(cfg, model, out)?
    };
    let outcome = train_run(&mut trainer)?;
    if outcome.interrupted {
        println!(
            "interrupted at step {}: resume with `slm train --resume {}`",
            outcome.step,
            trainer.run_dir().display()
        );
    } else {
        println!(
            "done: {} steps, {} tokens in {:.1} s; train loss {:.4}, val loss {}; model in {}",
            outcome.step,
            outcome.tokens_seen,
            outcome.seconds,
            outcome.train_loss,
            outcome
                .val_loss
                .map(|v| format!("{v:.4}"))
                .unwrap_or("-".into()),
            trainer.run_dir().display()
        );
    }
    Ok(())
}
