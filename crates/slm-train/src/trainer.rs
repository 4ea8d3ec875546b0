//! The training loop: batches, gradient accumulation, clipping, AdamW with warmup + cosine,
//! periodic evaluation and checkpoints, exact resume, Ctrl-C and NaN handling.
//!
//! A run directory holds `config.toml` (resolved), `metrics.jsonl` (one line per step and per
//! evaluation), `checkpoints/latest.ckpt`, and at the end the model itself in Hugging Face
//! layout (`config.json`, `model.safetensors`, tokenizer, `slm.json`), so the run directory is
//! what `--model` takes afterwards.
//!
//! The loop is the same for every objective ([`crate::objective`]): plain training and
//! distillation differ only in the [`Objective`] a [`Setup`] carries.

use crate::checkpoint::{self, CheckpointHeader};
use crate::config::{PruneConfig, TrainConfig};
use crate::data::{Batch, Shards, TrainData};
use crate::engine::FastModel;
use crate::objective::{CrossEntropy, MicroBatch, Objective};
use crate::optim::{AdamW, AdamWConfig, Masks};
use crate::schedule::learning_rate;
use serde::Serialize;
use slm_core::{error::IoContext, Error, Result};
use slm_data::batches::BatchPosition;
use slm_data::prepare::{DataSummary, SUMMARY};
use slm_kernels::IGNORE_INDEX;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub const CHECKPOINT_DIR: &str = "checkpoints";
pub const LATEST: &str = "latest.ckpt";
pub const METRICS: &str = "metrics.jsonl";
pub const CONFIG: &str = "config.toml";
/// Present in `checkpoints/` when the run holds pruning masks (zeros stay zeros).
pub const MASKED_MARKER: &str = "masked";

