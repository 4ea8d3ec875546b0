//! The model configuration: a typed mirror of Hugging Face `config.json` for the Llama family.
//!
//! `LlamaConfig` reads the keys transformers writes for `LlamaForCausalLM` and
//! `Qwen2ForCausalLM`, rejects the ones that would change the architecture in ways we do not
//! implement (an activation other than SiLU, an MLP bias, an unknown RoPE scaling type) and
//! keeps every other key in `extra` so a saved directory round-trips. Missing required fields
//! give an error naming the field.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slm_core::{Error, Result};
use std::collections::BTreeMap;

/// The model family, which decides the defaults and whether q/k/v carry biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    #[default]
    Llama,
    Qwen2,
}

/// RoPE frequency scaling as written in `config.json` (`rope_scaling`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor` (all frequencies divided by `factor`).
    Linear { factor: f64 },
    /// Llama 3.1's piecewise scaling of long wavelengths.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub model_type: ModelType,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Width of one attention head; `hidden_size / num_attention_heads` unless given.
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: bool,
    /// Biases on the q, k and v projections (always on for Qwen2, `attention_bias` for Llama).
    pub qkv_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// Keys of `config.json` that do not change the computation, kept for round-trips.
    pub extra: BTreeMap<String, Value>,
}

/// The raw serde view of `config.json`; converted to `LlamaConfig` after validation.
#[derive(Deserialize)]
struct RawConfig {
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
    #[serde(default)]
    max_position_embeddings: Option<usize>,
    #[serde(default)]
    rms_norm_eps: Option<f64>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<Value>,
    /// transformers ≥ 5 writes theta and scaling together here.
    #[serde(default)]
    rope_parameters: Option<Value>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: Option<bool>,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    bos_token_id: Option<Value>,
    #[serde(default)]
    eos_token_id: Option<Value>,
    #[serde(flatten)]
    extra: BTreeMap<String, Value>,
}

fn first_id(v: &Option<Value>) -> Option<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|x| x as u32),
        Some(Value::Array(a)) => a.first().and_then(|x| x.as_u64()).map(|x| x as u32),
        _ => None,
    }
}

fn parse_rope_scaling(v: &Value) -> Result<Option<RopeScaling>> {
    if v.is_null() {
        return Ok(None);
    }
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(|t| t.as_str())
        .ok_or_else(|| Error::config("rope_scaling has no `rope_type` (or `type`)"))?;
    let num = |key: &str| -> Result<f64> {
        v.get(key)
            .and_then(|x| x.as_f64())
            .ok_or_else(|| Error::config(format!("rope_scaling ({kind}) is missing `{key}`")))
    };
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear {
            factor: num("factor")?,
        })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        })),
        other => Err(Error::Unsupported(format!(
            "rope_scaling type `{other}` (supported: linear, llama3)"
        ))),
    }
}

impl LlamaConfig {
    /// Parses a Hugging Face `config.json` object.
    pub fn from_hf_json(v: &Value) -> Result<Self> {
        let raw: RawConfig = serde_json::from_value(v.clone())
            .map_err(|e| Error::config(format!("config.json: {e}")))?;
        let model_type = match raw.model_type.as_deref() {
            None | Some("llama") => ModelType::Llama,
            Some("qwen2") => ModelType::Qwen2,
            Some(other) => {
                return Err(Error::Unsupported(format!(
                    "model_type `{other}` (supported: llama, qwen2; see docs/ADDING_AN_ARCHITECTURE.md)"
                )))
            }
        };
        if let Some(act) = raw.hidden_act.as_deref() {
            if act != "silu" {
                return Err(Error::Unsupported(format!(
                    "hidden_act `{act}` (only silu)"
                )));
            }
        }
        if raw.use_sliding_window == Some(true) {
            return Err(Error::Unsupported(
                "use_sliding_window = true (sliding-window attention)".into(),
            ));
        }
        if raw.mlp_bias == Some(true) {
            return Err(Error::Unsupported("mlp_bias = true".into()));
        }
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        let cfg = LlamaConfig {
            model_type,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim: raw.head_dim.unwrap_or(if heads == 0 {
                0
            } else {
                raw.hidden_size / heads
            }),
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: raw
                .rope_parameters
                .as_ref()
                .and_then(|p| p.get("rope_theta"))
                .and_then(|t| t.as_f64())
                .or(raw.rope_theta)
                .unwrap_or(10_000.0),
            rope_scaling: match (&raw.rope_parameters, &raw.rope_scaling) {
                (Some(p), _) if p.get("rope_type").or_else(|| p.get("type")).is_some() => {
                    parse_rope_scaling(p)?
                }
                (_, Some(v)) => parse_rope_scaling(v)?,
                _ => None,
            },
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            qkv_bias: model_type == ModelType::Qwen2 || raw.attention_bias.unwrap_or(false),
            bos_token_id: first_id(&raw.bos_token_id),
            eos_token_id: first_id(&raw.eos_token_id),
            extra: raw.extra,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the numbers fit together (heads divide widths, nothing is zero).
    pub fn validate(&self) -> Result<()> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(Error::config(format!("`{name}` must be positive")));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(Error::config(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::config(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_dim
            )));
        }
        Ok(())
    }

