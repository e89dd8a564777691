//! One call that makes a whole run directory: the strategy (measured when `auto`), the
//! augmentation that goes with it, training, and the report (curves, validation confusion
//! matrix, `report.html`). The CLI's `train`, `compare` and `demo` call this; so can a library
//! user who wants what the CLI writes.

use burn::tensor::Device;

use super::advisor;
use super::augment_choice::{self, MeasureContext};
use super::evaluate::{InferenceOptions, evaluate_run};
use super::reporter::Reporter;
use super::strategy::Strategy;
use super::student::load_run;
use super::trainer::{TrainOptions, TrainOutcome, train};
use crate::data::augment::AugmentChoice;
use crate::data::dataset::Dataset;
use crate::error::Result;
use crate::models::Teacher;

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
            let preprocessing = super::trainer::preprocessing_at(&teacher.card.preprocessing, options.image_size);
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
        _ => augment.resolve(options.strategy),
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