/// Masks at the current zeros of every linear weight of the decoder blocks.
fn linear_masks(model: &FastModel) -> Masks {
    Masks::from_zeros(model, |p| {
        p.role()
            .is_some_and(|r| matches!(r, slm_core::ParamRole::Linear { .. }))
    })
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepMetrics {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_sec: f64,
    pub elapsed: f64,
}

/// Receives progress (the CLI draws a progress bar; tests collect losses).
pub trait Observer {
    fn on_start(&mut self, _start_step: u64, _total_steps: u64) {}
    fn on_step(&mut self, _m: &StepMetrics) {}
    fn on_eval(&mut self, _step: u64, _val_loss: f64) {}
    fn on_message(&mut self, _msg: &str) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub step: u64,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub interrupted: bool,
    pub tokens_seen: u64,
    pub seconds: f64,
}

/// Tokenizer files a data folder may carry (copied into the final model directory).
pub const TOKENIZER_FILES: [&str; 2] = ["tokenizer.json", "tokenizer.bin"];

pub fn find_tokenizer(data_dir: &Path) -> Option<PathBuf> {
    TOKENIZER_FILES
        .iter()
        .map(|f| data_dir.join(f))
        .find(|p| p.is_file())
}

pub fn read_summary(data_dir: &Path) -> Result<DataSummary> {
    let p = data_dir.join(SUMMARY);
    let bytes = std::fs::read(&p).map_err(|e| {
        Error::io(
            &p,
            std::io::Error::new(
                e.kind(),
                format!("{e} (is this a folder made by `slm data prepare`?)"),
            ),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::format(&p, e.to_string()))
}

/// What a run trains with: the loop's settings, the objective, and the whole settings file.
pub struct Setup {
    pub train: TrainConfig,
    pub prune: PruneConfig,
    pub objective: Box<dyn Objective>,
    /// The resolved settings file of the run (TOML, `slm_distill::RunConfig`): written to
    /// `config.toml` and into every checkpoint, handed back to [`Trainer::resume`].
    pub settings: String,
    /// Where batches come from; `None` opens the shards of `train.data` ([`Shards`]).
    pub data: Option<Arc<dyn TrainData>>,
}

impl Setup {
    /// Plain training (next-token cross-entropy) with these settings.
    pub fn plain(train: TrainConfig, prune: PruneConfig) -> Result<Self> {
        #[derive(Serialize)]
        struct Tables<'a> {
            train: &'a TrainConfig,
            prune: &'a PruneConfig,
        }
        let settings = toml::to_string_pretty(&Tables {
            train: &train,
            prune: &prune,
        })
        .map_err(|e| Error::config(e.to_string()))?;
        Ok(Self {
            train,
            prune,
            objective: Box::new(CrossEntropy),
            settings,
            data: None,
        })
    }
}

pub struct Trainer {
    pub cfg: TrainConfig,
    pub prune: PruneConfig,
    pub model: FastModel,
    pub opt: AdamW,
    pub masks: Masks,
    pub step: u64,
    pub pos: BatchPosition,
    pub tokens_seen: u64,
    run_dir: PathBuf,
    data: Arc<dyn TrainData>,
    objective: Box<dyn Objective>,
    settings: String,
}

impl Trainer {
    /// A new run in `run_dir` starting from `model`.
    pub fn new(setup: Setup, mut model: FastModel, run_dir: &Path) -> Result<Self> {
        let Setup {
            train: cfg,
            prune,
            objective,
            settings,
            data,
        } = setup;
        cfg.validate()?;
        prune.validate(cfg.steps)?;
        model.set_activation_checkpointing(cfg.activation_checkpointing);
        let data: Arc<dyn TrainData> = match data {
            Some(d) => d,
            None if cfg.data.is_empty() => {
                return Err(Error::config(
                    "no training data: set `train.data` (a folder made by `slm data prepare`)",
                ))
            }
            None => Arc::new(Shards::open(Path::new(&cfg.data))?),
        };
        let n = model.trainable_values();
        let opt = AdamW::new(
            AdamWConfig {
                lr: cfg.lr,
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                eps: cfg.eps,
                weight_decay: cfg.weight_decay,
            },
            n,
        );
        let ctx = model.config().max_position_embeddings;
        if cfg.seq_len > ctx {
            return Err(Error::config(format!(
                "seq_len {} exceeds the model context {ctx}",
                cfg.seq_len
            )));
        }
        // Fail before any work if the data cannot fill one batch.
        data.stream(
            cfg.batch_size,
            cfg.seq_len,
            cfg.seed,
            BatchPosition::default(),
        )?;
        std::fs::create_dir_all(run_dir.join(CHECKPOINT_DIR)).with_path(run_dir)?;
        slm_io::atomic::write_atomic(&run_dir.join(CONFIG), settings.as_bytes())?;
        let hold = prune.hold_masks;
        let mut trainer = Self {
            cfg,
            prune,
            model,
            opt,
            masks: Masks::default(),
            step: 0,
            pos: BatchPosition::default(),
            tokens_seen: 0,
            run_dir: run_dir.to_path_buf(),
            data,
            objective,
            settings,
        };
        if hold {
            trainer.hold_masks()?;
        }
        Ok(trainer)
    }

    /// Continues the run in `run_dir` from its latest checkpoint: `setup` gets the run's
    /// saved settings file and the checkpoint's model, and returns the run's setup (its
    /// settings may extend `train.steps`).
    pub fn resume(
        run_dir: &Path,
        setup: impl FnOnce(&str, &FastModel) -> Result<Setup>,
    ) -> Result<Self> {
        Self::resume_with(
            run_dir,
            |_, mcfg| {
                let tensors = slm_model::llama::random_tensors(mcfg, 0, &candle_core::Device::Cpu)?;
                FastModel::new(mcfg, &tensors)
            },
            setup,
        )
    }

    /// [`Trainer::resume`] for runs whose model is more than its trainable values (a frozen
    /// base with adapters): `build` makes the model from the settings and the checkpoint's
    /// model config, then the checkpoint's values replace its trainable ones.
    pub fn resume_with(
        run_dir: &Path,
        build: impl FnOnce(&str, &slm_model::LlamaConfig) -> Result<FastModel>,
        setup: impl FnOnce(&str, &FastModel) -> Result<Setup>,
    ) -> Result<Self> {
        let ckpt_path = run_dir.join(CHECKPOINT_DIR).join(LATEST);
        let ck = checkpoint::load(&ckpt_path)?;
        let mcfg = slm_model::LlamaConfig::from_hf_json(&ck.header.model_config)?;
        // Checkpoints written before the settings were stored in them: the run's own file.
        let settings = match ck.header.settings.clone() {
            Some(s) => s,
            None => {
                let p = run_dir.join(CONFIG);
                std::fs::read_to_string(&p).with_path(&p)?
            }
        };
        let mut model = build(&settings, &mcfg)?;
        checkpoint::check_layout(&ckpt_path, &ck.header, &model)?;
        {
            let (_, params, _) = model.trainable_mut();
            if params.len() != ck.params.len() {
                return Err(Error::format(
                    &ckpt_path,
                    "parameter count differs from the model",
                ));
            }
            params.copy_from_slice(&ck.params);
        }
        let setup = setup(&settings, &model)?;
        let mut t = Trainer::new(setup, model, run_dir)?;
        t.opt.m = ck.m;
        t.opt.v = ck.v;
        t.opt.step = ck.header.adam_step;
        t.step = ck.header.step;
        t.pos = ck.header.data_position;
        t.tokens_seen = ck.header.tokens_seen;
        if run_dir.join(CHECKPOINT_DIR).join(MASKED_MARKER).is_file() {
            t.masks = linear_masks(&t.model);
        }
        t.objective.load(&run_dir.join(CHECKPOINT_DIR))?;
        truncate_metrics(&run_dir.join(METRICS), t.step)?;
        Ok(t)
    }

    /// Keeps the current zeros of every linear weight at zero for the rest of training.
    pub fn hold_masks(&mut self) -> Result<()> {
        self.masks = linear_masks(&self.model);
        slm_io::atomic::write_atomic(&self.run_dir.join(CHECKPOINT_DIR).join(MASKED_MARKER), b"1")?;
        Ok(())
    }

    /// Prunes every linear weight of the decoder blocks to `sparsity` by magnitude within
    /// its tensor and holds the new masks (gradual pruning's update).
    fn prune_linears_to(&mut self, sparsity: f64) -> Result<()> {
        for p in self.model.params_mut() {
            if p.info
                .role()
                .is_some_and(|r| matches!(r, slm_core::ParamRole::Linear { .. }))
            {
                crate::gradual::prune_smallest(p.value, sparsity);
            }
        }
        self.hold_masks()?;
        self.masks.apply(&mut self.model);
        Ok(())
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The run's settings file (what `config.toml` holds).
    pub fn settings(&self) -> &str {
        &self.settings
    }

    /// Mean loss over the evaluation rows (at most `cfg.eval_windows` of them), each target
    /// weighted alike.
    pub fn evaluate(&mut self) -> Result<f64> {
        self.evaluate_if_any()?
            .ok_or_else(|| Error::invalid("the run has no evaluation data"))
    }

    /// [`Trainer::evaluate`], or `None` when the data holds no evaluation rows (a
    /// fine-tuning run without a held-out part).
    pub fn evaluate_if_any(&mut self) -> Result<Option<f64>> {
        let batches =
            self.data
                .eval_batches(self.cfg.batch_size, self.cfg.seq_len, self.cfg.eval_windows)?;
        if batches.is_empty() {
            return Ok(None);
        }
        self.model.set_dropout_seed(None);
        let (mut sum, mut n) = (0.0f64, 0usize);
        for b in &batches {
            let count = b.targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
            let loss = self.model.forward_loss_packed(
                &b.inputs,
                &b.targets,
                b.starts.as_deref(),
                b.rows,
                self.cfg.seq_len,
            )?;
            sum += loss as f64 * count as f64;
            n += count;
        }
        if n == 0 {
            return Err(Error::invalid("the evaluation rows hold no trained target"));
        }
        Ok(Some(sum / n as f64))
    }

    fn save_checkpoint(&self) -> Result<()> {
        let header = CheckpointHeader {
            step: self.step,
            data_position: self.pos,
            tokens_seen: self.tokens_seen,
            settings: Some(self.settings.clone()),
            model_config: self.model.config().to_hf_json(),
            adam_step: self.opt.step,
            params: checkpoint::layout_entries(&self.model),
            num_values: self.model.trainable_values(),
        };
        self.objective.save(&self.run_dir.join(CHECKPOINT_DIR))?;
        checkpoint::save(
            &self.run_dir.join(CHECKPOINT_DIR).join(LATEST),
            &header,
            &self.model,
            &self.opt,
        )
    }

    fn log(&self, line: serde_json::Value) -> Result<()> {
        let p = self.run_dir.join(METRICS);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .with_path(&p)?;
        writeln!(f, "{line}").with_path(&p)
    }

    /// Trains until `cfg.steps` or until `stop` is set (then checkpoints and returns).
    pub fn run(&mut self, stop: &AtomicBool, obs: &mut dyn Observer) -> Result<Outcome> {
        let cfg = self.cfg.clone();
        let (b, t) = (cfg.batch_size, cfg.seq_len);
        let data = self.data.clone();
        let mut stream = data.stream(b, t, cfg.seed, self.pos)?;
        let mut mb = Batch::default();
        let started = Instant::now();
        obs.on_start(self.step, cfg.steps);
        let mut last_loss = f64::NAN;
        let mut val_loss = None;
        let gradual = self.prune.schedule(cfg.steps);
        self.masks.apply(&mut self.model);
        while self.step < cfg.steps {
            let t0 = Instant::now();
            let lr = learning_rate(self.step, cfg.steps, cfg.warmup_steps, cfg.lr, cfg.min_lr);
            self.model.zero_grad();
            self.objective.zero_grad();
            let mut loss = 0.0f64;
            // Σ of each named part of the objective's loss over the micro-batches.
            let mut parts: Vec<(&str, f64)> = Vec::new();
            for micro in 0..cfg.grad_accum {
                stream.next(&mut mb)?;
                self.objective.prepare(
                    &self.model,
                    self.step,
                    micro,
                    &mut mb.inputs,
                    &mut mb.targets,
                )?;
                // Dropout masks (LoRA) drawn from the run's seed, the step and the micro-batch.
                self.model
                    .set_dropout_seed(Some(cfg.seed ^ (self.step << 20) ^ micro as u64 ^ 0xD50F));
                let batch = MicroBatch {
                    inputs: &mb.inputs,
                    targets: &mb.targets,
                    starts: mb.starts.as_deref(),
                    windows: &mb.windows,
                    batch: mb.rows,
                    seq: t,
                };
                let l = self.objective.forward_backward(&mut self.model, &batch)?;
                loss += l.total;
                for (i, (name, v)) in l.parts.into_iter().enumerate() {
                    match parts.get_mut(i) {
                        Some(p) => p.1 += v,
                        None => parts.push((name, 0.0 + v)), // a sum from 0, as for `loss`
                    }
                }
            }
            let accum = cfg.grad_accum as f64;
            loss /= accum;
            if !loss.is_finite() {
                return Err(Error::msg(format!(
                    "loss became {loss} at step {}: stopping. The last good checkpoint is intact in {}; \
                     lower the learning rate (now {lr:.2e}) or the gradient clip and resume",
                    self.step + 1,
                    self.run_dir.join(CHECKPOINT_DIR).display()
                )));
            }
            if cfg.grad_accum > 1 {
                self.model.scale_grads(1.0 / cfg.grad_accum as f32);
                self.objective.scale_grads(1.0 / cfg.grad_accum as f32);
            }
            let grad_norm = self.model.grad_norm();
            if cfg.grad_clip > 0.0 && grad_norm > cfg.grad_clip {
                self.model.scale_grads((cfg.grad_clip / grad_norm) as f32);
            }
            self.opt.update(&mut self.model, lr)?;
            self.objective.step(&self.opt.config, lr)?;
            self.masks.apply(&mut self.model);
            self.step += 1;
            if let Some(g) = gradual.filter(|g| g.updates_at(self.step)) {
                let s = g.sparsity_at(self.step);
                self.prune_linears_to(s)?;
                self.log(serde_json::json!({"step": self.step, "pruned_to": s}))?;
            }
            self.pos = stream.position();
            let tokens = (b * t * cfg.grad_accum) as u64;
            self.tokens_seen += tokens;
            last_loss = loss;
            let m = StepMetrics {
                step: self.step,
                loss,
                lr,
                grad_norm,
                tokens_per_sec: tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9),
                elapsed: started.elapsed().as_secs_f64(),
            };
            let mut line = serde_json::json!({"step": m.step, "loss": m.loss, "lr": m.lr, "grad_norm": m.grad_norm, "tokens_per_sec": m.tokens_per_sec, "elapsed": m.elapsed, "tokens": self.tokens_seen});
            for (name, sum) in parts {
                line[name] = (sum / accum).into();
            }
            self.log(line)?;
            obs.on_step(&m);
            let last = self.step == cfg.steps;
            if (cfg.eval_every > 0 && self.step.is_multiple_of(cfg.eval_every)) || last {
                if let Some(v) = self.evaluate_if_any()? {
                    val_loss = Some(v);
                    self.log(serde_json::json!({"step": self.step, "val_loss": v, "tokens": self.tokens_seen}))?;
                    obs.on_eval(self.step, v);
                }
            }
            if (cfg.checkpoint_every > 0 && self.step.is_multiple_of(cfg.checkpoint_every)) || last
            {
                self.save_checkpoint()?;
            }
            if stop.load(Ordering::SeqCst) && !last {
                self.save_checkpoint()?;
                obs.on_message(&format!(
                    "interrupted: checkpoint written at step {}",
                    self.step
                ));
                return Ok(Outcome {
                    step: self.step,
                    train_loss: last_loss,
                    val_loss,
                    interrupted: true,
                    tokens_seen: self.tokens_seen,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        }
        Ok(Outcome {
            step: self.step,
            train_loss: last_loss,
            val_loss,
            interrupted: false,
            tokens_seen: self.tokens_seen,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Writes the trained model into the run directory in Hugging Face layout, with the
    /// data's tokenizer and provenance in `slm.json`.
    pub fn save_model(&self, outcome: &Outcome, extra_meta: serde_json::Value) -> Result<()> {
        let llama = self.model.to_llama()?;
        let mut extra: Vec<(&str, Vec<u8>)> = Vec::new();
        let data = PathBuf::from(&self.cfg.data);
        if let Some(tok) = find_tokenizer(&data) {
            let name = if tok.extension().and_then(|e| e.to_str()) == Some("json") {
                "tokenizer.json"
            } else {
                "tokenizer.bin"
            };
            extra.push((name, std::fs::read(&tok).with_path(&tok)?));
        }
        let mut meta = serde_json::json!({
            "stage": "train",
            "preset": self.cfg.preset,
            "init": self.cfg.init,
            "data": self.cfg.data,
            "steps": outcome.step,
            "tokens_seen": outcome.tokens_seen,
            "train_loss": outcome.train_loss,
            "val_loss": outcome.val_loss,
            "seconds": outcome.seconds,
        });
        if let (Some(m), Some(e)) = (meta.as_object_mut(), extra_meta.as_object()) {
            for (k, v) in e {
                m.insert(k.clone(), v.clone());
            }
        }
        extra.push(("slm.json", serde_json::to_vec_pretty(&meta)?));
        slm_model::save(&llama, &self.run_dir, &extra)
    }
}

/// Drops metric lines past `step` (left by a run that died after its last checkpoint).
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s <= step)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    slm_io::atomic::write_atomic(path, out.as_bytes())
}

/// Reads `metrics.jsonl`: (step, loss) pairs and (step, val_loss) pairs.
pub type Curves = (Vec<(f64, f64)>, Vec<(f64, f64)>);

pub fn read_curves(run_dir: &Path) -> Result<Curves> {
    let p = run_dir.join(METRICS);
    let text = std::fs::read_to_string(&p).with_path(&p)?;
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let step = v.get("step").and_then(|s| s.as_f64()).unwrap_or(0.0);
        if let Some(x) = v.get("loss").and_then(|x| x.as_f64()) {
            train.push((step, x));
        }
        if let Some(x) = v.get("val_loss").and_then(|x| x.as_f64()) {
            val.push((step, x));
        }
    }
    Ok((train, val))
}
