//! The one error type of the `slm` libraries.
//!
//! Every variant carries enough context for a user to act: the file, the tensor, the
//! expected and found shapes. Library code returns `Result<T>`; only the binary turns
//! errors into exit codes.

use std::path::{Path, PathBuf};

/// Result alias used across all `slm` crates.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while touching a file. The message embeds the OS error, so
    /// it is not also exposed as `source()`: a `{:#}` chain names the cause once.
    /// (thiserror would take a field named `source` for the source: hence `cause`.)
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A file whose bytes do not follow its format (truncated, bad magic, bad header...).
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },

    /// A tensor the model needs is not in the file.
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },

    /// A tensor is present with the wrong shape.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// A configuration that is missing a field, has an unknown key or an impossible value.
    #[error("config error: {0}")]
    Config(String),

    /// A tokenizer that cannot be loaded or cannot encode/decode.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// A caller passed an argument that cannot work (checked before any work starts).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A feature that exists in the file format but is not supported by `slm` (yet).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// An error from candle's tensor library (its text is the message; no `source()`).
    #[error("tensor error: {0}")]
    Candle(candle_core::Error),

    /// JSON that does not parse (its text is the message; no `source()`).
    #[error("json error: {0}")]
    Json(serde_json::Error),

    /// Anything else, with a message.
    #[error("{0}")]
    Msg(String),
}

// Written out instead of `#[from]`, which would also make the wrapped error the `source()`
// and print its text twice in a `{:#}` chain.
impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e)
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            cause: source,
        }
    }

    /// A format error in `path`.
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    pub fn msg(msg: impl Into<String>) -> Self {
        Error::Msg(msg.into())
    }
}

/// Adds a path to an `std::io::Result`.
pub trait IoContext<T> {
    fn with_path(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn with_path(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// The JSON type name of `v` ("a string", "an array", …), for error messages about input
/// that has the wrong shape.
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain printer (anyhow's `{:#}`) names the cause once.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut cur = e.source();
        while let Some(c) = cur {
            s.push_str(&format!(": {c}"));
            cur = c.source();
        }
        s
    }

    #[test]
    fn io_error_names_its_cause_once() {
        let io = std::fs::read("/no/such/file").unwrap_err();
        let text = chain(&Error::io("/no/such/file", io));
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
        assert!(text.starts_with("/no/such/file: "), "{text}");
        let json = serde_json::from_str::<u32>("x").unwrap_err();
        let text = chain(&Error::from(json));
        assert_eq!(text.matches("expected").count(), 1, "{text}");
    }
}
