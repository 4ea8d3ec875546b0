//! Writing a Llama model as a GGUF file llama.cpp reads — the mirror of [`super::read`]:
//! Hugging Face names to llama.cpp's, q/k rows permuted to its interleaved RoPE layout
//! ([`crate::permute::hf_to_meta`]), weights stored as f32, f16, Q8_0, Q4_0 or Q4_1
//! (`slm_kernels::quant`, ggml's blocks and round-to-nearest) or as llama.cpp's k-quant mixes
//! Q4_K_M, Q5_K_M and Q6_K (`slm_kernels::kquant::quantize`), norms in f32, the HF
//! `config.json` as `llama.*` metadata and the vocabulary as `tokenizer.ggml.*` metadata.
//!
//! Q8_0/Q4_0/Q4_1 need a row length divisible by 32; a matrix whose rows are not stays f16
//! (as llama.cpp's quantiser does). The k-quant mixes choose each tensor's type as
//! llama.cpp's `llama_tensor_get_type` does without an importance matrix ([`matrix_type`]),
//! so `slm quantize --type q4_k_m` writes the tensors `llama-quantize … Q4_K_M` writes from
//! the same f32 file, byte for byte. Models with q/k/v biases (Qwen2) or RoPE scaling are
//! refused for now.

use super::writer::{
    self, MetaValue, TensorOut, GGML_F16, GGML_F32, GGML_Q4_0, GGML_Q4_1, GGML_Q4_K, GGML_Q5_0,
    GGML_Q5_1, GGML_Q5_K, GGML_Q6_K, GGML_Q8_0,
};
use crate::permute::hf_to_meta;
use crate::GgufVocab;
use candle_core::{DType, Tensor};
use serde::Deserialize;
use slm_core::{Error, Result};
use slm_kernels::kquant::quantize::{quantize_to_blocks, GgmlQuantize};
use slm_kernels::kquant::{
    blocks_to_bytes, BlockQ4K, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K, QK_K,
};
use slm_kernels::quant::{
    quantize_q4_0, quantize_q4_1, quantize_q8_0, BlockKind, BlockQ4_0, BlockQ4_1, BlockQ8_0, QK,
};
use std::collections::HashMap;
use std::path::Path;

/// Storage type of the exported matrices: one type for all (f32 … Q4_1), or one of
/// llama.cpp's k-quant mixes, whose matrices take the types [`matrix_type`] chooses.
#[allow(non_camel_case_types)] // llama.cpp's names
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
    /// Mostly Q4_K; Q6_K for the output (and tied) embedding and for attn_v / ffn_down in
    /// the "more bits" layers (llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_M).
    Q4_K_M,
    /// Mostly Q5_K, with Q4_K_M's Q6_K exceptions (LLAMA_FTYPE_MOSTLY_Q5_K_M).
    Q5_K_M,
    /// Q6_K throughout (LLAMA_FTYPE_MOSTLY_Q6_K).
    Q6_K,
}

impl GgufType {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            "q4_0" => Ok(Self::Q4_0),
            "q4_1" => Ok(Self::Q4_1),
            "q4_k_m" => Ok(Self::Q4_K_M),
            "q5_k_m" => Ok(Self::Q5_K_M),
            "q6_k" => Ok(Self::Q6_K),
            other => Err(Error::invalid(format!(
                "unknown GGUF type `{other}`: use f32, f16, q8_0, q4_0, q4_1, q4_k_m, q5_k_m or q6_k"
            ))),
        }
    }

    /// The name `parse` reads (`q4_k_m`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q4_K_M => "q4_k_m",
            Self::Q5_K_M => "q5_k_m",
            Self::Q6_K => "q6_k",
        }
    }

    /// Block-quantised (everything but f32 and f16).
    pub fn is_quantised(self) -> bool {
        !matches!(self, Self::F32 | Self::F16)
    }

    /// One of llama.cpp's k-quant mixes (types chosen per tensor).
    pub fn is_k_mix(self) -> bool {
        matches!(self, Self::Q4_K_M | Self::Q5_K_M | Self::Q6_K)
    }

    /// The block format of a single-type quantised type (Q8_0, Q4_0, Q4_1; None for the
    /// k-quant mixes, whose blocks the decode engine does not hold as `BlockKind`).
    pub fn block_kind(self) -> Option<BlockKind> {
        match self {
            Self::Q8_0 => Some(BlockKind::Q8_0),
            Self::Q4_0 => Some(BlockKind::Q4_0),
            Self::Q4_1 => Some(BlockKind::Q4_1),
            Self::F32 | Self::F16 | Self::Q4_K_M | Self::Q5_K_M | Self::Q6_K => None,
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
            Self::Q4_K_M => 15,
            Self::Q5_K_M => 17,
            Self::Q6_K => 18,
        }
    }
}

