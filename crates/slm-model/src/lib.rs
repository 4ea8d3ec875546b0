//! slm-model: the Llama-family decoder and everything that describes it.
//!
//! Owns the typed configuration (a mirror of Hugging Face `config.json`) and size presets,
//! the one flat-buffer forward for whole sequences (`flat`: training, evaluation, teacher
//! scoring and calibration run it), the composed candle decoder (`llama.rs`, the reference
//! the fast paths are tested against), RoPE, RMSNorm, the linear-layer slot, the KV cache, hook
//! points, LoRA adapters merged into the weights (`lora`), and the tensor-name/shape contract
//! every loader is checked against. It never imports training, compression or inference code.

pub mod config;
pub mod flat;
pub mod hooks;
pub mod kv_cache;
pub mod linear;
pub mod llama;
pub mod load;
pub mod lora;
pub mod norm;
pub mod presets;
pub mod rope;
pub mod weights;

pub use config::{LlamaConfig, ModelType, RopeScaling};
pub use flat::{FlatModel, FlatWeights};
pub use hooks::{HookPoint, Hooks};
pub use kv_cache::KvCache;
pub use linear::{Linear, LinearWeights};
pub use llama::Llama;
pub use load::{load, save, save_gguf, LoadedLlama};
pub use presets::{preset, preset_names};
