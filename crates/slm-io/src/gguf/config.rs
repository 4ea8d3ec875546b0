//! GGUF metadata (`{arch}.*` keys) -> a Hugging Face `config.json` object, plus the
//! dimensions the tensor mapping needs. Supports the `llama` and `qwen2` architectures.

use std::collections::BTreeMap;
use std::path::Path;

use slm_core::{Error, Result};

use super::file::{GgufHeader, GgufValue};
use crate::GgufVocab;

/// The supported architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arch {
    Llama,
    Qwen2,
}

/// Hyper-parameters needed to name and check the tensors.
pub(super) struct Dims {
    pub(super) arch: Arch,
    pub(super) hidden: usize,
    pub(super) inter: usize,
    pub(super) layers: usize,
    pub(super) heads: usize,
    pub(super) kv_heads: usize,
    pub(super) head_dim: usize,
    pub(super) vocab: usize,
}

struct Meta<'a> {
    path: &'a Path,
    md: &'a BTreeMap<String, GgufValue>,
    prefix: String,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Option<&GgufValue> {
        self.md.get(&format!("{}.{key}", self.prefix))
    }
    fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| {
                Error::Unsupported(format!(
                    "{}: metadata `{}.{key}` = {v:?}, expected one non-negative integer",
                    self.path.display(),
                    self.prefix
                ))
            }),
        }
    }
    fn usize_req(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?.ok_or_else(|| {
            Error::format(
                self.path,
                format!("missing metadata key `{}.{key}`", self.prefix),
            )
        })
    }
    fn f64_opt(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(GgufValue::as_f64)
    }
}

/// Builds the Hugging Face config from the metadata.
pub(super) fn config(
    path: &Path,
    h: &GgufHeader,
    vocab: Option<&GgufVocab>,
) -> Result<(serde_json::Value, Dims)> {
    let arch_name = h
        .metadata
        .get("general.architecture")
        .and_then(GgufValue::as_str)
        .ok_or_else(|| Error::format(path, "missing metadata key `general.architecture`"))?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => {
            return Err(Error::Unsupported(format!(
                "{}: GGUF architecture `{other}` (slm reads llama and qwen2)",
                path.display()
            )))
        }
    };
    let m = Meta {
        path,
        md: &h.metadata,
        prefix: arch_name.to_string(),
    };
    let hidden = m.usize_req("embedding_length")?;
    let layers = m.usize_req("block_count")?;
    let inter = m.usize_req("feed_forward_length")?;
    let heads = m.usize_req("attention.head_count")?;
    let kv_heads = m.usize_opt("attention.head_count_kv")?.unwrap_or(heads);
    let ctx = m.usize_req("context_length")?;
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(Error::format(
            path,
            format!("impossible head counts: {heads} heads, {kv_heads} kv heads"),
        ));
    }
    let head_dim = m
        .usize_opt("attention.key_length")?
        .unwrap_or(hidden / heads);
    // Every layer has nine tensors: a count beyond the table is corrupt (and must not make us
    // list billions of required names). Widths must not overflow when multiplied out.
    if layers > h.tensors.len() / 9 {
        return Err(Error::format(
            path,
            format!(
                "block_count {layers} needs {} tensors, but the file has {}",
                layers.saturating_mul(9).saturating_add(2),
                h.tensors.len()
            ),
        ));
    }
    if heads.checked_mul(head_dim).is_none() {
        return Err(Error::format(
            path,
            format!("implausible sizes: {heads} heads of {head_dim}"),
        ));
    }
    if let Some(rot) = m.usize_opt("rope.dimension_count")? {
        if rot != head_dim {
            return Err(Error::Unsupported(format!(
                "{}: partial rotary embeddings (rope.dimension_count {rot} != head dim {head_dim})",
                path.display()
            )));
        }
    }
    let emb_rows = h
        .tensors
        .iter()
        .find(|t| t.name == "token_embd.weight")
        .and_then(|t| t.dims.get(1).map(|&d| d as usize));
    let vocab_size = m
        .usize_opt("vocab_size")?
        .or(vocab.map(|v| v.tokens.len()))
        .or(emb_rows)
        .ok_or_else(|| Error::format(path, "cannot tell the vocabulary size"))?;
    let eps = m
        .f64_opt("attention.layer_norm_rms_epsilon")
        .unwrap_or(1e-5);
    let theta = m.f64_opt("rope.freq_base").unwrap_or(10000.0);
    let tied = !h.tensors.iter().any(|t| t.name == "output.weight");

    let (architectures, model_type) = match arch {
        Arch::Llama => ("LlamaForCausalLM", "llama"),
        Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
    };
    let mut c = serde_json::json!({
        "architectures": [architectures],
        "model_type": model_type,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": vocab_size,
        "max_position_embeddings": ctx,
        "rms_norm_eps": eps,
        "rope_theta": theta,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
    });
    if head_dim * heads != hidden {
        c["head_dim"] = head_dim.into();
    }
    if let Some(v) = vocab {
        if let Some(b) = v.bos_id {
            c["bos_token_id"] = b.into();
        }
        if let Some(e) = v.eos_id {
            c["eos_token_id"] = e.into();
        }
    }
    if let Some(s) = rope_scaling(&m)? {
        c["rope_scaling"] = s;
    }
    let dims = Dims {
        arch,
        hidden,
        inter,
        layers,
        heads,
        kv_heads,
        head_dim,
        vocab: vocab_size,
    };
    Ok((c, dims))
}

/// `rope.scaling.type` + `rope.scaling.factor` (or the older `rope.scale_linear`) as HF's
/// `rope_scaling`; `None` when absent or `"none"`.
fn rope_scaling(m: &Meta<'_>) -> Result<Option<serde_json::Value>> {
    let ty = m.get("rope.scaling.type").and_then(GgufValue::as_str);
    let factor = m.f64_opt("rope.scaling.factor");
    Ok(match (ty, factor) {
        (None | Some("none"), _) => m
            .f64_opt("rope.scale_linear")
            .filter(|&f| f != 1.0)
            .map(|f| serde_json::json!({ "type": "linear", "factor": f })),
        (Some(t), Some(f)) => {
            let mut s = serde_json::json!({ "type": t, "factor": f });
            if let Some(orig) = m.usize_opt("rope.scaling.original_context_length")? {
                s["original_max_position_embeddings"] = orig.into();
            }
            Some(s)
        }
        (Some(t), None) => {
            return Err(Error::format(
                m.path,
                format!("rope.scaling.type is `{t}` but rope.scaling.factor is missing"),
            ))
        }
    })
}
