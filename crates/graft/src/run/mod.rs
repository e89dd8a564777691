//! The run directory as a unit: [`train_run`] (and [`train_text_run`]) make one in a call,
//! [`audit_run`] and [`harden_run`] add their records to one or make a new one, and [`Student`]
//! loads one back once, into memory, to be asked for predictions many times (by the CLI, a server
//! or Python alike).

pub mod audit;
pub mod student;
pub mod train;

pub use audit::{HardenData, HardenOutcome, audit_run, harden_run};
pub use student::{Modality, Student, StudentOptions};
pub use train::{train_run, train_text_run};
