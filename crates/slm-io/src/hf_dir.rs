//! Model directories in Hugging Face layout: reading and writing.
//!
//! ```text
//! config.json                       required
//! model.safetensors                 one file, or
//! model.safetensors.index.json      {"weight_map": {tensor name: shard file}} + the shards
//! vocab.gguf.json                   optional -> TokenizerSource::Gguf (a GGUF's vocabulary,
//!                                   written for models read from GGUF; wins over the others)
//! tokenizer.bin (llama2.c)          optional -> TokenizerSource::Llama2c (when no vocab.gguf.json)
//! tokenizer.json                    optional -> TokenizerSource::HfJson (when neither of the
//!                                   above; beside them it is their conversion for transformers)
//! tokenizer_config.json            optional (BOS/EOS flags, chat template)
//! generation_config.json, slm.json  optional
//! ```
//!
//! As in transformers, `model.safetensors` wins over an index when both are present. Writes go
//! through [`crate::atomic`], weights first and `config.json` last, so a directory that has a
//! `config.json` always has its weights.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use candle_core::Tensor;
use slm_core::error::IoContext;
use slm_core::{Error, Result};

use crate::atomic::write_atomic;
use crate::safetensors_io::{read_safetensors, write_safetensors};
use crate::{LoadedModel, ModelFormat, TokenizerSource};

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
pub const TOKENIZER: &str = "tokenizer.json";
/// A llama2.c `tokenizer.bin`, used when there is no `tokenizer.json`.
pub const LLAMA2C_TOKENIZER: &str = "tokenizer.bin";
/// A GGUF vocabulary ([`crate::GgufVocab`] as JSON), for models read from GGUF files.
pub const GGUF_VOCAB: &str = "vocab.gguf.json";
pub const GENERATION_CONFIG: &str = "generation_config.json";
/// The tokenizer's settings beside `tokenizer.json` (BOS/EOS flags, chat template).
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const SLM_META: &str = "slm.json";

/// Reads a Hugging Face model directory.
pub fn read(dir: &Path) -> Result<LoadedModel> {
    let config_path = dir.join(CONFIG);
    if !config_path.is_file() {
        return Err(Error::io(
            dir,
            io::Error::new(
                io::ErrorKind::NotFound,
                "not a model directory: config.json is missing",
            ),
        ));
    }
    let config = read_json(&config_path)?;
    if !config.is_object() {
        return Err(Error::format(&config_path, "expected a JSON object"));
    }
    let tensors = read_weights(dir)?;
    let tokenizer = tokenizer_source(dir)?;
    Ok(LoadedModel {
        config,
        tensors,
        tokenizer,
        generation_config: read_optional_json(&dir.join(GENERATION_CONFIG))?,
        tokenizer_config: read_optional_json(&dir.join(TOKENIZER_CONFIG))?,
        slm_meta: read_optional_json(&dir.join(SLM_META))?,
        source: dir.to_path_buf(),
        format: ModelFormat::HfDir,
        stored_types: Default::default(),
        stored_blocks: Default::default(),
    })
}

/// The tokenizer of a model directory, without reading its weights (see the table above).
pub fn tokenizer_source(dir: &Path) -> Result<TokenizerSource> {
    let tokenizer_path = dir.join(TOKENIZER);
    let llama2c_tokenizer = dir.join(LLAMA2C_TOKENIZER);
    let gguf_vocab = dir.join(GGUF_VOCAB);
    // slm's own vocabulary files first: they are only there because slm wrote them from a
    // GGUF or llama2.c source, and they are that source exactly (a tokenizer.json beside them
    // is its conversion for transformers).
    Ok(if gguf_vocab.is_file() {
        let v = read_json(&gguf_vocab)?;
        TokenizerSource::Gguf(
            serde_json::from_value(v).map_err(|e| Error::format(&gguf_vocab, e.to_string()))?,
        )
    } else if llama2c_tokenizer.is_file() {
        TokenizerSource::Llama2c(llama2c_tokenizer)
    } else if tokenizer_path.is_file() {
        TokenizerSource::HfJson(tokenizer_path)
    } else {
        TokenizerSource::None
    })
}

