//! Text students: a sentence encoder, frozen (`deep`, a linear head fitted on its cached
//! sentence features) or fine-tuned in part or whole (`mid`, `full`), saved as a run directory
//! (`student.safetensors` + `graft.json`; [`crate::run::train_text_run`] adds the report) that
//! [`crate::run::Student`] reads back.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;

use super::bert::{Bert, BertKeys};
use super::cache::cached_features;
use super::data::TextDataset;
use super::finetune::{FinetuneOptions, finetune};
use super::teacher::{Pooling, TextTeacher};
use crate::error::{GraftError, Result};
use crate::train::metrics::{Evaluation, evaluate};
use crate::train::probe::{self, Samples};
use crate::train::reporter::Reporter;
use crate::train::student::RunHeader;
use crate::train::{Refit, Strategy};
use crate::weights::{collect_tensors, load_into, sha256_file, transpose_2d};

/// What `graft.json` holds for a text student.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextRunConfig {
    /// What every run record holds (its `modality` is always `text`).
    #[serde(flatten)]
    pub header: RunHeader,
    /// Where the teacher was loaded from (eval and predict load it from there unless told
    /// otherwise).
    pub teacher_directory: PathBuf,
    pub tokenizer_sha256: String,
    pub max_length: usize,
    pub pooling: Pooling,
    /// Transformer layers `[0, cut)` stayed frozen (all of them for `deep`, 0 for `full`).
    pub cut: usize,
    pub feature_dim: usize,
}

/// A text student loaded from its run directory: the head (burn's `Linear` layout, weight
/// `[feature_dim, classes]`), its configuration, and for a fine-tuned student its encoder's
/// tensors (Hugging Face names under `bert.`).
#[derive(Debug, Clone)]
pub struct TextStudent {
    pub config: TextRunConfig,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub encoder: Option<(PathBuf, graft_weights::TensorMap)>,
}

/// How to train a text student.
#[derive(Debug, Clone)]
pub struct TextTrainOptions {
    /// `deep`, `mid` or `full` (`auto` is resolved before, by [`super::advise`]).
    pub strategy: Strategy,
    /// `mid`: how many of the last transformer layers train (default: a third of them).
    pub unfreeze: Option<usize>,
    /// Fine-tuning (`mid`, `full`): epochs, peak rates, weight decay, shards.
    pub epochs: usize,
    pub learning_rate: f64,
    pub encoder_factor: f64,
    pub weight_decay: f64,
    pub shards: usize,
    /// The encoder's dropout probability while it fine-tunes (0: none; see
    /// [`super::bert::TextDropout`]).
    pub dropout: f64,
    /// Fine-tuning without given validation texts: the stratified fraction held out to score it.
    pub validation_fraction: f64,
    pub seed: u64,
    pub cache_dir: PathBuf,
    pub out: PathBuf,
    pub batch_size: usize,
    /// Where the data came from, for the run's record.
    pub data: String,
    /// Set (by a Ctrl-C handler, say) to stop at the next batch: a fine-tune keeps its last
    /// complete epoch's checkpoint in `out/checkpoint` ([`GraftError::Interrupted`]); no
    /// student is written.
    pub interrupt: Option<crate::interrupt::Interrupt>,
    /// A fine-tune (`mid`, `full`, `auto`'s mid) continues from its newest checkpoint in
    /// `out/checkpoint` when it is of the same run (data, teacher, recipe); `deep` fits again
    /// (seconds, from cached features).
    pub resume: bool,
    /// `on`: a `mid` or `full` student, once trained and scored with texts held out, trains
    /// again from the start on every text (the held-out ones, or the given validation texts,
    /// included) for as many epochs; that is the student, the held-out scores its estimate.
    /// `auto` and `off`: no refit. (Images refit under `auto`; for text students it is not
    /// measured yet, so it is asked for.)
    pub refit: Refit,
}

