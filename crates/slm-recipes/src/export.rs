//! Writing a model in another format: a Hugging Face directory, or a GGUF file with the
//! vocabulary converted from whatever tokenizer came with the model.

use slm_core::Result;
use slm_io::gguf::export::{ExportReport, GgufType};
use slm_io::TokenizerSource;
use slm_model::LoadedLlama;
use std::path::Path;

/// The vocabulary a GGUF export carries (`slm_data::tokenizer::export::gguf_vocab`), with a
/// warning on stderr when the model has no tokenizer.
pub fn gguf_vocab(source: &TokenizerSource) -> Result<Option<slm_io::GgufVocab>> {
    gguf_vocab_with_config(source, None)
}

/// [`gguf_vocab`] with the model's `tokenizer_config.json` (add BOS/EOS, chat template).
pub fn gguf_vocab_with_config(
    source: &TokenizerSource,
    tokenizer_config: Option<&serde_json::Value>,
) -> Result<Option<slm_io::GgufVocab>> {
    let vocab = slm_data::tokenizer::export::gguf_vocab_with_config(source, tokenizer_config)?;
    if vocab.is_none() {
        eprintln!(
            "warning: no tokenizer found; the GGUF will carry no vocabulary (give --tokenizer)"
        );
    }
    Ok(vocab)
}

/// The model name a GGUF file records: the file stem of the model spec.
pub fn model_name(spec: &str) -> String {
    Path::new(spec)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "slm".into())
}

/// Writes `loaded` (read from `spec`) as a GGUF file of type `ty`; returns what was written and
/// the vocabulary it carries.
pub fn export_gguf(
    loaded: &LoadedLlama,
    spec: &str,
    ty: GgufType,
    out: &Path,
) -> Result<(ExportReport, Option<slm_io::GgufVocab>)> {
    let vocab = gguf_vocab_with_config(&loaded.tokenizer, loaded.tokenizer_config.as_ref())?;
    let report = slm_model::save_gguf(&loaded.model, &model_name(spec), vocab.as_ref(), ty, out)?;
    Ok((report, vocab))
}

/// Writes `loaded` as a Hugging Face directory with its tokenizer, generation config and an
/// `slm.json` naming the source. A GGUF's vocabulary goes in as vocab.gguf.json (which slm
/// reads back exactly) and as tokenizer.json + tokenizer_config.json (which transformers
/// reads, same ids); a llama2.c tokenizer.bin likewise with its SentencePiece tokenizer.json
/// (`slm_data::tokenizer::export::hf_tokenizer_files`).
pub fn export_hf(loaded: &LoadedLlama, out: &Path) -> Result<()> {
    let mut extra = slm_data::tokenizer::export::hf_tokenizer_files(
        &loaded.tokenizer,
        loaded.tokenizer_config.as_ref(),
    )?;
    if let Some(g) = &loaded.generation_config {
        extra.push(("generation_config.json", serde_json::to_vec_pretty(g)?));
    }
    let meta = serde_json::json!({
        "parent": loaded.source.display().to_string(),
        "stage": "export",
        "from_format": format!("{:?}", loaded.format),
    });
    extra.push(("slm.json", serde_json::to_vec_pretty(&meta)?));
    slm_model::save(&loaded.model, out, &extra)
}
