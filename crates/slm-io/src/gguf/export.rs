//! Writing a Llama model as a GGUF file llama.cpp reads — the mirror of [`super::read`]:
//! Hugging Face names to llama.cpp's, q/k rows permuted to its interleaved RoPE layout
//! ([`crate::permute::hf_to_meta`]), weights stored as f32, f16, Q8_0, Q4_0 or Q4_1
//! (`slm_kernels::quant`, ggml's blocks and round-to-nearest), norms in f32, the HF
//! `config.json` as `llama.*` metadata and the vocabulary as `tokenizer.ggml.*` metadata.
//!
//! Quantised types need a row length divisible by 32; a matrix whose rows are not stays f16
//! (as llama.cpp's quantiser does). Models with q/k/v biases (Qwen2) or RoPE scaling are refused
//! for now.

use super::writer::{
    self, MetaValue, TensorOut, GGML_F16, GGML_F32, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0,
};
use crate::permute::hf_to_meta;
use crate::GgufVocab;
use candle_core::{DType, Tensor};
use serde::Deserialize;
use slm_core::{Error, Result};
use slm_kernels::quant::{
    quantize_q4_0, quantize_q4_1, quantize_q8_0, BlockKind, BlockQ4_0, BlockQ4_1, BlockQ8_0, QK,
};
use std::collections::HashMap;
use std::path::Path;

