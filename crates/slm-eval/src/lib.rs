//! slm-eval: honest measurements of a model.
//!
//! Owns perplexity (the WikiText-2 protocol of SparseGPT/Wanda, strided windows, per-document
//! scoring), agreement with a teacher (top-1, KL), the reading of evaluation text, and task
//! evaluation as lm-evaluation-harness scores it ([`tasks`]).

pub mod agreement;
pub mod ppl;
pub mod tasks;
pub mod text;

pub use agreement::{teacher_agreement, AgreementReport};
pub use ppl::{perplexity, window_nll, PplOptions, PplReport};
pub use text::{read_eval_text, TextFormat};
