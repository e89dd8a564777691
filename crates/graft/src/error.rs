//! graft's library error: structured, naming the file, the key and both values where there are any.

use std::path::PathBuf;

use crate::weights::LoadReport;

#[derive(Debug, thiserror::Error)]
pub enum GraftError {
    #[error(transparent)]
    Weights(#[from] graft_weights::WeightsError),

    #[error("cannot read or write `{}`", path.display())]
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
         hint: fetch that file on a machine with internet access and give its path as the weights file"
    )]
    Download { teacher: String, url: String, reason: String },

    #[error(
        "`{path}` has SHA-256 {actual}, not the published {expected}: it was changed or damaged after download\n\
         hint: delete it and run again to download it afresh"
    )]
    ChecksumMismatch { path: PathBuf, expected: String, actual: String },

    #[error("blocks {start}..{end} are not within this network's {count} blocks")]
    BlockRange { start: usize, end: usize, count: usize },

    #[error("`{}` names blocks {found:?}, but teacher `{teacher}` has the blocks {expected:?}", file.display())]
    BlocksMismatch { file: PathBuf, teacher: String, expected: Vec<String>, found: Vec<String> },

    #[error("unknown {what} `{value}`; use one of: {}", expected.join(", "))]
    UnknownValue { what: &'static str, value: String, expected: &'static [&'static str] },

    #[error("damaged checkpoint `{}`: {reason}\nhint: start over without resuming", path.display())]
    Checkpoint { path: PathBuf, reason: String },

    #[error(
        "the checkpoint in `{}` is from a different run ({})\nhint: use another run directory, or start over without resuming",
        path.display(),
        differences.join("; ")
    )]
    CheckpointMismatch { path: PathBuf, differences: Vec<String> },

    #[error(
        "training stopped when asked to, after epoch {epochs_done}; {}",
        if *epochs_done > 0 { format!("that epoch's checkpoint in `{}` is complete and can be resumed", checkpoint.display()) } else { "no epoch had finished, so there is no checkpoint".to_owned() }
    )]
    Interrupted { epochs_done: usize, checkpoint: PathBuf },

    #[error(
        "the {what} became {value} in epoch {epoch} at learning rate {learning_rate:e}: training stopped{}\nhint: a lower learning rate usually trains without diverging",
        match kept_epoch { Some(epoch) => format!("; the checkpoint of epoch {epoch} is kept"), None => String::new() }
    )]
    Diverged { what: &'static str, value: f64, epoch: usize, learning_rate: f64, kept_epoch: Option<usize> },

    #[error("cannot read a tensor's values: {0}")]
    Tensor(String),

    #[error("{0}")]
    Invalid(String),

    #[error("cannot use the tokenizer `{}`: {reason}", path.display())]
    Tokenizer { path: PathBuf, reason: String },

    #[error("`{}` is not a text teacher graft can run: {reason}", path.display())]
    TextModel { path: PathBuf, reason: String },

    #[error("`{}`, {location}: {reason}", path.display())]
    TextData { path: PathBuf, location: String, reason: String },
}

pub type Result<T, E = GraftError> = std::result::Result<T, E>;