/// The ggml type one tensor is stored as.
#[allow(non_camel_case_types)] // ggml's names
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorType {
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4_K,
    Q5_K,
    Q6_K,
}

impl TensorType {
    /// ggml's type id.
    pub fn ggml_id(self) -> u32 {
        match self {
            Self::F32 => GGML_F32,
            Self::F16 => GGML_F16,
            Self::Q8_0 => GGML_Q8_0,
            Self::Q4_0 => GGML_Q4_0,
            Self::Q4_1 => GGML_Q4_1,
            Self::Q5_0 => GGML_Q5_0,
            Self::Q5_1 => GGML_Q5_1,
            Self::Q4_K => GGML_Q4_K,
            Self::Q5_K => GGML_Q5_K,
            Self::Q6_K => GGML_Q6_K,
        }
    }

    /// ggml's name (`Q4_K`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q8_0 => "Q8_0",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q4_K => "Q4_K",
            Self::Q5_K => "Q5_K",
            Self::Q6_K => "Q6_K",
        }
    }

    /// (values, bytes) per block; (1, 4) for f32, (1, 2) for f16.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 => (1, 2),
            Self::Q8_0 => (QK, 34),
            Self::Q4_0 => (QK, 18),
            Self::Q4_1 => (QK, 20),
            Self::Q5_0 => (QK, 22),
            Self::Q5_1 => (QK, 24),
            Self::Q4_K => (QK_K, 144),
            Self::Q5_K => (QK_K, 176),
            Self::Q6_K => (QK_K, 210),
        }
    }

    /// Stored bytes per value.
    pub fn bytes_per_value(self) -> f64 {
        let (v, b) = self.block();
        b as f64 / v as f64
    }

    /// `v` (rows back to back, a whole number of blocks) in this type's bytes: ggml's blocks,
    /// quantised as llama.cpp's reference quantisers do.
    pub fn encode(self, v: &[f32]) -> Result<Vec<u8>> {
        fn k<B: GgmlQuantize>(v: &[f32]) -> Result<Vec<u8>> {
            Ok(blocks_to_bytes(&quantize_to_blocks::<B>(v)?))
        }
        Ok(match self {
            Self::F32 => f32_bytes(v),
            Self::F16 => f16_bytes(v),
            Self::Q8_0 => {
                let mut b = vec![BlockQ8_0::default(); v.len() / QK];
                quantize_q8_0(v, &mut b)?;
                let mut out = Vec::with_capacity(b.len() * 34);
                for blk in &b {
                    out.extend_from_slice(&blk.d.to_le_bytes());
                    out.extend(blk.qs.iter().map(|&q| q as u8));
                }
                out
            }
            Self::Q4_0 => {
                let mut b = vec![BlockQ4_0::default(); v.len() / QK];
                quantize_q4_0(v, &mut b)?;
                let mut out = Vec::with_capacity(b.len() * 18);
                for blk in &b {
                    out.extend_from_slice(&blk.d.to_le_bytes());
                    out.extend_from_slice(&blk.qs);
                }
                out
            }
            Self::Q4_1 => {
                let mut b = vec![BlockQ4_1::default(); v.len() / QK];
                quantize_q4_1(v, &mut b)?;
                let mut out = Vec::with_capacity(b.len() * 20);
                for blk in &b {
                    out.extend_from_slice(&blk.d.to_le_bytes());
                    out.extend_from_slice(&blk.m.to_le_bytes());
                    out.extend_from_slice(&blk.qs);
                }
                out
            }
            Self::Q5_0 => k::<BlockQ5_0>(v)?,
            Self::Q5_1 => k::<BlockQ5_1>(v)?,
            Self::Q4_K => k::<BlockQ4K>(v)?,
            Self::Q5_K => k::<BlockQ5K>(v)?,
            Self::Q6_K => k::<BlockQ6K>(v)?,
        })
    }
}

