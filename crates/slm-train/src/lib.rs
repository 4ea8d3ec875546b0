//! slm-train: training for `slm` models.
//!
//! [`engine`] holds the fast training engine, [`FastModel`]: the shared flat-buffer forward
//! of `slm_model::flat` with every layer's activations kept, plus a hand-written backward and
//! the fused losses, tested against the composed candle model (`slm_model::Llama` with
//! candle autograd), which stays the reference.

pub mod engine;

pub use engine::{DistillLoss, FastModel, ParamBuf, ParamMut, ResidualLoss};
pub mod checkpoint;
pub mod config;
pub mod optim;
pub mod schedule;
pub mod trainer;

pub use config::TrainConfig;
pub use trainer::{Observer, Outcome, Silent, StepMetrics, Trainer};
pub mod fisher;
pub mod gradual;
pub mod hidden;
pub mod teacher;

pub use teacher::{LocalTeacher, Teacher};
pub mod report;
