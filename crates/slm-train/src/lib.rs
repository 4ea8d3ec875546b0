//! slm-train: training for `slm` models.
//!
//! [`engine`] holds the fast training engine, [`FastModel`]: the shared flat-buffer forward
//! of `slm_model::flat` with every layer's activations kept, plus a hand-written backward and
//! the fused losses, tested against the composed candle model (`slm_model::Llama` with
//! candle autograd), which stays the reference. [`trainer`] is the loop (batches,
//! accumulation, clipping, [`optim`]'s AdamW, [`schedule`], [`gradual`] pruning,
//! [`checkpoint`]s); what it minimises is an [`objective::Objective`], next-token
//! cross-entropy here and distillation in `slm-distill`. [`config`] holds the loop's settings.

pub mod engine;

pub use engine::{DistillLoss, FastModel, ParamBuf, ParamMut, ResidualLoss};
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod finetune;
pub mod objective;
pub mod optim;
pub mod schedule;
pub mod trainer;

pub use config::{PruneConfig, TrainConfig};
pub use objective::{CrossEntropy, Loss, MicroBatch, Objective};
pub use trainer::{Observer, Outcome, Setup, Silent, StepMetrics, Trainer};
pub mod fisher;
pub mod gradual;
pub mod report;
