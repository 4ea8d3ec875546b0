//! The training loop: batches, gradient accumulation, clipping, AdamW with warmup + cosine,
//! periodic evaluation and checkpoints, exact resume, Ctrl-C and NaN handling.
//!
//! A run directory holds `config.toml` (resolved), `metrics.jsonl` (one line per step and per
//! evaluation), `checkpoints/latest.ckpt`, and at the end the model itself in Hugging Face
//! layout (`config.json`, `model.safetensors`, tokenizer, `slm.json`), so the run directory is
//! what `--model` takes afterwards.

use crate::checkpoint::{self, CheckpointHeader};
use crate::config::TrainConfig;
use crate::engine::FastModel;
use crate::hidden::HiddenDistill;
use crate::optim::{AdamW, Masks};
use crate::schedule::learning_rate;
use crate::teacher::{LocalTeacher, Teacher};
use slm_core::{error::IoContext, Error, Result};
use slm_data::batches::{eval_windows, BatchPosition, BatchStream};
use slm_data::kd_cache::KdCache;
use slm_data::prepare::{DataSummary, SUMMARY, TRAIN_SHARD, VAL_SHARD};
use slm_data::shards::Shard;
use slm_kernels::adamw::AdamWConfig;
use slm_kernels::distill::{DistillSpec, TopK};
use slm_kernels::hidden_match::HiddenMatch;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub const CHECKPOINT_DIR: &str = "checkpoints";
pub const LATEST: &str = "latest.ckpt";
pub const METRICS: &str = "metrics.jsonl";
pub const CONFIG: &str = "config.toml";
/// Present in `checkpoints/` when the run holds pruning masks (zeros stay zeros).
pub const MASKED_MARKER: &str = "masked";
/// The hidden-state loss's learned projection, beside the latest checkpoint.
pub const HIDDEN_PROJECTION: &str = "hidden.bin";

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
    Ok(serde_json::from_slice(&bytes).map_err(|e| Error::format(&p, e.to_string()))?)
}

pub struct Trainer {
    pub cfg: TrainConfig,
    pub model: FastModel,
    pub opt: AdamW,
    pub masks: Masks,
    pub step: u64,
    pub pos: BatchPosition,
    pub tokens_seen: u64,
    run_dir: PathBuf,
    train: std::sync::Arc<Shard>,
    val: Shard,
    /// Where soft targets come from, when distilling.
    teacher: Option<TeacherSource>,
    /// Rewrites micro-batches before the loss (on-policy distillation's student samples).
    batch_hook: Option<BatchHook>,
    /// Hidden-state distillation against the live teacher, when `kd_hidden` is set.
    hidden: Option<HiddenDistill>,
}

/// Builds the hidden-state loss the config asks for, between `student` and the live teacher.
fn load_hidden(
    cfg: &TrainConfig,
    student: &FastModel,
    teacher: Option<&TeacherSource>,
) -> Result<Option<HiddenDistill>> {
    let Some(kind) = &cfg.kd_hidden else {
        return Ok(None);
    };
    let Some(TeacherSource::Online(teacher, _)) = teacher else {
        return Err(Error::config(
            "`kd_hidden` needs the live teacher (`teacher`)",
        ));
    };
    let s = student.config();
    let (sl, tl) = (s.num_hidden_layers, teacher.num_layers());
    let pairs = match &cfg.kd_hidden_layers {
        Some(map) => crate::hidden::parse_pairs(map)?,
        None => crate::hidden::default_pairs(sl, tl),
    };
    Ok(Some(HiddenDistill::new(
        HiddenMatch::parse(kind)?,
        cfg.kd_hidden_weight as f32,
        &pairs,
        (sl, s.hidden_size),
        (tl, teacher.hidden_size()),
        cfg.seed ^ 0x4849_4444_454E,
    )?))
}

/// A function that may replace a micro-batch before the loss: called with the student, the
/// optimiser step (0-based), the micro-batch index within the step, and the batch's
/// `inputs`/`targets` ([batch, seq] row-major), which it may overwrite. It must be
/// deterministic in its arguments so resumed runs repeat it exactly.
pub type BatchHook =
    Box<dyn FnMut(&FastModel, u64, usize, &mut [u32], &mut [u32]) -> Result<()> + Send>;

/// The teacher side of distillation: a live model, or its top-k cached offline.
enum TeacherSource {
    Online(Box<dyn Teacher>, DistillSpec),
    Offline(KdCache, f32),
}

