//! slm-core: the lowest layer of `slm`.
//!
//! Owns the error type every library crate returns, the vocabulary of parameter roles
//! (which weight matrix is a query projection, which is an MLP down projection...) and
//! small helpers shared by every layer above. It depends on nothing of ours.

pub mod error;
pub mod profile;
pub mod roles;
pub mod select;
pub mod testdata;

pub use error::{json_kind, Error, Result};
pub use roles::{LinearRole, ParamRole};
