//! `slm distill`: knowledge distillation — teacher-written data (`generate`), offline teacher
//! caches (`cache`) and logit distillation (`train`). Wiring only: the settings, teachers and
//! losses are `slm_distill`, the loop `slm_train::Trainer`.

mod generate;

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use slm_distill::hidden_match::HiddenMatch;
use slm_distill::loss::KdLoss;
use slm_distill::{DistillConfig, HiddenConfig, OnPolicyConfig, RunConfig};
use slm_recipes::distill::Student;
use slm_recipes::train::{outcome_line, train_run};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum DistillCommand {
    /// The teacher writes a training set: prompts from templates, sampling, de-duplication,
    /// quality filters; resumable JSONL that `slm data prepare` reads.
    Generate(generate::GenerateArgs),
    /// Store a teacher's top-k log-probs for every training window (offline distillation).
    Cache(CacheArgs),
    /// Train a student on the teacher's distributions (online teacher or offline cache).
    Train(TrainArgs),
}

pub fn run(c: DistillCommand) -> Result<()> {
    match c {
        DistillCommand::Generate(a) => generate::run(a),
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
From a remote teacher: `slm distill generate --teacher-url URL --top-logprobs K --tokenizer STUDENT_TOKENIZER` keeps the teacher's top-k of every generated token with each sample; `--samples OUT.jsonl --data-out DIR` writes those samples as a data folder (train/val shards) and the cache of its training windows (positions whose token the teacher did not score, the separators, are hard labels).\n\n\
Examples:\n  slm distill cache --teacher runs/teacher --data data/ --k 8 --seq-len 256 --out data/teacher-k8.kdc\n  \
slm distill cache --samples remote.jsonl --tokenizer student/tokenizer.json --k 8 --seq-len 256 --data-out data/remote --out data/remote/teacher-k8.kdc"
)]
pub struct CacheArgs {
    /// Teacher model: HF directory, HF cache id, .gguf, or llama2.c .bin.
    #[arg(long, required_unless_present = "samples", conflicts_with = "samples")]
    pub teacher: Option<String>,
    /// Samples a remote teacher wrote with --top-logprobs (instead of --teacher/--data).
    #[arg(long, value_name = "JSONL", requires_all = ["tokenizer", "data_out"])]
    pub samples: Option<PathBuf>,
    /// With --samples: the student's tokenizer (the one generate mapped the top-k onto).
    #[arg(long, requires = "samples")]
    pub tokenizer: Option<PathBuf>,
    /// With --samples: the data folder to write (train.bin, val.bin, data.json, tokenizer).
    #[arg(long, value_name = "DIR", requires = "samples")]
    pub data_out: Option<PathBuf>,
    /// With --samples: the student's vocabulary size when it is larger than its tokenizer's.
    #[arg(long, requires = "samples")]
    pub vocab_size: Option<usize>,
    /// Tokenizer for a teacher that carries none (llama2.c tokenizer.bin).
    #[arg(long)]
    pub teacher_tokenizer: Option<PathBuf>,
    /// Folder made by `slm data prepare` with the teacher's tokenizer.
    #[arg(long, required_unless_present = "samples", conflicts_with = "samples")]
    pub data: Option<PathBuf>,
    /// Log-probs kept per position.
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Window length (must equal the `seq_len` the student trains with).
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

fn cache(a: CacheArgs) -> Result<()> {
    let summary = match (&a.samples, &a.teacher, &a.data) {
        (Some(samples), _, _) => {
            let (Some(tok), Some(dir)) = (&a.tokenizer, &a.data_out) else {
                anyhow::bail!("--samples needs --tokenizer and --data-out");
            };
            slm_recipes::distill::cache_from_samples(
                samples,
                tok,
                a.vocab_size,
                a.k,
                a.seq_len,
                dir,
                &a.out,
            )?
        }
        (None, Some(teacher), Some(data)) => {
            let tok = a.teacher_tokenizer.as_deref();
            slm_recipes::distill::cache(teacher, tok, data, a.k, a.seq_len, &a.out)?
        }
        _ => anyhow::bail!("give --teacher and --data, or --samples"),
    };
    println!("{summary}");
    Ok(())
}

#[derive(Args, Debug)]
#[command(
    after_help = "The loss per token is (1 − w)·CE + w·T²·D(teacher ‖ student) \
with D one of: fkl (forward KL), rkl (reverse KL, MiniLLM), jsd:β (generalised JSD of GKD; β=0 \
forward, β=1 reverse), skl:α / srkl:α (skew KL / skew reverse KL of DistiLLM), tvd. Online mode \
runs the teacher beside the student (--teacher); offline mode reads `slm distill cache` output \
(--cache; forward KL at T = 1 over the top-k and a tail bucket). Every `slm train` setting works \
through --set (steps, lr, batch_size, seq_len, distill.on_policy.prompt, ...); validation loss is the \
student's plain cross-entropy.\n\nHidden-state loss (--hidden cosine|mse, live teacher only): the student's block \
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
    #[arg(long, short = 'm', visible_alias = "model", conflicts_with_all = ["student_preset", "student_every"])]
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
    #[arg(long, default_value = "fkl", value_parser = slm_distill::loss::parse)]
    pub loss: KdLoss,
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
    /// Hidden-state loss between mapped blocks (live teacher only).
    #[arg(long, value_enum)]
    pub hidden: Option<HiddenKind>,
    /// Weight of the hidden-state loss.
    #[arg(long, default_value_t = 1.0, requires = "hidden")]
    pub hidden_weight: f64,
    /// Block map for the hidden-state loss: student:teacher,... (0-based).
    #[arg(long, value_name = "MAP", requires = "hidden")]
    pub hidden_layers: Option<String>,
    /// Run directory.
    #[arg(long, short = 'o', required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Any setting, e.g. --set steps=2000, --set distill.on_policy.top_p=0.9.
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Continue the distillation run in this directory (other options are ignored).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// With --resume: train until this many steps in total.
    #[arg(long)]
    pub resume_steps: Option<u64>,
}

