//! `slm export gguf`: a Llama model as a GGUF file llama.cpp reads — tensors renamed to
//! llama.cpp's names, q/k rows permuted to its interleaved RoPE layout, weights stored as
//! f32, f16, Q8_0, Q4_0 or Q4_1 (`slm_kernels::quant`, ggml's blocks and round-to-nearest), norms in
//! f32, and the vocabulary as `tokenizer.ggml.*` metadata.
//!
//! Quantised types need a row length divisible by 32; a matrix whose rows are not stays f16
//! (as llama.cpp's quantiser does). Models with q/k/v biases (Qwen2) or RoPE scaling are refused
//! for now.

use candle_core::{DType, Tensor};
use slm_core::{Error, Result};
use slm_io::gguf::writer::{
    self, MetaValue, TensorOut, GGML_F16, GGML_F32, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0,
};
use slm_io::permute::hf_to_meta;
use slm_io::GgufVocab;
use slm_kernels::quant::{
    quantize_q4_0, quantize_q4_1, quantize_q8_0, BlockKind, BlockQ4_0, BlockQ4_1, BlockQ8_0, QK,
};
use slm_model::Llama;
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
    fn file_type(self) -> u32 {
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
    if ty.is_quantised() && cols % QK != 0 {
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

/// The `tokenizer.ggml.*` metadata for `vocab`.
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
    md
}

/// A llama2.c vocabulary as a SentencePiece (`"llama"`) GGUF vocabulary: spaces back to `▁`,
/// `<0xXX>` pieces typed as bytes, ids 0/1/2 as unknown/BOS/EOS.
pub fn vocab_from_llama2c(t: &slm_data::tokenizer::Llama2cTokenizer) -> GgufVocab {
    let tokens: Vec<String> = t
        .pieces()
        .iter()
        .map(|p| String::from_utf8_lossy(p).replace(' ', "\u{2581}"))
        .collect();
    let token_types = tokens
        .iter()
        .enumerate()
        .map(|(i, tok)| match i {
            0 => 2,
            1 | 2 => 3,
            _ if tok.len() == 6 && tok.starts_with("<0x") && tok.ends_with('>') => 6,
            _ => 1,
        })
        .collect();
    GgufVocab {
        model: "llama".into(),
        tokens,
        scores: t.scores().to_vec(),
        token_types,
        merges: Vec::new(),
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        add_bos: true,
    }
}

/// A Hugging Face byte-level BPE `tokenizer.json` as a `"gpt2"` GGUF vocabulary (tokens by id,
/// merges, added tokens typed as control; `<|endoftext|>` as BOS/EOS when present, and then
/// prepended like slm does when it prepares data and prompts).
pub fn vocab_from_tokenizer_json(json: &serde_json::Value) -> Result<GgufVocab> {
    let model = &json["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(Error::Unsupported(format!(
            "GGUF vocabulary from a `{}` tokenizer.json (only BPE)",
            model["type"].as_str().unwrap_or("?")
        )));
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| Error::invalid("tokenizer.json has no model.vocab"))?;
    let mut by_id: Vec<(u64, String, bool)> = vocab
        .iter()
        .filter_map(|(k, v)| v.as_u64().map(|id| (id, k.clone(), false)))
        .collect();
    for a in json["added_tokens"].as_array().into_iter().flatten() {
        if let (Some(id), Some(c)) = (a["id"].as_u64(), a["content"].as_str()) {
            by_id.retain(|(i, _, _)| *i != id);
            by_id.push((id, c.to_string(), true));
        }
    }
    by_id.sort_by_key(|(id, _, _)| *id);
    if by_id
        .iter()
        .enumerate()
        .any(|(i, (id, _, _))| *id != i as u64)
    {
        return Err(Error::invalid(
            "tokenizer.json ids are not 0..n without gaps",
        ));
    }
    let merges = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(p) => {
                Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?))
            }
            _ => None,
        })
        .collect();
    let special = by_id
        .iter()
        .find(|(_, t, added)| *added && t == "<|endoftext|>")
        .map(|(id, _, _)| *id as u32);
    Ok(GgufVocab {
        model: "gpt2".into(),
        token_types: by_id
            .iter()
            .map(|(_, _, added)| if *added { 3 } else { 1 })
            .collect(),
        tokens: by_id.into_iter().map(|(_, t, _)| t).collect(),
        scores: Vec::new(),
        merges,
        bos_id: special,
        eos_id: special,
        unk_id: None,
        add_bos: special.is_some(),
    })
}

