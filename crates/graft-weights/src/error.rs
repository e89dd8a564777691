//! The one error type of this crate: every variant names the file, and the key where there is one.

use std::path::PathBuf;

/// Why a weight file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{}` is not a weight file graft can read: {reason}", path.display())]
    NotWeights { path: PathBuf, reason: String },

    #[error("`{}` is truncated: {what}", path.display())]
    Truncated { path: PathBuf, what: String },

    #[error(
        "refusing to load `{}`: its pickle calls `{module}.{name}`, which is not a tensor or a plain container \
         (graft never executes code from a weight file)\nhint: if this is a whole pickled model, save \
         `model.state_dict()` instead, or convert the file to safetensors",
        path.display()
    )]
    ForbiddenGlobal { path: PathBuf, module: String, name: String },

    #[error("cannot unpickle `{}` at byte {offset}: {reason}", path.display())]
    Pickle { path: PathBuf, offset: usize, reason: String },

    #[error(
        "refusing to read `{}`: {what} would take more than {limit} bytes of memory, more than a file of {file_bytes} bytes \
         can need (the file is damaged or was made to exhaust memory)",
        path.display()
    )]
    TooLarge { path: PathBuf, what: String, limit: u64, file_bytes: u64 },

    #[error(
        "refusing to read `{}`: {what} would take more than {limit} steps of work, more than a file of {file_bytes} \
         bytes can need (the file is damaged or was made to keep the reader busy)",
        path.display()
    )]
    TooMuchWork { path: PathBuf, what: String, limit: u64, file_bytes: u64 },

    #[error("tensor `{key}` in `{}`: {reason}", path.display())]
    BadTensor { path: PathBuf, key: String, reason: String },

    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = WeightsError> = std::result::Result<T, E>;
