//! A model's tokenizer in the files another format carries: the vocabulary of a GGUF file
//! (`tokenizer.ggml.*`, for `slm_io::gguf::export`; the mirror of `gguf.rs`, which reads
//! one) and the `tokenizer.json` + `tokenizer_config.json` of a Hugging Face directory
//! (for `slm export hf`; the conversion itself is `hf_json.rs`).

use super::hf_json::{tokenizer_config_json, tokenizer_json, BpePre};
use super::Llama2cTokenizer;
use slm_core::error::IoContext;
use slm_core::{Error, Result};
use slm_io::{GgufVocab, TokenizerSource};

/// The vocabulary a GGUF export of a model carries: the source GGUF's, or converted from its
/// llama2.c `tokenizer.bin` or `tokenizer.json`; `None` for a model without a tokenizer.
pub fn gguf_vocab(source: &TokenizerSource) -> Result<Option<GgufVocab>> {
    gguf_vocab_with_config(source, None)
}

/// [`gguf_vocab`] with the HF directory's `tokenizer_config.json`: its `add_bos_token`,
/// `add_eos_token` and `chat_template` go into the vocabulary of a converted `tokenizer.json`.
pub fn gguf_vocab_with_config(
    source: &TokenizerSource,
    tokenizer_config: Option<&serde_json::Value>,
) -> Result<Option<GgufVocab>> {
    let mut v = match source {
        TokenizerSource::Gguf(v) => Some(v.clone()),
        TokenizerSource::Llama2c(p) => Some(vocab_from_llama2c(&Llama2cTokenizer::from_file(p)?)),
        TokenizerSource::HfJson(p) => {
            let text = std::fs::read_to_string(p).with_path(p)?;
            let json = serde_json::from_str(&text)
                .map_err(|e| Error::format(p, format!("not JSON: {e}")))?;
            Some(vocab_from_tokenizer_json(&json).map_err(|e| Error::format(p, e.to_string()))?)
        }
        TokenizerSource::None => None,
    };
    if let (Some(v), Some(c), TokenizerSource::HfJson(_)) = (&mut v, tokenizer_config, source) {
        if let Some(b) = c["add_bos_token"].as_bool() {
            v.add_bos = b && v.bos_id.is_some();
        }
        if let Some(b) = c["add_eos_token"].as_bool() {
            v.add_eos = b && v.eos_id.is_some();
        }
        if let Some(t) = c["chat_template"].as_str() {
            v.chat_template = Some(t.to_string());
        }
    }
    Ok(v)
}

