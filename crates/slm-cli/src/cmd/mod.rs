//! One module per `slm` subcommand; none imports another (shared pieces are in
//! `crate::common` or in the libraries).

pub mod bench;
pub mod chat;
pub mod data;
pub mod distill;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod generate;
pub mod inspect;
pub mod prune;
pub mod quantize;
pub mod run;
pub mod serve;
pub mod tokenize;
pub mod tokenizer;
pub mod train;
