//! Training a student: strategies, the feature cache, the head, the trainer, metrics.

pub mod advisor;
pub mod cache;
pub mod head;
pub mod metrics;
pub mod reporter;
pub mod schedule;
pub mod shards;
pub mod strategy;
pub mod student;
pub mod evaluate;
pub mod trainer;

pub use head::HeadKind;
pub use reporter::{EpochMetrics, Reporter, Silent};
pub use strategy::{FreezePlan, Strategy};
pub use student::{Hyperparameters, RunConfig, Student, load_run};
pub use trainer::{TrainOptions, TrainOutcome, train};
