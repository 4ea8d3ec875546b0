//! slm-distill: knowledge distillation — teachers, teacher-written data, and the pieces of
//! logit distillation above the training loop.
//!
//! - [`init`]: a student from every k-th block of the teacher (DistilBERT's initialisation).
//! - [`on_policy`]: GKD's on-policy batches (the student's own continuations, scored by
//!   the teacher) as a trainer batch hook.
//! - [`vocab`]: the shared-vocabulary check logit losses need (names both tokenizers and the
//!   first differing token).
//! - [`cache`]: `slm distill cache` — a teacher's top-k log-probs for every training
//!   window, for offline distillation (format in `slm_data::kd_cache`).
//! - [`generate`]: `slm distill generate` — prompt templates with slots, sampling, de-duplication,
//!   quality filters, resumable JSONL output (the TinyStories recipe).
//!
//! The divergences themselves (forward/reverse KL, JSD(β), skew KL, TVD) are fused kernels in
//! `slm_kernels::distill`; the training loop with an online teacher is `slm_train::Trainer`.

pub mod cache;
pub mod generate;
pub mod init;
pub mod on_policy;
pub mod vocab;
