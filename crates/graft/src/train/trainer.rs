//! The one trainer: every strategy and every data set go through `train`.
//!
//! What is frozen in front of the cut is computed once per image through the feature cache; the
//! trainable part runs on the autodiff device. Batch order and augmentation derive from
//! (seed, epoch), the optimizer state is checkpointed each epoch, so an interrupted run resumed
//! with `resume` ends where an uninterrupted one would.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use burn::module::{Module, Param, ParamGroup};
use burn::nn::Linear;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig, momentum::MomentumConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::cache::{CacheSpec, Entry, FeatureCache, Skipped, View, batch_from_entries, pooled_features, read_values};
use super::checkpoint::{CHECKPOINT_DIR, Checkpoints, read_optimizer, read_record, write_optimizer, write_record};
use super::epochs::{Step, Steps, epoch_order, run_epoch};
use super::evaluate::{InferenceOptions, evaluate_run};
use super::head::Head;
use super::head::HeadKind;
use super::metrics::Evaluation;
use super::probe;
use super::reporter::{EpochMetrics, Reporter};
use super::schedule::WarmupCosine;
use super::shards;
use super::strategy::{FreezePlan, Strategy};
use super::student::{
    BatchNormMode, HeadFit, HeadInit, Hyperparameters, LoadedStudent, Optimizer, Refit, RunConfig, RunHeader, Student,
    StudentInput, save_run,
};
use crate::backend::fused::FusedBackbone;
use crate::backend::host_values;
use crate::data::augment::{augmented_view, min_decoded_side};
use crate::data::dataset::{Dataset, Item, duplicates_across, duplicates_among};
use crate::data::image::{batch_tensor, preprocess};
use crate::error::{GraftError, Result};
use crate::models::zoo::Preprocessing;
use crate::models::{Backbone, Teacher};
use crate::rng::SplitMix64;
use rayon::prelude::*;

/// Everything a training run needs besides the teacher and the data.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// A resolved strategy (not `auto`).
    pub strategy: Strategy,
    pub strategy_reason: Option<String>,
    /// What `--augment auto` measured and chose, when it did (saved in `graft.json`).
    pub augmentation_choice: Option<super::augment_choice::Choice>,
    pub unfreeze: Option<usize>,
    pub unfreeze_from: Option<String>,
    pub head: HeadKind,
    pub hyperparameters: Hyperparameters,
    pub seed: u64,
    /// Overrides the teacher's input size (the resize keeps the card's crop ratio).
    pub image_size: Option<usize>,
    pub cache_dir: PathBuf,
    /// The run directory.
    pub out: PathBuf,
    /// Continue from `out/checkpoint` if it is there.
    pub resume: bool,
    /// Stop after this many epochs in this call, a refit's included (as an interruption would);
    /// `None` runs to the end.
    pub stop_after: Option<usize>,
    /// Images per teacher forward pass while filling the cache.
    pub cache_batch_size: usize,
    /// Run frozen blocks through graft's CPU plan on `flex` ([`FusedBackbone`]); off runs them
    /// through burn's modules (the same values up to rounding, slower; for comparisons).
    pub fused_plan: bool,
    /// A description of the data, saved in `graft.json`.
    pub data: String,
    /// The validation images were split off the training data by graft (the data came without a
    /// validation set). A linear probe then fits on training and validation images together and
    /// scores itself by cross-validation over all of them: with a few images per class, a 20%
    /// hold-out wastes data and its one score is noise. Epoch training keeps the hold-out.
    pub pooled_validation: bool,
    /// Set (by a Ctrl-C handler, say) to stop at the next batch: the run ends with
    /// [`GraftError::Interrupted`], its last complete checkpoint intact for a resume.
    pub interrupt: Option<crate::interrupt::Interrupt>,
}

/// A `deep` student of the default teacher's card with graft's recipe ([`Hyperparameters`]'s
/// defaults), seed 42, into `graft-run` in the working directory: set at least `out`.
impl Default for TrainOptions {
    fn default() -> TrainOptions {
        TrainOptions {
            strategy: Strategy::Deep,
            strategy_reason: None,
            augmentation_choice: None,
            unfreeze: None,
            unfreeze_from: None,
            head: HeadKind::Linear,
            hyperparameters: Hyperparameters::default(),
            seed: 42,
            image_size: None,
            cache_dir: crate::fsutil::default_cache_dir(),
            out: PathBuf::from("graft-run"),
            resume: false,
            stop_after: None,
            cache_batch_size: 32,
            fused_plan: true,
            data: String::new(),
            pooled_validation: false,
            interrupt: None,
        }
    }
}

/// What a finished (or interrupted) run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub config: RunConfig,
    pub history: Vec<EpochMetrics>,
    pub skipped: Vec<Skipped>,
    pub cache_hits: usize,
    pub cache_misses: usize,
    pub teacher_forwards: usize,
    pub seconds: f64,
    /// False when `stop_after` ended the run early.
    pub finished: bool,
    /// The validation scores when they are not the student's on the validation set: a pooled
    /// linear probe's out-of-fold predictions over every image it was fitted to.
    pub validation_evaluation: Option<Evaluation>,
}

impl TrainOutcome {
    fn new(
        config: RunConfig,
        history: Vec<EpochMetrics>,
        inputs: Inputs,
        started: Instant,
        finished: bool,
        validation_evaluation: Option<Evaluation>,
    ) -> TrainOutcome {
        TrainOutcome {
            config,
            history,
            skipped: inputs.skipped,
            cache_hits: inputs.cache_hits,
            cache_misses: inputs.cache_misses,
            teacher_forwards: inputs.teacher_forwards,
            seconds: started.elapsed().as_secs_f64(),
            finished,
            validation_evaluation,
        }
    }
}

/// The preprocessing at an optional input size, keeping the card's resize-to-crop ratio.
///
/// # Errors
/// A size outside [`crate::models::zoo::MIN_INPUT_SIZE`]..=[`crate::models::zoo::MAX_INPUT_SIZE`].
pub fn preprocessing_at(card: &Preprocessing, size: Option<usize>) -> Result<Preprocessing> {
    let preprocessing = match size {
        None => card.clone(),
        Some(size) => Preprocessing {
            input_size: size,
            resize: (size as f64 * card.resize as f64 / card.input_size as f64).round() as usize,
            ..card.clone()
        },
    };
    preprocessing.check().map_err(|reason| GraftError::Invalid(format!("cannot train at {reason}")))?;
    Ok(preprocessing)
}

/// One training example as the trainable part sees it.
enum Example {
    Cached(Entry),
    Image(Item),
}

impl Example {
    /// The cached entry; for an image, an error that says what needed the entry (`what`).
    fn cached(&self, what: &str) -> Result<&Entry> {
        match self {
            Example::Cached(entry) => Ok(entry),
            Example::Image(item) => Err(GraftError::Invalid(format!(
                "{what} needs cached entries, and `{}` is an image to decode",
                item.source.name()
            ))),
        }
    }
}

/// A training image's examples (its cached views, or the image itself) and its label.
type TrainExample = (Vec<Example>, usize);

/// The examples the trainable part sees, and what could not be read.
struct Inputs {
    train: Vec<TrainExample>,
    validation: Vec<(Example, usize)>,
    skipped: Vec<Skipped>,
    cache_hits: usize,
    cache_misses: usize,
    teacher_forwards: usize,
}

/// What a checkpoint must agree on with the run that resumes it: everything that changes the
/// numbers of the epochs already done. The number of epochs and the patience may change (a run
/// can be resumed to train longer).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct RunIdentity {
    teacher_weights_sha256: String,
    strategy: Strategy,
    cut: usize,
    train_images: usize,
    validation_images: usize,
    seed: u64,
    classes: Vec<String>,
    /// The hyper-parameters with `epochs` and `patience` cleared.
    hyperparameters: Hyperparameters,
}

