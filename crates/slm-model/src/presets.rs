//! Named model sizes (`--preset 15m`), after llama2.c's tinyllamas where they exist.
//!
//! The vocabulary size of a preset is a default: training replaces it with the size of the
//! tokenizer actually used. Parameter counts in the names assume the default vocabulary.

use crate::config::{LlamaConfig, ModelType};
use slm_core::{Error, Result};
use std::collections::BTreeMap;

/// (name, dim, layers, heads, kv_heads, hidden, vocab, context)
const PRESETS: &[(&str, usize, usize, usize, usize, usize, usize, usize)] = &[
    ("260k", 64, 5, 8, 4, 172, 512, 512),
    ("1m", 128, 4, 4, 4, 352, 1024, 256),
    ("4m", 256, 4, 8, 8, 704, 4096, 256),
    ("15m", 288, 6, 6, 6, 768, 32000, 256),
    ("42m", 512, 8, 8, 8, 1376, 32000, 1024),
    ("110m", 768, 12, 12, 12, 2048, 32000, 1024),
];

/// The names accepted by [`preset`].
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.0).collect()
}

/// The configuration of a named preset (tied embeddings, RoPE theta 10000, RMSNorm eps 1e-5).
pub fn preset(name: &str) -> Result<LlamaConfig> {
    let &(_, dim, layers, heads, kv_heads, hidden, vocab, ctx) = PRESETS
        .iter()
        .find(|p| p.0 == name.to_ascii_lowercase())
        .ok_or_else(|| {
            Error::invalid(format!(
                "unknown preset `{name}` (known: {})",
                preset_names().join(", ")
            ))
        })?;
    Ok(LlamaConfig {
        model_type: ModelType::Llama,
        vocab_size: vocab,
        hidden_size: dim,
        intermediate_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim: dim / heads,
        max_position_embeddings: ctx,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        tie_word_embeddings: true,
        qkv_bias: false,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
        extra: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_sizes_match_their_names() {
        let m = |n: &str| preset(n).unwrap().num_parameters() as f64 / 1e6;
        assert!((m("15m") - 15.2).abs() < 0.3, "{}", m("15m"));
        assert!((m("42m") - 41.7).abs() < 0.5, "{}", m("42m"));
        assert!((m("110m") - 110.0).abs() < 1.5, "{}", m("110m"));
        assert!((m("260k") - 0.26).abs() < 0.02, "{}", m("260k"));
        assert!((m("4m") - 4.2).abs() < 0.3, "{}", m("4m"));
        assert!((m("1m") - 0.95).abs() < 0.1, "{}", m("1m"));
        for n in preset_names() {
            preset(n).unwrap().validate().unwrap();
        }
        assert!(preset("7b").is_err());
    }
}
