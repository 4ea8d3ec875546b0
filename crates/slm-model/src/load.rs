//! Loading a model from any supported file (through slm-io) and saving it as a Hugging Face
//! directory or a GGUF file.
//!
//! slm-io renames every format's tensors to Hugging Face names and yields a `config.json`
//! object; here that becomes a typed `LlamaConfig` and a checked `Llama`.

use crate::config::LlamaConfig;
use crate::llama::Llama;
use candle_core::Tensor;
use slm_core::Result;
use slm_io::gguf::export::{write_model, ExportReport, GgufType};
use slm_io::{GgufVocab, LoadedModel, ModelFormat, TokenizerSource};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A model together with what came with it on disk.
pub struct LoadedLlama {
    pub model: Llama,
    pub tokenizer: TokenizerSource,
    pub generation_config: Option<serde_json::Value>,
    /// A Hugging Face directory's `tokenizer_config.json`, if present.
    pub tokenizer_config: Option<serde_json::Value>,
    pub slm_meta: Option<serde_json::Value>,
    pub source: PathBuf,
    pub format: ModelFormat,
    /// How each tensor was stored in the file (see [`LoadedModel::stored_types`]).
    pub stored_types: BTreeMap<String, String>,
    /// The stored bytes of block tensors the engine runs as stored (see
    /// [`LoadedModel::stored_blocks`]).
    pub stored_blocks: BTreeMap<String, std::sync::Arc<[u8]>>,
}

/// Loads `spec` (HF directory, HF cache id, GGUF file or llama2.c checkpoint).
/// `tokenizer` overrides the tokenizer found with the model (`--tokenizer`).
pub fn load(spec: &str, tokenizer: Option<&Path>) -> Result<LoadedLlama> {
    from_loaded(slm_io::load_model(spec, tokenizer)?)
}

/// Builds a checked `Llama` from what slm-io read.
pub fn from_loaded(loaded: LoadedModel) -> Result<LoadedLlama> {
    let config = LlamaConfig::from_hf_json(&loaded.config)?;
    let model = Llama::from_tensors(config, loaded.tensors, &loaded.source)?;
    Ok(LoadedLlama {
        model,
        tokenizer: loaded.tokenizer,
        generation_config: loaded.generation_config,
        tokenizer_config: loaded.tokenizer_config,
        slm_meta: loaded.slm_meta,
        source: loaded.source,
        format: loaded.format,
        stored_types: loaded.stored_types,
        stored_blocks: loaded.stored_blocks,
    })
}

/// Saves `model` as a Hugging Face directory (`config.json`, `model.safetensors`) plus
/// `extra_files` such as `tokenizer.json` or `slm.json`.
pub fn save(model: &Llama, dir: &Path, extra_files: &[(&str, Vec<u8>)]) -> Result<()> {
    slm_io::save_hf_dir(
        dir,
        &model.config.to_hf_json(),
        &model.tensors(),
        extra_files,
    )
}

/// Writes `model` as a GGUF file llama.cpp reads, its matrices stored as `ty` and `vocab` (if
/// any) as its `tokenizer.ggml.*` metadata (`slm_io::gguf::export`).
pub fn save_gguf(
    model: &Llama,
    name: &str,
    vocab: Option<&GgufVocab>,
    ty: GgufType,
    path: &Path,
) -> Result<ExportReport> {
    let tensors: HashMap<String, Tensor> = model.tensors().into_iter().collect();
    write_model(&model.config.to_hf_json(), &tensors, name, vocab, ty, path)
}