/// A `deep` text student with graft's text recipe ([`super::finetune`]'s constants for the
/// fine-tuning strategies), seed 42, into `graft-run` in the working directory: set at least
/// `out`.
impl Default for TextTrainOptions {
    fn default() -> TextTrainOptions {
        use super::finetune::{DEFAULT_DROPOUT, DEFAULT_ENCODER_FACTOR, DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE};
        let image = crate::train::TrainOptions::default();
        TextTrainOptions {
            strategy: Strategy::Deep,
            unfreeze: None,
            epochs: DEFAULT_EPOCHS,
            learning_rate: DEFAULT_LEARNING_RATE,
            encoder_factor: DEFAULT_ENCODER_FACTOR,
            weight_decay: image.hyperparameters.weight_decay,
            shards: image.hyperparameters.shards,
            dropout: DEFAULT_DROPOUT,
            validation_fraction: image.hyperparameters.validation_fraction,
            seed: image.seed,
            cache_dir: image.cache_dir,
            out: image.out,
            batch_size: image.hyperparameters.batch_size,
            data: String::new(),
            interrupt: None,
            resume: false,
            refit: Refit::Auto,
        }
    }
}

/// What training did.
#[derive(Debug, Clone)]
pub struct TextOutcome {
    pub config: TextRunConfig,
    /// The accuracy the run reports: cross-validated on every text when graft made the split,
    /// else on the given validation texts.
    pub accuracy: f64,
    pub standard_error: Option<f64>,
    pub truncated: usize,
    /// How many texts' features came from the cache.
    pub cache_hits: usize,
    pub seconds: f64,
    /// The scores behind `accuracy` (out-of-fold predictions, or the validation texts'), for the
    /// report.
    pub evaluation: Evaluation,
    /// The texts it got most confidently wrong there.
    pub examples: Vec<WrongExample>,
}

/// Whether a run directory holds a text student.
pub fn is_text_run(run: &Path) -> bool {
    crate::train::student::read_header(run).is_ok_and(|header| header.modality == crate::modality::Modality::Text)
}

impl TextStudent {
    /// Class probabilities of sentence features (`[rows, feature_dim]`), one row each.
    pub fn probabilities(&self, features: &[f32]) -> Vec<f32> {
        let dim = self.config.feature_dim;
        let classes = self.config.header.classes.len();
        let mut out = Vec::with_capacity(features.len() / dim.max(1) * classes);
        for row in features.chunks(dim) {
            let mut logits = self.bias.clone();
            for (feature, weights) in row.iter().zip(self.weight.chunks(classes)) {
                for (logit, weight) in logits.iter_mut().zip(weights) {
                    *logit += feature * weight;
                }
            }
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = logits.iter().map(|logit| (logit - max).exp()).sum();
            out.extend(logits.iter().map(|logit| (logit - max).exp() / total));
        }
        out
    }

    /// Reads a run directory.
    ///
    /// # Errors
    /// A directory that is not a text run, or a damaged head.
    pub fn load(run: &Path) -> Result<TextStudent> {
        let config_path = run.join("graft.json");
        let text =
            crate::fsutil::read_text_limited(&config_path, crate::train::student::MAX_RECORD_BYTES, "a run record")?;
        let config: TextRunConfig = serde_json::from_str(&text)
            .map_err(|error| GraftError::Checkpoint { path: config_path.clone(), reason: error.to_string() })?;
        let weights_path = run.join("student.safetensors");
        let tensors = graft_weights::read(&weights_path)?;
        let (dim, classes) = (config.feature_dim, config.header.classes.len());
        if config.max_length == 0 || config.max_length > 1 << 16 {
            return Err(GraftError::Checkpoint {
                path: config_path,
                reason: format!("a limit of {} tokens is out of bounds (1 to 65536)", config.max_length),
            });
        }
        if dim == 0 || classes < 2 {
            return Err(GraftError::Checkpoint {
                path: config_path,
                reason: format!("a feature width of {dim} and {classes} classes is no student"),
            });
        }
        let take = |key: &str, shape: Vec<usize>| -> Result<Vec<f32>> {
            let tensor = tensors
                .get(key)
                .ok_or_else(|| GraftError::Checkpoint { path: weights_path.clone(), reason: format!("no `{key}`") })?;
            if tensor.shape != shape {
                return Err(GraftError::Checkpoint {
                    path: weights_path.clone(),
                    reason: format!("`{key}` has shape {:?}, expected {shape:?}", tensor.shape),
                });
            }
            tensor.as_f32().map(<[f32]>::to_vec).ok_or_else(|| GraftError::Checkpoint {
                path: weights_path.clone(),
                reason: format!("`{key}` is not float32"),
            })
        };
        // Saved in PyTorch's `[out, in]` order, as every other graft head.
        let torch_weight = take("head.weight", vec![classes, dim])?;
        let weight = transpose_2d(&torch_weight, classes, dim);
        let bias = take("head.bias", vec![classes])?;
        let encoder = (config.header.strategy != Strategy::Deep).then(|| (weights_path.clone(), tensors));
        Ok(TextStudent { config, weight, bias, encoder })
    }

