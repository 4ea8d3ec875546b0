//! The training loop's settings: [`TrainConfig`] (the `[train]` table of a run's settings
//! file: data, model size, batches, optimiser, evaluation, checkpoints) and [`PruneConfig`]
//! (the `[prune]` table: masks held from the starting model and gradual pruning).
//!
//! Both reject unknown keys. The settings file as a whole, with its `[distill]` table, old
//! flat keys and `--set` overrides, is `slm_distill::RunConfig`; this crate only stores the
//! resolved file with the run (see [`crate::trainer::Setup`]).

use crate::gradual::GradualPruning;
use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use slm_model::LlamaConfig;

/// The `[train]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Folder made by `slm data prepare` (train.bin, val.bin, data.json, tokenizer).
    pub data: String,
    /// Size preset (`slm_model::preset_names`), used when `init` is not set.
    pub preset: String,
    /// Start from this model (HF directory, GGUF, llama2.c) instead of random weights.
    pub init: Option<String>,
    /// Architecture overrides on top of the preset.
    pub layers: Option<usize>,
    pub dim: Option<usize>,
    pub heads: Option<usize>,
    pub kv_heads: Option<usize>,
    pub hidden: Option<usize>,
    /// Model context; defaults to `seq_len`.
    pub context: Option<usize>,
    /// Tokens per training window.
    pub seq_len: usize,
    /// Windows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Optimiser steps.
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// The floor the cosine decays to.
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f64,
    /// Evaluate on the validation shard every N steps (0 = only at the end).
    pub eval_every: u64,
    /// Validation windows per evaluation.
    pub eval_windows: usize,
    /// Write a checkpoint every N steps (0 = only at the end).
    pub checkpoint_every: u64,
    /// Seed for initialisation and data order.
    pub seed: u64,
    /// Keep only each block's input in the forward and recompute the rest in the backward:
    /// much less activation memory for about one more forward per step (same results).
    pub activation_checkpointing: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data: String::new(),
            preset: "4m".into(),
            init: None,
            layers: None,
            dim: None,
            heads: None,
            kv_heads: None,
            hidden: None,
            context: None,
            seq_len: 256,
            batch_size: 8,
            grad_accum: 1,
            steps: 1000,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 100,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            eval_every: 100,
            eval_windows: 32,
            checkpoint_every: 500,
            seed: 1337,
            activation_checkpointing: false,
        }
    }
}

impl TrainConfig {
    /// Checks the loop's settings (the data is checked where it is opened: a fine-tuning
    /// run brings its own, see [`crate::trainer::Setup::data`]).
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("seq_len", self.seq_len as f64),
            ("batch_size", self.batch_size as f64),
            ("grad_accum", self.grad_accum as f64),
            ("steps", self.steps as f64),
            ("lr", self.lr),
        ];
        for (k, v) in positive {
            if !(v > 0.0) {
                return Err(Error::config(format!("`train.{k}` must be positive")));
            }
        }
        if self.min_lr < 0.0 || self.min_lr > self.lr {
            return Err(Error::config(format!(
                "`train.min_lr` ({}) must be in [0, lr = {}]",
                self.min_lr, self.lr
            )));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err(Error::config("betas must be in [0, 1)"));
        }
        if let Some(c) = self.context {
            if c < self.seq_len {
                return Err(Error::config(format!(
                    "context ({c}) is shorter than seq_len ({})",
                    self.seq_len
                )));
            }
        }
        Ok(())
    }

    /// The model architecture: the preset with overrides, vocabulary from the tokenizer.
    pub fn model_config(&self, vocab_size: usize) -> Result<LlamaConfig> {
        let mut c = slm_model::preset(&self.preset)?;
        c.vocab_size = vocab_size;
        if let Some(v) = self.layers {
            c.num_hidden_layers = v;
        }
        if let Some(v) = self.dim {
            c.hidden_size = v;
        }
        if let Some(v) = self.heads {
            c.num_attention_heads = v;
            c.num_key_value_heads = v;
        }
        if let Some(v) = self.kv_heads {
            c.num_key_value_heads = v;
        }
        if let Some(v) = self.hidden {
            c.intermediate_size = v;
        }
        if c.hidden_size % c.num_attention_heads != 0 {
            return Err(Error::config(format!(
                "dim ({}) must be a multiple of heads ({})",
                c.hidden_size, c.num_attention_heads
            )));
        }
        c.head_dim = c.hidden_size / c.num_attention_heads;
        c.max_position_embeddings = self.context.unwrap_or(self.seq_len);
        c.validate()?;
        Ok(c)
    }
}

