//! One call that makes a whole run directory: the strategy (measured when `auto`), the
//! augmentation that goes with it, training, and the report (curves, validation confusion
//! matrix, `report.html`). The CLI's `train`, `compare` and `demo` call this; so can a library
//! user who wants what the CLI writes.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::data::augment::AugmentChoice;
use crate::data::dataset::Dataset;
use crate::error::{GraftError, Result};
use crate::models::Teacher;
use crate::report::RunReport;
use crate::text::student::TextOutcome;
use crate::text::{TextDataset, TextTeacher, TextTrainOptions, train_text};
use crate::train::advisor;
use crate::train::augment_choice::{self, MeasureContext};
use crate::train::evaluate::{InferenceOptions, evaluate_run};
use crate::train::reporter::Reporter;
use crate::train::strategy::Strategy;
use crate::train::student::load_run;
use crate::train::trainer::{TrainOptions, TrainOutcome, train};

use super::modality::{LabelledData, LabelledSet, Modality, SkippedInput};
use super::settings::TrainSettings;
use super::teacher::AnyTeacher;

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
                crate::train::trainer::preprocessing_at(&teacher.card.preprocessing, options.image_size)?;
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
        // The student is saved: a report that cannot be made is noted, never the run's failure.
        let report = || -> Result<()> {
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
            if !outcome.history.is_empty() {
                crate::report::plot_curves(&options.out.join("curves.png"), &outcome.history)?;
            }
            let report = RunReport::image(&outcome.config, &outcome.history, Some(&evaluation));
            crate::report::write_run_report(&options.out, &report)
        };
        note_report_failure(report(), &options.out, reporter);
    }
    Ok(outcome)
}

/// Says that a trained and saved student's report could not be written, and why.
fn note_report_failure(outcome: Result<()>, run: &Path, reporter: &dyn Reporter) {
    if let Err(error) = outcome {
        reporter.note(&format!(
            "the student is saved in `{}`, but its report could not be written: {error}",
            run.display()
        ));
    }
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
    let report = || -> Result<()> {
        crate::report::plot_confusion(&options.out.join("confusion.png"), &outcome.evaluation)?;
        let report = RunReport::text(&outcome.config, &outcome.evaluation, &outcome.examples);
        crate::report::write_run_report(&options.out, &report)
    };
    note_report_failure(report(), &options.out, reporter);
    Ok(outcome)
}

/// What a training run did, for either modality: the figures a user reads first, and where the
/// whole record is (`run/graft.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub run: PathBuf,
    pub modality: Modality,
    pub teacher: String,
    pub strategy: Strategy,
    pub strategy_reason: Option<String>,
    /// The run's estimate of its accuracy on new examples.
    pub validation_accuracy: f64,
    /// Its standard error, when the estimate is cross-validated.
    pub standard_error: Option<f64>,
    /// How the estimate was made.
    pub validation: String,
    /// Training examples.
    pub examples: usize,
    /// Validation examples, when they were a set apart (not cross-validation over all).
    pub validation_examples: Option<usize>,
    /// Blocks (image teachers) or encoder layers (text teachers) kept frozen, and in all.
    pub frozen: usize,
    pub depth: usize,
    pub trained_parameters: Option<usize>,
    pub best_epoch: Option<usize>,
    pub refit: Option<serde_json::Value>,
    pub augmentation: Option<serde_json::Value>,
    pub augmentation_reason: Option<String>,
    /// Texts longer than the teacher reads, cut to fit.
    pub truncated: usize,
    pub cache: CacheUse,
    pub seconds: f64,
    /// False when the run stopped early (`stop_after`) and can be resumed.
    pub finished: bool,
    /// Examples that could not be read (images that did not decode, text rows without a label).
    pub skipped: Vec<SkippedInput>,
}

/// How much of the teacher's work the feature cache saved.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CacheUse {
    pub hits: usize,
    pub misses: usize,
    pub teacher_forwards: usize,
}

