//! The one error type of the data layer.

use std::path::{Path, PathBuf};

/// Why a dataset could not be loaded. The message always names the file or folder at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Something is wrong with one file or folder.
    #[error("{}: {message}", path.display())]
    At { path: PathBuf, message: String },
    /// An I/O error while reading a file or folder.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A setting or SOURCE string that makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// The load was cancelled (the window's Cancel).
    #[error("loading cancelled")]
    Cancelled,
}

impl DataError {
    /// A problem with `path`.
    pub fn at(path: &Path, message: impl Into<String>) -> Self {
        Self::At {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}