/// Loads the teacher (or its cache) named by the config and checks it can score the
/// student's batches.
fn load_teacher(
    cfg: &TrainConfig,
    student: &FastModel,
    train: &Shard,
) -> Result<Option<TeacherSource>> {
    let Some(spec) = cfg.distill_spec()? else {
        return Ok(None);
    };
    let sv = student.config().vocab_size;
    if let Some(path) = &cfg.kd_cache {
        let cache = KdCache::open(Path::new(path))?;
        let h = cache.header();
        let problem = if h.vocab_size != sv {
            Some(format!(
                "its vocabulary has {} tokens, the student's {sv}",
                h.vocab_size
            ))
        } else if h.seq_len != cfg.seq_len {
            Some(format!(
                "it was built at seq_len {}, training uses {}",
                h.seq_len, cfg.seq_len
            ))
        } else if h.shard_tokens != train.len() {
            Some(format!(
                "it was built from a shard of {} tokens, {} holds {}",
                h.shard_tokens,
                train.path().display(),
                train.len()
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            return Err(Error::config(format!(
                "the teacher cache {path} does not match this run: {p}. Rebuild it with \
                 `slm distill cache` on this data"
            )));
        }
        return Ok(Some(TeacherSource::Offline(cache, spec.kd_weight)));
    }
    let Some(spec_path) = &cfg.teacher else {
        return Ok(None);
    };
    let teacher = LocalTeacher::load(spec_path)?;
    teacher.check_fits(sv, cfg.seq_len)?;
    Ok(Some(TeacherSource::Online(Box::new(teacher), spec)))
}

impl Trainer {
    /// A new run in `run_dir` starting from `model`.
    pub fn new(cfg: TrainConfig, model: FastModel, run_dir: &Path) -> Result<Self> {
        cfg.validate()?;
        let data = PathBuf::from(&cfg.data);
        let train = std::sync::Arc::new(Shard::open(&data.join(TRAIN_SHARD))?);
        let val = Shard::open(&data.join(VAL_SHARD))?;
        let n = model.flat_params().len();
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
        BatchStream::new(
            &train,
            cfg.batch_size,
            cfg.seq_len,
            cfg.seed,
            BatchPosition::default(),
        )?;
        let teacher = load_teacher(&cfg, &model, &train)?;
        let hidden = load_hidden(&cfg, &model, teacher.as_ref())?;
        std::fs::create_dir_all(run_dir.join(CHECKPOINT_DIR)).with_path(run_dir)?;
        slm_io::atomic::write_atomic(&run_dir.join(CONFIG), cfg.to_toml()?.as_bytes())?;
        let hold = cfg.hold_masks;
        let mut trainer = Self {
            cfg,
            model,
            opt,
            masks: Masks::default(),
            step: 0,
            pos: BatchPosition::default(),
            tokens_seen: 0,
            run_dir: run_dir.to_path_buf(),
            train,
            val,
            teacher,
            batch_hook: None,
            hidden,
        };
        if hold {
            trainer.hold_masks()?;
        }
        Ok(trainer)
    }

    /// Continues the run in `run_dir` from its latest checkpoint. `steps` may extend the run.
    pub fn resume(run_dir: &Path, steps: Option<u64>) -> Result<Self> {
        let ckpt_path = run_dir.join(CHECKPOINT_DIR).join(LATEST);
        let ck = checkpoint::load(&ckpt_path)?;
        let mut cfg = ck.header.train.clone();
        if let Some(s) = steps {
            cfg.steps = s;
        }
        let mcfg = slm_model::LlamaConfig::from_hf_json(&ck.header.model_config)?;
        let tensors = slm_model::llama::random_tensors(&mcfg, 0, &candle_core::Device::Cpu)?;
        let mut model = FastModel::new(&mcfg, &tensors)?;
        checkpoint::check_layout(&ckpt_path, &ck.header, &model)?;
        {
            let (_, params, _) = model.flat_mut();
            if params.len() != ck.params.len() {
                return Err(Error::format(
                    &ckpt_path,
                    "parameter count differs from the model",
                ));
            }
            params.copy_from_slice(&ck.params);
        }
        let mut t = Trainer::new(cfg, model, run_dir)?;
        t.opt.m = ck.m;
        t.opt.v = ck.v;
        t.opt.step = ck.header.adam_step;
        t.step = ck.header.step;
        t.pos = ck.header.data_position;
        t.tokens_seen = ck.header.tokens_seen;
        if run_dir.join(CHECKPOINT_DIR).join(MASKED_MARKER).is_file() {
            t.masks = linear_masks(&t.model);
        }
        if let Some(h) = &mut t.hidden {
            if h.projection().is_some() {
                h.load(&run_dir.join(CHECKPOINT_DIR).join(HIDDEN_PROJECTION))?;
            }
        }
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

    /// Installs the micro-batch rewrite (see [`BatchHook`]); required when the config asks
    /// for on-policy batches.
    pub fn set_batch_hook(&mut self, hook: BatchHook) {
        self.batch_hook = Some(hook);
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Mean loss over `cfg.eval_windows` validation windows.
    pub fn evaluate(&mut self) -> Result<f64> {
        let windows = eval_windows(&self.val, self.cfg.seq_len, self.cfg.eval_windows)?;
        if windows.is_empty() {
            return Err(Error::invalid(format!(
                "the validation shard has fewer than {} tokens: no window to evaluate",
                self.cfg.seq_len + 1
            )));
        }
        let (mut sum, mut n) = (0.0f64, 0usize);
        for chunk in windows.chunks(self.cfg.batch_size) {
            let inputs: Vec<u32> = chunk.iter().flat_map(|(x, _)| x.iter().copied()).collect();
            let targets: Vec<u32> = chunk.iter().flat_map(|(_, y)| y.iter().copied()).collect();
            let loss = self
                .model
                .forward_loss(&inputs, &targets, chunk.len(), self.cfg.seq_len)?;
            sum += loss as f64 * chunk.len() as f64;
            n += chunk.len();
        }
        Ok(sum / n as f64)
    }

    fn save_checkpoint(&self) -> Result<()> {
        let header = CheckpointHeader {
            step: self.step,
            data_position: self.pos,
            tokens_seen: self.tokens_seen,
            train: self.cfg.clone(),
            model_config: self.model.config().to_hf_json(),
            adam_step: self.opt.step,
            params: checkpoint::layout_entries(&self.model),
            num_values: self.model.flat_params().len(),
        };
        if let Some(h) = &self.hidden {
            h.save(&self.run_dir.join(CHECKPOINT_DIR).join(HIDDEN_PROJECTION))?;
        }
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
        let train = self.train.clone();
        let mut stream = BatchStream::new(&train, b, t, cfg.seed, self.pos)?;
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        let (mut top_ids, mut top_logp, mut top_tail) = (Vec::new(), Vec::new(), Vec::new());
        let started = Instant::now();
        obs.on_start(self.step, cfg.steps);
        let mut last_loss = f64::NAN;
        let mut val_loss = None;
        let gradual = cfg.gradual_pruning();
        if cfg.on_policy > 0.0 && self.batch_hook.is_none() {
            return Err(Error::config(
                "this run mixes in on-policy batches (on_policy > 0), which `slm distill train` \
                 generates: start or resume it with `slm distill train`",
            ));
        }
        self.masks.apply(&mut self.model);
        while self.step < cfg.steps {
            let t0 = Instant::now();
            let lr = learning_rate(self.step, cfg.steps, cfg.warmup_steps, cfg.lr, cfg.min_lr);
            self.model.zero_grad();
            if let Some(h) = &mut self.hidden {
                h.zero_grad();
            }
            let (mut loss, mut ce, mut kd, mut hid) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for micro in 0..cfg.grad_accum {
                stream.next_batch(&mut inputs, &mut targets)?;
                if let Some(hook) = self.batch_hook.as_mut() {
                    hook(&self.model, self.step, micro, &mut inputs, &mut targets)?;
                }
                let l = match &mut self.teacher {
                    None => {
                        loss += self.model.forward_backward(&inputs, &targets, b, t)? as f64;
                        continue;
                    }
                    Some(TeacherSource::Online(teacher, spec)) => {
                        let soft = teacher.logits(&inputs, b, t)?; // [b, t, vocab]
                        match &mut self.hidden {
                            None => self
                                .model
                                .forward_backward_distill(&inputs, &targets, &soft, spec, b, t)?,
                            Some(h) => {
                                h.set_teacher(teacher.as_ref(), b * t)?;
                                self.model.forward_backward_hidden(
                                    &inputs,
                                    &targets,
                                    Some((&soft, spec)),
                                    h,
                                    true,
                                    b,
                                    t,
                                )?
                            }
                        }
                    }
                    Some(TeacherSource::Offline(cache, kd_weight)) => {
                        cache.gather(
                            stream.last_windows(),
                            &mut top_ids,
                            &mut top_logp,
                            &mut top_tail,
                        )?;
                        let top = TopK {
                            k: cache.header().k,
                            ids: &top_ids,
                            logp: &top_logp,
                            tail: &top_tail,
                        };
                        self.model
                            .forward_backward_topk(&inputs, &targets, &top, *kd_weight, b, t)?
                    }
                };
                loss += l.total as f64;
                ce += l.ce as f64;
                kd += l.kd as f64;
                hid += l.hidden as f64;
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
                if let Some(h) = &mut self.hidden {
                    h.scale_grads(1.0 / cfg.grad_accum as f32);
                }
            }
            let grad_norm = self.model.grad_norm();
            if cfg.grad_clip > 0.0 && grad_norm > cfg.grad_clip {
                self.model.scale_grads((cfg.grad_clip / grad_norm) as f32);
            }
            self.opt.update(&mut self.model, lr)?;
            if let Some(h) = &mut self.hidden {
                h.step(&self.opt.config, lr)?;
            }
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
            if self.teacher.is_some() {
                line["ce"] = (ce / accum).into();
                line["kd"] = (kd / accum).into();
                if self.hidden.is_some() {
                    line["hidden"] = (hid / accum).into();
                }
            }
            self.log(line)?;
            obs.on_step(&m);
            let last = self.step == cfg.steps;
            if (cfg.eval_every > 0 && self.step % cfg.eval_every == 0) || last {
                let v = self.evaluate()?;
                val_loss = Some(v);
                self.log(serde_json::json!({"step": self.step, "val_loss": v, "tokens": self.tokens_seen}))?;
                obs.on_eval(self.step, v);
            }
            if (cfg.checkpoint_every > 0 && self.step % cfg.checkpoint_every == 0) || last {
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