impl RunSummary {
    /// The summary as JSON, with the training examples also under their noun (`images`, `texts`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value[self.modality.noun()] = serde_json::json!(self.examples);
        value
    }

    fn units(&self) -> &'static str {
        match self.modality {
            Modality::Image => "blocks",
            Modality::Text => "encoder layers",
        }
    }
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parameters =
            self.trained_parameters.map(|count| format!(", {count} parameters trained")).unwrap_or_default();
        writeln!(
            formatter,
            "trained a {} {} student of {} on {} {} ({} of {} {} frozen{parameters}) in {:.1}s",
            self.strategy,
            self.modality,
            self.teacher,
            self.examples,
            self.modality.noun(),
            self.frozen,
            self.depth,
            self.units(),
            self.seconds
        )?;
        let accuracy = self.validation_accuracy * 100.0;
        match (self.standard_error, self.best_epoch) {
            (Some(error), _) => write!(
                formatter,
                "cross-validated accuracy {accuracy:.2}% ± {:.2}% ({})",
                error * 100.0,
                self.validation
            )?,
            (None, chosen) => {
                let noun = self.modality.noun();
                let refit = match self.refit.as_ref().and_then(|refit| refit[noun].as_u64()) {
                    Some(count) => format!(
                        "; then refitted on all {count} {noun} for as many epochs, the held-out figure its estimate"
                    ),
                    None => String::new(),
                };
                match chosen {
                    Some(epoch) => write!(formatter, "validation accuracy {accuracy:.2}% (best epoch {epoch}{refit})")?,
                    None => write!(formatter, "validation accuracy {accuracy:.2}% ({}{refit})", self.validation)?,
                }
            }
        }
        if self.cache.hits + self.cache.misses > 0 {
            write!(formatter, ", cache {} hits / {} misses", self.cache.hits, self.cache.misses)?;
        }
        if self.truncated > 0 {
            write!(formatter, "; {} texts were longer than the teacher reads and were cut", self.truncated)?;
        }
        let files = match self.modality {
            Modality::Image => "report.html, graft.json, metrics.jsonl, student.safetensors",
            Modality::Text => "report.html, graft.json, student.safetensors",
        };
        write!(formatter, "\nrun: {} ({files})", self.run.display())
    }
}

/// The training set and the validation set a run scores on, as [`train_any`] prepares them.
pub(super) struct Prepared {
    pub(super) train: LabelledSet,
    pub(super) validation: Option<LabelledSet>,
    /// Graft split the validation set off (the data came without one).
    pub(super) split_here: bool,
}

