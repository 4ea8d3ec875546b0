//! slm-io: model files on disk, read into one in-memory form and written back.
//!
//! Owns every model format `slm` reads — Hugging Face directories (single or sharded
//! safetensors), Hugging Face cache ids, llama2.c checkpoints (v0 and v1) and GGUF (v2, v3) — and
//! turns each into a [`LoadedModel`]: a Hugging Face `config.json` object plus CPU tensors under
//! Hugging Face Llama names, floats as F32, q/k projections in Hugging Face's rotate_half RoPE
//! layout. It also writes models back: Hugging Face directories ([`save_hf_dir`]), atomically,
//! and GGUF files llama.cpp reads ([`gguf::export`], beside the GGUF reader).
//!
//! Beside models it reads and writes LoRA adapters in the directory layout PEFT uses ([`peft`]).
//!
//! This file holds the shared types and [`load_model`], which decides what a user's `spec`
//! names and dispatches to the reader for it. Each format lives in its own module.

pub mod atomic;
mod bytes;
pub mod gguf;
pub mod hf_cache;
pub mod hf_dir;
pub mod llama2c;
pub mod peft;
pub mod permute;
pub mod safetensors_io;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use slm_core::error::IoContext;
use slm_core::{Error, Result};
use std::collections::BTreeMap;

pub use hf_dir::save_hf_dir;
pub use safetensors_io::{parse_safetensors, read_safetensors, write_safetensors};

/// A model read from disk, in Hugging Face Llama naming, f32 on CPU.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// A Hugging Face `config.json` object (`model_type` "llama" or "qwen2").
    pub config: serde_json::Value,
    /// HF names, e.g. `model.layers.0.self_attn.q_proj.weight`; dtype F32 (integer tensors of a
    /// safetensors file keep their type), `Device::Cpu`.
    pub tensors: HashMap<String, Tensor>,
    pub tokenizer: TokenizerSource,
    pub generation_config: Option<serde_json::Value>,
    /// Contents of a Hugging Face directory's `tokenizer_config.json`, if present (its
    /// `add_bos_token`, `bos_token`, `eos_token`, `chat_template`).
    pub tokenizer_config: Option<serde_json::Value>,
    /// Contents of `slm.json`, if present.
    pub slm_meta: Option<serde_json::Value>,
    /// The file or directory read.
    pub source: PathBuf,
    pub format: ModelFormat,
    /// How each tensor was stored in the file (GGML type names such as `Q4_1`, `Q6_K`, `F32`,
    /// by HF name), for running a quantised file at its own types; empty for formats that
    /// hold only float tensors.
    pub stored_types: BTreeMap<String, String>,
    /// The stored bytes of the tensors whose blocks the decode engine runs as they are
    /// (Q4_K, Q5_K, Q6_K, Q5_0, Q5_1: `slm_kernels::kquant`), by HF name, rows in HF order;
    /// empty for other formats.
    pub stored_blocks: BTreeMap<String, std::sync::Arc<[u8]>>,
}

/// Where the model's tokenizer comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenizerSource {
    /// A Hugging Face `tokenizer.json`.
    HfJson(PathBuf),
    /// A llama2.c `tokenizer.bin`.
    Llama2c(PathBuf),
    /// The vocabulary embedded in a GGUF file.
    Gguf(GgufVocab),
    None,
}

impl TokenizerSource {
    /// The files that carry this tokenizer into a model directory, as (name, bytes):
    /// `tokenizer.json`, `tokenizer.bin`, or a GGUF vocabulary as `vocab.gguf.json`; none
    /// without a tokenizer. [`hf_dir`] reads each of them back to the same source.
    pub fn files(&self) -> Result<Vec<(&'static str, Vec<u8>)>> {
        Ok(match self {
            Self::HfJson(p) => vec![(hf_dir::TOKENIZER, std::fs::read(p).with_path(p)?)],
            Self::Llama2c(p) => vec![(hf_dir::LLAMA2C_TOKENIZER, std::fs::read(p).with_path(p)?)],
            Self::Gguf(v) => vec![(
                hf_dir::GGUF_VOCAB,
                serde_json::to_vec(v).map_err(|e| Error::msg(format!("GGUF vocabulary: {e}")))?,
            )],
            Self::None => Vec::new(),
        })
    }
}

