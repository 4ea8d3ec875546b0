//! slm-infer: turning a model into text.
//!
//! Owns the sampler (greedy, temperature, top-k, top-p, repetition penalty), stop-string
//! handling and the generation loop over the KV cache. Fast decode kernels live in
//! slm-kernels; this crate decides what to compute, not how fast.

pub mod bench;
pub mod decode;
pub mod generate;
pub mod quantize;
pub mod sampler;
pub mod stop;
#[cfg(test)]
mod testutil;

pub use generate::{
    generate, generate_from_tokens, generate_with, GenerateOptions, Generation, StopReason,
};
pub use sampler::{Sampler, SamplerConfig};