/// Trains a student of `teacher` on `data` with `settings` and writes its whole run directory
/// (`settings.out`): the student, `graft.json`, plots and `report.html`. `auto` is measured and
/// resolved; at most `settings.per_class` examples of each class are used.
///
/// For image students the data's validation set, or `validation_fraction` of each class split
/// off; text students without one are cross-validated (`deep`) or hold the fraction out.
///
/// # Errors
/// Data of the other modality, a strategy or setting the teacher's modality does not take, data
/// that cannot train a classifier, and whatever training and writing the run meets.
pub fn train_any(
    teacher: &AnyTeacher,
    data: &LabelledData,
    settings: &TrainSettings,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<RunSummary> {
    let prepared = prepare(teacher, data, settings, true)?;
    reporter.note(&describe_data(&prepared, settings));
    train_prepared(teacher, &data.path, prepared, settings, device, reporter)
}

/// Checks that `teacher` can train on `data` with `settings`, and makes the training and
/// validation sets. A set that came without validation gets one split off here, except a text
/// set when `text_keeps_all` (then the text trainer holds texts out for a fine-tune and
/// cross-validates a `deep` probe over all of them; `compare` splits once for every strategy).
pub(super) fn prepare(
    teacher: &AnyTeacher,
    data: &LabelledData,
    settings: &TrainSettings,
    text_keeps_all: bool,
) -> Result<Prepared> {
    if data.modality() != teacher.modality() {
        return Err(GraftError::Invalid(format!(
            "`{}` was opened as {} data, but `{}` is {} teacher",
            data.path.display(),
            data.modality(),
            teacher.name(),
            teacher.modality().with_article()
        )));
    }
    if teacher.modality() == Modality::Text
        && !matches!(settings.strategy, Strategy::Deep | Strategy::Mid | Strategy::Full | Strategy::Auto)
    {
        return Err(GraftError::Invalid(format!(
            "text students train with `deep`, `mid`, `full` or `auto`; `{}` is for image teachers",
            settings.strategy
        )));
    }
    match (settings.dropout, teacher.modality()) {
        (Some(_), Modality::Image) => {
            return Err(GraftError::Invalid(
                "dropout is set for a text encoder's fine-tune; an image student's dropout is its architecture's (AlexNet's dense layers, the MLP head)".into(),
            ));
        }
        (Some(probability), Modality::Text) if !(0.0..1.0).contains(&probability) => {
            return Err(GraftError::Invalid(format!(
                "a dropout probability is at least 0 and below 1, not {probability}"
            )));
        }
        _ => {}
    }
    let mut train = data.train.clone();
    if let Some(per_class) = settings.per_class {
        train = train.subsample(per_class, settings.seed);
    }
    train.check_trainable(&format!("`{}`", data.path.display()))?;
    Ok(match (&data.validation, teacher.modality(), text_keeps_all) {
        (Some(validation), _, _) => Prepared { train, validation: Some(validation.clone()), split_here: false },
        (None, Modality::Text, true) => Prepared { train, validation: None, split_here: true },
        (None, _, _) => {
            let (train, validation) = train.stratified_split(settings.validation_fraction, settings.seed);
            Prepared { train, validation: Some(validation), split_here: true }
        }
    })
}

fn describe_data(prepared: &Prepared, settings: &TrainSettings) -> String {
    let counts = prepared.train.class_counts();
    let noun = prepared.train.modality().noun();
    let validation = match (&prepared.validation, prepared.split_here, settings.strategy) {
        (Some(validation), false, _) => format!("{} given for validation", validation.len()),
        (Some(validation), true, _) => format!("{} held out for validation", validation.len()),
        (None, _, Strategy::Deep) => "scored by cross-validation".to_owned(),
        (None, _, _) => format!("{:.0}% held out to score it", settings.validation_fraction * 100.0),
    };
    format!(
        "data: {} training {noun} in {} classes ({}..{} per class), {validation}",
        prepared.train.len(),
        prepared.train.classes().len(),
        counts.iter().min().unwrap_or(&0),
        counts.iter().max().unwrap_or(&0),
    )
}

pub(super) fn train_prepared(
    teacher: &AnyTeacher,
    data: &Path,
    prepared: Prepared,
    settings: &TrainSettings,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<RunSummary> {
    match (teacher, prepared.train, prepared.validation) {
        (AnyTeacher::Image(teacher), LabelledSet::Images(train), Some(LabelledSet::Images(validation))) => {
            let options = settings.image_options(data, prepared.split_here, device);
            let outcome = train_run(teacher, &train, &validation, options, settings.augment, device, reporter)?;
            Ok(image_summary(&outcome, settings, train.len()))
        }
        (AnyTeacher::Text(teacher), LabelledSet::Texts(train), validation) => {
            let validation = match validation {
                Some(LabelledSet::Texts(validation)) => Some(validation),
                _ => None,
            };
            let options = settings.text_options(data, device);
            let outcome = train_text_run(teacher, &train, validation.as_ref(), &options, device, reporter)?;
            Ok(text_summary(&outcome, teacher, &train, settings))
        }
        _ => Err(GraftError::Invalid(format!("`{}`: the data and the teacher read different things", data.display()))),
    }
}

fn image_summary(outcome: &TrainOutcome, settings: &TrainSettings, examples: usize) -> RunSummary {
    let config = &outcome.config;
    let metrics = &config.header.metrics;
    let validation = metrics.get("validation").and_then(|how| how.as_str()).unwrap_or_default().to_owned();
    let cross_validated = validation.contains("cross-validation over all");
    RunSummary {
        run: settings.out.clone(),
        modality: Modality::Image,
        teacher: config.header.teacher.clone(),
        strategy: config.header.strategy,
        strategy_reason: config.header.strategy_reason.clone(),
        validation_accuracy: metrics["validation_accuracy"].as_f64().unwrap_or(0.0),
        standard_error: metrics["probe"]["cross_validation"]["standard_error"].as_f64().filter(|_| cross_validated),
        validation,
        examples,
        validation_examples: (!cross_validated).then_some(config.validation_images),
        frozen: config.frozen_blocks.len(),
        depth: config.frozen_blocks.len() + config.trainable_blocks.len(),
        trained_parameters: Some(config.trained_parameters),
        best_epoch: metrics["best_epoch"].as_u64().map(|epoch| epoch as usize),
        refit: metrics.get("refit").filter(|refit| !refit.is_null()).cloned(),
        augmentation: serde_json::to_value(&config.hyperparameters.augmentation).ok(),
        augmentation_reason: config.augmentation_choice.as_ref().map(|choice| choice.reason.clone()),
        truncated: 0,
        cache: CacheUse {
            hits: outcome.cache_hits,
            misses: outcome.cache_misses,
            teacher_forwards: outcome.teacher_forwards,
        },
        seconds: outcome.seconds,
        finished: outcome.finished,
        skipped: outcome
            .skipped
            .iter()
            .map(|bad| SkippedInput { input: bad.name.clone(), reason: bad.reason.clone() })
            .collect(),
    }
}

fn text_summary(
    outcome: &TextOutcome,
    teacher: &TextTeacher,
    train: &TextDataset,
    settings: &TrainSettings,
) -> RunSummary {
    let config = &outcome.config;
    let history = config.header.metrics.get("history").and_then(|history| history.as_array());
    RunSummary {
        run: settings.out.clone(),
        modality: Modality::Text,
        teacher: config.header.teacher.clone(),
        strategy: config.header.strategy,
        strategy_reason: config.header.strategy_reason.clone(),
        validation_accuracy: outcome.accuracy,
        standard_error: outcome.standard_error,
        validation: config.header.metrics["validation"].as_str().unwrap_or_default().to_owned(),
        examples: train.len(),
        validation_examples: outcome.standard_error.is_none().then_some(outcome.evaluation.images),
        frozen: config.cut,
        depth: teacher.bert.layer_count(),
        trained_parameters: None,
        best_epoch: history.filter(|history| !history.is_empty()).map(Vec::len),
        refit: config.header.metrics.get("refit").filter(|refit| !refit.is_null()).cloned(),
        augmentation: None,
        augmentation_reason: None,
        truncated: outcome.truncated,
        cache: CacheUse { hits: outcome.cache_hits, misses: 0, teacher_forwards: 0 },
        seconds: outcome.seconds,
        finished: true,
        skipped: train
            .skipped
            .iter()
            .map(|row| SkippedInput { input: row.location.clone(), reason: row.reason.clone() })
            .collect(),
    }
}
