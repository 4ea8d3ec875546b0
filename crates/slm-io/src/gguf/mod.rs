//! GGUF files (llama.cpp), versions 2 and 3, of the `llama` and `qwen2` architectures, read into
//! Hugging Face names, config and f32 tensors, with the embedded vocabulary.
//!
//! This file owns the tensor-name mapping and assembling a [`LoadedModel`]; the container
//! format is in `file.rs`, metadata -> config in `config.rs`, the vocabulary in `vocab.rs`.
//! The other direction — a model written as GGUF (`slm export gguf`, `slm quantize`) — is
//! `export.rs` over the container writer in `writer.rs`.
//!
//! Names: `token_embd` -> `model.embed_tokens`, `blk.N.attn_{norm,q,k,v,output}` ->
//! `model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj}`, `blk.N.ffn_{norm,gate,up,down}`
//! -> `post_attention_layernorm`, `mlp.{gate,up,down}_proj`, `output_norm` -> `model.norm`,
//! `output` -> `lm_head` (absent: tied). GGUF dims are innermost first, so a `[out, in]` matrix is
//! listed as `[in, out]`; shapes here are always outermost first. For `llama`, llama.cpp's
//! converter permuted q/k rows (and biases) to the interleaved RoPE layout; we undo it with
//! [`crate::permute::meta_to_hf`] (heads for q, kv heads for k). `qwen2` uses NeoX
//! (rotate_half) RoPE in llama.cpp, so its q/k are stored in HF order and are not permuted.
//! Every tensor is checked against the shape the config implies; unknown tensors (MoE experts,
//! llama3 `rope_freqs`) are reported as unsupported rather than dropped.

mod config;
pub mod export;
mod file;
mod vocab;
pub mod writer;

use std::collections::HashMap;
use std::path::Path;

use slm_core::error::IoContext;
use slm_core::{Error, Result};

pub use file::{parse_header, read_header, GgufHeader, GgufTensorInfo, GgufValue, MAGIC};
pub use vocab::vocab;

use crate::permute::meta_to_hf;
use crate::permute::meta_to_hf_rows;
use crate::{LoadedModel, ModelFormat, TokenizerSource};
use config::{config, Arch, Dims};
pub use file::{read_tensor, tensor_bytes};
use slm_kernels::kquant::RowMatrix;

/// HF name and expected shape (outermost first) of a GGUF tensor name, or `None` if unknown.
fn hf_name(d: &Dims, gguf: &str) -> Option<(String, Vec<usize>)> {
    let (q, kv) = (d.heads * d.head_dim, d.kv_heads * d.head_dim);
    let top = |n: &str, s: Vec<usize>| Some((n.to_string(), s));
    match gguf {
        "token_embd.weight" => return top("model.embed_tokens.weight", vec![d.vocab, d.hidden]),
        "output_norm.weight" => return top("model.norm.weight", vec![d.hidden]),
        "output.weight" => return top("lm_head.weight", vec![d.vocab, d.hidden]),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (n, rest) = rest.split_once('.')?;
    let l: usize = n.parse().ok()?;
    if l >= d.layers {
        return None;
    }
    let (suffix, shape) = match rest {
        "attn_norm.weight" => ("input_layernorm.weight", vec![d.hidden]),
        "attn_q.weight" => ("self_attn.q_proj.weight", vec![q, d.hidden]),
        "attn_k.weight" => ("self_attn.k_proj.weight", vec![kv, d.hidden]),
        "attn_v.weight" => ("self_attn.v_proj.weight", vec![kv, d.hidden]),
        "attn_output.weight" => ("self_attn.o_proj.weight", vec![d.hidden, q]),
        "attn_q.bias" => ("self_attn.q_proj.bias", vec![q]),
        "attn_k.bias" => ("self_attn.k_proj.bias", vec![kv]),
        "attn_v.bias" => ("self_attn.v_proj.bias", vec![kv]),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", vec![d.hidden]),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", vec![d.inter, d.hidden]),
        "ffn_up.weight" => ("mlp.up_proj.weight", vec![d.inter, d.hidden]),
        "ffn_down.weight" => ("mlp.down_proj.weight", vec![d.hidden, d.inter]),
        _ => return None,
    };
    Some((format!("model.layers.{l}.{suffix}"), shape))
}

