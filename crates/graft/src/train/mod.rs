//! Training a student: strategies, the feature cache, the head, the trainer, metrics.

pub mod advisor;
pub mod augment_choice;
pub mod cache;
pub mod checkpoint;
pub mod epochs;
pub mod evaluate;
pub mod head;
pub mod metrics;
pub mod probe;
pub mod reporter;
pub mod schedule;
pub mod shards;
pub mod strategy;
pub mod student;
pub mod trainer;

pub use head::{HeadChoice, HeadKind};
pub use reporter::{EpochMetrics, Reporter, Silent};
pub use strategy::{FreezePlan, Strategy};
pub use student::{BatchNormMode, HeadFit, HeadInit, Hyperparameters, Optimizer, Refit, RunConfig, Student, load_run};
pub use trainer::{TrainOptions, TrainOutcome, train};
