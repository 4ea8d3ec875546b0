//! One module per `slm` subcommand.

pub mod eval;
pub mod export;
pub mod generate;
pub mod inspect;
