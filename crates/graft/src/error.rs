//! graft's library error: structured, naming the file, the key and both values where there are any.

use std::path::PathBuf;

use crate::weights::LoadReport;

#[derive(Debug, thiserror::Error)]
pub enum GraftError {
    #[error(transparent)]
    Weights(#[from] graft_weights::WeightsError),

    #[error("cannot read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{}` does not fit the model: {report}\nhint: pass a partial load to keep the model's own values for these", file.display())]
    IncompleteLoad { file: PathBuf, report: Box<LoadReport> },

    #[error("unknown teacher `{name}`; known teachers: {known}")]
    UnknownTeacher { name: String, known: String },

    #[error("cannot decode image `{}`: {reason}", path.display())]
    Image { path: PathBuf, reason: String },

    #[error(
        "cannot download the weights of `{teacher}` from {url}: {reason}\n\
         hint: fetch that file on a machine with internet access and pass it with `--weights PATH`"
    )]
    Download { teacher: String, url: String, reason: String },

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = GraftError> = std::result::Result<T, E>;
