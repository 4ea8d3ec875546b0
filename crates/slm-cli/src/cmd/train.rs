//! `slm train`: train a model from scratch (or continue one) on prepared token shards.

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use slm_distill::RunConfig;
use slm_recipes::train::{initial_model, outcome_line, train_run};
use std::path::PathBuf;

#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Settings come from defaults, then --config FILE (TOML), then the options, then \
--set key=value. The file has one table per concern: [train] (data preset init layers dim heads kv_heads \
hidden context seq_len batch_size grad_accum steps lr min_lr warmup_steps weight_decay beta1 beta2 eps \
grad_clip eval_every eval_windows checkpoint_every seed activation_checkpointing), [prune] (hold_masks sparsity initial start end \
every) and [distill] (teacher cache loss weight temperature, [distill.on_policy], [distill.hidden]; see \
`slm distill train`). --set takes dotted keys (train.lr=3e-4, distill.weight=0.5); a bare [train] key \
(lr=3e-4) and the flat keys of older runs (kd_weight, prune_sparsity, ...) still work.\n\
Recovery after `slm prune`: start from the pruned model, hold its zeros, distil from the dense parent \
(loss (1-w)·CE + w·T²·KL(teacher‖student), distill.weight w = 1 by default). Gradual pruning: \
prune.sparsity=S prunes every linear weight by magnitude on Zhu & Gupta's cubic schedule from prune.start \
to prune.end (default 3/4 of steps), holding the masks between updates.\n\
The run directory gets config.toml, metrics.jsonl, checkpoints/, report.md, plots/loss.png and, at the end, \
the model in Hugging Face layout. Ctrl-C writes a checkpoint; --resume continues exactly.\n\n\
Examples:\n  slm train --preset 15m --data data/ --out runs/teacher\n  \
slm train --data data/ --out runs/tiny --set layers=4 --set dim=128 --set steps=2000\n  slm train --resume runs/tiny\n  \
slm train --data data/ -m runs/p50 --hold-masks --teacher runs/dense --out runs/p50-rec --set steps=200 --set lr=3e-4\n  \
slm train --data data/ -m runs/dense --out runs/g80 --set prune.sparsity=0.8 --set steps=1000"
)]
pub struct Args {
    /// Folder made by `slm data prepare`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Size preset (260k, 1m, 4m, 15m, 42m, 110m).
    #[arg(long)]
    pub preset: Option<String>,
    /// Start from this model instead of random weights (train.init).
    #[arg(long = "model", short = 'm', visible_alias = "init")]
    pub init: Option<String>,
    /// Distil from this model (distill.teacher); e.g. the dense parent of a pruned model.
    #[arg(long)]
    pub teacher: Option<String>,
    /// Keep the starting model's zero weights at zero (prune.hold_masks; recovery after
    /// `slm prune`).
    #[arg(long)]
    pub hold_masks: bool,
    /// Run directory.
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// TOML file with settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a setting (repeatable), e.g. --set train.lr=3e-4.
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
        slm_distill::run::resume(dir, a.steps)?
    } else {
        let mut cfg = match &a.config {
            Some(p) => RunConfig::from_toml(
                &std::fs::read_to_string(p).with_context(|| p.display().to_string())?,
            )
            .with_context(|| p.display().to_string())?,
            None => RunConfig::default(),
        };
        if let Some(d) = &a.data {
            cfg.train.data = d.display().to_string();
        }
        if let Some(p) = &a.preset {
            cfg.train.preset = p.clone();
        }
        if let Some(m) = &a.init {
            cfg.train.init = Some(m.clone());
        }
        if let Some(m) = &a.teacher {
            cfg.distill.teacher = Some(m.clone());
        }
        cfg.prune.hold_masks |= a.hold_masks;
        let cfg = cfg.with_overrides(&a.set)?;
        let Some(out) = &a.out else {
            bail!("give --out DIR for the run directory")
        };
        let model = initial_model(&cfg.train)?;
        let t = &cfg.train;
        println!(
            "model: {} parameters ({} layers, dim {}, vocab {}); {} steps of {} × {} tokens",
            model.num_parameters(),
            model.config().num_hidden_layers,
            model.config().hidden_size,
            model.config().vocab_size,
            t.steps,
            t.batch_size * t.grad_accum,
            t.seq_len
        );
        slm_distill::run::start(&cfg, model, out)?
    };
    let outcome = train_run(&mut trainer)?;
    let resume = "slm train --resume";
    println!("{}", outcome_line(&outcome, trainer.run_dir(), resume));
    Ok(())
}
