//! A training run as the pipelines use it: the starting model (from a model or random
//! weights sized for the data) and the run itself (train, save the model, write the report).

use crate::progress::{ctrlc_flag, BarObserver};
use slm_core::{Error, Result};
use slm_train::engine::FastModel;
use slm_train::trainer::read_summary;
use slm_train::{TrainConfig, Trainer};
use std::path::Path;

/// Builds the starting model: `init` if given, else random weights for the preset.
pub fn initial_model(cfg: &TrainConfig) -> Result<FastModel> {
    let summary = read_summary(Path::new(&cfg.data))?;
    let llama = match &cfg.init {
        Some(spec) => {
            let loaded = slm_model::load(spec, None)
                .map_err(|e| Error::msg(format!("loading --set init={spec}: {e}")))?;
            if loaded.model.config.vocab_size < summary.vocab_size {
                return Err(Error::config(format!(
                    "the init model's vocabulary ({}) is smaller than the data's tokenizer ({})",
                    loaded.model.config.vocab_size, summary.vocab_size
                )));
            }
            loaded.model
        }
        None => slm_model::Llama::random(
            cfg.model_config(summary.vocab_size)?,
            cfg.seed,
            &candle_core::Device::Cpu,
        )?,
    };
    FastModel::from_llama(&llama)
}

/// Trains (Ctrl-C checkpoints and stops), saves the model unless interrupted, writes the
/// report; returns the outcome.
pub fn train_run(trainer: &mut Trainer) -> Result<slm_train::Outcome> {
    let flag = ctrlc_flag();
    let mut obs = BarObserver::new();
    let outcome = trainer.run(&flag, &mut obs)?;
    obs.finish();
    if !outcome.interrupted {
        trainer.save_model(&outcome, serde_json::json!({}))?;
    }
    slm_train::report::write_train_report(trainer.run_dir(), trainer.settings(), &outcome)?;
    Ok(outcome)
}

/// A TOML string literal.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The line a training command ends with: where the model is and its losses, or how to resume
/// an interrupted run (`resume` is the command that continues it, e.g. `slm train --resume`).
pub fn outcome_line(outcome: &slm_train::Outcome, run_dir: &Path, resume: &str) -> String {
    if outcome.interrupted {
        return format!(
            "interrupted at step {}: resume with `{resume} {}`",
            outcome.step,
            run_dir.display()
        );
    }
    let val = outcome.val_loss.map_or("-".into(), |v| format!("{v:.4}"));
    format!(
        "done: {} steps, {} tokens in {:.1} s; train loss {:.4}, val loss {val}; model in {}",
        outcome.step,
        outcome.tokens_seen,
        outcome.seconds,
        outcome.train_loss,
        run_dir.display()
    )
}
