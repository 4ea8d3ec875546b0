//! slm-distill: knowledge distillation — teachers, KD losses, teacher-written data — and
//! the settings of a training run, which may distil.
//!
//! - [`config`]: a run's settings file (`[train]`, `[prune]`, `[distill]`), old flat keys
//!   included; [`run`] starts or resumes the run it describes.
//! - [`objective`]: distillation as the trainer's objective ([`Distillation`]): a live
//!   teacher or its cache, the hidden-state loss, on-policy batches.
//! - [`teacher`]: the [`Teacher`] trait and [`LocalTeacher`], any model the foundation loads.
//! - [`loss`]: the KD loss kinds by name (`fkl`, `rkl`, `jsd:β`, `skl:α`, `srkl:α`, `tvd`);
//!   the divergences themselves are fused kernels in `slm_kernels::distill`.
//! - [`hidden`] and [`hidden_match`]: hidden-state distillation (layer map, learned
//!   projection) and its distances (cosine, MSE).
//! - [`on_policy`]: GKD's on-policy batches (the student's own continuations, scored by
//!   the teacher).
//! - [`init`]: a student from every k-th block of the teacher (DistilBERT's initialisation).
//! - [`vocab`]: the shared-vocabulary check logit losses need (names both tokenizers and the
//!   first differing token).
//! - [`cache`]: `slm distill cache` — a teacher's top-k log-probs for every training
//!   window, for offline distillation (format in `slm_data::kd_cache`).
//! - [`generate`]: `slm distill generate` — prompt templates with slots, sampling, de-duplication,
//!   quality filters, resumable JSONL output (the TinyStories recipe).
//!
//! The training loop itself is `slm_train::Trainer`.

pub mod cache;
pub mod config;
pub mod generate;
pub mod hidden;
pub mod hidden_match;
pub mod init;
pub mod loss;
pub mod objective;
pub mod on_policy;
pub mod run;
pub mod teacher;
pub mod vocab;

pub use config::{DistillConfig, HiddenConfig, OnPolicyConfig, RunConfig};
pub use objective::Distillation;
pub use teacher::{LocalTeacher, Teacher};
