//! Starting and resuming a training run from its settings ([`RunConfig`]): the trainer
//! (`slm_train::Trainer`) with the objective the settings ask for, distillation when
//! `[distill]` names a teacher or a cache, else next-token cross-entropy.

use crate::config::RunConfig;
use crate::objective::Distillation;
use slm_core::Result;
use slm_train::{CrossEntropy, FastModel, Objective, Setup, Trainer};
use std::path::Path;

/// The trainer setup `cfg` describes for `student` (validated; the teacher is loaded).
pub fn setup(cfg: &RunConfig, student: &FastModel) -> Result<Setup> {
    cfg.validate()?;
    let objective: Box<dyn Objective> = match Distillation::from_config(cfg, student.config())? {
        Some(d) => Box::new(d),
        None => Box::new(CrossEntropy),
    };
    Ok(Setup {
        train: cfg.train.clone(),
        prune: cfg.prune.clone(),
        objective,
        settings: cfg.to_toml()?,
        data: None,
    })
}

/// A new run of `cfg` in `run_dir`, starting from `student`.
pub fn start(cfg: &RunConfig, student: FastModel, run_dir: &Path) -> Result<Trainer> {
    Trainer::new(setup(cfg, &student)?, student, run_dir)
}

/// Continues the run in `run_dir` from its latest checkpoint with its own settings (an
/// older run's flat settings included); `steps` may extend it.
pub fn resume(run_dir: &Path, steps: Option<u64>) -> Result<Trainer> {
    Trainer::resume(run_dir, |settings, student| {
        let mut cfg = RunConfig::from_toml(settings)?;
        if let Some(s) = steps {
            cfg.train.steps = s;
        }
        setup(&cfg, student)
    })
}
