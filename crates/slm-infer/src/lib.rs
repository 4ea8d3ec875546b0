//! slm-infer: turning a model into text.
//!
//! Owns the sampler (greedy, temperature, top-k, top-p, repetition penalty), stop-string
//! handling, the generation loop over the KV cache, chat sessions (`chat`: history through a
//! chat template, KV cache reused across turns) and `generation_config.json` defaults
//! (`gen_config`). Fast decode kernels live in
//! slm-kernels; this crate decides what to compute, not how fast.

pub mod bench;
pub mod chat;
pub mod decode;
pub mod gen_config;
pub mod generate;
pub mod quantize;
pub mod sampler;
pub mod stop;
#[cfg(test)]
mod testutil;

pub use chat::{ChatOptions, ChatSession, Reply};
pub use gen_config::{sampler_config, GenerationDefaults, SamplerFlags};
pub use generate::{
    generate, generate_from_tokens, generate_with, GenerateOptions, Generation, StopReason,
};
pub use sampler::{Sampler, SamplerConfig};