    /// The encoder that computes this student's sentence features: the teacher itself for `deep`,
    /// else the teacher with the student's trained layers (its weights' digest is then the
    /// student file's, so cached features are the student's own).
    ///
    /// # Errors
    /// A student file whose encoder does not fit the teacher.
    pub fn encoder(&self, teacher: &TextTeacher, device: &Device) -> Result<TextTeacher> {
        self.check_teacher(teacher)?;
        let Some((path, tensors)) = &self.encoder else {
            return Ok(teacher.clone());
        };
        // The head's tensors beside the encoder's are only reported unused, and the report is not
        // needed: every encoder tensor must be there (a strict load).
        let (bert, _) =
            load_into(teacher.config.init(device), tensors, &BertKeys { prefix: "bert.".to_owned() }, path, false)?;
        Ok(TextTeacher { bert, weights_sha256: sha256_file(path)?, ..teacher.clone() })
    }

    fn save(&self, run: &Path, encoder: Option<&Bert>) -> Result<()> {
        std::fs::create_dir_all(run).map_err(|source| GraftError::Io { path: run.to_owned(), source })?;
        let (dim, classes) = (self.config.feature_dim, self.config.header.classes.len());
        let torch_weight = transpose_2d(&self.weight, dim, classes);
        let mut tensors = graft_weights::TensorMap::new();
        tensors.insert("head.weight".to_owned(), graft_weights::Tensor::from_f32(vec![classes, dim], torch_weight));
        tensors.insert("head.bias".to_owned(), graft_weights::Tensor::from_f32(vec![classes], self.bias.clone()));
        if let Some(encoder) = encoder {
            tensors.extend(collect_tensors(encoder, &BertKeys { prefix: "bert.".to_owned() })?);
        }
        graft_weights::write_safetensors(&run.join("student.safetensors"), &tensors)?;
        let json = serde_json::to_vec_pretty(&self.config).map_err(|error| GraftError::Invalid(error.to_string()))?;
        crate::fsutil::write_atomic(&run.join("graft.json"), &json)
    }

    /// Checks that `teacher` is the one this student was trained on.
    ///
    /// # Errors
    /// Different weights or tokenizer.
    pub fn check_teacher(&self, teacher: &TextTeacher) -> Result<()> {
        if teacher.weights_sha256 != self.config.header.teacher_weights_sha256
            || teacher.tokenizer_sha256 != self.config.tokenizer_sha256
        {
            return Err(GraftError::Invalid(format!(
                "the teacher in `{}` is not the one this student was trained on (weights sha256 {}, tokenizer {}; the run expects {}, {})",
                teacher.directory.display(),
                crate::fsutil::short_digest(&teacher.weights_sha256),
                crate::fsutil::short_digest(&teacher.tokenizer_sha256),
                crate::fsutil::short_digest(&self.config.header.teacher_weights_sha256),
                crate::fsutil::short_digest(&self.config.tokenizer_sha256)
            )));
        }
        Ok(())
    }
}

/// The texts per class below which `auto` keeps `deep` without measuring a fine-tuned student:
/// too few to move an encoder without overfitting it, and the probe is cross-validated where a
/// fine-tuned student is scored on a fifth of them.
pub const AUTO_MIN_PER_CLASS: usize = 50;

