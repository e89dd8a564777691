//! The run directory as a unit, for image and text students alike: [`AnyTeacher`] loads any
//! teacher by name, [`LabelledData`] opens labelled data the way it reads it, [`train_any`] and
//! [`compare_run`] make whole run directories in a call ([`train_run`] and [`train_text_run`]
//! are the per-modality calls below them), [`audit_run`] and [`harden_run`] add their records
//! to one or make a new one, and [`Student`] loads one back once, into memory, to be asked for
//! predictions many times (by the CLI, a server or Python alike).

pub mod audit;
pub mod compare;
pub mod modality;
pub mod settings;
pub mod student;
pub mod teacher;
pub mod train;

pub use audit::{HardenData, HardenOutcome, audit_run, harden_run};
pub use compare::{CompareRow, Comparison, compare_run};
pub use modality::{
    DataOptions, Embeddings, LabelledData, LabelledSet, Modality, Predictions, SkippedInput, read_inputs,
};
pub use settings::TrainSettings;
pub use student::{Scores, Student, StudentOptions};
pub use teacher::{AnyTeacher, RunOptions};
pub use train::{CacheUse, RunSummary, train_any, train_run, train_text_run};
