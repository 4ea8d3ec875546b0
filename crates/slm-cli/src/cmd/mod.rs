//! One module per `slm` subcommand.

pub mod bench;
pub mod data;
pub mod distill;
pub mod distill_generate;
pub mod eval;
pub mod export;
pub mod generate;
pub mod inspect;
pub mod prune;
pub mod quantize;
pub mod quickstart;
pub mod tokenizer;
pub mod train;