/// Trains a text student and saves it in `options.out` (`student.safetensors`, `graft.json`);
/// [`crate::run::train_text_run`] writes the report beside it.
///
/// - `deep`: the encoder frozen, each text's sentence features computed once (and cached), a
///   linear head fitted as a probe (multinomial logistic regression, its L2 strength chosen by
///   cross-validation, as for images). Without `validation` the probe fits on every text and the
///   reported accuracy is the cross-validated one; with it, the probe fits on `train_set` and is
///   scored on `validation`.
/// - `mid` / `full`: the last layers (`mid`) or every layer (`full`) fine-tuned with a new head
///   ([`finetune`]); without `validation`, a stratified fraction is held out to score each epoch
///   and the last epoch is kept.
/// - `auto`: measures. The `deep` probe first (seconds, from cached features); below
///   [`AUTO_MIN_PER_CLASS`] texts per class it is kept; otherwise a `mid` student is trained too
///   and kept only when it scores more than one standard error (at least half a point) above
///   the probe. `full` costs several times `mid` and is left to be asked for.
///
/// # Errors
/// Untrainable data, a strategy text students do not have, the tokenizer's or the cache's
/// failure, or a run directory that cannot be written.
pub fn train_text(
    teacher: &TextTeacher,
    train_set: &TextDataset,
    validation: Option<&TextDataset>,
    options: &TextTrainOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<TextOutcome> {
    let started = Instant::now();
    let _lock = crate::train::trainer::lock_run_folder(&options.out)?;
    train_set.check_trainable("the training data")?;
    let layers = teacher.bert.layer_count();
    let mid_cut = layers - options.unfreeze.unwrap_or_else(|| layers.div_ceil(3)).clamp(1, layers);
    let mut config = TextRunConfig {
        header: RunHeader::new(
            crate::modality::Modality::Text,
            teacher.name.clone(),
            teacher.weights_sha256.clone(),
            options.strategy,
            train_set.classes.clone(),
            options.seed,
            options.data.clone(),
        ),
        teacher_directory: std::fs::canonicalize(&teacher.directory).unwrap_or_else(|_| teacher.directory.clone()),
        tokenizer_sha256: teacher.tokenizer_sha256.clone(),
        max_length: teacher.tokenizer.max_length(),
        pooling: teacher.pooling,
        cut: layers,
        feature_dim: teacher.feature_dim(),
    };
    let (trained, strategy, cut, reason) = match options.strategy {
        Strategy::Deep => (
            fit_deep(teacher, train_set, validation, &config, options, device, reporter)?,
            Strategy::Deep,
            layers,
            None,
        ),
        Strategy::Mid => (
            fit_finetuned(teacher, train_set, validation, &config, options, mid_cut, device, reporter)?,
            Strategy::Mid,
            mid_cut,
            None,
        ),
        Strategy::Full => (
            fit_finetuned(teacher, train_set, validation, &config, options, 0, device, reporter)?,
            Strategy::Full,
            0,
            None,
        ),
        Strategy::Auto => {
            let deep = fit_deep(teacher, train_set, validation, &config, options, device, reporter)?;
            let fewest = train_set.class_counts().into_iter().min().unwrap_or(0);
            let deep_error =
                deep.standard_error.unwrap_or_else(|| binomial_error(deep.evaluation.accuracy, deep.evaluation.images));
            if fewest < AUTO_MIN_PER_CLASS {
                let reason = format!(
                    "deep: {fewest} texts in the smallest class, below the {AUTO_MIN_PER_CLASS} a fine-tuned encoder needs; the probe scores {:.1}%",
                    deep.evaluation.accuracy * 100.0
                );
                (deep, Strategy::Deep, layers, Some(reason))
            } else {
                reporter.note(&format!(
                    "auto: the deep probe scores {:.1}% ± {:.1}%; measuring a mid student",
                    deep.evaluation.accuracy * 100.0,
                    deep_error * 100.0
                ));
                let mid = fit_finetuned(teacher, train_set, validation, &config, options, mid_cut, device, reporter)?;
                let margin = deep_error.max(0.005);
                let gain = mid.evaluation.accuracy - deep.evaluation.accuracy;
                let figures = format!(
                    "mid {:.1}% against deep {:.1}% ± {:.1}%",
                    mid.evaluation.accuracy * 100.0,
                    deep.evaluation.accuracy * 100.0,
                    deep_error * 100.0
                );
                if gain > margin {
                    (
                        mid,
                        Strategy::Mid,
                        mid_cut,
                        Some(format!(
                            "mid: fine-tuning the last {} layers scored higher ({figures})",
                            layers - mid_cut
                        )),
                    )
                } else {
                    (
                        deep,
                        Strategy::Deep,
                        layers,
                        Some(format!("deep: fine-tuning gained no more than the probe's error ({figures})")),
                    )
                }
            }
        }
        other => {
            return Err(GraftError::Invalid(format!(
                "text students train with `deep`, `mid`, `full` or `auto`; not `{other}`"
            )));
        }
    };
    if let Some(reason) = &reason {
        reporter.note(&format!("auto: {reason}"));
    }
    let Trained { mut student, mut encoder, mut metrics, evaluation, examples, standard_error, truncated, cache_hits } =
        trained;
    match (options.refit, strategy) {
        (Refit::On, Strategy::Mid | Strategy::Full) => {
            let (net, refit) =
                refit_on_every_text(teacher, train_set, validation, &config, options, cut, device, reporter)?;
            (student.weight, student.bias) = head_values(&net)?;
            encoder = Some(net.bert);
            metrics["refit"] = refit;
        }
        (Refit::On, _) if options.strategy == Strategy::Deep => {
            return Err(GraftError::Invalid(
                "refit `on` trains a fine-tuned text student again on every text; a `deep` student's probe already fits every text".into(),
            ));
        }
        (Refit::On, _) => reporter.note("refit: `auto` kept the `deep` probe, which already fits every text"),
        _ => {}
    }
    metrics["validation_accuracy"] = serde_json::json!(evaluation.accuracy);
    metrics["truncated_texts"] = serde_json::json!(truncated);
    metrics["confidently_wrong"] = serde_json::to_value(&examples).unwrap_or_default();
    config.header.strategy = strategy;
    config.header.strategy_reason = reason;
    config.cut = cut;
    config.header.metrics = metrics;
    let student = TextStudent { config: config.clone(), ..student };
    student.save(&options.out, encoder.as_ref())?;
    Ok(TextOutcome {
        config,
        accuracy: evaluation.accuracy,
        standard_error,
        truncated,
        cache_hits,
        seconds: started.elapsed().as_secs_f64(),
        evaluation,
        examples,
    })
}

/// The standard error of an accuracy measured on `count` examples.
fn binomial_error(accuracy: f64, count: usize) -> f64 {
    (accuracy * (1.0 - accuracy) / count.max(1) as f64).sqrt()
}

/// A trained student before it is saved, with how it scored.
struct Trained {
    student: TextStudent,
    /// The trained encoder of a fine-tuned student.
    encoder: Option<Bert>,
    metrics: serde_json::Value,
    /// On the validation texts, or the probe's out-of-fold predictions.
    evaluation: Evaluation,
    examples: Vec<WrongExample>,
    standard_error: Option<f64>,
    truncated: usize,
    cache_hits: usize,
}

#[allow(clippy::too_many_arguments)]
fn fit_finetuned(
    teacher: &TextTeacher,
    train_set: &TextDataset,
    validation: Option<&TextDataset>,
    config: &TextRunConfig,
    options: &TextTrainOptions,
    cut: usize,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Trained> {
    let layers = teacher.bert.layer_count();
    let (train_part, validation_part, how) = match validation {
        Some(validation) => (
            train_set.clone(),
            validation.clone().align_classes(&train_set.classes)?,
            "the given validation texts".to_owned(),
        ),
        None => {
            let fraction = options.validation_fraction;
            let (train_part, held_out) = train_set.clone().stratified_split(fraction, options.seed);
            let how = format!("{} texts held out ({:.0}%), the last epoch kept", held_out.len(), fraction * 100.0);
            (train_part, held_out, how)
        }
    };
    let train_encoded = teacher.tokenizer.encode(&train_part.texts())?;
    let validation_encoded = teacher.tokenizer.encode(&validation_part.texts())?;
    let truncated = train_encoded.iter().chain(&validation_encoded).filter(|encoded| encoded.truncated).count();
    let (train_labels, validation_labels) = (train_part.labels(), validation_part.labels());
    let finetune_options = checkpointed_options(
        config,
        options,
        cut,
        (&train_part, &validation_part),
        options.out.join(crate::train::checkpoint::CHECKPOINT_DIR),
    );
    let validation_input =
        (!validation_part.is_empty()).then_some((validation_encoded.as_slice(), validation_labels.as_slice()));
    let super::finetune::Finetuned { net, history, validation_probabilities: probabilities } = finetune(
        teacher,
        (&train_encoded, &train_labels),
        validation_input,
        train_set.classes.len(),
        &finetune_options,
        device,
        reporter,
    )?;
    let (weight, bias) = head_values(&net)?;
    let student = TextStudent { config: config.clone(), weight, bias, encoder: None };
    let evaluation = evaluate(&probabilities, &validation_labels, &train_set.classes);
    let examples = confidently_wrong(&validation_part, &probabilities, 10);
    let metrics = serde_json::json!({
        "validation": how,
        "train_texts": train_part.len(),
        "validation_texts": validation_part.len(),
        "history": history,
        "recipe": {
            "epochs": options.epochs, "learning_rate": options.learning_rate, "encoder_learning_rate": options.learning_rate * options.encoder_factor,
            "weight_decay": options.weight_decay, "batch_size": options.batch_size, "warmup_fraction": super::finetune::WARMUP_FRACTION,
            "dropout": options.dropout,
            "trained_layers": layers - cut,
        },
    });
    Ok(Trained {
        student,
        encoder: Some(net.bert),
        metrics,
        evaluation,
        examples,
        standard_error: None,
        truncated,
        cache_hits: 0,
    })
}

/// The fine-tuning options of `options` at `cut`, with checkpoints in `folder` that a resume
/// accepts only from the same run: the teacher, the texts (`parts`: trained on, held out) and
/// the recipe.
fn checkpointed_options(
    config: &TextRunConfig,
    options: &TextTrainOptions,
    cut: usize,
    (train_part, validation_part): (&TextDataset, &TextDataset),
    folder: PathBuf,
) -> FinetuneOptions {
    let digest = {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for (part, name) in [(train_part, "train"), (validation_part, "validation")] {
            hasher.update(name.as_bytes());
            for (text, label) in part.texts().iter().zip(part.labels()) {
                hasher.update((text.len() as u64).to_le_bytes());
                hasher.update(text.as_bytes());
                hasher.update((label as u64).to_le_bytes());
            }
        }
        crate::fsutil::hex(&hasher.finalize())
    };
    // What a checkpoint must share with the run resuming it: everything that changes the epochs
    // already trained (the number of epochs may change, to train longer).
    let identity = serde_json::json!({
        "teacher_weights_sha256": config.header.teacher_weights_sha256,
        "tokenizer_sha256": config.tokenizer_sha256,
        "max_length": config.max_length,
        "pooling": config.pooling,
        "cut": cut,
        "texts_sha256": digest,
        "train_texts": train_part.len(),
        "validation_texts": validation_part.len(),
        "classes": config.header.classes,
        "seed": options.seed,
        "recipe": {
            "learning_rate": options.learning_rate, "encoder_factor": options.encoder_factor,
            "weight_decay": options.weight_decay, "batch_size": options.batch_size.max(1), "shards": options.shards,
            "dropout": options.dropout,
        },
    });
    FinetuneOptions {
        checkpoints: Some(super::finetune::CheckpointOptions { folder, resume: options.resume, identity }),
        cut,
        epochs: options.epochs,
        learning_rate: options.learning_rate,
        encoder_factor: options.encoder_factor,
        weight_decay: options.weight_decay,
        batch_size: options.batch_size.max(1),
        shards: options.shards,
        seed: options.seed,
        dropout: options.dropout,
        interrupt: options.interrupt.clone(),
    }
}

/// A trained head's weight and bias as the student keeps them.
fn head_values(net: &super::finetune::TextNet) -> Result<(Vec<f32>, Vec<f32>)> {
    let weight = crate::backend::host_values::<f32>(net.head.weight.val().into_data())?;
    let bias = net
        .head
        .bias
        .as_ref()
        .map(|bias| crate::backend::host_values::<f32>(bias.val().into_data()))
        .transpose()?
        .unwrap_or_default();
    Ok((weight, bias))
}

/// The refit (see [`TextTrainOptions::refit`]): a fine-tune at `cut` from the start on every text,
/// for `options.epochs`, checkpointed in `out/refit/checkpoint`; the trained network and the
/// record of it for `graft.json`.
#[allow(clippy::too_many_arguments)]
fn refit_on_every_text(
    teacher: &TextTeacher,
    train_set: &TextDataset,
    validation: Option<&TextDataset>,
    config: &TextRunConfig,
    options: &TextTrainOptions,
    cut: usize,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(super::finetune::TextNet, serde_json::Value)> {
    let started = Instant::now();
    let mut every = train_set.clone();
    if let Some(validation) = validation {
        every.items.extend(validation.clone().align_classes(&train_set.classes)?.items);
    }
    reporter.note(&format!(
        "refitting on all {} texts (held-out ones included) for {} epochs",
        every.len(),
        options.epochs
    ));
    let encoded = teacher.tokenizer.encode(&every.texts())?;
    let labels = every.labels();
    let folder = options.out.join("refit").join(crate::train::checkpoint::CHECKPOINT_DIR);
    let refit_options = checkpointed_options(config, options, cut, (&every, &TextDataset::default()), folder);
    let super::finetune::Finetuned { net, .. } =
        finetune(teacher, (&encoded, &labels), None, train_set.classes.len(), &refit_options, device, reporter)?;
    let record =
        serde_json::json!({"texts": every.len(), "epochs": options.epochs, "seconds": started.elapsed().as_secs_f64()});
    Ok((net, record))
}

#[allow(clippy::too_many_arguments)]
fn fit_deep(
    teacher: &TextTeacher,
    train_set: &TextDataset,
    validation: Option<&TextDataset>,
    config: &TextRunConfig,
    options: &TextTrainOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Trained> {
    let classes = train_set.classes.len();
    let batch = options.batch_size.max(1);
    let (train_features, train_hits) =
        cached_features(teacher, &train_set.texts(), &options.cache_dir, batch, device, reporter)?;
    let labels = train_set.labels();
    let samples = Samples { features: &train_features.features, dim: train_features.width, labels: &labels, classes };
    reporter.start("fitting the probe", 0);
    let fitted = probe::fit(samples, options.seed);
    reporter.finish();
    let mut truncated = train_features.truncated;
    let mut cache_hits = train_hits;
    let cross_validation = fitted.cross_validation.as_ref();
    let mut metrics = serde_json::json!({
        "probe": {
            "l2": fitted.l2,
            "iterations": fitted.iterations,
            "cross_validation": cross_validation.map(|cv| serde_json::json!({
                "folds": cv.folds, "accuracy": cv.accuracy, "standard_error": cv.standard_error, "log_loss": cv.log_loss, "grid": cv.grid,
            })),
        },
        "train_texts": train_set.len(),
    });
    let student =
        TextStudent { config: config.clone(), weight: fitted.weight.clone(), bias: fitted.bias.clone(), encoder: None };
    let (standard_error, evaluation, examples) = match validation {
        Some(validation) => {
            let validation = validation.clone().align_classes(&train_set.classes)?;
            let (features, hits) =
                cached_features(teacher, &validation.texts(), &options.cache_dir, batch, device, reporter)?;
            truncated += features.truncated;
            cache_hits += hits;
            let probabilities = student.probabilities(&features.features);
            metrics["validation"] = serde_json::json!("the given validation texts");
            let examples = confidently_wrong(&validation, &probabilities, 10);
            (None, evaluate(&probabilities, &validation.labels(), &train_set.classes), examples)
        }
        None => {
            let cv = cross_validation.ok_or_else(|| {
                GraftError::Invalid("every class needs at least two texts for cross-validation".to_owned())
            })?;
            metrics["validation"] =
                serde_json::json!(format!("{}-fold cross-validation over all {} texts", cv.folds, train_set.len()));
            let examples = confidently_wrong(train_set, &cv.out_of_fold, 10);
            let mut evaluation = evaluate(&cv.out_of_fold, &labels, &train_set.classes);
            // The probe's own cross-validated figure (the mean over folds) is the one reported.
            evaluation.accuracy = cv.accuracy;
            (Some(cv.standard_error), evaluation, examples)
        }
    };
    Ok(Trained { student, encoder: None, metrics, evaluation, examples, standard_error, truncated, cache_hits })
}

/// A text the student got wrong, most confident first: what a text user reads first.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WrongExample {
    pub text: String,
    pub location: String,
    pub label: String,
    pub predicted: String,
    pub confidence: f64,
}

/// The `count` most confidently wrong predictions among `probabilities` (one row per text).
pub fn confidently_wrong(data: &TextDataset, probabilities: &[f32], count: usize) -> Vec<WrongExample> {
    let classes = data.classes.len();
    let mut wrong: Vec<WrongExample> = data
        .items
        .iter()
        .zip(probabilities.chunks(classes))
        .filter_map(|(item, row)| {
            let predicted = crate::train::probe::argmax(row);
            (predicted != item.label).then(|| WrongExample {
                text: item.text.clone(),
                location: item.location.clone(),
                label: data.classes[item.label].clone(),
                predicted: data.classes[predicted].clone(),
                confidence: f64::from(row[predicted]),
            })
        })
        .collect();
    wrong.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    wrong.truncate(count);
    wrong
}

/// Scores a text student on labelled texts (their classes a subset of the student's).
///
/// # Errors
/// A class the student does not know, or the encoder's failure.
pub fn evaluate_text(
    student: &TextStudent,
    teacher: &TextTeacher,
    data: TextDataset,
    cache_dir: &Path,
    batch_size: usize,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(Evaluation, Vec<WrongExample>, usize)> {
    let encoder = student.encoder(teacher, device)?;
    evaluate_encoded(student, &encoder, data, cache_dir, batch_size, device, reporter)
}

/// [`evaluate_text`] with the student's own encoder ([`TextStudent::encoder`]) already made.
///
/// # Errors
/// A class the student does not know, an empty set, or the encoder's failure.
pub fn evaluate_encoded(
    student: &TextStudent,
    encoder: &TextTeacher,
    data: TextDataset,
    cache_dir: &Path,
    batch_size: usize,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(Evaluation, Vec<WrongExample>, usize)> {
    let data = data.align_classes(&student.config.header.classes)?;
    if data.is_empty() {
        return Err(GraftError::Invalid("the evaluation set holds no labelled texts".into()));
    }
    let (features, _) = cached_features(encoder, &data.texts(), cache_dir, batch_size, device, reporter)?;
    let probabilities = student.probabilities(&features.features);
    let evaluation = evaluate(&probabilities, &data.labels(), &student.config.header.classes);
    Ok((evaluation, confidently_wrong(&data, &probabilities, 10), features.truncated))
}

/// Class probabilities for texts, one row of `classes` per text, and how many were truncated.
///
/// # Errors
/// The encoder's failure, or a teacher that is not the student's.
pub fn predict_texts(
    student: &TextStudent,
    teacher: &TextTeacher,
    texts: &[&str],
    batch_size: usize,
    device: &Device,
) -> Result<(Vec<f32>, usize)> {
    let encoder = student.encoder(teacher, device)?;
    let features = encoder.embed(texts, batch_size, device, &|_| {}, None)?;
    Ok((student.probabilities(&features.features), features.truncated))
}
