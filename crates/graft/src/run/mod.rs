//! The run directory as a unit: [`train_run`] makes one in a call, and [`Student`] loads one
//! back once, into memory, to be asked for predictions many times (by the CLI, a server or
//! Python alike).

pub mod student;
pub mod train;

pub use student::{Modality, Student, StudentOptions};
pub use train::{train_run, train_text_run};
