//! A tokenizer as the vocabulary a GGUF file carries (`tokenizer.ggml.*`), for writing models
//! as GGUF (`slm_io::gguf::export`): the mirror of `gguf.rs`, which reads one.

use super::Llama2cTokenizer;
use slm_core::error::IoContext;
use slm_core::{Error, Result};
use slm_io::{GgufVocab, TokenizerSource};

/// The vocabulary a GGUF export of a model carries: the source GGUF's, or converted from its
/// llama2.c `tokenizer.bin` or `tokenizer.json`; `None` for a model without a tokenizer.
pub fn gguf_vocab(source: &TokenizerSource) -> Result<Option<GgufVocab>> {
    Ok(match source {
        TokenizerSource::Gguf(v) => Some(v.clone()),
        TokenizerSource::Llama2c(p) => Some(vocab_from_llama2c(&Llama2cTokenizer::from_file(p)?)),
        TokenizerSource::HfJson(p) => {
            let text = std::fs::read_to_string(p).with_path(p)?;
            let json = serde_json::from_str(&text)
                .map_err(|e| Error::format(p, format!("not JSON: {e}")))?;
            Some(vocab_from_tokenizer_json(&json)?)
        }
        TokenizerSource::None => None,
    })
}

/// A llama2.c vocabulary as a SentencePiece (`"llama"`) GGUF vocabulary: spaces back to `▁`,
/// `<0xXX>` pieces typed as bytes, ids 0/1/2 as unknown/BOS/EOS.
pub fn vocab_from_llama2c(t: &Llama2cTokenizer) -> GgufVocab {
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
        add_eos: false,
        pre: None,
        chat_template: None,
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
        add_eos: false,
        pre: Some("gpt2".into()),
        chat_template: None,
    })
}
