//! Tokenizers: the one `Tokenizer` trait every model-facing crate uses, and its implementations.
//!
//! - [`HfTokenizer`] (`hf.rs`): a Hugging Face `tokenizer.json`, through the `tokenizers` crate.
//! - [`Llama2cTokenizer`] (`llama2c.rs`): llama2.c `tokenizer.bin`, read natively and encoded
//!   exactly as llama2.c `run.c` does.
//! - [`GgufTokenizer`] (`gguf.rs`): a vocabulary embedded in a GGUF file (`tokenizer.ggml.*`),
//!   SentencePiece-style ("llama") or byte-level BPE ("gpt2", split by `tokenizer.ggml.pre`).
//! - `hf_json.rs`: a GGUF vocabulary as `tokenizer.json` + `tokenizer_config.json` (the
//!   pre-tokenizer of each `tokenizer.ggml.pre` type, [`BpePre`]); what `gguf.rs` encodes BPE
//!   with and what `slm export hf` writes.
//! - `tokenize.rs`: `slm tokenize`'s work (ids, pieces, counts, text or JSON output).
//! - `spm.rs`: the score-greedy BPE merge and the `<0xHH>` byte pieces shared by the two
//!   SentencePiece-style tokenizers.
//! - [`StreamDecoder`] (`stream.rs`): turns ids into text one token at a time for printing.
//! - `train.rs`: trains byte-level BPE and character vocabularies into `tokenizer.json`.
//! - `load.rs`: picks an implementation for a model's `slm_io::TokenizerSource` (with its
//!   `tokenizer_config.json`) or a file (tokenizer.json, tokenizer.bin or a GGUF model).
//!
//! Conventions shared by all of them: `encode` never appends EOS and prepends BOS only when
//! asked and the tokenizer has one; `adds_bos` says whether the model's tokenizer asks for it; `decode` drops BOS/EOS (and other control tokens) and
//! rejects ids outside the vocabulary.

pub mod export;
mod gguf;
mod hf;
pub mod hf_json;
mod llama2c;
mod load;
mod spm;
mod stream;
pub mod tokenize;
pub mod train;

pub use gguf::GgufTokenizer;
pub use hf::{HfTokenizer, SpecialToken, SpecialTokens};
pub use hf_json::BpePre;
pub use llama2c::Llama2cTokenizer;
pub use load::{
    load_model_tokenizer, load_tokenizer, load_tokenizer_file, load_tokenizer_with_config,
    model_tokenizer_files, ModelTokenizerFiles,
};
pub use stream::StreamDecoder;

use slm_core::Result;

/// Text to token ids and back. Object safe: model code holds a `Box<dyn Tokenizer>`.
pub trait Tokenizer: Send + Sync {
    /// Token ids of `text`; with `add_bos`, BOS first when the tokenizer has one. Never adds EOS.
    fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>>;

    /// Text of `ids`, skipping BOS/EOS and other control tokens. An id outside the
    /// vocabulary is an error. Invalid UTF-8 from byte tokens becomes U+FFFD.
    fn decode(&self, ids: &[u32]) -> Result<String>;

    /// Number of ids the tokenizer can produce (largest id + 1).
    fn vocab_size(&self) -> usize;

    /// Beginning-of-sequence id, if the tokenizer has one.
    fn bos_id(&self) -> Option<u32>;

    /// End-of-sequence id, if the tokenizer has one.
    fn eos_id(&self) -> Option<u32>;

    /// Whether the model's own tokenizer puts BOS before a text by default, as transformers
    /// (`encode(text)`) and llama.cpp (`add_special`) decide: GGUF `add_bos_token`;
    /// `tokenizer_config.json` `add_bos_token`, else a post-processor template that starts
    /// with a special token; always for llama2.c. Callers pass it as `encode`'s `add_bos`
    /// unless the user says otherwise (`--no-bos`/`--bos`).
    fn adds_bos(&self) -> bool;

    /// Id of a raw piece (as stored in the vocabulary, e.g. `▁the`, `Ġthe`, ` the`, `<0x0A>`).
    fn token_to_id(&self, piece: &str) -> Option<u32>;

    /// Raw piece text of `id` as stored in the vocabulary; `None` outside it.
    fn id_to_piece(&self, id: u32) -> Option<String>;

    /// A short name of the implementation: `"hf"`, `"llama2c"`, `"gguf-llama"`, `"gguf-gpt2"`.
    fn kind(&self) -> &'static str;

    /// The bytes token `id` stands for in a text, as OpenAI's logprobs `bytes` give them: a
    /// token may hold part of a UTF-8 character, which `decode` turns into U+FFFD. Empty for
    /// BOS/EOS and control tokens; `None` where the vocabulary does not say (an id outside it,
    /// or a partial character this tokenizer cannot spell as bytes).
    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let text = self.decode(&[id]).ok()?;
        (!text.contains('\u{FFFD}')).then(|| text.into_bytes())
    }
}

/// Error for an id outside a vocabulary of `vocab_size` ids.
pub(crate) fn bad_id(id: u32, vocab_size: usize) -> slm_core::Error {
    slm_core::Error::Tokenizer(format!(
        "token id {id} is outside the vocabulary of {vocab_size} tokens"
    ))
}