/// Storage type of the exported matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl GgufType {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            "q4_0" => Ok(Self::Q4_0),
            "q4_1" => Ok(Self::Q4_1),
            other => Err(Error::invalid(format!(
                "unknown GGUF type `{other}`: use f32, f16, q8_0, q4_0 or q4_1"
            ))),
        }
    }

    /// Block-quantised (Q8_0, Q4_0, Q4_1).
    pub fn is_quantised(self) -> bool {
        matches!(self, Self::Q8_0 | Self::Q4_0 | Self::Q4_1)
    }

    /// The block format of a quantised type.
    pub fn block_kind(self) -> Option<BlockKind> {
        match self {
            Self::Q8_0 => Some(BlockKind::Q8_0),
            Self::Q4_0 => Some(BlockKind::Q4_0),
            Self::Q4_1 => Some(BlockKind::Q4_1),
            Self::F32 | Self::F16 => None,
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 7,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    pub tensors: usize,
    pub bytes: u64,
    /// Matrices kept in f16 because their rows do not fill 32-value blocks.
    pub kept_f16: Vec<String>,
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect()
}

/// Encodes a matrix [rows, cols] as `ty` (f16 when quantised rows would not fill blocks).
fn encode_matrix(
    name: &str,
    v: &[f32],
    cols: usize,
    ty: GgufType,
    kept_f16: &mut Vec<String>,
) -> Result<(u32, Vec<u8>)> {
    if ty.is_quantised() && !cols.is_multiple_of(QK) {
        kept_f16.push(name.to_string());
        return Ok((GGML_F16, f16_bytes(v)));
    }
    Ok(match ty {
        GgufType::F32 => (GGML_F32, f32_bytes(v)),
        GgufType::F16 => (GGML_F16, f16_bytes(v)),
        GgufType::Q8_0 => {
            let mut b = vec![BlockQ8_0::default(); v.len() / QK];
            quantize_q8_0(v, &mut b)?;
            let mut out = Vec::with_capacity(b.len() * 34);
            for blk in &b {
                out.extend_from_slice(&blk.d.to_le_bytes());
                out.extend(blk.qs.iter().map(|&q| q as u8));
            }
            (GGML_Q8_0, out)
        }
        GgufType::Q4_0 => {
            let mut b = vec![BlockQ4_0::default(); v.len() / QK];
            quantize_q4_0(v, &mut b)?;
            let mut out = Vec::with_capacity(b.len() * 18);
            for blk in &b {
                out.extend_from_slice(&blk.d.to_le_bytes());
                out.extend_from_slice(&blk.qs);
            }
            (GGML_Q4_0, out)
        }
        GgufType::Q4_1 => {
            let mut b = vec![BlockQ4_1::default(); v.len() / QK];
            quantize_q4_1(v, &mut b)?;
            let mut out = Vec::with_capacity(b.len() * 20);
            for blk in &b {
                out.extend_from_slice(&blk.d.to_le_bytes());
                out.extend_from_slice(&blk.m.to_le_bytes());
                out.extend_from_slice(&blk.qs);
            }
            (GGML_Q4_1, out)
        }
    })
}

/// The `tokenizer.ggml.*` metadata for `vocab` (model, tokens, scores, token types, merges,
/// special ids, add BOS/EOS, the BPE pre-tokenizer type) and `tokenizer.chat_template`.
fn vocab_metadata(v: &GgufVocab) -> Vec<(String, MetaValue)> {
    let mut md = vec![
        (
            "tokenizer.ggml.model".into(),
            MetaValue::Str(v.model.clone()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            MetaValue::StrArray(v.tokens.clone()),
        ),
    ];
    if !v.scores.is_empty() {
        md.push((
            "tokenizer.ggml.scores".into(),
            MetaValue::F32Array(v.scores.clone()),
        ));
    }
    if !v.token_types.is_empty() {
        md.push((
            "tokenizer.ggml.token_type".into(),
            MetaValue::I32Array(v.token_types.clone()),
        ));
    }
    if !v.merges.is_empty() {
        md.push((
            "tokenizer.ggml.merges".into(),
            MetaValue::StrArray(v.merges.clone()),
        ));
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", v.bos_id),
        ("tokenizer.ggml.eos_token_id", v.eos_id),
        ("tokenizer.ggml.unknown_token_id", v.unk_id),
    ] {
        if let Some(id) = id {
            md.push((key.into(), MetaValue::U32(id)));
        }
    }
    md.push((
        "tokenizer.ggml.add_bos_token".into(),
        MetaValue::Bool(v.add_bos),
    ));
    md.push((
        "tokenizer.ggml.add_eos_token".into(),
        MetaValue::Bool(v.add_eos),
    ));
    if let Some(pre) = &v.pre {
        md.push(("tokenizer.ggml.pre".into(), MetaValue::Str(pre.clone())));
    }
    if let Some(t) = &v.chat_template {
        md.push(("tokenizer.chat_template".into(), MetaValue::Str(t.clone())));
    }
    md
}

/// The `config.json` fields the GGUF metadata carries (the names `LlamaConfig::to_hf_json`
/// and transformers write).
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    max_position_embeddings: usize,
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
}

/// Writes a model — its Hugging Face `config` and HF-named `tensors` — (and `vocab`, when
/// given) to `path` as GGUF.
pub fn write_model(
    config: &serde_json::Value,
    tensors: &HashMap<String, Tensor>,
    name: &str,
    vocab: Option<&GgufVocab>,
    ty: GgufType,
    path: &Path,
) -> Result<ExportReport> {
    let c: HfConfig = serde_json::from_value(config.clone())
        .map_err(|e| Error::invalid(format!("GGUF export: the model config is incomplete: {e}")))?;
    let heads = c.num_attention_heads;
    let kv_heads = c.num_key_value_heads.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 {
        return Err(Error::invalid(
            "GGUF export: the model config has no attention heads",
        ));
    }
    let head_dim = c.head_dim.unwrap_or(c.hidden_size / heads);
    if c.attention_bias || c.model_type.as_deref() == Some("qwen2") {
        return Err(Error::Unsupported(
            "GGUF export of models with q/k/v biases (Qwen2) is not written yet".into(),
        ));
    }
    if c.rope_scaling.as_ref().is_some_and(|s| !s.is_null()) {
        return Err(Error::Unsupported(
            "GGUF export of models with RoPE scaling is not written yet".into(),
        ));
    }
    if let Some(v) = vocab {
        if v.tokens.len() != c.vocab_size {
            return Err(Error::invalid(format!(
                "the vocabulary has {} tokens, the model {}",
                v.tokens.len(),
                c.vocab_size
            )));
        }
    }
    let get = |n: &str| {
        tensors
            .get(n)
            .ok_or_else(|| Error::invalid(format!("the model has no tensor `{n}`")))
    };
    let (d, inter, vocab_size) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let (q_dim, kv_dim) = (heads * head_dim, kv_heads * head_dim);
    let mut kept_f16 = Vec::new();
    let mut tensors = Vec::new();
    let mut matrix = |gguf: String, w: &Tensor, rows: usize, cols: usize| -> Result<()> {
        let v = values(w)?;
        let (ggml_type, data) = encode_matrix(&gguf, &v, cols, ty, &mut kept_f16)?;
        tensors.push(TensorOut {
            name: gguf,
            dims: vec![cols as u64, rows as u64],
            ggml_type,
            data,
        });
        Ok(())
    };
    matrix(
        "token_embd.weight".into(),
        get("model.embed_tokens.weight")?,
        vocab_size,
        d,
    )?;
    let mut norms = Vec::new();
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        let b = format!("blk.{l}");
        norms.push((
            format!("{b}.attn_norm.weight"),
            get(&format!("{p}.input_layernorm.weight"))?.clone(),
        ));
        // llama.cpp's llama graph applies RoPE to interleaved pairs: permute q/k rows.
        let wq = hf_to_meta(get(&format!("{p}.self_attn.q_proj.weight"))?, heads)?;
        let wk = hf_to_meta(get(&format!("{p}.self_attn.k_proj.weight"))?, kv_heads)?;
        matrix(format!("{b}.attn_q.weight"), &wq, q_dim, d)?;
        matrix(format!("{b}.attn_k.weight"), &wk, kv_dim, d)?;
        matrix(
            format!("{b}.attn_v.weight"),
            get(&format!("{p}.self_attn.v_proj.weight"))?,
            kv_dim,
            d,
        )?;
        matrix(
            format!("{b}.attn_output.weight"),
            get(&format!("{p}.self_attn.o_proj.weight"))?,
            d,
            q_dim,
        )?;
        norms.push((
            format!("{b}.ffn_norm.weight"),
            get(&format!("{p}.post_attention_layernorm.weight"))?.clone(),
        ));
        matrix(
            format!("{b}.ffn_gate.weight"),
            get(&format!("{p}.mlp.gate_proj.weight"))?,
            inter,
            d,
        )?;
        matrix(
            format!("{b}.ffn_up.weight"),
            get(&format!("{p}.mlp.up_proj.weight"))?,
            inter,
            d,
        )?;
        matrix(
            format!("{b}.ffn_down.weight"),
            get(&format!("{p}.mlp.down_proj.weight"))?,
            d,
            inter,
        )?;
    }
    if !c.tie_word_embeddings {
        matrix(
            "output.weight".into(),
            get("lm_head.weight")?,
            vocab_size,
            d,
        )?;
    }
    norms.push((
        "output_norm.weight".into(),
        get("model.norm.weight")?.clone(),
    ));
    for (name, w) in norms {
        let v = values(&w)?;
        tensors.push(TensorOut {
            name,
            dims: vec![v.len() as u64],
            ggml_type: GGML_F32,
            data: f32_bytes(&v),
        });
    }
    let arch = "llama";
    let key = |k: &str| format!("{arch}.{k}");
    let mut md: Vec<(String, MetaValue)> = vec![
        ("general.architecture".into(), MetaValue::Str(arch.into())),
        ("general.name".into(), MetaValue::Str(name.into())),
        ("general.file_type".into(), MetaValue::U32(ty.file_type())),
        (
            key("context_length"),
            MetaValue::U32(c.max_position_embeddings as u32),
        ),
        (key("embedding_length"), MetaValue::U32(d as u32)),
        (
            key("block_count"),
            MetaValue::U32(c.num_hidden_layers as u32),
        ),
        (key("feed_forward_length"), MetaValue::U32(inter as u32)),
        (key("attention.head_count"), MetaValue::U32(heads as u32)),
        (
            key("attention.head_count_kv"),
            MetaValue::U32(kv_heads as u32),
        ),
        (key("attention.key_length"), MetaValue::U32(head_dim as u32)),
        (
            key("attention.value_length"),
            MetaValue::U32(head_dim as u32),
        ),
        (key("rope.dimension_count"), MetaValue::U32(head_dim as u32)),
        (
            key("rope.freq_base"),
            MetaValue::F32(c.rope_theta.unwrap_or(10_000.0) as f32),
        ),
        (
            key("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(c.rms_norm_eps as f32),
        ),
        (key("vocab_size"), MetaValue::U32(vocab_size as u32)),
    ];
    if let Some(v) = vocab {
        md.extend(vocab_metadata(v));
    }
    writer::write(path, &md, &tensors)?;
    Ok(ExportReport {
        tensors: tensors.len(),
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        kept_f16,
    })
}
