//! The training configuration: one flat, typed TOML table that rejects unknown keys.
//!
//! A run's settings come from, in order: defaults, a `--config` TOML file, `--set key=value`
//! overrides (each value parsed as TOML, so `--set lr=3e-4` is a float and
//! `--set preset="15m"` a string). The resolved table is written to the run directory as
//! `config.toml`, which `--resume` reads back.

use crate::gradual::GradualPruning;
use serde::{Deserialize, Serialize};
use slm_core::{Error, Result};
use slm_kernels::distill::{DistillSpec, KdLoss};
use slm_kernels::hidden_match::HiddenMatch;
use slm_model::LlamaConfig;

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
    /// Keep the zeros of the starting model's linear weights at exactly zero through every
    /// step (recovery training after `slm prune`).
    pub hold_masks: bool,
    /// Distil from this model (HF directory, GGUF, llama2.c): the loss becomes
    /// (1 − kd_weight)·CE + kd_weight·T²·D(teacher ‖ student). For pruning recovery, the
    /// dense parent.
    pub teacher: Option<String>,
    /// Distil offline from this teacher cache (`slm distill cache`) instead of a live
    /// teacher: sparse forward KL over the cached top-k plus a tail bucket, at T = 1.
    pub kd_cache: Option<String>,
    /// The divergence D: `fkl`, `rkl`, `jsd:β`, `skl:α`, `srkl:α` or `tvd`
    /// (`slm_kernels::distill::KdLoss`).
    pub kd_loss: String,
    /// Weight of the teacher term, in [0, 1].
    pub kd_weight: f64,
    /// Softening temperature T for teacher and student.
    pub kd_temperature: f64,
    /// On-policy distillation (GKD's λ): the probability that a micro-batch is replaced by
    /// the student's own continuations of its windows' first `on_policy_prompt` tokens,
    /// scored by the live teacher (loss on the generated tokens only).
    pub on_policy: f64,
    /// Prompt tokens kept from each window for on-policy continuations (default seq_len/2).
    pub on_policy_prompt: Option<usize>,
    /// Sampling temperature of the student's continuations.
    pub on_policy_temperature: f64,
    /// Nucleus (top-p) cut of the student's continuations: 1 samples the whole tempered
    /// distribution, as GKD does; lower keeps only the most likely tokens.
    pub on_policy_top_p: f64,
    /// Hidden-state distillation (live teacher only): `cosine` or `mse` between mapped
    /// student and teacher block outputs, through a learned projection when the widths
    /// differ (`slm_train::hidden`). Unset = off.
    pub kd_hidden: Option<String>,
    /// Weight of the hidden-state loss (added to the logit loss).
    pub kd_hidden_weight: f64,
    /// Layer map `student:teacher,...` (0-based blocks); default: student block i ↔
    /// teacher block ⌈(i+1)·L_t/L_s⌉ − 1.
    pub kd_hidden_layers: Option<String>,
    /// Gradual magnitude pruning to this sparsity during training (0 = off), on Zhu &
    /// Gupta's cubic schedule (see `slm_train::gradual`).
    pub prune_sparsity: f64,
    /// Sparsity at the first pruning update.
    pub prune_initial: f64,
    /// Step of the first pruning update.
    pub prune_start: u64,
    /// Step the target sparsity is reached (default: three quarters of `steps`).
    pub prune_end: Option<u64>,
    /// Steps between pruning updates (default: 16 updates between start and end).
    pub prune_every: Option<u64>,
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
            hold_masks: false,
            teacher: None,
            kd_cache: None,
            kd_loss: "fkl".into(),
            kd_weight: 1.0,
            kd_temperature: 1.0,
            on_policy: 0.0,
            on_policy_prompt: None,
            on_policy_temperature: 1.0,
            on_policy_top_p: 1.0,
            kd_hidden: None,
            kd_hidden_weight: 1.0,
            kd_hidden_layers: None,
            prune_sparsity: 0.0,
            prune_initial: 0.0,
            prune_start: 0,
            prune_end: None,
            prune_every: None,
        }
    }
}