impl RunIdentity {
    /// The fields that differ from `other`, each as `name: ours vs theirs`.
    fn differences(&self, other: &RunIdentity) -> Vec<String> {
        match (serde_json::to_value(self), serde_json::to_value(other)) {
            (Ok(ours), Ok(theirs)) => super::checkpoint::differences(&ours, &theirs),
            _ => vec!["the run's settings".to_owned()],
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CheckpointState {
    run: RunIdentity,
    epochs_done: usize,
    steps_done: usize,
    history: Vec<EpochMetrics>,
    best_accuracy: f64,
    best_epoch: usize,
}

/// The best student so far, in each checkpoint folder (see [`super::checkpoint`]).
const BEST_FILE: &str = "best.bpk";
/// The refit's own checkpoints, inside the run directory (see [`refit_on_every_image`]).
const REFIT_DIR: &str = "refit";

/// Whether an epoch's `(validation accuracy, validation loss)` beats the best so far: a higher
/// accuracy, or the same at a lower loss (on the small validation sets graft is made for, accuracy
/// often ties over several epochs, and the first of them is rarely the best trained).
fn improves((accuracy, loss): (f64, f64), (best_accuracy, best_loss): (f64, f64)) -> bool {
    accuracy > best_accuracy || (accuracy == best_accuracy && loss < best_loss)
}

/// The `k`-th of the `views` cached versions of a training image. The first is the plain view
/// (resize and centre crop, as evaluation sees it), the others augmented: with few cached views,
/// all-augmented training never sees the images the way evaluation does (measured in
/// docs/BENCHMARKS.md). Each epoch draws one of the cached views per image at random.
fn cached_view(k: usize, augmented: bool) -> View {
    if augmented && k > 0 { View::Augmented(k) } else { View::Eval }
}

/// Trains a student of `teacher` on `train`, validating on `validation`, and saves the run
/// (weights, `graft.json`, `metrics.jsonl`; the report is [`crate::report::write_run`]'s). With
/// [`Refit::On`] (resolved from `auto` as [`Refit`] says) the student is then trained again on
/// every image for as many epochs, and the held-out run's scores are its estimate.
pub fn train(
    teacher: &Teacher,
    train: &Dataset,
    validation: &Dataset,
    options: &TrainOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<TrainOutcome> {
    let _lock = lock_run_folder(&options.out)?;
    // On a thread of its own with a known stack: a network's modules are large values, and in
    // debug builds every temporary copy of one takes its own slot, so a training session's
    // frames come to about 2 MiB there, all of a test thread's or a small caller thread's stack.
    on_training_thread(|| train_on_this_thread(teacher, train, validation, options, device, reporter))
}

/// The lock file inside a run folder, held while a run writes the folder.
pub const RUN_LOCK_FILE: &str = ".graft.lock";

/// Takes the run folder `out` for this process (creating it), or says that another graft run is
/// writing it: two runs into one folder would overwrite each other's checkpoints.
///
/// # Errors
/// A folder that cannot be created, or one in use.
pub fn lock_run_folder(out: &Path) -> Result<crate::fsutil::Lock> {
    std::fs::create_dir_all(out).map_err(|source| GraftError::Io { path: out.to_owned(), source })?;
    let path = out.join(RUN_LOCK_FILE);
    crate::fsutil::Lock::try_take(&path)?.ok_or_else(|| {
        GraftError::Invalid(format!(
            "`{}` is in use by another graft run (it holds `{}`)\nhint: wait for that run to finish, or give this one another --out",
            out.display(),
            path.display()
        ))
    })
}

/// Runs `work` on a thread of its own with [`TRAINING_STACK_BYTES`] of stack (see [`train`]),
/// and returns what it returns (a panic in it resumes here).
pub(crate) fn on_training_thread<T: Send>(work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("graft-train".into())
            .stack_size(TRAINING_STACK_BYTES)
            .spawn_scoped(scope, work)
            .map_err(|error| GraftError::Invalid(format!("cannot start the training thread: {error}")))?;
        worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The stack of [`train`]'s thread (reserved address space; only what is used is touched).
const TRAINING_STACK_BYTES: usize = 64 << 20;

fn train_on_this_thread(
    teacher: &Teacher,
    train: &Dataset,
    validation: &Dataset,
    options: &TrainOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<TrainOutcome> {
    let started = Instant::now();
    // Two calls, not nested: each holds a whole training session in its frame.
    let (mut outcome, refit) = train_held_out(teacher, train, validation, options, device, reporter)?;
    if let Some(refit) = refit {
        let every = Dataset {
            classes: train.classes.clone(),
            items: train.items.iter().chain(&validation.items).cloned().collect(),
        };
        outcome.finished = refit_on_every_image(teacher, &every, &refit, &mut outcome.config, device, reporter)?;
        outcome.seconds = started.elapsed().as_secs_f64();
    }
    Ok(outcome)
}

/// What a refit after the held-out run needs (see [`refit_on_every_image`]).
struct RefitPlan {
    plan: FreezePlan,
    preprocessing: Preprocessing,
    /// The held-out run's options, resolved, `stop_after` less the epochs it ran.
    options: TrainOptions,
    /// Epochs the refit trains: as many as the held-out run did (to its best epoch where early
    /// stopping ended it).
    epochs: usize,
}

/// The run on the training images, validated on the held-out ones; saves the student unless a
/// refit follows (then returned with the held-out student's evaluation as the estimate).
#[inline(never)]
fn train_held_out(
    teacher: &Teacher,
    train: &Dataset,
    validation: &Dataset,
    options: &TrainOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(TrainOutcome, Option<RefitPlan>)> {
    let started = Instant::now();
    options.hyperparameters.check()?;
    train.check_trainable("the training set")?;
    if validation.is_empty() {
        return Err(GraftError::Invalid("the validation set is empty; give more images or a validation folder".into()));
    }
    let plan =
        FreezePlan::new(options.strategy, teacher.block_names(), options.unfreeze, options.unfreeze_from.as_deref())?;
    let preprocessing = preprocessing_at(&teacher.card.preprocessing, options.image_size)?;
    let inputs = prepare_inputs(teacher, train, validation, &plan, &preprocessing, options, device, reporter)?;
    let head_fit = resolve_head_fit(options, &plan, inputs.train.len())?;
    let head_init = resolve_head_init(options, &plan)?;
    let batch_norm = match options.hyperparameters.batch_norm {
        BatchNormMode::Auto if options.strategy == Strategy::Scratch => BatchNormMode::Batch,
        BatchNormMode::Auto => BatchNormMode::Stored,
        mode => mode,
    };
    let refit = resolve_refit(options, head_fit)?;
    let options = &TrainOptions {
        hyperparameters: Hyperparameters { head_fit, head_init, batch_norm, refit, ..options.hyperparameters.clone() },
        ..options.clone()
    };
    let identity = RunIdentity {
        teacher_weights_sha256: teacher.weights_sha256.clone(),
        strategy: options.strategy,
        cut: plan.cut,
        train_images: inputs.train.len(),
        validation_images: inputs.validation.len(),
        seed: options.seed,
        classes: train.classes.clone(),
        // What only decides when the run stops, or what follows it, may change on a resume.
        hyperparameters: Hyperparameters {
            epochs: 0,
            patience: None,
            refit: Refit::Off,
            ..options.hyperparameters.clone()
        },
    };
    if head_fit == HeadFit::Probe {
        return Ok((
            fit_probe(teacher, identity, options, &plan, preprocessing, inputs, device, reporter, started)?,
            None,
        ));
    }
    // Boxed: a network's modules are large values, and debug builds give every temporary its own
    // stack slot (see `train`'s thread).
    let initial_head = match head_init {
        HeadInit::Probe => Some(Box::new(probe_head(teacher, train, &preprocessing, options, device, reporter)?)),
        _ => None,
    };
    let (mut session, mut state) = Session::new(teacher, &plan, options, identity, &inputs, device, reporter)?;
    if options.hyperparameters.batch_norm == BatchNormMode::Stored {
        freeze_batch_norm_statistics(&mut session.student);
    }
    if let (Some(start), 0) = (&initial_head, state.epochs_done) {
        let (head, _) = start.as_ref();
        // A fresh run (a resumed one has its checkpoint's head): start from the probe.
        session.student.head = head.clone();
    }
    let context = EpochContext {
        plan: &plan,
        preprocessing: &preprocessing,
        options,
        inputs: &inputs,
        device,
        refit_epochs: None,
    };
    let epochs_before = state.epochs_done;
    let finished = session.run_epochs(&mut state, &context, reporter)?;

    // A refit to follow trains the whole schedule (up to the best epoch where early stopping ended
    // this run) and keeps its last epoch: this run then stands for it at that same epoch, its
    // student and scores that epoch's. (A best epoch picked on a few held-out images is noise,
    // measured in docs/QUALITY.md, and its score an optimistic estimate.)
    let refit_epochs = (refit == Refit::On && finished && state.best_epoch > 0).then_some(
        if state.epochs_done < options.hyperparameters.epochs { state.best_epoch } else { state.epochs_done },
    );
    let keep_last = refit_epochs == Some(state.epochs_done);
    if let Some(epoch) = refit_epochs {
        state.best_epoch = epoch;
    }
    // The best epoch's weights become the student.
    if let (true, false, Some(current)) = (state.best_epoch > 0, keep_last, session.checkpoints.current()) {
        let path = current.join(BEST_FILE);
        session.student = session.student.try_load_record(read_record(&path)?).map_err(|error| {
            GraftError::Checkpoint { path, reason: format!("it does not fit this run's student ({error:?})") }
        })?;
    }
    let mut config = run_config(
        teacher,
        options,
        &plan,
        preprocessing.clone(),
        &state,
        &inputs,
        count_trainable(&session.student),
        started.elapsed().as_secs_f64(),
    );
    if let Some((_, fitted)) = initial_head.as_deref() {
        config.header.metrics["head_init_probe"] = serde_json::json!({"l2": fitted.l2, "iterations": fitted.iterations, "cross_validation": fitted.cross_validation});
    }
    if !finished {
        return Ok((TrainOutcome::new(config, state.history, inputs, started, false, None), None));
    }
    if let Some(epochs) = refit_epochs {
        // The held-out student's scores on its validation images are the estimate; the refitted
        // student has trained on them.
        let estimate = evaluate_held_out(&session.student, &config, validation, options, device, reporter)?;
        // `stop_after` counts the epochs of both runs.
        let stop_after = options.stop_after.map(|limit| limit.saturating_sub(state.epochs_done - epochs_before));
        let refit = RefitPlan { plan, preprocessing, options: TrainOptions { stop_after, ..options.clone() }, epochs };
        return Ok((TrainOutcome::new(config, state.history, inputs, started, true, Some(estimate)), Some(refit)));
    }
    save_run(&options.out, &session.student, &config)?;
    Ok((TrainOutcome::new(config, state.history, inputs, started, true, None), None))
}

/// The held-out student's evaluation on its validation images (the confusion matrix of the
/// report). Out of line, as a module-sized value in the trainer's frame would be (see
/// [`freeze_batch_norm_statistics`]).
#[inline(never)]
fn evaluate_held_out(
    student: &Student,
    config: &RunConfig,
    validation: &Dataset,
    options: &TrainOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Evaluation> {
    let inference = InferenceOptions {
        batch_size: options.hyperparameters.batch_size,
        cache_dir: options.cache_dir.clone(),
        fused_plan: options.fused_plan,
    };
    let held_out = LoadedStudent { student: student.valid(), config: config.clone(), run: options.out.clone() };
    evaluate_run(&held_out, validation.clone(), &inference, device, reporter)
}

/// Trains the student again, from the start, on `every` image (training and validation
/// together) for `epochs` of the held-out run's schedule, and saves the last epoch's student as
/// the run's, with `config` (which gains `metrics.refit`). Checkpointed
/// in `out/refit/` (a resume continues it). Returns false when `stop_after` ended it early (the
/// run is then not saved).
#[inline(never)]
fn refit_on_every_image(
    teacher: &Teacher,
    every: &Dataset,
    refit: &RefitPlan,
    config: &mut RunConfig,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<bool> {
    let started = Instant::now();
    let RefitPlan { plan, preprocessing, options, epochs } = refit;
    let epochs = *epochs;
    reporter.note(&format!("refitting on all {} images (validation ones included) for {epochs} epochs", every.len()));
    let out = &options.out;
    let options = &TrainOptions { out: options.out.join(REFIT_DIR), ..options.clone() };
    let nothing = Dataset { classes: every.classes.clone(), items: Vec::new() };
    let inputs = prepare_inputs(teacher, every, &nothing, plan, preprocessing, options, device, reporter)?;
    let identity = RunIdentity {
        teacher_weights_sha256: teacher.weights_sha256.clone(),
        strategy: options.strategy,
        cut: plan.cut,
        train_images: inputs.train.len(),
        validation_images: 0,
        seed: options.seed,
        classes: every.classes.clone(),
        hyperparameters: Hyperparameters {
            epochs,
            patience: None,
            refit: Refit::Off,
            ..options.hyperparameters.clone()
        },
    };
    let initial_head = match options.hyperparameters.head_init {
        HeadInit::Probe => Some(Box::new(probe_head(teacher, every, preprocessing, options, device, reporter)?)),
        _ => None,
    };
    let (mut session, mut state) = Session::new(teacher, plan, options, identity, &inputs, device, reporter)?;
    if options.hyperparameters.batch_norm == BatchNormMode::Stored {
        freeze_batch_norm_statistics(&mut session.student);
    }
    if let (Some(start), 0) = (&initial_head, state.epochs_done) {
        session.student.head = start.0.clone();
    }
    let context = EpochContext { plan, preprocessing, options, inputs: &inputs, device, refit_epochs: Some(epochs) };
    if !session.run_epochs(&mut state, &context, reporter)? {
        return Ok(false);
    }
    let seconds = started.elapsed().as_secs_f64();
    config.header.metrics["refit"] =
        serde_json::json!({"images": inputs.train.len(), "epochs": epochs, "seconds": seconds});
    config.header.metrics["seconds"] =
        serde_json::json!(config.header.metrics["seconds"].as_f64().unwrap_or(0.0) + seconds);
    save_run(out, &session.student, config)?;
    Ok(true)
}

/// `epochs` or `probe` for this run; an error when `probe` was asked for where it cannot apply.
fn resolve_head_fit(options: &TrainOptions, plan: &FreezePlan, train_images: usize) -> Result<HeadFit> {
    let hyper = &options.hyperparameters;
    let why_not = if !plan.is_head_only() {
        Some(format!("strategy `{}` trains teacher blocks", options.strategy))
    } else if options.head != HeadKind::Linear {
        Some("the head is not linear".to_owned())
    } else if !hyper.augmentation.is_none() {
        Some("augmentation is on (a probe fits each image's plain view once)".to_owned())
    } else {
        None
    };
    Ok(match (hyper.head_fit, why_not) {
        (HeadFit::Probe, Some(reason)) => {
            return Err(GraftError::Invalid(format!(
                "the linear probe fits a linear head on a frozen teacher; here {reason}"
            )));
        }
        (HeadFit::Probe, None) => HeadFit::Probe,
        (HeadFit::Auto, None) if train_images <= probe::MAX_PROBE_IMAGES => HeadFit::Probe,
        _ => HeadFit::Epochs,
    })
}

/// `on` or `off` for this run (see [`Refit`]); an error when `on` was asked for where a probe
/// fits the head (it fits every image already when graft made the split).
fn resolve_refit(options: &TrainOptions, head_fit: HeadFit) -> Result<Refit> {
    Ok(match (options.hyperparameters.refit, head_fit) {
        (Refit::On, HeadFit::Probe) => {
            return Err(GraftError::Invalid("refit `on` trains by epochs again, but a linear probe fits this head (head fit `epochs` trains it by epochs)".into()));
        }
        (Refit::On, _) => Refit::On,
        (Refit::Auto, HeadFit::Epochs) if options.pooled_validation => Refit::On,
        _ => Refit::Off,
    })
}

/// Puts the student's batch norms on their stored statistics (`--batch-norm stored`). Out of
/// line and on a clone (a module's tensors are shared, so cloning is cheap): in debug builds each
/// move of the network takes a slot of its size in the frame that makes it, and the trainer's
/// frames must fit a 2 MiB thread stack (a test thread's).
#[inline(never)]
fn freeze_batch_norm_statistics(student: &mut Student) {
    student.backbone = student.backbone.clone().freeze_batch_norm_statistics();
}

/// Where the head starts; an error when `probe` was asked for where it cannot apply.
fn resolve_head_init(options: &TrainOptions, plan: &FreezePlan) -> Result<HeadInit> {
    let why_not = if plan.is_head_only() {
        Some("only the head trains (the head fit setting chooses how)".to_owned())
    } else if options.strategy == Strategy::Scratch {
        Some("the teacher's weights are random (`scratch`)".to_owned())
    } else if options.head != HeadKind::Linear {
        Some("the head is not linear".to_owned())
    } else {
        None
    };
    match (options.hyperparameters.head_init, why_not) {
        (HeadInit::Probe, Some(reason)) => Err(GraftError::Invalid(format!(
            "a head started from a linear probe is for a linear head on trained teacher blocks; here {reason}"
        ))),
        (head_init, _) => Ok(head_init),
    }
}

/// The head a fine-tuning run starts from (LP-FT): a linear probe fitted on the pooled features
/// of the whole frozen teacher (each training image's plain view, through the feature cache at
/// the last block), its penalty chosen by cross-validation.
fn probe_head(
    teacher: &Teacher,
    train: &Dataset,
    preprocessing: &Preprocessing,
    options: &TrainOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(Head, probe::Probe)> {
    let spec = CacheSpec::pooled(teacher, preprocessing, options.seed, options.fused_plan);
    let stage = "caching pooled features for the head's start";
    let (features, labels, dim) = pooled_features(
        teacher,
        &spec,
        &options.cache_dir,
        &train.items,
        View::Eval,
        options.cache_batch_size,
        device,
        reporter,
        stage,
    )?;
    let classes = train.classes.len();
    let fitted = probe::fit(probe::Samples { features: &features, dim, labels: &labels, classes }, options.seed);
    reporter.note(&match &fitted.cross_validation {
        Some(cv) => format!(
            "head starts from a linear probe on the frozen teacher (L2 {}, cross-validated accuracy {:.1}% ± {:.1}%)",
            fitted.l2,
            cv.accuracy * 100.0,
            cv.standard_error * 100.0
        ),
        None => format!("head starts from a linear probe on the frozen teacher (L2 {})", fitted.l2),
    });
    let training_device = device.clone().autodiff();
    Ok((linear_head(&fitted, dim, classes, &training_device), fitted))
}

/// A probe's weights as a linear head on `device`.
fn linear_head(fitted: &probe::Probe, dim: usize, classes: usize, device: &Device) -> Head {
    Head::Linear(Linear {
        weight: Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(fitted.weight.clone(), [dim, classes]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(fitted.bias.clone(), [classes]), device))),
    })
}

/// The `deep` head fitted as a linear probe on the cached features (see [`probe`]): no epochs,
/// no checkpoints (a fit takes seconds). `metrics.jsonl` holds one line, as for a one-epoch run.
#[allow(clippy::too_many_arguments)]
fn fit_probe(
    teacher: &Teacher,
    identity: RunIdentity,
    options: &TrainOptions,
    plan: &FreezePlan,
    preprocessing: Preprocessing,
    inputs: Inputs,
    device: &Device,
    reporter: &dyn Reporter,
    started: Instant,
) -> Result<TrainOutcome> {
    let classes = identity.classes.clone();
    let samples_of = |examples: Vec<&Example>, labels: Vec<usize>| -> Result<(Vec<f32>, usize, Vec<usize>)> {
        let entries =
            examples.into_iter().map(|example| example.cached("the linear probe")).collect::<Result<Vec<&Entry>>>()?;
        let dim = entries.first().map_or(0, |entry| entry.shape.iter().product());
        Ok((read_values(&entries)?, dim, labels))
    };
    let (train_features, dim, train_labels) = samples_of(
        inputs.train.iter().map(|(views, _)| &views[0]).collect(),
        inputs.train.iter().map(|(_, label)| *label).collect(),
    )?;
    let (validation_features, _, validation_labels) = samples_of(
        inputs.validation.iter().map(|(example, _)| example).collect(),
        inputs.validation.iter().map(|(_, label)| *label).collect(),
    )?;
    let train_samples =
        probe::Samples { features: &train_features, dim, labels: &train_labels, classes: classes.len() };
    let validation_samples =
        probe::Samples { features: &validation_features, dim, labels: &validation_labels, classes: classes.len() };
    let pooled_features = [train_features.as_slice(), validation_features.as_slice()].concat();
    let pooled_labels = [train_labels.as_slice(), validation_labels.as_slice()].concat();
    let pooled_samples = probe::Samples { features: &pooled_features, labels: &pooled_labels, ..train_samples };
    let fit_started = Instant::now();
    let mut pooled = options.pooled_validation && !validation_samples.is_empty();
    let mut fitted = if pooled {
        reporter.note(&format!(
            "fitting the head as a linear probe on all {} images (the {} split off for validation included; L-BFGS, L2 and the score by cross-validation)",
            pooled_samples.len(),
            validation_samples.len()
        ));
        probe::fit(pooled_samples, options.seed)
    } else {
        reporter.note(&format!(
            "fitting the head as a linear probe on {} cached feature vectors (L-BFGS, L2 by cross-validation)",
            train_samples.len()
        ));
        probe::fit(train_samples, options.seed)
    };
    if pooled && fitted.cross_validation.is_none() {
        // Too few images in a class to cross-validate: keep the hold-out to score on.
        pooled = false;
        fitted = probe::fit(train_samples, options.seed);
    }
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    reporter.note(&match &fitted.cross_validation {
        Some(cv) => format!(
            "L2 {} chosen by {}-fold cross-validation: accuracy {:.1}% ± {:.1}% (standard error over folds); fitted in {fit_seconds:.2}s",
            fitted.l2,
            cv.folds,
            cv.accuracy * 100.0,
            cv.standard_error * 100.0
        ),
        None => format!("fewer than two images in a class: no cross-validation, L2 {}; fitted in {fit_seconds:.2}s", fitted.l2),
    });
    let (fitted_samples, cross_validation) = match (&fitted.cross_validation, pooled) {
        (Some(cv), true) => (pooled_samples, Some(cv)),
        _ => (train_samples, None),
    };
    let (train_accuracy, train_loss) = probe::evaluate(&fitted.weight, &fitted.bias, fitted_samples);
    let (validation_accuracy, validation_loss) = match cross_validation {
        Some(cv) => (cv.accuracy, cv.log_loss),
        None => probe::evaluate(&fitted.weight, &fitted.bias, validation_samples),
    };
    let validation_evaluation =
        cross_validation.map(|cv| super::metrics::evaluate(&cv.out_of_fold, &pooled_labels, &classes));
    if !validation_loss.is_finite() || !train_loss.is_finite() {
        return Err(GraftError::Invalid(
            "the linear probe's loss is not finite: the cached features hold NaN or infinite values".into(),
        ));
    }
    let metrics = EpochMetrics {
        epoch: 1,
        train_loss,
        train_accuracy,
        validation_loss,
        validation_accuracy,
        learning_rate: 0.0,
        images_per_second: train_samples.len() as f64 / fit_seconds.max(1e-9),
        seconds: fit_seconds,
    };
    reporter.epoch(&metrics);
    // On the autodiff device as the trainer's students are, so saving and loading are the same.
    let student_device = device.clone().autodiff();
    let mut student =
        Student::new(teacher.backbone.clone(), plan, HeadKind::Linear, classes.len(), options.seed, &student_device)?;
    student.head = linear_head(&fitted, dim, classes.len(), &student_device);
    let head_parameters = fitted.weight.len() + fitted.bias.len();
    let state = CheckpointState {
        run: identity,
        epochs_done: 1,
        steps_done: 0,
        history: vec![metrics],
        best_accuracy: validation_accuracy,
        best_epoch: 1,
    };
    write_metrics(&options.out, &state.history)?;
    let mut config = run_config(
        teacher,
        options,
        plan,
        preprocessing,
        &state,
        &inputs,
        head_parameters,
        started.elapsed().as_secs_f64(),
    );
    config.header.metrics["validation"] = serde_json::json!(match cross_validation {
        Some(cv) => format!(
            "{}-fold cross-validation over all {} images (validation pooled with training)",
            cv.folds,
            pooled_samples.len()
        ),
        None => format!("hold-out of {} images", validation_samples.len()),
    });
    config.header.metrics["probe"] = serde_json::json!({
        "l2": fitted.l2,
        "iterations": fitted.iterations,
        "cross_validation": fitted.cross_validation,
    });
    save_run(&options.out, &student, &config)?;
    Ok(TrainOutcome::new(config, state.history, inputs, started, true, validation_evaluation))
}

/// The inputs of the trainable part: cached teacher outputs at the cut (each training image's
/// views), or the images themselves when nothing is frozen. Unreadable images are skipped and
/// reported; fewer than two classes left is an error.
#[allow(clippy::too_many_arguments)]
fn prepare_inputs(
    teacher: &Teacher,
    train: &Dataset,
    validation: &Dataset,
    plan: &FreezePlan,
    preprocessing: &Preprocessing,
    options: &TrainOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Inputs> {
    let hyper = &options.hyperparameters;
    let (inputs, duplicates) = if plan.cut > 0 {
        let spec = CacheSpec {
            preprocessing: preprocessing.clone(),
            augmentation: hyper.augmentation.clone(),
            cut: plan.cut,
            seed: options.seed,
            fused_plan: options.fused_plan,
        };
        let augmented = !hyper.augmentation.is_none();
        let views = if augmented { hyper.augmented_views.max(1) } else { 1 };
        let cache = FeatureCache::new(&options.cache_dir, teacher, &spec, device)?;
        let requests: Vec<_> = train
            .items
            .iter()
            .flat_map(|item| (0..views).map(move |k| (item.source.clone(), cached_view(k, augmented))))
            .collect();
        let (entries, mut skipped) = cache.prepare(
            teacher,
            &spec,
            &requests,
            options.cache_batch_size,
            device,
            reporter,
            "caching train features",
        )?;
        // The cache hashed every image: the duplicate check reuses those hashes.
        let train_hashes: Vec<(String, [u8; 32])> = train
            .items
            .iter()
            .zip(entries.chunks(views))
            .filter_map(|(item, item_entries)| {
                item_entries[0].as_ref().map(|entry| (item.source.name(), entry.content))
            })
            .collect();
        // An image counts only with all of its views.
        let train_examples = train
            .items
            .iter()
            .zip(entries.chunks(views))
            .filter_map(|(item, item_entries)| {
                let item_entries: Option<Vec<Example>> =
                    item_entries.iter().map(|entry| entry.clone().map(Example::Cached)).collect();
                item_entries.map(|examples| (examples, item.label))
            })
            .collect();
        let requests: Vec<_> = validation.items.iter().map(|item| (item.source.clone(), View::Eval)).collect();
        let (entries, bad) = cache.prepare(
            teacher,
            &spec,
            &requests,
            options.cache_batch_size,
            device,
            reporter,
            "caching validation features",
        )?;
        skipped.extend(bad);
        let validation_hashes: Vec<(String, [u8; 32])> = validation
            .items
            .iter()
            .zip(&entries)
            .filter_map(|(item, entry)| entry.as_ref().map(|entry| (item.source.name(), entry.content)))
            .collect();
        let validation_examples = validation
            .items
            .iter()
            .zip(entries)
            .filter_map(|(item, entry)| entry.map(|entry| (Example::Cached(entry), item.label)))
            .collect();
        let inputs = Inputs {
            train: train_examples,
            validation: validation_examples,
            skipped,
            cache_hits: cache.stats.hits.load(Ordering::Relaxed),
            cache_misses: cache.stats.misses.load(Ordering::Relaxed),
            teacher_forwards: cache.stats.teacher_forwards.load(Ordering::Relaxed),
        };
        (inputs, duplicates_among(train_hashes, validation_hashes))
    } else {
        let mut skipped = Vec::new();
        // Decoded (in parallel, at the size training decodes them) only to find the unreadable.
        let side = preprocessing.resize as u32;
        let mut readable = |dataset: &Dataset| -> Vec<Item> {
            let errors: Vec<Option<GraftError>> =
                dataset.items.par_iter().map(|item| item.source.load_at_least(side).err()).collect();
            let mut kept = Vec::with_capacity(dataset.items.len());
            for (item, error) in dataset.items.iter().zip(errors) {
                match error {
                    None => kept.push(item.clone()),
                    Some(error) => skipped.push(Skipped { name: item.source.name(), reason: error.to_string() }),
                }
            }
            kept
        };
        let train_items = readable(train);
        let validation_items = readable(validation);
        let inputs = Inputs {
            train: train_items.into_iter().map(|item| (vec![Example::Image(item.clone())], item.label)).collect(),
            validation: validation_items.into_iter().map(|item| (Example::Image(item.clone()), item.label)).collect(),
            skipped,
            cache_hits: 0,
            cache_misses: 0,
            teacher_forwards: 0,
        };
        (inputs, duplicates_across(train, validation))
    };
    for bad in &inputs.skipped {
        reporter.note(&format!("skipped {}: {}", bad.name, bad.reason));
    }
    let empty = train.empty_classes();
    if !empty.is_empty() {
        reporter.note(&format!(
            "no training images for class {}: the student will never learn to predict it",
            empty.join(", ")
        ));
    }
    if let Some((first, original)) = duplicates.first() {
        reporter.note(&format!(
            "{} of {} validation images are byte-identical to training images (e.g. `{first}` = `{original}`): validation accuracy will read higher than on new images",
            duplicates.len(),
            validation.len()
        ));
    }
    let mut classes_seen: Vec<usize> = inputs.train.iter().map(|(_, label)| *label).collect();
    classes_seen.sort_unstable();
    classes_seen.dedup();
    if inputs.train.len() < 2 || classes_seen.len() < 2 {
        return Err(GraftError::Invalid(format!(
            "after skipping {} unreadable images, fewer than two classes of training images are left",
            inputs.skipped.len()
        )));
    }
    Ok(inputs)
}

/// The student and what trains it: optimizer, learning-rate schedule, loss, checkpoint folder.
struct Session {
    student: Student,
    optimizer: ModuleOptimizer,
    loss_function: CrossEntropyLoss,
    class_weights: Option<Vec<f32>>,
    /// Training batches are split into this many shards (see [`shards`]).
    shard_count: usize,
    schedule: Schedule,
    /// The run's checkpoint folder (`out/checkpoint`) and its newest complete checkpoint.
    checkpoints: Checkpoints,
    training_device: Device,
}

/// The head's learning rate at each step, and the unfrozen teacher blocks' at a fraction of it.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    peak: f64,
    backbone_factor: f64,
    warmup_steps: usize,
    total_steps: usize,
}

impl Schedule {
    fn at(&self, factor: f64, step: usize) -> WarmupCosine {
        WarmupCosine { peak: self.peak * factor, warmup_steps: self.warmup_steps, total_steps: self.total_steps, step }
    }
}

impl Session {
    /// A seeded student on the autodiff device, its optimizer and loss; with `options.resume`
    /// and a checkpoint of the same run, the checkpoint's student, optimizer and state.
    fn new(
        teacher: &Teacher,
        plan: &FreezePlan,
        options: &TrainOptions,
        identity: RunIdentity,
        inputs: &Inputs,
        device: &Device,
        reporter: &dyn Reporter,
    ) -> Result<(Session, CheckpointState)> {
        let hyper = &options.hyperparameters;
        let training_device = device.clone().autodiff();
        training_device.seed(options.seed);
        let backbone = match options.strategy {
            Strategy::Scratch => Backbone::new(teacher.card.architecture, 1000, device),
            _ => teacher.backbone.clone(),
        };
        let mut student =
            Student::new(backbone, plan, options.head, identity.classes.len(), options.seed, &training_device)?;
        let steps_per_epoch = identity.train_images.div_ceil(hyper.batch_size.max(1));
        let total_steps = steps_per_epoch * hyper.epochs;
        let schedule = Schedule {
            peak: hyper.learning_rate,
            backbone_factor: if options.strategy == Strategy::Scratch {
                1.0
            } else {
                hyper.backbone_learning_rate_factor
            },
            warmup_steps: (steps_per_epoch * hyper.warmup_epochs).min(total_steps / 2),
            total_steps,
        };
        let mut optimizer: ModuleOptimizer = match hyper.optimizer {
            Optimizer::Sgd => SgdConfig::new()
                .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(hyper.weight_decay as f32)))
                .with_momentum(Some(MomentumConfig::new().with_momentum(hyper.momentum).with_nesterov(true)))
                .init(),
            Optimizer::AdamW => adamw(hyper.weight_decay).init(),
        };
        let class_weights = hyper.class_weights.then(|| {
            let mut counts = vec![0usize; identity.classes.len()];
            for (_, label) in &inputs.train {
                counts[*label] += 1;
            }
            let total: usize = counts.iter().sum();
            counts
                .iter()
                .map(|c| if *c == 0 { 0.0 } else { total as f32 / (counts.len() * c) as f32 })
                .collect::<Vec<f32>>()
        });
        let loss_function = CrossEntropyLossConfig::new()
            .with_smoothing((hyper.label_smoothing > 0.0).then_some(hyper.label_smoothing))
            .with_weights(class_weights.clone())
            .init(&training_device);
        // Batches split across threads (see `shards`) when teacher blocks train. Not for a head
        // on pooled features (a step too small to gain), nor when the training forward draws
        // random numbers (dropout): burn's generator is shared, so threads would draw in
        // varying order.
        let shard_count = if plan.is_head_only() || student.draws_random() { 1 } else { hyper.shards.max(1) };
        let checkpoints = Checkpoints::open(options.out.join(CHECKPOINT_DIR), options.resume)?;
        let state = if let Some(current) = checkpoints.current() {
            let saved: CheckpointState = checkpoints.state()?.expect("a current checkpoint has a state");
            let differences = saved.run.differences(&identity);
            if !differences.is_empty() {
                return Err(GraftError::CheckpointMismatch { path: checkpoints.root().to_owned(), differences });
            }
            let path = current.join("student.bpk");
            student = student.try_load_record(read_record(&path)?).map_err(|error| GraftError::Checkpoint {
                path,
                reason: format!("it does not fit this run's student ({error:?})"),
            })?;
            optimizer = read_optimizer(&current.join("optimizer.bpk"), optimizer)?;
            reporter.note(&format!("resuming after epoch {}", saved.epochs_done));
            saved
        } else {
            CheckpointState {
                run: identity,
                epochs_done: 0,
                steps_done: 0,
                history: Vec::new(),
                best_accuracy: -1.0,
                best_epoch: 0,
            }
        };
        let session = Session {
            student,
            optimizer,
            loss_function,
            class_weights,
            shard_count,
            schedule,
            checkpoints,
            training_device,
        };
        Ok((session, state))
    }

    /// Trains epochs until the last, early stopping, or `stop_after`; checkpoints after each.
    /// Returns whether the run reached its end (false when `stop_after` interrupted it).
    fn run_epochs(
        &mut self,
        state: &mut CheckpointState,
        context: &EpochContext<'_>,
        reporter: &dyn Reporter,
    ) -> Result<bool> {
        let hyper = &context.options.hyperparameters;
        // After a resume the parameters carry the checkpoint's ids: take the head's ids only now.
        let head_group = ParamGroup::ids_from_module(self.student.head.clone());
        let mut scheduler = ModuleLrScheduler::new(self.schedule.at(self.schedule.backbone_factor, state.steps_done))
            .with_group(head_group, self.schedule.at(1.0, state.steps_done));
        let mut epochs_this_call = 0;
        let mut since_best = state.epochs_done.saturating_sub(state.best_epoch);
        while state.epochs_done < context.refit_epochs.unwrap_or(hyper.epochs) {
            if let Some(patience) = hyper.patience.filter(|_| context.refit_epochs.is_none())
                && state.epochs_done > 0
                && since_best >= patience
            {
                reporter.note(&format!(
                    "early stop: no better validation accuracy (nor the same at a lower loss) for {patience} epochs"
                ));
                break;
            }
            if context.options.stop_after.is_some_and(|limit| epochs_this_call >= limit) {
                return Ok(false);
            }
            let epoch_started = Instant::now();
            let (train_loss, train_accuracy, learning_rate) =
                self.train_epoch(state, &mut scheduler, context, reporter)?;
            let train_seconds = epoch_started.elapsed().as_secs_f64();
            if let Some(last) = context.refit_epochs {
                state.epochs_done += 1;
                epochs_this_call += 1;
                reporter.note(&format!(
                    "refit epoch {}/{last}: training loss {train_loss:.4}, accuracy {:.1}%, {:.1} images/s",
                    state.epochs_done,
                    train_accuracy * 100.0,
                    context.inputs.train.len() as f64 / train_seconds.max(1e-9)
                ));
                self.save_checkpoint(state, false)?;
                continue;
            }
            let (validation_loss, validation_accuracy) = validate(&self.student, context)?;
            if !validation_loss.is_finite() {
                return Err(diverged("validation loss", validation_loss, state, context, self.checkpoints.current()));
            }
            let metrics = EpochMetrics {
                epoch: state.epochs_done + 1,
                train_loss,
                train_accuracy,
                validation_loss,
                validation_accuracy,
                learning_rate,
                images_per_second: context.inputs.train.len() as f64 / train_seconds.max(1e-9),
                seconds: epoch_started.elapsed().as_secs_f64(),
            };
            reporter.epoch(&metrics);
            let best_loss = state
                .best_epoch
                .checked_sub(1)
                .and_then(|index| state.history.get(index))
                .map_or(f64::INFINITY, |best| best.validation_loss);
            let better = improves((validation_accuracy, validation_loss), (state.best_accuracy, best_loss));
            state.history.push(metrics);
            write_metrics(&context.options.out, &state.history)?;
            state.epochs_done += 1;
            epochs_this_call += 1;
            if better {
                state.best_accuracy = validation_accuracy;
                state.best_epoch = state.epochs_done;
                since_best = 0;
            } else {
                since_best += 1;
            }
            self.save_checkpoint(state, better)?;
        }
        Ok(true)
    }

    /// One pass over the training examples in the epoch's order (through [`run_epoch`]);
    /// returns the mean loss, the accuracy and the head's learning rate at the last step.
    fn train_epoch(
        &mut self,
        state: &mut CheckpointState,
        scheduler: &mut ModuleLrScheduler,
        context: &EpochContext<'_>,
        reporter: &dyn Reporter,
    ) -> Result<(f64, f64, f64)> {
        let options = context.options;
        let hyper = &options.hyperparameters;
        let examples = &context.inputs.train;
        let epoch = state.epochs_done;
        let order = epoch_order(examples.len(), options.seed, 0xE90C, epoch);
        let head_only = epoch < hyper.gradual_unfreeze_epochs && !context.plan.is_head_only();
        let label = match context.refit_epochs {
            Some(last) => format!("refit epoch {}/{last}", epoch + 1),
            None => format!("epoch {}/{}", epoch + 1, hyper.epochs),
        };
        let view_of = |index: usize| -> &Example {
            let (views_of_item, _) = &examples[index];
            let view =
                SplitMix64::derive(options.seed, &[0x71E3, epoch as u64, index as u64]).below(views_of_item.len());
            &views_of_item[view]
        };
        let batch_size = hyper.batch_size.max(1);
        let shard_count = self.shard_count;
        // Images (not cached entries) are decoded and augmented for the next batch on another
        // thread while this one trains: one batch ahead, no more (a rendezvous channel).
        let images = examples.iter().any(|(views, _)| views.iter().any(|view| matches!(view, Example::Image(_))));
        let (student, totals, learning_rate) = std::thread::scope(|scope| {
            let (sender, prepared) = std::sync::mpsc::sync_channel::<PreparedViews>(0);
            if images {
                let (order, view_of) = (&order, &view_of);
                scope.spawn(move || {
                    for batch in order.chunks(batch_size) {
                        let batch_examples: Vec<&Example> = batch.iter().map(|index| view_of(*index)).collect();
                        let views = shards::split(&batch_examples, shard_count)
                            .iter()
                            .map(|part| host_views(part, context, epoch, true))
                            .collect::<Result<Vec<_>>>();
                        // The trainer stopped (an error, an interrupt): nothing more to make.
                        if sender.send(views).is_err() {
                            break;
                        }
                    }
                });
            } else {
                drop(sender);
            }
            let mut steps = ImageSteps {
                session: SessionParts {
                    optimizer: &mut self.optimizer,
                    loss_function: &self.loss_function,
                    class_weights: self.class_weights.as_deref(),
                    shard_count,
                    schedule: self.schedule,
                    checkpoints: &self.checkpoints,
                    training_device: &self.training_device,
                },
                scheduler,
                state,
                context,
                view_of: &view_of,
                prepared: images.then_some(&prepared),
                head_only,
                learning_rate: 0.0,
            };
            let (student, totals) = run_epoch(
                &mut steps,
                self.student.clone(),
                &order,
                batch_size,
                options.interrupt.as_ref(),
                &label,
                reporter,
            )?;
            Ok::<_, GraftError>((student, totals, steps.learning_rate))
        })?;
        self.student = student;
        let correct: usize = totals.figures.iter().sum();
        Ok((totals.mean_loss(), correct as f64 / totals.seen.max(1) as f64, learning_rate))
    }

    /// Writes this epoch's checkpoint folder (student, optimizer, state, and the best student so
    /// far: this one when `best`, else the previous checkpoint's, linked), then points `LATEST`
    /// at it and removes the previous one.
    fn save_checkpoint(&mut self, state: &CheckpointState, best: bool) -> Result<()> {
        // burn's `RunningState` (batch norms' running statistics) holds each thread's last
        // update aside until the next update or `valid()`, and a record reads the value without
        // it: sync first, or a run resumed from this checkpoint starts one batch behind (unseen
        // while every epoch validated, which syncs; a refit does not validate).
        drop(self.student.valid());
        let (student, optimizer) = (&self.student, &self.optimizer);
        self.checkpoints.save(state.epochs_done, state, |folder, previous| {
            write_record(&folder.join("student.bpk"), student.clone().into_record())?;
            let best_path = folder.join(BEST_FILE);
            match (previous, best) {
                (_, true) => write_record(&best_path, student.clone().into_record())?,
                (Some(previous), false) if previous.join(BEST_FILE).is_file() => {
                    let from = previous.join(BEST_FILE);
                    if std::fs::hard_link(&from, &best_path).is_err() {
                        std::fs::copy(&from, &best_path)
                            .map_err(|source| GraftError::Io { path: best_path.clone(), source })?;
                    }
                }
                _ => {}
            }
            write_optimizer(&folder.join("optimizer.bpk"), optimizer)
        })
    }
}

/// The error for a loss that stopped being finite; the last complete checkpoint (`current`)
/// stays.
fn diverged(
    what: &'static str,
    value: f64,
    state: &CheckpointState,
    context: &EpochContext<'_>,
    current: Option<&Path>,
) -> GraftError {
    GraftError::Diverged {
        what,
        value,
        epoch: state.epochs_done + 1,
        learning_rate: context.options.hyperparameters.learning_rate,
        kept_epoch: current.map(|_| state.epochs_done),
    }
}

/// One batch's images as [`host_views`] makes them, shard by shard (`None` for a shard whose
/// examples are all cached).
type PreparedViews = Result<Vec<Option<Vec<Vec<f32>>>>>;

/// The parts of a [`Session`] one epoch's steps use (borrowed apart from its student, which
/// the loop carries).
struct SessionParts<'a> {
    optimizer: &'a mut ModuleOptimizer,
    loss_function: &'a CrossEntropyLoss,
    class_weights: Option<&'a [f32]>,
    shard_count: usize,
    schedule: Schedule,
    checkpoints: &'a Checkpoints,
    training_device: &'a Device,
}

/// An image student's epoch as the training loop sees it: each batch's examples (the epoch's
/// view of each, cached entries or images prepared one batch ahead), sharded, stepped with the
/// head's and the unfrozen blocks' rates.
struct ImageSteps<'a, 'b> {
    session: SessionParts<'a>,
    scheduler: &'a mut ModuleLrScheduler,
    state: &'a mut CheckpointState,
    context: &'a EpochContext<'b>,
    view_of: &'a dyn Fn(usize) -> &'b Example,
    /// The images of each batch, made on another thread; `None` when every example is cached.
    prepared: Option<&'a std::sync::mpsc::Receiver<PreparedViews>>,
    /// Only the head trains (the first epochs of `--gradual-unfreeze`).
    head_only: bool,
    /// The head's learning rate at the last step.
    learning_rate: f64,
}

impl Steps for ImageSteps<'_, '_> {
    type Model = Student;
    /// Examples classified correctly.
    type Figures = usize;

    fn step(&mut self, student: &Student, batch: &[usize]) -> Result<Step<usize>> {
        let session = &self.session;
        let examples = &self.context.inputs.train;
        let labels: Vec<i64> = batch.iter().map(|index| examples[*index].1 as i64).collect();
        let batch_examples: Vec<&Example> = batch.iter().map(|index| (self.view_of)(*index)).collect();
        let part_labels = shards::split(&labels, session.shard_count);
        let part_examples = shards::split(&batch_examples, session.shard_count);
        let views = match self.prepared {
            Some(prepared) => prepared
                .recv()
                .map_err(|_| GraftError::Invalid("the thread preparing training images stopped".into()))??,
            None => vec![None; part_examples.len()],
        };
        let parts = part_examples
            .iter()
            .zip(views)
            .zip(part_labels.iter().cloned())
            .map(|((part, views), labels)| {
                let input = match views {
                    Some(views) => image_input(&views, self.context, session.training_device),
                    None => cached_input(part, self.context, session.training_device)?,
                };
                Ok((input, labels))
            })
            .collect::<Result<Vec<_>>>()?;
        let step = shards::step(
            student,
            parts,
            self.context.plan.cut,
            session.loss_function,
            session.class_weights,
            self.head_only,
            session.training_device,
        )?;
        let correct = step
            .logits
            .iter()
            .zip(&part_labels)
            .map(|(logits, labels)| count_correct(logits, labels))
            .sum::<Result<usize>>()?;
        Ok(Step { loss: step.loss, gradients: step.gradients, figures: correct })
    }

    fn apply(&mut self, student: Student, gradients: burn::optim::GradientsParams) -> Student {
        self.learning_rate = self.session.schedule.at(1.0, self.state.steps_done).at(self.state.steps_done);
        let rates = self.scheduler.step();
        let student = self.session.optimizer.step(rates, student, gradients);
        self.state.steps_done += 1;
        student
    }

    fn stopped(&self) -> GraftError {
        self.session.checkpoints.interrupted(self.state.epochs_done)
    }

    fn diverged(&self, loss: f64) -> GraftError {
        diverged("training loss", loss, self.state, self.context, self.session.checkpoints.current())
    }
}

/// What every epoch reads.
struct EpochContext<'a> {
    plan: &'a FreezePlan,
    preprocessing: &'a Preprocessing,
    options: &'a TrainOptions,
    inputs: &'a Inputs,
    device: &'a Device,
    /// A refit ([`refit_on_every_image`]): this many epochs, no validation (there are no
    /// held-out images), no early stop; the last epoch is the student.
    refit_epochs: Option<usize>,
}

/// `graft.json`'s content for the run so far, with the best epoch's metrics.
#[allow(clippy::too_many_arguments)]
fn run_config(
    teacher: &Teacher,
    options: &TrainOptions,
    plan: &FreezePlan,
    preprocessing: Preprocessing,
    state: &CheckpointState,
    inputs: &Inputs,
    trained_parameters: usize,
    seconds: f64,
) -> RunConfig {
    let best = state.history.get(state.best_epoch.saturating_sub(1));
    let metrics = serde_json::json!({
        "best_epoch": state.best_epoch,
        "validation_accuracy": best.map(|m| m.validation_accuracy),
        "validation_loss": best.map(|m| m.validation_loss),
        "train_accuracy": best.map(|m| m.train_accuracy),
        "epochs_run": state.epochs_done,
        "seconds": seconds,
    });
    RunConfig {
        header: RunHeader {
            strategy_reason: options.strategy_reason.clone(),
            metrics,
            ..RunHeader::new(
                crate::modality::Modality::Image,
                teacher.card.name.to_owned(),
                teacher.weights_sha256.clone(),
                options.strategy,
                state.run.classes.clone(),
                options.seed,
                options.data.clone(),
            )
        },
        augmentation_choice: options.augmentation_choice.clone(),
        frozen_blocks: plan.frozen().to_vec(),
        trainable_blocks: plan.trainable().to_vec(),
        preprocessing,
        head: options.head,
        hyperparameters: options.hyperparameters.clone(),
        trained_parameters,
        train_images: inputs.train.len(),
        validation_images: inputs.validation.len(),
    }
}
/// AdamW as PyTorch and the paper define it. burn's default epsilon is 1e-5 where PyTorch's is
/// 1e-8: added to `sqrt(v)`, 1e-5 shrinks every step of a parameter whose gradients are around
/// 1e-5 or smaller, which the pretrained blocks' gradients at a tenth of the head's learning rate
/// often are.
pub(crate) fn adamw(weight_decay: f64) -> AdamWConfig {
    AdamWConfig::new().with_weight_decay(weight_decay as f32).with_epsilon(ADAMW_EPSILON)
}

const ADAMW_EPSILON: f32 = 1e-8;

/// Builds the student's input for a batch of examples on `device`: cached entries as they are,
/// images preprocessed (augmented when `training`).
fn make_input(
    examples: &[&Example],
    context: &EpochContext<'_>,
    epoch: usize,
    training: bool,
    device: &Device,
) -> Result<StudentInput> {
    match host_views(examples, context, epoch, training)? {
        Some(images) => Ok(image_input(&images, context, device)),
        None => cached_input(examples, context, device),
    }
}

/// The student's input from cached entries (every example cached).
fn cached_input(examples: &[&Example], context: &EpochContext<'_>, device: &Device) -> Result<StudentInput> {
    let entries = examples
        .iter()
        .map(|example| example.cached("a batch with cached entries"))
        .collect::<Result<Vec<&Entry>>>()?;
    Ok(if context.plan.is_head_only() {
        StudentInput::Features(batch_from_entries::<2>(&entries, device)?)
    } else {
        StudentInput::Activations(batch_from_entries::<4>(&entries, device)?)
    })
}

/// The student's input from images preprocessed on the host ([`host_views`]).
fn image_input(images: &[Vec<f32>], context: &EpochContext<'_>, device: &Device) -> StudentInput {
    StudentInput::Activations(batch_tensor(images, context.preprocessing.input_size, device))
}

/// A batch's images decoded and preprocessed on the host (augmented when `training`), in
/// parallel, each decoded at the size its view needs; `None` when every example is cached.
/// Needs nothing of the device, so the next batch's can be made while this one trains.
fn host_views(
    examples: &[&Example],
    context: &EpochContext<'_>,
    epoch: usize,
    training: bool,
) -> Result<Option<Vec<Vec<f32>>>> {
    if examples.iter().all(|example| matches!(example, Example::Cached(_))) {
        return Ok(None);
    }
    let preprocessing = context.preprocessing;
    let augmentation = &context.options.hyperparameters.augmentation;
    let items = examples
        .iter()
        .map(|example| match example {
            Example::Image(item) => Ok(item),
            Example::Cached(_) => Err(GraftError::Invalid("a batch mixes cached features and images".into())),
        })
        .collect::<Result<Vec<&Item>>>()?;
    let side = if training { min_decoded_side(preprocessing, augmentation) } else { preprocessing.resize as u32 };
    let images = items
        .par_iter()
        .map(|item| {
            let image = item.source.load_at_least(side)?;
            Ok(if training {
                let mut rng = SplitMix64::derive(
                    context.options.seed,
                    &[0xA116, epoch as u64, crate::rng::fnv1a(&item.source.name())],
                );
                augmented_view(&image, preprocessing, augmentation, &mut rng)
            } else {
                preprocess(&image, preprocessing)
            })
        })
        .collect::<Result<Vec<Vec<f32>>>>()?;
    Ok(Some(images))
}

/// Validation loss (plain cross-entropy) and accuracy, in inference mode.
fn validate(student: &Student, context: &EpochContext<'_>) -> Result<(f64, f64)> {
    let device = context.device;
    let model = student.valid();
    let fused = FusedBackbone::for_device(&model.backbone, device, context.options.fused_plan);
    let loss_function = CrossEntropyLossConfig::new().init(device);
    let examples = &context.inputs.validation;
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    for batch in examples.chunks(context.options.hyperparameters.batch_size.max(1)) {
        let refs: Vec<&Example> = batch.iter().map(|(example, _)| example).collect();
        let labels: Vec<i64> = batch.iter().map(|(_, label)| *label as i64).collect();
        let input = make_input(&refs, context, 0, false, device)?;
        let logits = model.infer(input, context.plan.cut, fused.as_ref())?;
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [labels.len()]), device);
        loss_sum += loss_function.forward(logits.clone(), targets).into_scalar::<f32>() as f64 * batch.len() as f64;
        correct += count_correct(&logits, &labels)?;
    }
    let count = examples.len().max(1) as f64;
    Ok((loss_sum / count, correct as f64 / count))
}

fn count_correct(logits: &Tensor<2>, labels: &[i64]) -> Result<usize> {
    let predicted = host_values::<i64>(logits.clone().argmax(1).into_data())?;
    Ok(predicted.iter().zip(labels).filter(|(p, l)| p == l).count())
}

/// Learnable values that receive gradients.
pub fn count_trainable<M: Module>(module: &M) -> usize {
    struct Counter(usize);
    impl burn::module::ModuleVisitor for Counter {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if param.is_require_grad() {
                self.0 += param.lazy_shape().num_elements();
            }
        }
    }
    let mut counter = Counter(0);
    module.visit(&mut counter);
    counter.0
}

/// Writes `metrics.jsonl`: one line per epoch so far.
fn write_metrics(out: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for metrics in history {
        text.push_str(
            &serde_json::to_string(metrics)
                .map_err(|error| GraftError::Invalid(format!("cannot write the metrics: {error}")))?,
        );
        text.push('\n');
    }
    crate::fsutil::write_atomic(&out.join("metrics.jsonl"), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use burn::nn::LinearConfig;
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor};

    /// The first cached view of an image is the plain one; the rest are augmented.
    #[test]
    fn the_first_cached_view_is_plain() {
        use super::{View, cached_view};
        assert_eq!(cached_view(0, true), View::Eval);
        assert_eq!(cached_view(1, true), View::Augmented(1));
        assert_eq!(cached_view(0, false), View::Eval);
        assert_eq!(cached_view(1, false), View::Eval);
    }

    /// The best epoch: accuracy first, then loss; the first epoch always counts; NaN never wins.
    #[test]
    fn an_equal_accuracy_at_a_lower_loss_is_better() {
        use super::improves;
        assert!(improves((0.1, 2.0), (-1.0, f64::INFINITY)), "the first epoch");
        assert!(improves((0.9, 0.5), (0.8, 0.1)), "higher accuracy, whatever the loss");
        assert!(improves((0.8, 0.3), (0.8, 0.4)), "same accuracy, lower loss");
        assert!(!improves((0.8, 0.4), (0.8, 0.4)), "a repeat is not an improvement");
        assert!(!improves((0.8, 0.5), (0.8, 0.4)), "same accuracy, higher loss");
        assert!(!improves((0.7, 0.1), (0.8, 0.4)), "lower accuracy, whatever the loss");
        assert!(!improves((0.8, f64::NAN), (0.8, 0.4)), "a NaN loss");
    }

    /// Adam's first step moves each parameter by about the learning rate whatever the gradient's
    /// size, as long as epsilon is well below it: here a gradient of 1e-6.
    #[test]
    fn adamw_takes_full_steps_on_small_gradients() {
        let device = Device::flex().autodiff();
        let linear = LinearConfig::new(1, 1).with_bias(false).init(&device);
        let before = linear.weight.val().into_scalar::<f32>();
        let mut gradients = GradientsParams::new();
        gradients.register(linear.weight.id, Tensor::<2>::full([1, 1], 1e-6, &Device::flex()));
        let mut optimizer: burn::optim::ModuleOptimizer = super::adamw(0.0).init();
        let linear = optimizer.step(1e-3, linear, gradients);
        let moved = before - linear.weight.val().into_scalar::<f32>();
        assert!((moved - 1e-3).abs() < 2e-5, "moved by {moved}, expected about the learning rate 1e-3");
    }
}
