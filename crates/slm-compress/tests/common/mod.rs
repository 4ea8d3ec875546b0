//! Shared helpers for slm-compress tests: a tiny random Llama and calibration windows.

#![allow(dead_code)]

use candle_core::Device;
use rand::{rngs::StdRng, Rng, SeedableRng};
use slm_compress::calibration_windows;
use slm_model::{preset, Llama, LlamaConfig};

/// hidden 32, intermediate 64, 2 layers, 4 heads (2 kv), head_dim 8, vocab 64, context 32.
pub fn tiny_config() -> LlamaConfig {
    let mut c = preset("260k").unwrap();
    c.vocab_size = 64;
    c.hidden_size = 32;
    c.intermediate_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.max_position_embeddings = 32;
    c
}

pub fn tiny_model(seed: u64) -> Llama {
    Llama::random(tiny_config(), seed, &Device::Cpu).unwrap()
}

/// `n` windows of `len` tokens from a seeded random "text" over `vocab`.
pub fn windows(n: usize, len: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let text: Vec<u32> = (0..2000).map(|_| rng.gen_range(0..vocab as u32)).collect();
    calibration_windows(&text, n, len, seed).unwrap()
}