/// The `[prune]` table: which weights the run keeps at zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PruneConfig {
    /// Keep the zeros of the starting model's linear weights at exactly zero through every
    /// step (recovery training after `slm prune`).
    pub hold_masks: bool,
    /// Gradual magnitude pruning to this sparsity during training (0 = off), on Zhu &
    /// Gupta's cubic schedule (see `slm_train::gradual`).
    pub sparsity: f64,
    /// Sparsity at the first pruning update.
    pub initial: f64,
    /// Step of the first pruning update.
    pub start: u64,
    /// Step the target sparsity is reached (default: three quarters of `train.steps`).
    pub end: Option<u64>,
    /// Steps between pruning updates (default: 16 updates between start and end).
    pub every: Option<u64>,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            hold_masks: false,
            sparsity: 0.0,
            initial: 0.0,
            start: 0,
            end: None,
            every: None,
        }
    }
}

impl PruneConfig {
    /// Checks the schedule against a run of `steps` optimiser steps.
    pub fn validate(&self, steps: u64) -> Result<()> {
        let Some(g) = self.schedule(steps) else {
            if self.sparsity < 0.0 {
                return Err(Error::config("`prune.sparsity` must be in [0, 1)"));
            }
            return Ok(());
        };
        for (k, s) in [("initial", g.initial), ("sparsity", g.target)] {
            if !(0.0..1.0).contains(&s) {
                return Err(Error::config(format!(
                    "`prune.{k}` must be in [0, 1), got {s}"
                )));
            }
        }
        if g.initial > g.target {
            return Err(Error::config(format!(
                "`prune.initial` ({}) exceeds the target `prune.sparsity` ({})",
                g.initial, g.target
            )));
        }
        if g.every == 0 {
            return Err(Error::config("`prune.every` must be at least 1"));
        }
        if g.end > steps {
            return Err(Error::config(format!(
                "`prune.end` ({}) is after the last step ({steps})",
                g.end
            )));
        }
        g.validate()
    }

    /// The gradual pruning schedule of a run of `steps` steps, when `sparsity` > 0.
    pub fn schedule(&self, steps: u64) -> Option<GradualPruning> {
        if self.sparsity <= 0.0 {
            return None;
        }
        let end = self.end.unwrap_or(steps * 3 / 4).max(self.start);
        let every = self.every.unwrap_or(((end - self.start) / 16).max(1));
        Some(GradualPruning {
            initial: self.initial,
            target: self.sparsity,
            start: self.start,
            end,
            every,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TrainConfig {
        TrainConfig {
            data: "d".into(),
            layers: Some(4),
            dim: Some(128),
            heads: Some(4),
            hidden: Some(352),
            seq_len: 64,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn model_config_applies_overrides() {
        let m = tiny().model_config(65).unwrap();
        assert_eq!(
            (
                m.num_hidden_layers,
                m.hidden_size,
                m.head_dim,
                m.vocab_size,
                m.max_position_embeddings
            ),
            (4, 128, 32, 65, 64)
        );
    }

    #[test]
    fn checks_name_their_key() {
        let e = |c: TrainConfig| c.validate().unwrap_err().to_string();
        assert!(e(TrainConfig {
            min_lr: 1.0,
            ..tiny()
        })
        .contains("train.min_lr"));
        assert!(e(TrainConfig { steps: 0, ..tiny() }).contains("train.steps"));
        let p = |sparsity: f64, end: Option<u64>| PruneConfig {
            sparsity,
            end,
            ..PruneConfig::default()
        };
        assert!(p(0.0, None).validate(10).is_ok());
        assert!(p(0.5, Some(8)).validate(10).is_ok());
        let e = p(0.5, Some(12)).validate(10).unwrap_err().to_string();
        assert!(e.contains("prune.end"), "{e}");
        let e = p(1.5, None).validate(10).unwrap_err().to_string();
        assert!(e.contains("prune.sparsity"), "{e}");
        assert!(p(-0.1, None).validate(10).is_err());
        // Default end: three quarters of the run; 16 updates between start and end.
        let g = p(0.5, None).schedule(64).unwrap();
        assert_eq!((g.start, g.end, g.every), (0, 48, 3));
    }
}