/// The GGUF names every model of these dimensions must have.
fn required_names(d: &Dims) -> Vec<String> {
    let mut v = vec![
        "token_embd.weight".to_string(),
        "output_norm.weight".to_string(),
    ];
    for l in 0..d.layers {
        for s in [
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ] {
            v.push(format!("blk.{l}.{s}.weight"));
        }
    }
    v
}

/// Reads a GGUF model: config, f32 tensors under HF names, embedded vocabulary.
pub fn read(path: &Path) -> Result<LoadedModel> {
    let file = std::fs::File::open(path).with_path(path)?;
    // SAFETY: read-only map dropped before returning; the file must not shrink meanwhile.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.with_path(path)?;
    read_bytes(path, &mmap)
}

/// [`read`] of a whole file's bytes already in memory; `path` only names the file in errors
/// and in the result's `source`.
pub fn read_bytes(path: &Path, bytes: &[u8]) -> Result<LoadedModel> {
    let h = parse_header(path, bytes)?;
    let vocab = vocab(path, &h)?;
    let (config, d) = config(path, &h, vocab.as_ref())?;

    let by_name: HashMap<&str, &GgufTensorInfo> =
        h.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    for name in required_names(&d) {
        if !by_name.contains_key(name.as_str()) {
            return Err(Error::MissingTensor {
                path: path.to_path_buf(),
                tensor: name,
            });
        }
    }
    let mut tensors = HashMap::with_capacity(h.tensors.len());
    let mut stored_types = std::collections::BTreeMap::new();
    let mut stored_blocks = std::collections::BTreeMap::new();
    for t in &h.tensors {
        let Some((hf, expected)) = hf_name(&d, &t.name) else {
            let why = if t.name == "rope_freqs.weight" {
                "llama3-style RoPE frequency scaling".to_string()
            } else {
                format!(
                    "tensor `{}` is not part of a dense {} model",
                    t.name, config["model_type"]
                )
            };
            return Err(Error::Unsupported(format!("{}: {why}", path.display())));
        };
        let found = t.shape();
        if found != expected {
            return Err(Error::ShapeMismatch {
                path: path.to_path_buf(),
                tensor: t.name.clone(),
                expected,
                found,
            });
        }
        let mut w = read_tensor(path, bytes, &h, t)?;
        // llama.cpp stores llama q/k rows interleaved; back to HF rotate_half order.
        let permuted_heads = match d.arch {
            Arch::Llama if t.name.contains(".attn_q.") => Some(d.heads),
            Arch::Llama if t.name.contains(".attn_k.") => Some(d.kv_heads),
            _ => None,
        };
        if let Some(heads) = permuted_heads {
            w = meta_to_hf(&w, heads)?;
        }
        if RowMatrix::block_values(t.type_name()).is_some() {
            let raw = tensor_bytes(path, bytes, &h, t)?;
            let raw = match permuted_heads {
                Some(heads) => meta_to_hf_rows(raw, w.dims()[0], heads)?,
                None => raw.to_vec(),
            };
            stored_blocks.insert(hf.clone(), std::sync::Arc::from(raw));
        }
        stored_types.insert(hf.clone(), t.type_name().to_string());
        tensors.insert(hf, w);
    }
    Ok(LoadedModel {
        config,
        tensors,
        tokenizer: vocab.map_or(TokenizerSource::None, TokenizerSource::Gguf),
        generation_config: None,
        tokenizer_config: None,
        slm_meta: None,
        source: path.to_path_buf(),
        format: ModelFormat::Gguf,
        stored_types,
        stored_blocks,
    })
}