/// The distance of the hidden-state loss.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum HiddenKind {
    Cosine,
    Mse,
}

fn train(a: TrainArgs) -> Result<()> {
    let mut trainer = match &a.resume {
        Some(dir) => slm_distill::run::resume(dir, a.resume_steps)?,
        None => start(&a)?,
    };
    let outcome = train_run(&mut trainer)?;
    let resume = "slm distill train --resume";
    println!("{}", outcome_line(&outcome, trainer.run_dir(), resume));
    Ok(())
}

/// A new distillation run: the settings from the options, then `slm_recipes::distill::start`.
fn start(a: &TrainArgs) -> Result<slm_train::Trainer> {
    let (Some(data), Some(out)) = (&a.data, &a.out) else {
        bail!("give --data DIR and --out DIR (or --resume DIR)")
    };
    let mut cfg = RunConfig::default();
    cfg.train.data = data.display().to_string();
    cfg.distill = DistillConfig {
        teacher: a.teacher.clone(),
        cache: a.cache.as_ref().map(|c| c.display().to_string()),
        loss: a.loss,
        weight: a.kd_weight,
        temperature: a.temperature,
        on_policy: OnPolicyConfig {
            lambda: a.on_policy,
            ..OnPolicyConfig::default()
        },
        hidden: HiddenConfig {
            kind: a.hidden.map(|k| match k {
                HiddenKind::Cosine => HiddenMatch::Cosine,
                HiddenKind::Mse => HiddenMatch::Mse,
            }),
            weight: a.hidden_weight,
            layers: a.hidden_layers.clone(),
        },
    };
    let student = match (&a.student, &a.student_preset, a.student_every) {
        (Some(s), None, None) => Student::Model(s.clone()),
        (None, Some(p), None) => Student::Preset(p.clone()),
        (None, None, Some(k)) => Student::EveryKth(k),
        _ => bail!("give the student: --student MODEL, --student-preset NAME or --student-every K"),
    };
    let cfg = cfg.with_overrides(&a.set)?;
    let tok = a.teacher_tokenizer.as_deref();
    Ok(slm_recipes::distill::start(cfg, student, tok, out)?)
}