    /// Width of the query projection output (`num_attention_heads * head_dim`).
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Width of the key/value projection outputs (`num_key_value_heads * head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Writes the configuration as a Hugging Face `config.json` object.
    pub fn to_hf_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        let (arch, mt) = match self.model_type {
            ModelType::Llama => ("LlamaForCausalLM", "llama"),
            ModelType::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        };
        m.insert("architectures".into(), serde_json::json!([arch]));
        m.insert("model_type".into(), mt.into());
        m.insert("vocab_size".into(), self.vocab_size.into());
        m.insert("hidden_size".into(), self.hidden_size.into());
        m.insert("intermediate_size".into(), self.intermediate_size.into());
        m.insert("num_hidden_layers".into(), self.num_hidden_layers.into());
        m.insert(
            "num_attention_heads".into(),
            self.num_attention_heads.into(),
        );
        m.insert(
            "num_key_value_heads".into(),
            self.num_key_value_heads.into(),
        );
        m.insert("head_dim".into(), self.head_dim.into());
        m.insert(
            "max_position_embeddings".into(),
            self.max_position_embeddings.into(),
        );
        m.insert("rms_norm_eps".into(), self.rms_norm_eps.into());
        m.insert("rope_theta".into(), self.rope_theta.into());
        m.insert("hidden_act".into(), "silu".into());
        m.insert(
            "tie_word_embeddings".into(),
            self.tie_word_embeddings.into(),
        );
        if self.model_type == ModelType::Llama {
            m.insert("attention_bias".into(), self.qkv_bias.into());
            m.insert("mlp_bias".into(), false.into());
        }
        let scaling = match &self.rope_scaling {
            None => Value::Null,
            Some(RopeScaling::Linear { factor }) => {
                serde_json::json!({"rope_type": "linear", "factor": factor})
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => serde_json::json!({
                "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings
            }),
        };
        m.insert("rope_scaling".into(), scaling);
        if let Some(b) = self.bos_token_id {
            m.insert("bos_token_id".into(), b.into());
        }
        if let Some(e) = self.eos_token_id {
            m.insert("eos_token_id".into(), e.into());
        }
        m.insert("torch_dtype".into(), "float32".into());
        Value::Object(m)
    }

    /// Number of parameters (embedding counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let d = self.hidden_size;
        let per_layer = d * self.q_dim()
            + 2 * d * self.kv_dim()
            + self.q_dim() * d
            + 3 * d * self.intermediate_size
            + 2 * d
            + if self.qkv_bias {
                self.q_dim() + 2 * self.kv_dim()
            } else {
                0
            };
        let emb = self.vocab_size * d;
        emb + self.num_hidden_layers * per_layer
            + d
            + if self.tie_word_embeddings { 0 } else { emb }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"model_type":"llama","vocab_size":96,"hidden_size":32,"intermediate_size":56,
               "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
               "rms_norm_eps":1e-5,"rope_theta":10000.0,"max_position_embeddings":64,
               "tie_word_embeddings":false,"use_cache":true,"transformers_version":"4.0"})
    }

    #[test]
    fn parses_and_round_trips() {
        let c = LlamaConfig::from_hf_json(&base()).unwrap();
        assert_eq!(c.head_dim, 8);
        assert_eq!(c.kv_dim(), 16);
        assert!(c.extra.contains_key("use_cache"));
        let back = LlamaConfig::from_hf_json(&c.to_hf_json()).unwrap();
        assert_eq!(
            back,
            LlamaConfig {
                extra: back.extra.clone(),
                ..c
            }
        );
    }

    #[test]
    fn missing_field_is_named() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("hidden_size");
        let e = LlamaConfig::from_hf_json(&v).unwrap_err().to_string();
        assert!(e.contains("hidden_size"), "{e}");
    }

    #[test]
    fn rejects_bad_head_split_and_activation() {
        let mut v = base();
        v["num_key_value_heads"] = json!(3);
        assert!(LlamaConfig::from_hf_json(&v)
            .unwrap_err()
            .to_string()
            .contains("multiple"));
        let mut v = base();
        v["hidden_act"] = json!("gelu");
        assert!(LlamaConfig::from_hf_json(&v)
            .unwrap_err()
            .to_string()
            .contains("gelu"));
        let mut v = base();
        v["rope_scaling"] = json!({"rope_type":"yarn","factor":2.0});
        assert!(LlamaConfig::from_hf_json(&v)
            .unwrap_err()
            .to_string()
            .contains("yarn"));
    }

    #[test]
    fn reads_transformers5_rope_parameters() {
        let mut v = base();
        v["rope_parameters"] = json!({"rope_type":"linear","factor":2.0,"rope_theta":500000.0});
        let c = LlamaConfig::from_hf_json(&v).unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 2.0 }));
        v["rope_parameters"] = json!({"rope_type":"default","rope_theta":1e6});
        let c = LlamaConfig::from_hf_json(&v).unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling), (1e6, None));
    }

    #[test]
    fn qwen2_has_qkv_bias() {
        let mut v = base();
        v["model_type"] = json!("qwen2");
        assert!(LlamaConfig::from_hf_json(&v).unwrap().qkv_bias);
    }
}