/// The vocabulary stored in a GGUF file's `tokenizer.ggml.*` metadata (kept in a model
/// directory as [`hf_dir::GGUF_VOCAB`] when there is no other tokenizer file).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: "llama" (SentencePiece) or "gpt2" (byte-level BPE), ...
    pub model: String,
    pub tokens: Vec<String>,
    /// Empty if absent.
    pub scores: Vec<f32>,
    /// Empty if absent.
    pub token_types: Vec<i32>,
    /// Empty if absent.
    pub merges: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`, default true for "llama".
    pub add_bos: bool,
    /// `tokenizer.ggml.add_eos_token`, default false.
    #[serde(default)]
    pub add_eos: bool,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer ("smollm", "llama-bpe", "gpt2", ...); `None`
    /// when the file has none (llama.cpp then uses "default").
    #[serde(default)]
    pub pre: Option<String>,
    /// `tokenizer.chat_template`: the Jinja chat template, if the file has one.
    #[serde(default)]
    pub chat_template: Option<String>,
}

/// The on-disk format a model was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    HfDir,
    Llama2c,
    Gguf,
}

/// Loads the model `spec` names:
///
/// * a directory with `config.json` (Hugging Face layout);
/// * a GGUF file (recognised by its magic, whatever its name);
/// * a llama2.c checkpoint (any other file whose header parses and whose size matches);
/// * a Hugging Face id `org/name[@revision]` found in the local hub cache (see [`hf_cache`]).
///
/// `tokenizer_override` (the CLI's `--tokenizer`) replaces whatever tokenizer the model came
/// with: `*.json` is a Hugging Face `tokenizer.json`, a GGUF file gives its vocabulary,
/// anything else is a llama2.c `tokenizer.bin`.
pub fn load_model(spec: &str, tokenizer_override: Option<&Path>) -> Result<LoadedModel> {
    let path = Path::new(spec);
    let mut model = if path.is_dir() {
        hf_dir::read(path)?
    } else if path.is_file() {
        load_file(path)?
    } else if hf_cache::looks_like_repo_id(spec) {
        hf_dir::read(&hf_cache::resolve(spec)?)?
    } else {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file or directory (and not a Hugging Face id of the form org/name)",
            ),
        ));
    };
    if let Some(tok) = tokenizer_override {
        model.tokenizer = tokenizer_from_path(tok)?;
    }
    Ok(model)
}

/// The tokenizer a `--tokenizer PATH` names: `*.json` -> HF, a file starting with the GGUF
/// magic -> its embedded vocabulary, otherwise llama2.c.
pub fn tokenizer_from_path(path: &Path) -> Result<TokenizerSource> {
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
        ));
    }
    let mut magic = [0u8; 4];
    let is_gguf = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == gguf::MAGIC;
    if is_gguf {
        let header = gguf::read_header(path)?;
        return gguf::vocab(path, &header)?
            .map(TokenizerSource::Gguf)
            .ok_or_else(|| Error::format(path, "is a GGUF file without a vocabulary"));
    }
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    Ok(if is_json {
        TokenizerSource::HfJson(path.to_path_buf())
    } else {
        TokenizerSource::Llama2c(path.to_path_buf())
    })
}

/// A single model file: GGUF by magic, else a llama2.c checkpoint.
fn load_file(path: &Path) -> Result<LoadedModel> {
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|f| f.take(4).read(&mut head))
        .with_path(path)?;
    if n == 4 && &head == gguf::MAGIC {
        return gguf::read(path);
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("safetensors") | Some("json") => Err(Error::format(
            path,
            "a single .safetensors/.json file is not a model: pass the directory that holds config.json",
        )),
        Some("gguf") => Err(Error::format(path, "not a GGUF file (bad magic)")),
        _ => llama2c::read(path).map_err(|e| match e {
            Error::Format { path, msg } if msg.starts_with("not a llama2.c") => Error::Format {
                path,
                msg: format!("not a GGUF file, and {msg}"),
            },
            e => e,
        }),
    }
}
