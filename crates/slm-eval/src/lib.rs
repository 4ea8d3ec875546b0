//! slm-eval: honest measurements of a model.
//!
//! Owns perplexity (the WikiText-2 protocol of SparseGPT/Wanda, strided windows, per-document
//! scoring) and the reading of evaluation text. Task suites and teacher agreement come later.

pub mod ppl;
pub mod text;

pub use ppl::{perplexity, window_nll, PplOptions, PplReport};
pub use text::{read_eval_text, TextFormat};