/// The weights of a model directory: a single file or shards listed in an index.
pub fn read_weights(dir: &Path) -> Result<HashMap<String, Tensor>> {
    let single = dir.join(WEIGHTS);
    if single.is_file() {
        return read_safetensors(&single);
    }
    let index = dir.join(WEIGHTS_INDEX);
    if index.is_file() {
        return read_sharded(dir, &index);
    }
    let hint = if dir.join("pytorch_model.bin").exists() {
        " (pytorch_model.bin is not supported: convert it to safetensors)"
    } else {
        ""
    };
    Err(Error::io(
        dir,
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no {WEIGHTS} and no {WEIGHTS_INDEX}{hint}"),
        ),
    ))
}

/// Reads the shards named by `model.safetensors.index.json`, checking that every tensor the
/// index lists is in the shard it names and that no tensor appears in two shards.
fn read_sharded(dir: &Path, index_path: &Path) -> Result<HashMap<String, Tensor>> {
    let index = read_json(index_path)?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::format(index_path, "no \"weight_map\" object"))?;
    // shard file -> tensor names the index assigns to it
    let mut shards: HashMap<&str, Vec<&str>> = HashMap::new();
    for (tensor, shard) in map {
        let shard = shard.as_str().ok_or_else(|| {
            Error::format(
                index_path,
                format!("weight_map[\"{tensor}\"] is not a file name"),
            )
        })?;
        if shard.is_empty() || shard.contains(['/', '\\']) || shard.starts_with('.') {
            return Err(Error::format(
                index_path,
                format!("weight_map[\"{tensor}\"] = \"{shard}\" is not a plain file name"),
            ));
        }
        shards.entry(shard).or_default().push(tensor);
    }
    let mut names: Vec<&str> = shards.keys().copied().collect();
    names.sort_unstable();
    let mut out = HashMap::with_capacity(map.len());
    for shard in names {
        let shard_path = dir.join(shard);
        let mut tensors = read_safetensors(&shard_path)?;
        for &tensor in &shards[shard] {
            if !tensors.contains_key(tensor) {
                return Err(Error::MissingTensor {
                    path: shard_path.clone(),
                    tensor: tensor.to_string(),
                });
            }
        }
        for (name, t) in tensors.drain() {
            if out.contains_key(&name) {
                return Err(Error::format(
                    &shard_path,
                    format!("tensor `{name}` also appears in another shard"),
                ));
            }
            out.insert(name, t);
        }
    }
    Ok(out)
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).with_path(path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

fn read_optional_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Writes a Hugging Face model directory: `model.safetensors` (each tensor in its own dtype),
/// the `extra_files` (e.g. `("tokenizer.json", bytes)`, `("slm.json", bytes)`), then
/// `config.json`, each atomically. The directory is created if needed.
pub fn save_hf_dir(
    dir: &Path,
    config: &serde_json::Value,
    tensors: &[(String, Tensor)],
    extra_files: &[(&str, Vec<u8>)],
) -> Result<()> {
    if !config.is_object() {
        return Err(Error::invalid("config must be a JSON object"));
    }
    for (name, _) in extra_files {
        let plain =
            !name.is_empty() && !name.contains(['/', '\\']) && *name != "." && *name != "..";
        if !plain || *name == CONFIG || *name == WEIGHTS {
            return Err(Error::invalid(format!(
                "extra file name `{name}` must be a plain file name other than {CONFIG} and {WEIGHTS}"
            )));
        }
    }
    std::fs::create_dir_all(dir).with_path(dir)?;
    write_safetensors(&dir.join(WEIGHTS), tensors)?;
    for (name, bytes) in extra_files {
        write_atomic(&dir.join(name), bytes)?;
    }
    let mut json = serde_json::to_vec_pretty(config)?;
    json.push(b'\n');
    write_atomic(&dir.join(CONFIG), &json)
}