/// The tokenizer files of a Hugging Face directory for `source`, as (name, bytes): a GGUF
/// vocabulary as `tokenizer.json` + `tokenizer_config.json` (for transformers) beside
/// `vocab.gguf.json` (what slm reads back, exactly); a llama2.c `tokenizer.bin` beside its
/// SentencePiece `tokenizer.json` + `tokenizer_config.json`; a `tokenizer.json` as it is, with
/// the model's `tokenizer_config.json` when it had one.
pub fn hf_tokenizer_files(
    source: &TokenizerSource,
    tokenizer_config: Option<&serde_json::Value>,
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut files = source.files()?;
    let converted = match source {
        TokenizerSource::Gguf(v) => Some(v.clone()),
        TokenizerSource::Llama2c(p) => Some(vocab_from_llama2c(&Llama2cTokenizer::from_file(p)?)),
        TokenizerSource::HfJson(_) | TokenizerSource::None => None,
    };
    if let Some(v) = converted {
        files.push((
            slm_io::hf_dir::TOKENIZER,
            serde_json::to_vec(&tokenizer_json(&v)?)?,
        ));
        files.push((
            slm_io::hf_dir::TOKENIZER_CONFIG,
            serde_json::to_vec_pretty(&tokenizer_config_json(&v))?,
        ));
    } else if let Some(c) = tokenizer_config {
        files.push((
            slm_io::hf_dir::TOKENIZER_CONFIG,
            serde_json::to_vec_pretty(c)?,
        ));
    }
    Ok(files)
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
/// merges, added tokens typed as control (special) or user-defined; the pre-tokenizer type
/// whose pipeline the `pre_tokenizer` is, refused when none is; BOS from the post-processor
/// template, else `<|endoftext|>` as BOS/EOS when present; BOS added when the template adds it).
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
    let pre = BpePre::from_pre_tokenizer(&json["pre_tokenizer"]).ok_or_else(|| {
        Error::Unsupported(format!(
            "GGUF vocabulary from a tokenizer.json whose pre_tokenizer is no pipeline llama.cpp \
             knows: {}",
            json["pre_tokenizer"]
        ))
    })?;
    if !json["normalizer"].is_null() {
        return Err(Error::Unsupported(format!(
            "GGUF vocabulary from a tokenizer.json with a normalizer ({}): llama.cpp has none",
            json["normalizer"]["type"]
        )));
    }
    // (id, token, type): 1 normal, 3 control (special added), 4 user-defined (added).
    let mut by_id: Vec<(u64, String, i32)> = vocab
        .iter()
        .filter_map(|(k, v)| v.as_u64().map(|id| (id, k.clone(), 1)))
        .collect();
    for a in json["added_tokens"].as_array().into_iter().flatten() {
        if let (Some(id), Some(c)) = (a["id"].as_u64(), a["content"].as_str()) {
            by_id.retain(|(i, _, _)| *i != id);
            let ty = if a["special"].as_bool().unwrap_or(true) {
                3
            } else {
                4
            };
            by_id.push((id, c.to_string(), ty));
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
    let id_of = |name: &str| {
        by_id
            .iter()
            .find(|(_, t, ty)| *ty == 3 && t == name)
            .map(|(id, _, _)| *id as u32)
    };
    let template_bos = template_first_special(&json["post_processor"]);
    let endoftext = id_of("<|endoftext|>");
    let bos = template_bos.as_deref().and_then(id_of).or(endoftext);
    Ok(GgufVocab {
        model: "gpt2".into(),
        token_types: by_id.iter().map(|(_, _, ty)| *ty).collect(),
        tokens: by_id.into_iter().map(|(_, t, _)| t).collect(),
        scores: Vec::new(),
        merges,
        bos_id: bos,
        eos_id: endoftext.or(bos),
        unk_id: None,
        add_bos: template_bos.is_some() && bos.is_some(),
        add_eos: false,
        pre: Some(pre.gguf_name().into()),
        chat_template: None,
    })
}

/// The special token a `TemplateProcessing` post-processor puts first (`<s> $A` -> `<s>`).
fn template_first_special(pp: &serde_json::Value) -> Option<String> {
    match pp["type"].as_str()? {
        "TemplateProcessing" => pp["single"][0]["SpecialToken"]["id"]
            .as_str()
            .map(str::to_string),
        "Sequence" => pp["processors"]
            .as_array()?
            .iter()
            .find_map(template_first_special),
        _ => None,
    }
}

/// Puts the tokenizer file `src` (what `load_tokenizer_file` reads) into `dir` as the file a
/// data folder or model directory carries, and returns its path: a `tokenizer.json` is
/// copied (with the `tokenizer_config.json` beside it, if any); a GGUF model's vocabulary is
/// written as `tokenizer.json` + `tokenizer_config.json` (same ids, see `hf_json.rs`) instead
/// of copying the whole model; anything else is copied as `tokenizer.bin`.
pub fn place_tokenizer_file(
    src: &std::path::Path,
    dir: &std::path::Path,
) -> Result<std::path::PathBuf> {
    use slm_io::hf_dir::{LLAMA2C_TOKENIZER, TOKENIZER, TOKENIZER_CONFIG};
    let is_json = src
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let copy = |from: &std::path::Path, name: &str| -> Result<std::path::PathBuf> {
        let dest = dir.join(name);
        let same = match (from.canonicalize(), dest.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if !same {
            std::fs::copy(from, &dest).with_path(&dest)?;
        }
        Ok(dest)
    };
    if is_json {
        let config = src.with_file_name(TOKENIZER_CONFIG);
        if config.is_file() && config != src {
            copy(&config, TOKENIZER_CONFIG)?;
        }
        return copy(src, TOKENIZER);
    }
    let mut magic = [0u8; 4];
    let is_gguf = std::fs::File::open(src)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"GGUF";
    if is_gguf {
        let header = slm_io::gguf::read_header(src)?;
        let v = slm_io::gguf::vocab(src, &header)?
            .ok_or_else(|| Error::format(src, "is a GGUF file without a vocabulary"))?;
        let dest = dir.join(TOKENIZER);
        let json = serde_json::to_vec(
            &tokenizer_json(&v).map_err(|e| Error::format(src, e.to_string()))?,
        )?;
        std::fs::write(&dest, json).with_path(&dest)?;
        let config_path = dir.join(TOKENIZER_CONFIG);
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&tokenizer_config_json(&v))?,
        )
        .with_path(&config_path)?;
        return Ok(dest);
    }
    copy(src, LLAMA2C_TOKENIZER)
}
