//! Calibration text: which file, how many windows of how many tokens, and reading it (a
//! token shard as it is, text and JSONL through the tokenizer).

use slm_compress::calibration_windows;
use slm_core::Result;
use slm_data::tokenizer::Tokenizer;
use slm_model::Llama;
use std::path::{Path, PathBuf};

/// The calibration file and how windows are drawn from it.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibSpec {
    /// .txt, .jsonl with `text`, or an slm token shard; None: no calibration.
    pub file: Option<PathBuf>,
    /// Windows drawn.
    pub nsamples: usize,
    /// Tokens per window (default: min(2048, model context)).
    pub seqlen: Option<usize>,
    /// Seed of the window positions.
    pub seed: u64,
}

impl Default for CalibSpec {
    fn default() -> Self {
        Self {
            file: None,
            nsamples: 128,
            seqlen: None,
            seed: 0,
        }
    }
}

impl CalibSpec {
    /// The windows for `model` from the file at `path`.
    pub fn windows(
        &self,
        path: &Path,
        model: &Llama,
        tok: &dyn Tokenizer,
    ) -> Result<Vec<Vec<u32>>> {
        let seqlen = self
            .seqlen
            .unwrap_or(2048)
            .min(model.config.max_position_embeddings);
        let tokens = calibration_tokens(path, tok)?;
        calibration_windows(&tokens, self.nsamples, seqlen, self.seed)
    }
}

/// Tokens of the calibration file: a token shard as it is, text and JSONL through the tokenizer.
pub fn calibration_tokens(path: &Path, tok: &dyn Tokenizer) -> Result<Vec<u32>> {
    let bytes = std::fs::read(path).map_err(|e| slm_core::Error::io(path, e))?;
    if bytes.starts_with(slm_data::shards::MAGIC) {
        return slm_data::shards::Shard::open(path)?.to_vec();
    }
    let text = slm_data::documents::text_from_bytes(path, bytes)?;
    let text = if path.extension().and_then(|e| e.to_str()) == Some("jsonl") {
        slm_data::documents::jsonl_documents(path, &text)?.join("\n\n")
    } else {
        text
    };
    tok.encode(&text, true)
}
