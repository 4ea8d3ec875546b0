//! The vocabulary embedded in GGUF metadata (`tokenizer.ggml.*`) -> [`GgufVocab`].

use std::path::Path;

use slm_core::{Error, Result};

use super::file::{GgufHeader, GgufValue};
use crate::GgufVocab;

/// The embedded vocabulary, if the file has `tokenizer.ggml.tokens`.
pub fn vocab(path: &Path, h: &GgufHeader) -> Result<Option<GgufVocab>> {
    let md = &h.metadata;
    let Some(tokens) = md.get("tokenizer.ggml.tokens") else {
        return Ok(None);
    };
    let bad = |key: &str, what: &str| Error::format(path, format!("metadata `{key}`: {what}"));
    let strings = |key: &str| -> Result<Vec<String>> {
        match md.get(key) {
            None => Ok(Vec::new()),
            Some(v) => v
                .as_array()
                .ok_or_else(|| bad(key, "not an array"))?
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(key, "not an array of strings"))
                })
                .collect(),
        }
    };
    let tokens_vec = strings("tokenizer.ggml.tokens")?;
    if tokens.as_array().is_none() {
        return Err(bad("tokenizer.ggml.tokens", "not an array"));
    }
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(GgufValue::as_str)
        .ok_or_else(|| {
            bad(
                "tokenizer.ggml.model",
                "missing, but tokenizer.ggml.tokens is present",
            )
        })?
        .to_string();
    let scores: Vec<f32> = match md.get("tokenizer.ggml.scores") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .ok_or_else(|| bad("tokenizer.ggml.scores", "not an array"))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .map(|f| f as f32)
                    .ok_or_else(|| bad("tokenizer.ggml.scores", "not numbers"))
            })
            .collect::<Result<_>>()?,
    };
    let token_types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .ok_or_else(|| bad("tokenizer.ggml.token_type", "not an array"))?
            .iter()
            .map(|x| match *x {
                GgufValue::I32(t) => Ok(t),
                ref o => o
                    .as_u64()
                    .and_then(|t| i32::try_from(t).ok())
                    .ok_or_else(|| bad("tokenizer.ggml.token_type", "not integers")),
            })
            .collect::<Result<_>>()?,
    };
    for (key, len) in [
        ("tokenizer.ggml.scores", scores.len()),
        ("tokenizer.ggml.token_type", token_types.len()),
    ] {
        if len != 0 && len != tokens_vec.len() {
            return Err(bad(
                key,
                &format!("{len} entries for {} tokens", tokens_vec.len()),
            ));
        }
    }
    let id = |key: &str| -> Result<Option<u32>> {
        match md.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| bad(key, "not a token id")),
        }
    };
    let add_bos = match md.get("tokenizer.ggml.add_bos_token") {
        None => model == "llama",
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad("tokenizer.ggml.add_bos_token", "not a bool"))?,
    };
    let add_eos = match md.get("tokenizer.ggml.add_eos_token") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad("tokenizer.ggml.add_eos_token", "not a bool"))?,
    };
    let text = |key: &str| -> Result<Option<String>> {
        match md.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| bad(key, "not a string")),
        }
    };
    Ok(Some(GgufVocab {
        add_eos,
        pre: text("tokenizer.ggml.pre")?,
        chat_template: text("tokenizer.chat_template")?,
        merges: strings("tokenizer.ggml.merges")?,
        bos_id: id("tokenizer.ggml.bos_token_id")?,
        eos_id: id("tokenizer.ggml.eos_token_id")?,
        unk_id: id("tokenizer.ggml.unknown_token_id")?,
        add_bos,
        model,
        tokens: tokens_vec,
        scores,
        token_types,
    }))
}
