//! Tokenizers: the one `Tokenizer` trait every model-facing crate uses, and its implementations.
//!
//! - [`HfTokenizer`] (`hf.rs`): a Hugging Face `tokenizer.json`, through the `tokenizers` crate.
//! - [`Llama2cTokenizer`] (`llama2c.rs`): llama2.c `tokenizer.bin`, read natively and encoded
//!   exactly as llama2.c `run.c` does.
//! - [`GgufTokenizer`] (`gguf.rs`): a vocabulary embedded in a GGUF file (`tokenizer.ggml.*`),
//!   SentencePiece-style ("llama") or byte-level BPE ("gpt2").
//! - `spm.rs`: the score-greedy BPE merge and the `<0xHH>` byte pieces shared by the two
//!   SentencePiece-style tokenizers.
//! - [`StreamDecoder`] (`stream.rs`): turns ids into text one token at a time for printing.
//! - `train.rs`: trains byte-level BPE and character vocabularies into `tokenizer.json`.
//! - `load.rs`: picks an implementation for a model's `slm_io::TokenizerSource` or a file.
//!
//! Conventions shared by all of them: `encode` never appends EOS and prepends BOS only when
//! asked and the tokenizer has one; `decode` drops BOS/EOS (and other control tokens) and
//! rejects ids outside the vocabulary.

pub mod export;
mod gguf;
mod hf;
mod llama2c;
mod load;
mod spm;
mod stream;
pub mod train;

pub use gguf::GgufTokenizer;
pub use hf::{HfTokenizer, SpecialToken, SpecialTokens};
pub use llama2c::Llama2cTokenizer;
pub use load::{load_tokenizer, load_tokenizer_file};
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

    /// Id of a raw piece (as stored in the vocabulary, e.g. `▁the`, `Ġthe`, ` the`, `<0x0A>`).
    fn token_to_id(&self, piece: &str) -> Option<u32>;

    /// Raw piece text of `id` as stored in the vocabulary; `None` outside it.
    fn id_to_piece(&self, id: u32) -> Option<String>;

    /// A short name of the implementation: `"hf"`, `"llama2c"`, `"gguf-llama"`, `"gguf-gpt2"`.
    fn kind(&self) -> &'static str;
}

/// Error for an id outside a vocabulary of `vocab_size` ids.
pub(crate) fn bad_id(id: u32, vocab_size: usize) -> slm_core::Error {
    slm_core::Error::Tokenizer(format!(
        "token id {id} is outside the vocabulary of {vocab_size} tokens"
    ))
}
