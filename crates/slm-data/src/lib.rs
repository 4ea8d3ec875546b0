//! slm-data: everything between text on disk and token ids in a batch.
//!
//! This crate owns the tokenizers (`tokenizer`): Hugging Face `tokenizer.json`, llama2.c
//! `tokenizer.bin` read natively, vocabularies embedded in GGUF files, and a streaming
//! decoder for printing generated text token by token, and tokenizer training (`tokenizer::train`).
//! Beside them: reading documents (`documents`), token shards (`shards`), `slm data prepare`
//! (`prepare`), seeded training batches (`batches`) and the offline top-k teacher cache
//! (`kd_cache`), and chat templates: a conversation rendered to a model's prompt format
//! (`chat`). The built-in story generator is its own crate, `slm-stories`.

pub mod batches;
pub mod chat;
pub mod documents;
pub mod kd_cache;
pub mod prepare;
pub mod sft;
pub mod shards;
pub mod tokenizer;

pub use tokenizer::{
    load_tokenizer, load_tokenizer_file, GgufTokenizer, HfTokenizer, Llama2cTokenizer,
    SpecialToken, SpecialTokens, StreamDecoder, Tokenizer,
};
