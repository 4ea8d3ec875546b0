//! Fine-tuning settings: the `[finetune]` table (data files, loss mask, packing, chat
//! template) with its optional `[finetune.lora]` table (adapters on a frozen base), and the
//! whole settings file of a fine-tuning run (`[train]` + `[finetune]`), which is what the
//! run stores in `config.toml` and its checkpoints. Both tables reject unknown keys.

use crate::config::TrainConfig;
use crate::engine::lora::LoraSpec;
use serde::{Deserialize, Serialize};
use slm_core::{Error, LinearRole, Result};
pub use slm_data::sft::{Packing, TrainOn};

/// How the frozen base's block linears are held while adapters train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseType {
    /// f32, as loaded (LoRA).
    #[default]
    F32,
    /// Q8_0 blocks, 8.5 bits per weight (QLoRA-style).
    Q8_0,
    /// Q4_0 blocks, 4.5 bits per weight (QLoRA-style).
    Q4_0,
}

impl BaseType {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "q8_0" => Ok(Self::Q8_0),
            "q4_0" => Ok(Self::Q4_0),
            _ => Err(Error::config(format!(
                "unknown base type `{s}`: expected f32, q8_0 or q4_0"
            ))),
        }
    }

    /// The block format, or `None` for f32.
    pub fn block_kind(self) -> Option<slm_kernels::quant::BlockKind> {
        use slm_kernels::quant::BlockKind;
        match self {
            Self::F32 => None,
            Self::Q8_0 => Some(BlockKind::Q8_0),
            Self::Q4_0 => Some(BlockKind::Q4_0),
        }
    }
}

/// The `[finetune.lora]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Scale by α/√r (rank-stabilised LoRA) instead of α/r.
    pub rslora: bool,
    /// Linears to adapt: q, k, v, o, gate, up, down.
    pub targets: Vec<String>,
    /// How the frozen base's block linears are held: f32, or q8_0 / q4_0 blocks (QLoRA).
    pub base_type: BaseType,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            rslora: false,
            base_type: BaseType::F32,
            targets: LinearRole::ALL
                .iter()
                .map(|r| r.short().to_string())
                .collect(),
        }
    }
}

impl LoraConfig {
    /// The engine's description of these adapters.
    pub fn spec(&self) -> Result<LoraSpec> {
        let mut targets = Vec::new();
        for t in &self.targets {
            let role = LinearRole::parse(t.trim()).ok_or_else(|| {
                Error::config(format!(
                    "unknown LoRA target `{t}`: expected some of q, k, v, o, gate, up, down"
                ))
            })?;
            if !targets.contains(&role) {
                targets.push(role);
            }
        }
        let spec = LoraSpec {
            rank: self.rank,
            alpha: self.alpha,
            dropout: self.dropout,
            rslora: self.rslora,
            targets,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// The `[finetune]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    /// Training files (JSONL or a JSON array: messages, prompt/completion, Alpaca,
    /// ShareGPT or text rows; see `slm_data::sft`).
    pub data: Vec<String>,
    /// Held-out files; when empty, `eval_fraction` of the examples are held out.
    pub eval_data: Vec<String>,
    pub eval_fraction: f64,
    pub train_on: TrainOn,
    /// Pack several examples per row (attention and positions reset at each boundary), or
    /// pad one example per row.
    pub packing: Packing,
    /// A Jinja chat template file instead of the model's own.
    pub chat_template: Option<String>,
    /// Passes over the training rows (sets `train.steps` when that is 0).
    pub epochs: f64,
    /// Adapters on a frozen base; absent = full fine-tune.
    pub lora: Option<LoraConfig>,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            data: Vec::new(),
            eval_data: Vec::new(),
            eval_fraction: 0.05,
            train_on: TrainOn::Completion,
            packing: Packing::On,
            chat_template: None,
            epochs: 3.0,
            lora: None,
        }
    }
}

