//! Test fixtures shared by this crate's unit tests.

use slm_model::{Llama, LlamaConfig};

/// A tiny random Llama: 2 layers, width 64, 4 query / 2 kv heads of 16, feed-forward 96.
pub fn tiny_config(vocab: usize, tied: bool, bias: bool, context: usize) -> LlamaConfig {
    let mut c = slm_model::preset("260k").unwrap();
    c.vocab_size = vocab;
    c.hidden_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.intermediate_size = 96;
    c.tie_word_embeddings = tied;
    c.qkv_bias = bias;
    c.max_position_embeddings = context;
    c
}

/// [`tiny_config`] with random weights from `seed`.
pub fn tiny_llama(vocab: usize, tied: bool, bias: bool, context: usize, seed: u64) -> Llama {
    Llama::random(
        tiny_config(vocab, tied, bias, context),
        seed,
        &candle_core::Device::Cpu,
    )
    .unwrap()
}
