//! The names and shapes of a model's parameter tensors, and the check every loader runs.
//!
//! Hugging Face naming is the one naming inside `slm`; other formats are renamed at the
//! door (slm-io). `check_tensors` reports the first missing tensor or the first shape
//! mismatch, naming the file, the tensor and both shapes.

use crate::config::LlamaConfig;
use candle_core::Tensor;
use slm_core::{Error, LinearRole, Result};
use std::collections::HashMap;
use std::path::Path;

/// Every tensor the model needs, in canonical order, with its shape.
pub fn expected_shapes(cfg: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let d = cfg.hidden_size;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, d],
    )];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![d]));
        for role in LinearRole::ALL {
            let (o, i) = match role {
                LinearRole::Q => (cfg.q_dim(), d),
                LinearRole::K | LinearRole::V => (cfg.kv_dim(), d),
                LinearRole::O => (d, cfg.q_dim()),
                LinearRole::Gate | LinearRole::Up => (cfg.intermediate_size, d),
                LinearRole::Down => (d, cfg.intermediate_size),
            };
            out.push((format!("{}.weight", role.hf_prefix(l)), vec![o, i]));
            if cfg.qkv_bias && matches!(role, LinearRole::Q | LinearRole::K | LinearRole::V) {
                out.push((format!("{}.bias", role.hf_prefix(l)), vec![o]));
            }
        }
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
    }
    out.push(("model.norm.weight".to_string(), vec![d]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, d]));
    }
    out
}

/// Tensors that may appear in checkpoints but carry nothing we need.
fn ignorable(name: &str, cfg: &LlamaConfig) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (cfg.tie_word_embeddings && name == "lm_head.weight")
}

/// Checks that `tensors` holds exactly the tensors of `cfg` with the right shapes.
pub fn check_tensors(
    cfg: &LlamaConfig,
    tensors: &HashMap<String, Tensor>,
    source: &Path,
) -> Result<()> {
    let expected = expected_shapes(cfg);
    for (name, shape) in &expected {
        let t = tensors.get(name).ok_or_else(|| Error::MissingTensor {
            path: source.to_path_buf(),
            tensor: name.clone(),
        })?;
        if t.dims() != shape.as_slice() {
            return Err(Error::ShapeMismatch {
                path: source.to_path_buf(),
                tensor: name.clone(),
                expected: shape.clone(),
                found: t.dims().to_vec(),
            });
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut unknown: Vec<&String> = tensors
        .keys()
        .filter(|n| !known.contains(n.as_str()) && !ignorable(n, cfg))
        .collect();
    unknown.sort();
    if let Some(first) = unknown.first() {
        return Err(Error::format(
            source,
            format!(
                "unexpected tensor `{first}` ({} unexpected in all): the file does not match its config",
                unknown.len()
            ),
        ));
    }
    Ok(())
}
