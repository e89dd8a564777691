//! graft's library error: structured, naming the file, the key and both values where there are any.

use std::fmt;
use std::path::PathBuf;

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

    /// A table of texts whose header has no column for the texts or the labels.
    #[error("`{}` has no {what} column (tried {}); its columns are {columns:?}", path.display(), tried.join(", "))]
    MissingColumn { path: PathBuf, what: &'static str, tried: Vec<String>, columns: Vec<String> },

    /// A call without checkpoints (hardening, a text fine-tune, an audit, embedding) stopped at a
    /// batch boundary when asked to; it wrote nothing.
    #[error("{what} stopped when asked to, before it finished; nothing was written")]
    Stopped { what: String },

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

/// A tensor whose shape in the file differs from the module's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub key: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// What a load did, key by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Checkpoint keys copied into the module.
    pub applied: Vec<String>,
    /// Checkpoint keys the module needed but the file lacks.
    pub missing: Vec<String>,
    /// Keys in the file the module has no place for.
    pub unused: Vec<String>,
    /// Keys present in both with different shapes (the module keeps its own values).
    pub mismatched: Vec<ShapeMismatch>,
}

impl LoadReport {
    /// Whether every parameter of the module was loaded.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} applied, {} missing, {} unused, {} shape-mismatched",
            self.applied.len(),
            self.missing.len(),
            self.unused.len(),
            self.mismatched.len()
        )?;
        for key in &self.missing {
            write!(f, "\n  missing: `{key}`")?;
        }
        for mismatch in &self.mismatched {
            write!(
                f,
                "\n  shape mismatch for `{}`: expected {:?}, found {:?}",
                mismatch.key, mismatch.expected, mismatch.found
            )?;
        }
        Ok(())
    }
}