/// Writes `model` (and `vocab`, when given) to `path` as GGUF.
pub fn export_gguf(
    model: &Llama,
    name: &str,
    vocab: Option<&GgufVocab>,
    ty: GgufType,
    path: &Path,
) -> Result<ExportReport> {
    let c = &model.config;
    if c.qkv_bias {
        return Err(Error::Unsupported(
            "GGUF export of models with q/k/v biases (Qwen2) is not written yet".into(),
        ));
    }
    if c.rope_scaling.is_some() {
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
    let t: HashMap<String, Tensor> = model.tensors().into_iter().collect();
    let get = |n: &str| {
        t.get(n)
            .ok_or_else(|| Error::invalid(format!("the model has no tensor `{n}`")))
    };
    let (d, inter, vocab_size) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
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
        let wq = hf_to_meta(
            get(&format!("{p}.self_attn.q_proj.weight"))?,
            c.num_attention_heads,
        )?;
        let wk = hf_to_meta(
            get(&format!("{p}.self_attn.k_proj.weight"))?,
            c.num_key_value_heads,
        )?;
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
        (
            key("attention.head_count"),
            MetaValue::U32(c.num_attention_heads as u32),
        ),
        (
            key("attention.head_count_kv"),
            MetaValue::U32(c.num_key_value_heads as u32),
        ),
        (
            key("attention.key_length"),
            MetaValue::U32(c.head_dim as u32),
        ),
        (
            key("attention.value_length"),
            MetaValue::U32(c.head_dim as u32),
        ),
        (
            key("rope.dimension_count"),
            MetaValue::U32(c.head_dim as u32),
        ),
        (key("rope.freq_base"), MetaValue::F32(c.rope_theta as f32)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, WeightType};

    fn model(tied: bool) -> Llama {
        crate::testutil::tiny_llama(64, tied, false, 32, 11)
    }

    fn vocab() -> GgufVocab {
        GgufVocab {
            model: "llama".into(),
            tokens: (0..64).map(|i| format!("t{i}")).collect(),
            scores: (0..64).map(|i| -(i as f32)).collect(),
            token_types: vec![1; 64],
            merges: vec![],
            bos_id: Some(1),
            eos_id: Some(2),
            unk_id: Some(0),
            add_bos: true,
        }
    }

    /// Greedy logits of a short sequence through the decode engine.
    fn logits(m: &Llama) -> Vec<f32> {
        let dec = Decoder::new(m, WeightType::F32).unwrap();
        let mut s = dec.new_state();
        dec.prefill(&mut s, &[1, 5, 9, 33, 2, 60], 0)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn f32_export_reads_back_to_the_same_model_and_vocabulary() {
        for tied in [true, false] {
            let m = model(tied);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.gguf");
            let v = vocab();
            let r = export_gguf(&m, "test", Some(&v), GgufType::F32, &path).unwrap();
            assert_eq!(r.tensors, 2 + 9 * 2 + usize::from(!tied));
            let loaded = slm_model::load(&path.display().to_string(), None).unwrap();
            match &loaded.tokenizer {
                slm_io::TokenizerSource::Gguf(back) => assert_eq!(back, &v),
                other => panic!("vocabulary lost: {other:?}"),
            }
            let back = loaded.model;
            assert_eq!(back.config.tie_word_embeddings, tied);
            let (a, b) = (logits(&m), logits(&back));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "tied {tied}: logits differ by {worst}");
        }
    }

    #[test]
    fn quantised_exports_read_back_as_their_blocks() {
        use slm_kernels::quant::{dequantize_q4_0, dequantize_q4_1, dequantize_q8_0};
        let m = model(false);
        let orig: HashMap<String, Tensor> = m.tensors().into_iter().collect();
        let dir = tempfile::tempdir().unwrap();
        for ty in [
            GgufType::Q8_0,
            GgufType::Q4_0,
            GgufType::Q4_1,
            GgufType::F16,
        ] {
            let path = dir.path().join(format!("{ty:?}.gguf"));
            export_gguf(&m, "test", None, ty, &path).unwrap();
            let back = slm_io::gguf::read(&path).unwrap().tensors;
            // Every matrix reads back as exactly what our quantiser makes of it (q/k rows go
            // through the RoPE permutation and back), norms exactly.
            for name in [
                "model.layers.0.mlp.gate_proj.weight",
                "model.layers.1.self_attn.q_proj.weight",
                "model.layers.1.self_attn.k_proj.weight",
                "lm_head.weight",
                "model.embed_tokens.weight",
                "model.layers.0.input_layernorm.weight",
            ] {
                let w = values(&orig[name]).unwrap();
                let is_norm = name.ends_with("layernorm.weight");
                let want: Vec<f32> = match ty {
                    _ if is_norm => w.clone(),
                    GgufType::Q8_0 => {
                        let mut b = vec![BlockQ8_0::default(); w.len() / QK];
                        quantize_q8_0(&w, &mut b).unwrap();
                        let mut out = vec![0f32; w.len()];
                        dequantize_q8_0(&b, &mut out).unwrap();
                        out
                    }
                    GgufType::Q4_0 => {
                        let mut b = vec![BlockQ4_0::default(); w.len() / QK];
                        quantize_q4_0(&w, &mut b).unwrap();
                        let mut out = vec![0f32; w.len()];
                        dequantize_q4_0(&b, &mut out).unwrap();
                        out
                    }
                    GgufType::Q4_1 => {
                        let mut b = vec![BlockQ4_1::default(); w.len() / QK];
                        quantize_q4_1(&w, &mut b).unwrap();
                        let mut out = vec![0f32; w.len()];
                        dequantize_q4_1(&b, &mut out).unwrap();
                        out
                    }
                    _ => w.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
                };
                let got = values(&back[name]).unwrap();
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-6, "{ty:?} {name}: {worst}");
            }
        }
        assert!(GgufType::parse("q5_k").is_err());
    }
}
