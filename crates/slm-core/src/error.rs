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
    /// An operating-system error while touching a file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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

    /// An error from candle's tensor library.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),

    /// JSON that does not parse.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),

    /// Anything else, with a message.
    #[error("{0}")]
    Msg(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
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