/// What llama.cpp's type choice reads from the model besides a tensor's name and row length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixShape {
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// No `output.weight`: the token embedding is the output matrix too.
    pub tied: bool,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third
/// one between.
fn use_more_bits(i_layer: usize, n_layers: usize) -> bool {
    let (i, n) = (i_layer as i64, n_layers as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The layer of a `blk.N.` tensor name.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// The type `ty` stores the 2-D tensor `name` (GGUF name) in, its rows `cols` values long.
///
/// Single types: the type itself (f16 for Q8_0/Q4_0/Q4_1 rows that do not fill 32-value
/// blocks). The k-quant mixes follow llama.cpp's `llama_tensor_get_type` (llama-quant.cpp)
/// for LLAMA_FTYPE_MOSTLY_Q4_K_M / Q5_K_M / Q6_K without an importance matrix:
/// - `output.weight`, and `token_embd.weight` when the embeddings are tied: Q6_K, or Q8_0 when
///   the rows do not fill 256-value blocks;
/// - `attn_v` (Q4_K_M, Q5_K_M): Q6_K in the layers `use_more_bits` picks (i < n/8,
///   i ≥ 7n/8, (i − n/8) mod 3 = 2, i counting attn_v tensors in layer order); a 70B-shaped
///   Llama (80 layers, grouped KV) takes Q5_K where it would take Q4_K;
/// - `ffn_down` (Q4_K_M, Q5_K_M): Q6_K in the `use_more_bits` layers;
/// - everything else (untied `token_embd` included): the mix's base type (Q4_K, Q5_K, Q6_K);
/// - then llama.cpp's fallbacks for rows that do not fill 256-value blocks: Q4_K → Q5_0,
///   Q5_K → Q5_1, Q6_K → Q8_0, and f16 when the rows do not fill 32-value blocks either.
pub fn matrix_type(ty: GgufType, name: &str, cols: usize, shape: &MixShape) -> TensorType {
    use TensorType as T;
    let single = |t: TensorType| {
        if cols.is_multiple_of(QK) {
            t
        } else {
            T::F16
        }
    };
    let base = match ty {
        GgufType::F32 => return T::F32,
        GgufType::F16 => return T::F16,
        GgufType::Q8_0 => return single(T::Q8_0),
        GgufType::Q4_0 => return single(T::Q4_0),
        GgufType::Q4_1 => return single(T::Q4_1),
        GgufType::Q4_K_M => T::Q4_K,
        GgufType::Q5_K_M => T::Q5_K,
        GgufType::Q6_K => T::Q6_K,
    };
    let more_bits_mix = matches!(ty, GgufType::Q4_K_M | GgufType::Q5_K_M);
    let layer = layer_of(name).unwrap_or(0);
    let mut t = base;
    if name == "output.weight" || (shape.tied && name == "token_embd.weight") {
        t = if !cols.is_multiple_of(QK_K) {
            T::Q8_0
        } else {
            T::Q6_K
        };
    } else if name.contains("attn_v.weight") {
        if more_bits_mix && use_more_bits(layer, shape.layers) {
            t = T::Q6_K;
        }
        let is_70b = shape.layers == 80 && shape.heads != shape.kv_heads;
        if is_70b && t == T::Q4_K {
            t = T::Q5_K;
        }
    } else if name.contains("ffn_down") && more_bits_mix && use_more_bits(layer, shape.layers) {
        t = T::Q6_K;
    }
    // llama.cpp's tensor_type_fallback.
    let (values, _) = t.block();
    if !cols.is_multiple_of(values) {
        t = match t {
            T::Q4_K => T::Q5_0,
            T::Q5_K => T::Q5_1,
            T::Q6_K => T::Q8_0,
            other => other,
        };
        if !cols.is_multiple_of(t.block().0) {
            t = T::F16;
        }
    }
    t
}

/// The GGUF name of a Hugging Face Llama tensor (`model.layers.3.mlp.down_proj.weight` →
/// `blk.3.ffn_down.weight`), as [`write_model`] names it.
pub fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let gguf = match part {
        "input_layernorm.weight" => "attn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{gguf}"))
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    pub tensors: usize,
    pub bytes: u64,
    /// Matrices kept in f16 because their rows do not fill 32-value blocks.
    pub kept_f16: Vec<String>,
    /// Every tensor's GGUF name and stored type, in file order.
    pub types: Vec<(String, TensorType)>,
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

/// Encodes the matrix `name` ([rows, cols]) as `ty` stores it ([`matrix_type`]).
fn encode_matrix(
    name: &str,
    v: &[f32],
    cols: usize,
    ty: GgufType,
    shape: &MixShape,
    kept_f16: &mut Vec<String>,
) -> Result<(TensorType, Vec<u8>)> {
    let t = matrix_type(ty, name, cols, shape);
    if t == TensorType::F16 && ty.is_quantised() {
        kept_f16.push(name.to_string());
    }
    let data = t
        .encode(v)
        .map_err(|e| Error::invalid(format!("tensor `{name}` as {}: {e}", t.name())))?;
    Ok((t, data))
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
    let shape = MixShape {
        layers: c.num_hidden_layers,
        heads,
        kv_heads,
        tied: c.tie_word_embeddings,
    };
    let mut kept_f16 = Vec::new();
    let mut types = Vec::new();
    let mut tensors = Vec::new();
    let mut matrix = |gguf: String, w: &Tensor, rows: usize, cols: usize| -> Result<()> {
        let v = values(w)?;
        let (t, data) = encode_matrix(&gguf, &v, cols, ty, &shape, &mut kept_f16)?;
        types.push((gguf.clone(), t));
        tensors.push(TensorOut {
            name: gguf,
            dims: vec![cols as u64, rows as u64],
            ggml_type: t.ggml_id(),
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
        types.push((name.clone(), TensorType::F32));
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
    if ty.is_k_mix() {
        // As llama-quantize writes it (GGML_QNT_VERSION).
        md.push(("general.quantization_version".into(), MetaValue::U32(2)));
    }
    if let Some(v) = vocab {
        md.extend(vocab_metadata(v));
    }
    writer::write(path, &md, &tensors)?;
    Ok(ExportReport {
        tensors: tensors.len(),
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        kept_f16,
        types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TensorType as T;

    fn shape(layers: usize, tied: bool) -> MixShape {
        MixShape {
            layers,
            heads: 8,
            kv_heads: 2,
            tied,
        }
    }

    #[test]
    fn more_bits_layers_are_llama_cpps() {
        let picked = |n| (0..n).filter(|&i| use_more_bits(i, n)).collect::<Vec<_>>();
        assert_eq!(picked(8), [0, 3, 6, 7]);
        assert_eq!(picked(12), [0, 3, 6, 9, 10, 11]);
        // SmolLM2-135M: 30 layers.
        assert_eq!(
            picked(30),
            [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]
        );
        assert_eq!(picked(1), [0]);
    }

    #[test]
    fn k_mixes_choose_types_as_llama_cpp() {
        let s = shape(8, false);
        let q4 = |n: &str, cols| matrix_type(GgufType::Q4_K_M, n, cols, &s);
        let q5 = |n: &str, cols| matrix_type(GgufType::Q5_K_M, n, cols, &s);
        let q6 = |n: &str, cols| matrix_type(GgufType::Q6_K, n, cols, &s);
        assert_eq!(q4("blk.0.attn_v.weight", 256), T::Q6_K);
        assert_eq!(q4("blk.1.attn_v.weight", 256), T::Q4_K);
        assert_eq!(q5("blk.1.attn_v.weight", 256), T::Q5_K);
        assert_eq!(q4("blk.3.ffn_down.weight", 512), T::Q6_K);
        assert_eq!(q4("blk.4.ffn_down.weight", 512), T::Q4_K);
        assert_eq!(q4("blk.4.attn_q.weight", 512), T::Q4_K);
        assert_eq!(q6("blk.4.ffn_down.weight", 512), T::Q6_K);
        // Untied: the head is Q6_K, the embedding the base type.
        assert_eq!(q4("output.weight", 256), T::Q6_K);
        assert_eq!(q4("token_embd.weight", 256), T::Q4_K);
        assert_eq!(q5("token_embd.weight", 576), T::Q5_1);
        // Tied: the embedding is the head.
        let tied = shape(8, true);
        assert_eq!(
            matrix_type(GgufType::Q4_K_M, "token_embd.weight", 256, &tied),
            T::Q6_K
        );
        assert_eq!(
            matrix_type(GgufType::Q4_K_M, "token_embd.weight", 576, &tied),
            T::Q8_0
        );
        // Fallbacks for rows that do not fill 256 (then 32) values.
        assert_eq!(q4("blk.4.attn_q.weight", 576), T::Q5_0);
        assert_eq!(q5("blk.4.attn_q.weight", 576), T::Q5_1);
        assert_eq!(q6("blk.4.attn_q.weight", 576), T::Q8_0);
        assert_eq!(q4("blk.0.attn_v.weight", 576), T::Q8_0);
        assert_eq!(q4("blk.4.attn_q.weight", 200), T::F16);
        assert_eq!(q4("output.weight", 200), T::F16);
        // A 70B-shaped Llama: attn_v Q4_K → Q5_K (layer 12 is a "more bits" one: Q6_K).
        let big = shape(80, false);
        assert_eq!(
            matrix_type(GgufType::Q4_K_M, "blk.11.attn_v.weight", 8192, &big),
            T::Q5_K
        );
        assert_eq!(
            matrix_type(GgufType::Q4_K_M, "blk.12.attn_v.weight", 8192, &big),
            T::Q6_K
        );
        // The single types keep their rule: f16 for rows that do not fill 32 values.
        assert_eq!(
            matrix_type(GgufType::Q4_0, "blk.0.attn_v.weight", 576, &s),
            T::Q4_0
        );
        assert_eq!(
            matrix_type(GgufType::Q8_0, "blk.0.attn_v.weight", 200, &s),
            T::F16
        );
        assert_eq!(matrix_type(GgufType::F32, "output.weight", 200, &s), T::F32);
    }

    #[test]
    fn names_and_types_parse() {
        for t in [
            "f32", "f16", "q8_0", "q4_0", "q4_1", "q4_k_m", "q5_k_m", "q6_k",
        ] {
            assert_eq!(GgufType::parse(t).unwrap().name(), t);
        }
        assert_eq!(GgufType::parse("Q4_K_M").unwrap(), GgufType::Q4_K_M);
        assert!(GgufType::parse("q5_k")
            .unwrap_err()
            .to_string()
            .contains("q6_k"));
        assert_eq!(GgufType::Q4_K_M.file_type(), 15);
        assert_eq!(GgufType::Q5_K_M.file_type(), 17);
        assert_eq!(GgufType::Q6_K.file_type(), 18);
        assert_eq!(
            gguf_name("model.layers.12.mlp.down_proj.weight").as_deref(),
            Some("blk.12.ffn_down.weight")
        );
        assert_eq!(
            gguf_name("lm_head.weight").as_deref(),
            Some("output.weight")
        );
        assert_eq!(gguf_name("model.layers.x.mlp.down_proj.weight"), None);
        // Encoded sizes are the blocks' sizes.
        let v = vec![0.25f32; 512];
        for t in [T::Q5_0, T::Q5_1, T::Q4_K, T::Q5_K, T::Q6_K, T::Q8_0, T::F16] {
            let (values, bytes) = t.block();
            assert_eq!(t.encode(&v).unwrap().len(), 512 / values * bytes, "{t:?}");
        }
        assert!(T::Q4_K.encode(&v[..288]).is_err());
    }
}