impl TrainConfig {
    /// Defaults, then the TOML text, then `key=value` overrides.
    pub fn resolve(toml_text: Option<&str>, overrides: &[String]) -> Result<Self> {
        let mut table = match toml_text {
            Some(t) => t
                .parse::<toml::Table>()
                .map_err(|e| Error::config(format!("config file: {e}")))?,
            None => toml::Table::new(),
        };
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| Error::config(format!("--set `{o}`: expected key=value")))?;
            let k = k.trim();
            // Parse the value as TOML; a bare word is taken as a string.
            let value = format!("v = {}", v.trim())
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(v.trim().to_string()));
            table.insert(k.to_string(), value);
        }
        let cfg: TrainConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.data.is_empty() {
            return Err(Error::config(
                "no training data: set `data` (a folder made by `slm data prepare`)",
            ));
        }
        let positive = [
            ("seq_len", self.seq_len as f64),
            ("batch_size", self.batch_size as f64),
            ("grad_accum", self.grad_accum as f64),
            ("steps", self.steps as f64),
            ("lr", self.lr),
        ];
        for (k, v) in positive {
            if !(v > 0.0) {
                return Err(Error::config(format!("`{k}` must be positive")));
            }
        }
        if self.min_lr < 0.0 || self.min_lr > self.lr {
            return Err(Error::config(format!(
                "`min_lr` ({}) must be in [0, lr = {}]",
                self.min_lr, self.lr
            )));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err(Error::config("betas must be in [0, 1)"));
        }
        self.distill_spec()?;
        if let Some(kind) = &self.kd_hidden {
            HiddenMatch::parse(kind).map_err(|e| Error::config(format!("`kd_hidden`: {e}")))?;
            if self.teacher.is_none() {
                return Err(Error::config(
                    "`kd_hidden` (hidden-state distillation) needs the live teacher (`teacher`): \
                     a teacher cache holds only log-probs",
                ));
            }
            if !(self.kd_hidden_weight.is_finite() && self.kd_hidden_weight >= 0.0) {
                return Err(Error::config("`kd_hidden_weight` must be ≥ 0"));
            }
            if let Some(map) = &self.kd_hidden_layers {
                crate::hidden::parse_pairs(map)?;
            }
        } else if self.kd_hidden_layers.is_some() {
            return Err(Error::config(
                "`kd_hidden_layers` is set but `kd_hidden` is not: set kd_hidden=\"cosine\" or \"mse\"",
            ));
        }
        if !(0.0..=1.0).contains(&self.on_policy) {
            return Err(Error::config("`on_policy` (λ) must be in [0, 1]"));
        }
        if self.on_policy > 0.0 {
            if self.teacher.is_none() {
                return Err(Error::config(
                    "on-policy batches need a live `teacher` to score the student's samples",
                ));
            }
            let p = self.on_policy_prompt.unwrap_or(self.seq_len / 2);
            if p == 0 || p > self.seq_len {
                return Err(Error::config(format!(
                    "`on_policy_prompt` ({p}) must be in 1..={}",
                    self.seq_len
                )));
            }
            if self.on_policy_temperature.is_nan() || self.on_policy_temperature < 0.0 {
                return Err(Error::config("`on_policy_temperature` must be ≥ 0"));
            }
            if !(self.on_policy_top_p > 0.0 && self.on_policy_top_p <= 1.0) {
                return Err(Error::config("`on_policy_top_p` must be in (0, 1]"));
            }
        }
        if let Some(g) = self.gradual_pruning() {
            g.validate()?;
            if g.end > self.steps {
                return Err(Error::config(format!(
                    "`prune_end` ({}) is after the last step ({})",
                    g.end, self.steps
                )));
            }
        } else if self.prune_sparsity < 0.0 {
            return Err(Error::config("`prune_sparsity` must be in [0, 1)"));
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

    /// The distillation loss when a teacher or a teacher cache is set.
    pub fn distill_spec(&self) -> Result<Option<DistillSpec>> {
        if self.teacher.is_some() && self.kd_cache.is_some() {
            return Err(Error::config(
                "set `teacher` (online) or `kd_cache` (offline), not both",
            ));
        }
        if self.teacher.is_none() && self.kd_cache.is_none() {
            return Ok(None);
        }
        let spec = DistillSpec {
            loss: KdLoss::parse(&self.kd_loss).map_err(|e| Error::config(e.to_string()))?,
            temperature: self.kd_temperature as f32,
            kd_weight: self.kd_weight as f32,
        };
        spec.validate().map_err(|e| Error::config(e.to_string()))?;
        if self.kd_cache.is_some() && (spec.loss != KdLoss::ForwardKl || spec.temperature != 1.0) {
            return Err(Error::config(format!(
                "a teacher cache holds the teacher's top-k at T = 1 and trains with forward KL: \
                 kd_loss `{}` at temperature {} needs the live teacher (`teacher`)",
                self.kd_loss, self.kd_temperature
            )));
        }
        Ok(Some(spec))
    }

    /// The gradual pruning schedule, when `prune_sparsity` > 0.
    pub fn gradual_pruning(&self) -> Option<GradualPruning> {
        if self.prune_sparsity <= 0.0 {
            return None;
        }
        let end = self
            .prune_end
            .unwrap_or(self.steps * 3 / 4)
            .max(self.prune_start);
        let every = self
            .prune_every
            .unwrap_or(((end - self.prune_start) / 16).max(1));
        Some(GradualPruning {
            initial: self.prune_initial,
            target: self.prune_sparsity,
            start: self.prune_start,
            end,
            every,
        })
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::config(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_typed_and_unknown_keys_rejected() {
        let c = TrainConfig::resolve(
            Some("steps = 20\npreset = \"1m\"\ndata = \"d\"\n"),
            &[
                "lr=3e-4".into(),
                "batch_size = 4".into(),
                "init=runs/x".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.steps, c.lr, c.batch_size, c.preset.as_str()),
            (20, 3e-4, 4, "1m")
        );
        assert_eq!(c.init.as_deref(), Some("runs/x"));
        let e = TrainConfig::resolve(None, &["data=d".into(), "learning_rate=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("learning_rate"), "{e}");
        let e = TrainConfig::resolve(None, &["data=d".into(), "steps=\"many\"".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("steps") || e.contains("invalid type"), "{e}");
        assert!(TrainConfig::resolve(None, &["data=d".into(), "min_lr=1".into()]).is_err());
        assert!(TrainConfig::resolve(None, &[])
            .unwrap_err()
            .to_string()
            .contains("data"));
        let back = TrainConfig::resolve(Some(&c.to_toml().unwrap()), &[]).unwrap();
        assert_eq!(back, c);
        // On-policy sampling settings are checked when on-policy batches are on.
        let on = |top_p: &str| {
            TrainConfig::resolve(
                None,
                &[
                    "data=d".into(),
                    "teacher=t".into(),
                    "on_policy=0.5".into(),
                    format!("on_policy_top_p={top_p}"),
                ],
            )
        };
        assert_eq!(on("0.9").unwrap().on_policy_top_p, 0.9);
        for bad in ["0", "1.5", "-0.1"] {
            let e = on(bad).unwrap_err().to_string();
            assert!(e.contains("on_policy_top_p"), "{bad}: {e}");
        }
    }

    #[test]
    fn model_config_applies_overrides() {
        let c = TrainConfig::resolve(
            None,
            &[
                "data=d".into(),
                "layers=4".into(),
                "dim=128".into(),
                "heads=4".into(),
                "hidden=352".into(),
                "seq_len=64".into(),
            ],
        )
        .unwrap();
        let m = c.model_config(65).unwrap();
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
}
