//! slm-compress: making a trained model smaller without retraining it from scratch.
//!
//! It owns GPTQ quantisation of the block linears onto ggml's block grids ([`gptq`],
//! [`quantize`]) and unstructured and N:M pruning of the block linears (attention q/k/v/o, MLP
//! gate/up/down) by four methods: magnitude (per tensor or global), Optimal Brain Damage
//! (with the empirical Fisher or the layer-wise Hessian), Wanda and SparseGPT; the
//! calibration that feeds them (random windows of calibration text run block by block
//! through the partly pruned model, per-layer input statistics captured through the model's
//! hooks); and the report of what was pruned and what it cost. Embeddings, norms and the
//! output head are never touched.
//!
//! Every per-layer method is a pure function on plain row-major `[out, in]` weights
//! (`&[f32]`) and, where it needs one, the input Gram matrix XᵀX (`faer::MatRef<f64>`,
//! `[in, in]`) or its diagonal, so it can be tested on fixture layers; [`prune()`] wires them to
//! a [`slm_model::Llama`]. Masks are `Vec<bool>` in the weight's row-major order with
//! `true` = pruned (zeroed).
//!
//! It depends on slm-core and slm-model only (never on slm-train: "prune, then recover" is
//! two recipe stages). The Fisher diagonal that OBD needs is filled by whoever can compute
//! gradients (the trainer), through [`FisherDiag`].

pub mod calib;
pub mod capture;
pub mod gptq;
pub mod gram;
pub mod magnitude;
pub mod obd;
pub(crate) mod obs;
pub mod pattern;
pub mod prune;
pub mod quantize;
pub mod report;
pub mod select;
pub(crate) mod sequential;
pub mod sparsegpt;
pub mod structured;
pub mod wanda;

pub use calib::calibration_windows;
pub use capture::{InputSlot, LayerCapture};
pub use gptq::{gptq_quantize, GptqOptions, GptqOutput};
pub use gram::InputStats;
pub use magnitude::{magnitude_mask, magnitude_scores};
pub use obd::{obd_layerwise_saliency, obd_mask, obd_saliency, FisherDiag};
pub use pattern::{check_nm, Pattern};
pub use prune::{prune, Method, PruneConfig};
pub use quantize::{gptq_model, GptqConfig, GptqReport, GptqTensorReport};
pub use report::{output_energy, reconstruction_error, PruneReport, TensorReport};
pub use select::{global_masks, select_mask, Group};
pub use sparsegpt::{sparsegpt_prune, SparseGptOptions, SparseGptOutput};
pub use wanda::{wanda_mask, wanda_scores};
