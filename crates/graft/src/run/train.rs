//! One call that makes a whole run directory: the strategy (measured when `auto`), the
//! augmentation that goes with it, training, and the report (curves, validation confusion
//! matrix, `report.html`). The CLI's `train`, `compare` and `demo` call this; so can a library
//! user who wants what the CLI writes.

use burn::tensor::Device;

use crate::data::augment::AugmentChoice;
use crate::data::dataset::Dataset;
use crate::error::Result;
use crate::models::Teacher;
use crate::text::student::TextOutcome;
use crate::text::{TextDataset, TextTeacher, TextTrainOptions, train_text};
use crate::train::advisor;
use crate::train::augment_choice::{self, MeasureContext};
use crate::train::evaluate::{InferenceOptions, evaluate_run};
use crate::train::reporter::Reporter;
use crate::train::strategy::Strategy;
use crate::train::student::load_run;
use crate::train::trainer::{TrainOptions, TrainOutcome, train};

/// Trains a student of `teacher` and writes its run directory (`options.out`). With
/// `options.strategy` `auto` the advisor picks the strategy and its reason is saved;
/// `augment` then sets `options.hyperparameters.augmentation` for that strategy.
pub fn train_run(
    teacher: &Teacher,
    train_set: &Dataset,
    validation: &Dataset,
    mut options: TrainOptions,
    augment: AugmentChoice,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<TrainOutcome> {
    if options.strategy == Strategy::Auto {
        let advice =
            advisor::advise(teacher, train_set, validation, options.image_size, options.seed, device, reporter)?;
        reporter.note(&format!("auto: {} — {}", advice.strategy, advice.reason));
        options.strategy = advice.strategy;
        options.strategy_reason = Some(advice.reason);
    }
    options.hyperparameters.augmentation = match (augment, options.strategy) {
        // Fine-tuning a pretrained teacher: measure which augmentations suit this data.
        (AugmentChoice::Auto, Strategy::Mid | Strategy::Full) => {
            let preprocessing =
                crate::train::trainer::preprocessing_at(&teacher.card.preprocessing, options.image_size);
            let context = MeasureContext {
                teacher,
                preprocessing: &preprocessing,
                cache_dir: &options.cache_dir,
                seed: options.seed,
                fused_plan: options.fused_plan,
                batch_size: options.cache_batch_size,
                device,
            };
            let choice = augment_choice::choose(&context, train_set, reporter)?;
            reporter.note(&format!("augmentation: {}", choice.reason));
            let augmentation = choice.augmentation.clone();
            options.augmentation_choice = Some(choice);
            augmentation
        }
        _ => crate::train::strategy::unmeasured_augmentation(augment, options.strategy),
    };
    let outcome = train(teacher, train_set, validation, &options, device, reporter)?;
    if outcome.finished {
        // The validation confusion matrix (cached features make this cheap).
        let evaluation = match &outcome.validation_evaluation {
            // A pooled probe was fitted to the validation images: its out-of-fold predictions.
            Some(evaluation) => evaluation.clone(),
            None => {
                let loaded = load_run(&options.out, device)?;
                let inference = InferenceOptions {
                    batch_size: options.hyperparameters.batch_size,
                    cache_dir: options.cache_dir.clone(),
                    fused_plan: options.fused_plan,
                };
                evaluate_run(&loaded, validation.clone(), &inference, device, reporter)?
            }
        };
        crate::report::plot_confusion(&options.out.join("confusion.png"), &evaluation)?;
        crate::report::write_run_report(&options.out, &outcome.config, &outcome.history)?;
    }
    Ok(outcome)
}

/// Trains a text student of `teacher` ([`train_text`]) and writes its whole run directory:
/// the student, `graft.json`, the confusion plot and `report.html`.
///
/// # Errors
/// As [`train_text`], or a report that cannot be written.
pub fn train_text_run(
    teacher: &TextTeacher,
    train_set: &TextDataset,
    validation: Option<&TextDataset>,
    options: &TextTrainOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<TextOutcome> {
    let outcome = train_text(teacher, train_set, validation, options, device, reporter)?;
    crate::report::plot_confusion(&options.out.join("confusion.png"), &outcome.evaluation)?;
    crate::report::write_text_report(&options.out, &outcome.config, &outcome.evaluation, &outcome.examples)?;
    Ok(outcome)
}