impl FinetuneConfig {
    pub fn validate(&self) -> Result<()> {
        if self.data.is_empty() {
            return Err(Error::config(
                "no training data: give --data FILE (JSONL or JSON: messages, prompt/completion, \
                 Alpaca, ShareGPT or text rows)",
            ));
        }
        if !(0.0..0.9).contains(&self.eval_fraction) {
            return Err(Error::config(format!(
                "`finetune.eval_fraction` must be in [0, 0.9), got {}",
                self.eval_fraction
            )));
        }
        if !(self.epochs > 0.0) || !self.epochs.is_finite() {
            return Err(Error::config("`finetune.epochs` must be positive"));
        }
        if let Some(l) = &self.lora {
            l.spec()?;
        }
        Ok(())
    }
}

/// A fine-tuning run's settings file: `[train]` (the loop; `train.init` is the base model)
/// and `[finetune]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FinetuneSettings {
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub finetune: FinetuneConfig,
}

impl FinetuneSettings {
    /// Defaults a user can run without tuning: SFT's usual learning rates (2e-5 full,
    /// 2e-4 LoRA), no weight decay, 512-token rows, 8,192 tokens per step, 3 epochs, 3%
    /// warmup, cosine to 10% of the peak.
    pub fn defaults(lora: bool) -> Self {
        let lr = if lora { 2e-4 } else { 2e-5 };
        Self {
            train: TrainConfig {
                seq_len: 512,
                batch_size: 4,
                grad_accum: 4,
                steps: 0,
                lr,
                min_lr: lr / 10.0,
                warmup_steps: 0,
                weight_decay: 0.0,
                beta1: 0.9,
                beta2: 0.999,
                eval_every: 50,
                eval_windows: 256,
                checkpoint_every: 50,
                ..TrainConfig::default()
            },
            finetune: FinetuneConfig {
                lora: lora.then(LoraConfig::default),
                ..FinetuneConfig::default()
            },
        }
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::config(format!("fine-tuning settings: {e}")))
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::config(e.to_string()))
    }

    /// Sets `train.steps` from the epochs when it is 0, and the warmup (3% of the steps)
    /// when it is 0, for `rows` training rows.
    pub fn resolve_steps(&mut self, rows: usize) {
        let per_step = (self.train.batch_size * self.train.grad_accum).max(1);
        if self.train.steps == 0 {
            let steps = (self.finetune.epochs * rows as f64 / per_step as f64).ceil();
            self.train.steps = (steps as u64).max(1);
        }
        if self.train.warmup_steps == 0 {
            self.train.warmup_steps = ((self.train.steps as f64) * 0.03).ceil() as u64;
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.finetune.validate()?;
        if self.train.init.as_deref().unwrap_or("").is_empty() {
            return Err(Error::config("no base model: give -m MODEL"));
        }
        // 0 steps means "from the epochs" (resolved once the rows are known).
        TrainConfig {
            steps: self.train.steps.max(1),
            ..self.train.clone()
        }
        .validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_reject_unknown_keys() {
        let mut s = FinetuneSettings::defaults(true);
        s.finetune.data = vec!["a.jsonl".into()];
        s.train.init = Some("m.gguf".into());
        s.train.steps = 10;
        let back = FinetuneSettings::from_toml(&s.to_toml().unwrap()).unwrap();
        assert_eq!(back, s);
        let e = FinetuneSettings::from_toml("[finetune]\nlora_rank = 3\n").unwrap_err();
        assert!(e.to_string().contains("lora_rank"), "{e}");
        let e = FinetuneSettings::from_toml("[finetune.lora]\nrank = 4\nalfa = 3\n").unwrap_err();
        assert!(e.to_string().contains("alfa"), "{e}");
    }

    #[test]
    fn targets_and_steps() {
        let l = LoraConfig {
            targets: vec!["q".into(), "v".into(), "q".into()],
            ..LoraConfig::default()
        };
        assert_eq!(
            l.spec().unwrap().targets,
            vec![LinearRole::Q, LinearRole::V]
        );
        let bad = LoraConfig {
            targets: vec!["qkv".into()],
            ..LoraConfig::default()
        };
        assert!(bad.spec().unwrap_err().to_string().contains("qkv"));
        let mut s = FinetuneSettings::defaults(false);
        s.finetune.epochs = 2.0;
        s.resolve_steps(100); // 16 rows per step
        assert_eq!(s.train.steps, 13);
        assert_eq!(s.train.warmup_steps, 1);
    }
}
