//! `slm distill`: knowledge distillation — teacher-written data (`generate`), offline teacher
//! caches (`cache`) and logit distillation (`train`). Wiring only: the losses are
//! `slm_kernels::distill`, the loop `slm_train::Trainer`, the cache `slm_distill::cache`.

use crate::common::{load_model_and_tokenizer, ModelArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use slm_data::prepare::TRAIN_SHARD;
use slm_data::shards::Shard;
use slm_recipes::train::{initial_model, toml_str, train_run};
use slm_train::trainer::find_tokenizer;
use slm_train::{LocalTeacher, TrainConfig, Trainer};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum DistillCommand {
    /// The teacher writes a training set: prompts from templates, sampling, de-duplication,
    /// quality filters; resumable JSONL that `slm data prepare` reads.
    Generate(super::distill_generate::GenerateArgs),
    /// Store a teacher's top-k log-probs for every training window (offline distillation).
    Cache(CacheArgs),
    /// Train a student on the teacher's distributions (online teacher or offline cache).
    Train(TrainArgs),
}

pub fn run(c: DistillCommand) -> Result<()> {
    match c {
        DistillCommand::Generate(a) => super::distill_generate::run(a),
        DistillCommand::Cache(a) => cache(a),
        DistillCommand::Train(a) => train(a),
    }
}

#[derive(Args, Debug)]
#[command(
    after_help = "The cache holds, for every position of every training window (the \
windows `slm train` draws at this --seq-len), the teacher's k best token ids, their log-probs \
(f16) and the mass of all other tokens (f32): k·(2 or 4)+2k+4 bytes per token. Train from it with \
`slm distill train --cache FILE` (sparse forward KL at T = 1, the tail as one extra bucket).\n\n\
Example:\n  slm distill cache --teacher runs/teacher --data data/ --k 8 --seq-len 256 --out data/teacher-k8.kdc"
)]
pub struct CacheArgs {
    #[command(flatten)]
    pub teacher: TeacherArgs,
    /// Folder made by `slm data prepare` with the teacher's tokenizer.
    #[arg(long)]
    pub data: PathBuf,
    /// Log-probs kept per position.
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Window length (must equal the `seq_len` the student trains with).
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

/// The teacher model and, for models without one, its tokenizer.
#[derive(Args, Debug)]
pub struct TeacherArgs {
    /// Teacher model: HF directory, HF cache id, .gguf, or llama2.c .bin.
    #[arg(long)]
    pub teacher: String,
    /// Tokenizer for a teacher that carries none (llama2.c tokenizer.bin).
    #[arg(long)]
    pub teacher_tokenizer: Option<PathBuf>,
}

/// Loads the teacher and checks that it shares the data's vocabulary id by id.
fn load_teacher_checked(t: &TeacherArgs, data: &Path) -> Result<LocalTeacher> {
    let (loaded, teacher_tok) = load_model_and_tokenizer(&ModelArgs {
        model: t.teacher.clone(),
        tokenizer: t.teacher_tokenizer.clone(),
    })?;
    let Some(data_tok_path) = find_tokenizer(data) else {
        bail!(
            "{} holds no tokenizer: is it a folder made by `slm data prepare`?",
            data.display()
        )
    };
    let data_tok = slm_data::tokenizer::load_tokenizer_file(&data_tok_path)?;
    slm_distill::vocab::check_same_vocabulary(
        teacher_tok.as_ref(),
        &t.teacher,
        data_tok.as_ref(),
        &data_tok_path.display().to_string(),
    )?;
    Ok(LocalTeacher::new(&t.teacher, &loaded.model)?)
}

fn cache(a: CacheArgs) -> Result<()> {
    let mut teacher = load_teacher_checked(&a.teacher, &a.data)?;
    let shard = Shard::open(&a.data.join(TRAIN_SHARD))?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("cache {bar:30} {pos}/{len} windows [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = std::time::Instant::now();
    let header = slm_distill::cache::build_cache(
        &mut teacher,
        &shard,
        a.seq_len,
        a.k,
        &a.out,
        &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    let bytes = std::fs::metadata(&a.out)
        .with_context(|| a.out.display().to_string())?
        .len();
    let tokens = header.windows * header.seq_len;
    println!(
        "cached top-{} of {} windows × {} tokens = {tokens} positions in {:.1} s: {} bytes \
         ({} bytes/token, {:.1} MB) → {}",
        header.k,
        header.windows,
        header.seq_len,
        t0.elapsed().as_secs_f64(),
        bytes,
        header.bytes_per_token(),
        bytes as f64 / 1e6,
        a.out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
#[command(
    after_help = "The loss per token is (1 − kd_weight)·CE + kd_weight·T²·D(teacher ‖ student) \
with D one of: fkl (forward KL), rkl (reverse KL, MiniLLM), jsd:β (generalised JSD of GKD; β=0 \
forward, β=1 reverse), skl:α / srkl:α (skew KL / skew reverse KL of DistiLLM), tvd. Online mode \
runs the teacher beside the student (--teacher); offline mode reads `slm distill cache` output \
(--cache; forward KL at T = 1 over the top-k and a tail bucket). Every `slm train` setting works \
through --set (steps, lr, batch_size, seq_len, ...); validation loss is the student's plain \
cross-entropy.\n\nHidden-state loss (--hidden cosine|mse, live teacher only): the student's block \
outputs are pulled towards the teacher's at mapped blocks (default: student block i ↔ teacher block \
⌈(i+1)·L_t/L_s⌉ − 1; or --hidden-layers 0:1,1:3), through a learned linear projection when the \
widths differ; it is added to the logit loss with --hidden-weight.\n\nExamples:\n  \
slm distill train --teacher runs/teacher --student-preset 1m --data data/ --loss fkl --temperature 2 --out runs/student\n  \
slm distill train --cache data/teacher-k8.kdc --student-preset 1m --data data/ --out runs/student-k8\n  \
slm distill train --teacher runs/teacher --student-every 2 --hidden cosine --data data/ --out runs/student-h"
)]
pub struct TrainArgs {
    /// Teacher model (online distillation).
    #[arg(long, conflicts_with = "cache")]
    pub teacher: Option<String>,
    /// Tokenizer for a teacher that carries none.
    #[arg(long)]
    pub teacher_tokenizer: Option<PathBuf>,
    /// Teacher cache from `slm distill cache` (offline distillation).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Start the student from this model.
    #[arg(long, conflicts_with_all = ["student_preset", "student_every"])]
    pub student: Option<String>,
    /// Start the student from the teacher's blocks 0, K, 2K, ... (DistilBERT); needs --teacher.
    #[arg(long, value_name = "K", conflicts_with = "student_preset")]
    pub student_every: Option<usize>,
    /// Or from random weights of this size preset (with --set layers=/dim=/... overrides).
    #[arg(long)]
    pub student_preset: Option<String>,
    /// Folder made by `slm data prepare` with the teacher's tokenizer.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// The divergence: fkl, rkl, jsd:β, skl:α, srkl:α, tvd.
    #[arg(long, default_value = "fkl")]
    pub loss: String,
    /// Softening temperature T for teacher and student.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Weight of the teacher term (the rest goes to the hard-label cross-entropy).
    #[arg(long, default_value_t = 0.5)]
    pub kd_weight: f64,
    /// On-policy share λ (GKD): this fraction of batches become the student's own
    /// continuations of the windows' first halves, scored by the live teacher.
    #[arg(long, default_value_t = 0.0)]
    pub on_policy: f64,
    /// Hidden-state loss between mapped blocks: cosine or mse (live teacher only).
    #[arg(long, value_name = "KIND")]
    pub hidden: Option<String>,
    /// Weight of the hidden-state loss.
    #[arg(long, default_value_t = 1.0, requires = "hidden")]
    pub hidden_weight: f64,
    /// Block map for the hidden-state loss: student:teacher,... (0-based).
    #[arg(long, value_name = "MAP", requires = "hidden")]
    pub hidden_layers: Option<String>,
    /// Run directory.
    #[arg(long, short = 'o', required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Any `slm train` setting, e.g. --set steps=2000 (on_policy_prompt,
    /// on_policy_temperature, on_policy_top_p, kd_* ...).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Continue the distillation run in this directory (other options are ignored).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// With --resume: train until this many steps in total.
    #[arg(long)]
    pub resume_steps: Option<u64>,
}

/// Adds the on-policy batch hook when the run's config asks for it.
fn install_on_policy(trainer: &mut Trainer) {
    let c = &trainer.cfg;
    if c.on_policy > 0.0 {
        let hook = slm_distill::on_policy::OnPolicy {
            lambda: c.on_policy,
            prompt: c.on_policy_prompt.unwrap_or(c.seq_len / 2),
            temperature: c.on_policy_temperature as f32,
            top_p: c.on_policy_top_p as f32,
            seed: c.seed,
        }
        .hook(c.seq_len);
        trainer.set_batch_hook(hook);
    }
}

fn train(a: TrainArgs) -> Result<()> {
    if let Some(dir) = &a.resume {
        let mut trainer = Trainer::resume(dir, a.resume_steps)?;
        install_on_policy(&mut trainer);
        let outcome = train_run(&mut trainer)?;
        println!(
            "resumed to step {}: train loss {:.4}; student in {}",
            outcome.step,
            outcome.train_loss,
            trainer.run_dir().display()
        );
        return Ok(());
    }
    let (Some(data), Some(out)) = (a.data.clone(), a.out.clone()) else {
        bail!("give --data DIR and --out DIR (or --resume DIR)")
    };
    let mut sets = vec![
        format!("data={}", toml_str(&data.display().to_string())),
        format!("kd_loss={}", toml_str(&a.loss)),
        format!("kd_temperature={}", a.temperature),
        format!("kd_weight={}", a.kd_weight),
        format!("on_policy={}", a.on_policy),
    ];
    if let Some(kind) = &a.hidden {
        sets.push(format!("kd_hidden={}", toml_str(kind)));
        sets.push(format!("kd_hidden_weight={}", a.hidden_weight));
        if let Some(map) = &a.hidden_layers {
            sets.push(format!("kd_hidden_layers={}", toml_str(map)));
        }
    }
    match (&a.teacher, &a.cache) {
        (Some(t), None) => {
            load_teacher_checked(
                &TeacherArgs {
                    teacher: t.clone(),
                    teacher_tokenizer: a.teacher_tokenizer.clone(),
                },
                &data,
            )?;
            sets.push(format!("teacher={}", toml_str(t)));
        }
        (None, Some(c)) => sets.push(format!("kd_cache={}", toml_str(&c.display().to_string()))),
        _ => bail!("give the teacher: --teacher MODEL (online) or --cache FILE (offline)"),
    }
    match (&a.student, &a.student_preset, a.student_every) {
        (Some(s), None, None) => sets.push(format!("init={}", toml_str(s))),
        (None, Some(p), None) => sets.push(format!("preset={}", toml_str(p))),
        (None, None, Some(k)) => {
            let Some(t) = &a.teacher else {
                bail!("--student-every takes the layers of a --teacher model")
            };
            let loaded = crate::common::load_model(&ModelArgs {
                model: t.clone(),
                tokenizer: a.teacher_tokenizer.clone(),
            })?;
            let student = slm_distill::init::every_kth_layer(&loaded.model, k)?;
            let dir = out.join("student-init");
            let meta = serde_json::json!({"stage": "student-init", "teacher": t, "every": k});
            slm_model::save(
                &student,
                &dir,
                &[("slm.json", serde_json::to_vec_pretty(&meta)?)],
            )?;
            println!(
                "student: the teacher's blocks 0, {k}, 2·{k}, ... ({} of {}) in {}",
                student.config.num_hidden_layers,
                loaded.model.config.num_hidden_layers,
                dir.display()
            );
            sets.push(format!("init={}", toml_str(&dir.display().to_string())));
        }
        _ => bail!("give the student: --student MODEL, --student-preset NAME or --student-every K"),
    }
    sets.extend(a.set.iter().cloned());
    let cfg = TrainConfig::resolve(None, &sets)?;
    let model = initial_model(&cfg)?;
    println!(
        "student: {} parameters ({} layers, dim {}); teacher: {}; loss {} (T {}, weight {}); {} steps of {} × {} tokens",
        model.num_parameters(),
        model.config().num_hidden_layers,
        model.config().hidden_size,
        cfg.teacher
            .as_deref()
            .or(cfg.kd_cache.as_deref())
            .unwrap_or("-"),
        cfg.kd_loss,
        cfg.kd_temperature,
        cfg.kd_weight,
        cfg.steps,
        cfg.batch_size * cfg.grad_accum,
        cfg.seq_len
    );
    let mut trainer = Trainer::new(cfg, model, &out)?;
    install_on_policy(&mut trainer);
    let outcome = train_run(&mut trainer)?;
    println!(
        "done: {} steps, {} tokens in {:.1} s; train loss {:.4}, val loss (CE) {}; student in {}",
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
    Ok(())
}
