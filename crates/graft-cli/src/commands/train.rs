//! `graft train`: data, strategy and hyper-parameters from the arguments; the library trains.

use std::path::Path;

use graft::data::augment::Augmentation;
use graft::data::dataset::{self, Dataset};
use graft::models::Teacher;
use graft::run::train_run;
use graft::train::{Hyperparameters, TrainOptions, TrainOutcome};

use crate::cli::{TrainArgs, TrainingArgs};
use crate::progress::CliReporter;
use crate::settings::Settings;

pub fn run(args: &TrainArgs, settings: &Settings) -> anyhow::Result<()> {
    if super::text::is_text(&args.teacher) {
        return super::text::train(args, settings);
    }
    let teacher = super::teacher(&args.teacher, settings)?;
    let (train_set, validation, split) = open_training_data(&args.data, &args.training, settings)?;
    let outcome = train_student(
        &teacher,
        &train_set,
        &validation,
        split,
        &args.training,
        &args.out,
        args.resume,
        &args.data.display().to_string(),
        settings,
    )?;
    print_outcome(&outcome, &args.out, args.json, settings)
}

/// Opens the data and makes the train / validation split; the flag says whether graft made it
/// (the data came without a validation set).
pub fn open_training_data(
    path: &Path,
    args: &TrainingArgs,
    settings: &Settings,
) -> anyhow::Result<(Dataset, Dataset, bool)> {
    let splits = dataset::open(path, &settings.cache_dir)?;
    let mut train_set = splits.train;
    if let Some(per_class) = args.per_class {
        train_set = train_set.subsample(per_class, args.seed);
    }
    train_set.check_trainable(&format!("`{}`", path.display()))?;
    let split = splits.validation.is_none();
    let (train_set, validation) = match splits.validation {
        Some(validation) => (train_set, validation),
        None => train_set.stratified_split(args.validation_fraction, args.seed),
    };
    let counts = train_set.class_counts();
    settings.log(format!(
        "data: {} training images in {} classes ({}..{} per class), {} for validation",
        train_set.len(),
        train_set.classes.len(),
        counts.iter().min().unwrap_or(&0),
        counts.iter().max().unwrap_or(&0),
        validation.len()
    ));
    Ok((train_set, validation, split))
}

/// Resolves the arguments into training options and trains.
#[allow(clippy::too_many_arguments)]
pub fn train_student(
    teacher: &Teacher,
    train_set: &Dataset,
    validation: &Dataset,
    pooled_validation: bool,
    args: &TrainingArgs,
    out: &Path,
    resume: bool,
    data: &str,
    settings: &Settings,
) -> anyhow::Result<TrainOutcome> {
    let reporter = CliReporter::new(settings.quiet);
    let defaults = Hyperparameters::for_device(&settings.device);
    let hyperparameters = Hyperparameters {
        optimizer: args.optimizer,
        learning_rate: args.learning_rate.unwrap_or(defaults.learning_rate),
        backbone_learning_rate_factor: args.backbone_lr_factor.unwrap_or(defaults.backbone_learning_rate_factor),
        weight_decay: args.weight_decay,
        momentum: args.momentum,
        epochs: args.epochs.unwrap_or(defaults.epochs),
        batch_size: args.batch_size,
        warmup_epochs: args.warmup_epochs,
        label_smoothing: args.label_smoothing,
        class_weights: args.class_weights,
        patience: args.patience,
        gradual_unfreeze_epochs: args.gradual_unfreeze,
        // Set by `train_run` from `--augment` and the strategy.
        augmentation: Augmentation::none(),
        augmented_views: args.views,
        validation_fraction: args.validation_fraction,
        shards: args.shards.unwrap_or(defaults.shards),
        head_fit: args.head_fit,
        head_init: args.head_init,
        batch_norm: args.batch_norm,
        refit: args.refit,
    };
    let options = TrainOptions {
        strategy: args.strategy,
        strategy_reason: None,
        augmentation_choice: None,
        unfreeze: args.unfreeze,
        unfreeze_from: args.unfreeze_from.clone(),
        head: args.head.kind(args.hidden),
        hyperparameters,
        seed: args.seed,
        image_size: args.image_size,
        cache_dir: settings.cache_dir.clone(),
        out: out.to_owned(),
        resume,
        stop_after: None,
        fused_plan: settings.fused_plan,
        data: data.to_owned(),
        pooled_validation,
        interrupt: Some(crate::INTERRUPT.clone()),
        ..TrainOptions::default()
    };
    Ok(train_run(teacher, train_set, validation, options, args.augment, &settings.device, &reporter)?)
}

pub fn print_outcome(outcome: &TrainOutcome, out: &Path, json: bool, settings: &Settings) -> anyhow::Result<()> {
    if !outcome.skipped.is_empty() {
        settings.log(format!("skipped {} unreadable images:", outcome.skipped.len()));
        for skipped in &outcome.skipped {
            settings.log(format!("  {}: {}", skipped.name, skipped.reason));
        }
    }
    let config = &outcome.config;
    let accuracy = config.metrics["validation_accuracy"].as_f64().unwrap_or(0.0);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run": out,
                "strategy": config.strategy,
                "strategy_reason": config.strategy_reason,
                "augmentation": config.hyperparameters.augmentation,
                "augmentation_reason": config.augmentation_choice.as_ref().map(|choice| &choice.reason),
                "frozen_blocks": config.frozen_blocks.len(),
                "trainable_blocks": config.trainable_blocks,
                "trained_parameters": config.trained_parameters,
                "validation_accuracy": accuracy,
                "best_epoch": config.metrics["best_epoch"],
                "refit": config.metrics.get("refit"),
                "seconds": outcome.seconds,
                "cache": {"hits": outcome.cache_hits, "misses": outcome.cache_misses, "teacher_forwards": outcome.teacher_forwards},
                "skipped": outcome.skipped.iter().map(|s| &s.name).collect::<Vec<_>>(),
            }))?
        );
    } else {
        let scored = match (
            config.metrics.get("validation").and_then(|v| v.as_str()),
            config.metrics["probe"]["cross_validation"]["standard_error"].as_f64(),
        ) {
            (Some(how), Some(error)) if how.contains("cross-validation over all") => {
                format!("cross-validated accuracy {:.2}% ± {:.2}% ({how})", accuracy * 100.0, error * 100.0)
            }
            _ => match config.metrics["refit"]["images"].as_u64() {
                Some(images) => format!(
                    "validation accuracy {:.2}% (best epoch {}; then refitted on all {images} images for as many epochs, the held-out figure its estimate)",
                    accuracy * 100.0,
                    config.metrics["best_epoch"]
                ),
                None => format!(
                    "validation accuracy {:.2}% (best epoch {})",
                    accuracy * 100.0,
                    config.metrics["best_epoch"]
                ),
            },
        };
        println!(
            "trained a {} student of {} ({} of {} blocks frozen, {} parameters trained) in {:.1}s\n{scored}, cache {} hits / {} misses\nrun: {} (report.html, graft.json, metrics.jsonl, student.safetensors)",
            config.strategy,
            config.teacher,
            config.frozen_blocks.len(),
            config.frozen_blocks.len() + config.trainable_blocks.len(),
            config.trained_parameters,
            outcome.seconds,
            outcome.cache_hits,
            outcome.cache_misses,
            out.display()
        );
    }
    Ok(())
}
