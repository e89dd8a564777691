//! The one trainer: every strategy and every data set go through `train`.
//!
//! What is frozen in front of the cut is computed once per image through the feature cache; the
//! trainable part runs on the autodiff device. Batch order and augmentation derive from
//! (seed, epoch), the optimizer state is checkpointed each epoch, so an interrupted run resumed
//! with `resume` ends where an uninterrupted one would.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ParamGroup};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig, momentum::MomentumConfig};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::cache::{CacheSpec, Entry, FeatureCache, Skipped, View, batch_from_entries};
use super::head::HeadKind;
use super::reporter::{EpochMetrics, Reporter};
use super::schedule::WarmupCosine;
use super::strategy::{FreezePlan, Strategy};
use super::shards;
use super::student::{Hyperparameters, RunConfig, Student, StudentInput, save_run};
use crate::data::augment::augmented_view;
use crate::data::dataset::{Dataset, Item};
use crate::data::image::{batch_tensor, preprocess};
use crate::error::{GraftError, Result};
use crate::models::zoo::Preprocessing;
use crate::models::fused::FusedBackbone;
use crate::models::{Backbone, Teacher};
use crate::rng::SplitMix64;

/// Everything a training run needs besides the teacher and the data.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// A resolved strategy (not `auto`).
    pub strategy: Strategy,
    pub strategy_reason: Option<String>,
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
    /// Stop after this many epochs in this call (as an interruption would); `None` runs to the end.
    pub stop_after: Option<usize>,
    /// Images per teacher forward pass while filling the cache.
    pub cache_batch_size: usize,
    /// A description of the data, saved in `graft.json`.
    pub data: String,
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
}

/// The preprocessing at an optional input size, keeping the card's resize-to-crop ratio.
pub fn preprocessing_at(card: &Preprocessing, size: Option<usize>) -> Preprocessing {
    match size {
        None => card.clone(),
        Some(size) => Preprocessing {
            input_size: size,
            resize: (size as f64 * card.resize as f64 / card.input_size as f64).round() as usize,
            ..card.clone()
        },
    }
}

/// One training example as the trainable part sees it.
enum Example {
    Cached(Entry),
    Image(Item),
}

/// A training image's examples (its cached views, or the image itself) and its label.
type TrainExample = (Vec<Example>, usize);

#[derive(serde::Serialize, serde::Deserialize)]
struct CheckpointState {
    fingerprint: String,
    epochs_done: usize,
    steps_done: usize,
    history: Vec<EpochMetrics>,
    best_accuracy: f64,
    best_epoch: usize,
}

const CHECKPOINT_DIR: &str = "checkpoint";

/// Whether an epoch's `(validation accuracy, validation loss)` beats the best so far: a higher
/// accuracy, or the same at a lower loss (on the small validation sets graft is made for, accuracy
/// often ties over several epochs, and the first of them is rarely the best trained).
fn improves((accuracy, loss): (f64, f64), (best_accuracy, best_loss): (f64, f64)) -> bool {
    accuracy > best_accuracy || (accuracy == best_accuracy && loss < best_loss)
}

/// The `k`-th of the `views` cached versions of a training image. The first is the plain view
/// (resize and centre crop, as evaluation sees it), the others augmented. With the plain view
/// among them, `mid` on 1,600 Fashion-MNIST images scored 85.71% over seeds 1-6 where two
/// augmented views scored 84.43% and PyTorch's fresh view every epoch 85.46%
/// (docs/BENCHMARKS.md): with few cached views, all-augmented training never sees the images
/// the way evaluation does. Each epoch draws one of the cached views per image at random.
fn cached_view(k: usize, augmented: bool) -> View {
    if augmented && k > 0 { View::Augmented(k) } else { View::Eval }
}

/// Trains a student of `teacher` on `train`, validating on `validation`, and saves the run.
pub fn train(
    teacher: &Teacher,
    train: &Dataset,
    validation: &Dataset,
    options: &TrainOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<TrainOutcome> {
    let started = Instant::now();
    train.check_trainable("the training set")?;
    if validation.is_empty() {
        return Err(GraftError::Invalid("the validation set is empty; give more images or a validation folder".into()));
    }
    let hyper = &options.hyperparameters;
    let blocks = teacher.block_names();
    let plan = FreezePlan::new(options.strategy, blocks.clone(), options.unfreeze, options.unfreeze_from.as_deref())?;
    let preprocessing = preprocessing_at(&teacher.card.preprocessing, options.image_size);
    let classes = train.classes.clone();

    // 1. Inputs: cached teacher outputs at the cut, or images for a fully trainable network.
    let spec = CacheSpec { preprocessing: preprocessing.clone(), augmentation: hyper.augmentation.clone(), cut: plan.cut, seed: options.seed };
    let views = if hyper.augmentation.is_none() { 1 } else { hyper.augmented_views.max(1) };
    let mut skipped = Vec::new();
    let (mut cache_hits, mut cache_misses, mut teacher_forwards) = (0, 0, 0);
    let (train_examples, validation_examples): (Vec<TrainExample>, Vec<(Example, usize)>) = if plan.cut > 0 {
        let cache = FeatureCache::new(&options.cache_dir, teacher, &spec)?;
        let requests: Vec<_> = train
            .items
            .iter()
            .flat_map(|item| (0..views).map(move |k| (item.source.clone(), cached_view(k, !hyper.augmentation.is_none()))))
            .collect();
        let (entries, bad) = cache.prepare(teacher, &spec, &requests, options.cache_batch_size, &device.clone(), reporter, "caching train features")?;
        skipped.extend(bad);
        let mut train_examples = Vec::new();
        for (item, item_entries) in train.items.iter().zip(entries.chunks(views)) {
            let item_entries: Option<Vec<Example>> = item_entries.iter().map(|entry| entry.clone().map(Example::Cached)).collect();
            if let Some(item_entries) = item_entries {
                train_examples.push((item_entries, item.label));
            }
        }
        let requests: Vec<_> = validation.items.iter().map(|item| (item.source.clone(), View::Eval)).collect();
        let (entries, bad) = cache.prepare(teacher, &spec, &requests, options.cache_batch_size, device, reporter, "caching validation features")?;
        skipped.extend(bad);
        let validation_examples =
            validation.items.iter().zip(entries).filter_map(|(item, entry)| entry.map(|entry| (Example::Cached(entry), item.label))).collect();
        cache_hits = cache.stats.hits.load(std::sync::atomic::Ordering::Relaxed);
        cache_misses = cache.stats.misses.load(std::sync::atomic::Ordering::Relaxed);
        teacher_forwards = cache.stats.teacher_forwards.load(std::sync::atomic::Ordering::Relaxed);
        (train_examples, validation_examples)
    } else {
        let mut usable = |dataset: &Dataset| -> Vec<Item> {
            dataset
                .items
                .iter()
                .filter(|item| match item.source.load() {
                    Ok(_) => true,
                    Err(error) => {
                        skipped.push(Skipped { name: item.source.name(), reason: error.to_string() });
                        false
                    }
                })
                .cloned()
                .collect()
        };
        let train_items = usable(train);
        let validation_items = usable(validation);
        (
            train_items.into_iter().map(|item| (vec![Example::Image(item.clone())], item.label)).collect(),
            validation_items.into_iter().map(|item| (Example::Image(item.clone()), item.label)).collect(),
        )
    };
    for bad in &skipped {
        reporter.note(&format!("skipped {}: {}", bad.name, bad.reason));
    }
    if train_examples.len() < 2 || {
        let mut seen: Vec<usize> = train_examples.iter().map(|(_, label)| *label).collect();
        seen.sort();
        seen.dedup();
        seen.len() < 2
    } {
        return Err(GraftError::Invalid(format!(
            "after skipping {} unreadable images, fewer than two classes of training images are left",
            skipped.len()
        )));
    }

    // 2. The student, seeded.
    let training_device = device.clone().autodiff();
    training_device.seed(options.seed);
    let backbone = match options.strategy {
        Strategy::Scratch => Backbone::new(teacher.card.architecture, 1000, device),
        _ => teacher.backbone.clone(),
    };
    let mut student = Student::new(backbone, &plan, options.head, classes.len(), options.seed, &training_device);
    let trained_parameters = count_trainable(&student);

    // 3. Optimizer and schedule: the head at the full rate, unfrozen teacher blocks at a fraction.
    let steps_per_epoch = train_examples.len().div_ceil(hyper.batch_size.max(1));
    let total_steps = steps_per_epoch * hyper.epochs;
    let warmup_steps = (steps_per_epoch * hyper.warmup_epochs).min(total_steps / 2);
    let backbone_factor = if options.strategy == Strategy::Scratch { 1.0 } else { hyper.backbone_learning_rate_factor };
    let schedule = |factor: f64, step: usize| WarmupCosine { peak: hyper.learning_rate * factor, warmup_steps, total_steps, step };
    let mut optimizer: ModuleOptimizer = match hyper.optimizer.as_str() {
        "sgd" => SgdConfig::new()
            .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(hyper.weight_decay as f32)))
            .with_momentum(Some(MomentumConfig::new().with_momentum(hyper.momentum).with_nesterov(true)))
            .init(),
        "adamw" => adamw(hyper.weight_decay).init(),
        other => return Err(GraftError::Invalid(format!("unknown optimizer `{other}`; use adamw or sgd"))),
    };

    // 4. Resume.
    let checkpoint = options.out.join(CHECKPOINT_DIR);
    let fingerprint = format!(
        "{}|{}|{:?}|{}|{}|{}|{:?}|{}",
        teacher.weights_sha256,
        options.strategy,
        plan.cut,
        train_examples.len(),
        validation_examples.len(),
        options.seed,
        hyper,
        classes.join(",")
    );
    let mut state = CheckpointState { fingerprint: fingerprint.clone(), epochs_done: 0, steps_done: 0, history: Vec::new(), best_accuracy: -1.0, best_epoch: 0 };
    if options.resume && checkpoint.join("state.json").is_file() {
        let text = std::fs::read(checkpoint.join("state.json")).map_err(|source| GraftError::Io { path: checkpoint.clone(), source })?;
        let saved: CheckpointState = serde_json::from_slice(&text).map_err(|error| GraftError::Invalid(format!("damaged checkpoint: {error}")))?;
        if saved.fingerprint != fingerprint {
            return Err(GraftError::Invalid(format!(
                "the checkpoint in `{}` is from a different run (teacher, data, strategy or hyper-parameters differ)\nhint: use another --out, or drop --resume to start over",
                checkpoint.display()
            )));
        }
        student = student.load_record(read_record(&checkpoint.join("student.bpk"))?);
        optimizer = optimizer.load(checkpoint.join("optimizer.bpk")).map_err(|error| GraftError::Invalid(format!("cannot read the optimizer checkpoint: {error:?}")))?;
        reporter.note(&format!("resuming after epoch {}", saved.epochs_done));
        state = saved;
    }
    // After a resume the parameters carry the checkpoint's ids: take the head's ids only now.
    let head_group = ParamGroup::ids_from_module(student.head.clone());
    let mut scheduler = ModuleLrScheduler::new(schedule(backbone_factor, state.steps_done)).with_group(head_group, schedule(1.0, state.steps_done));

    let mut class_weights = None;
    if hyper.class_weights {
        let mut counts = vec![0usize; classes.len()];
        for (_, label) in &train_examples {
            counts[*label] += 1;
        }
        let total: usize = counts.iter().sum();
        class_weights = Some(counts.iter().map(|c| if *c == 0 { 0.0 } else { total as f32 / (classes.len() * c) as f32 }).collect());
    }
    let loss_function = CrossEntropyLossConfig::new()
        .with_smoothing((hyper.label_smoothing > 0.0).then_some(hyper.label_smoothing))
        .with_weights(class_weights.clone())
        .init(&training_device);
    // Batches split across threads (see `shards`) when teacher blocks train. Not for a head on
    // pooled features (a step too small to gain), nor when the training forward draws random
    // numbers (dropout): burn's generator is shared, so threads would draw in varying order.
    let shard_count = if plan.cut == blocks.len() || student.draws_random() { 1 } else { hyper.shards.max(1) };

    // 5. Epochs.
    let mut epochs_this_call = 0;
    let mut finished = true;
    let mut since_best = state.epochs_done.saturating_sub(state.best_epoch);
    while state.epochs_done < hyper.epochs {
        if let Some(patience) = hyper.patience
            && state.epochs_done > 0
            && since_best >= patience
        {
            reporter.note(&format!("early stop: no better validation accuracy (nor the same at a lower loss) for {patience} epochs"));
            break;
        }
        if options.stop_after.is_some_and(|limit| epochs_this_call >= limit) {
            finished = false;
            break;
        }
        let epoch = state.epochs_done;
        let epoch_started = Instant::now();
        let mut order: Vec<usize> = (0..train_examples.len()).collect();
        SplitMix64::derive(options.seed, &[0xE90C, epoch as u64]).shuffle(&mut order);
        let head_only = epoch < hyper.gradual_unfreeze_epochs && !plan.is_head_only();
        reporter.start(&format!("epoch {}/{}", epoch + 1, hyper.epochs), train_examples.len());
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut learning_rate = 0.0;
        for batch in order.chunks(hyper.batch_size.max(1)) {
            let labels: Vec<i64> = batch.iter().map(|index| train_examples[*index].1 as i64).collect();
            let examples: Vec<&Example> = batch
                .iter()
                .map(|index| {
                    let (views_of_item, _) = &train_examples[*index];
                    let view = SplitMix64::derive(options.seed, &[0x71E3, epoch as u64, *index as u64]).below(views_of_item.len());
                    &views_of_item[view]
                })
                .collect();
            let pooled = plan.cut == blocks.len();
            let part_labels = shards::split(&labels, shard_count);
            let parts = shards::split(&examples, shard_count)
                .into_iter()
                .zip(part_labels.iter().cloned())
                .map(|(examples, labels)| Ok((make_input(&examples, &preprocessing, hyper, options.seed, epoch, pooled, true, &training_device)?, labels)))
                .collect::<Result<Vec<_>>>()?;
            let step = shards::step(&student, parts, plan.cut, &loss_function, class_weights.as_deref(), head_only, &training_device);
            let (loss_value, gradients) = (step.loss, step.gradients);
            let batch_correct: usize = step.logits.iter().zip(&part_labels).map(|(logits, labels)| count_correct(logits, labels)).sum();
            if !loss_value.is_finite() {
                return Err(GraftError::Invalid(format!(
                    "the loss became {loss_value} in epoch {}\nhint: lower --learning-rate (now {})",
                    epoch + 1,
                    hyper.learning_rate
                )));
            }
            correct += batch_correct;
            learning_rate = schedule(1.0, state.steps_done).at(state.steps_done);
            let rates = scheduler.step();
            student = optimizer.step(rates, student, gradients);
            state.steps_done += 1;
            loss_sum += loss_value * batch.len() as f64;
            seen += batch.len();
            reporter.advance(batch.len(), &format!("loss {:.4}", loss_sum / seen as f64));
        }
        reporter.finish();
        let train_seconds = epoch_started.elapsed().as_secs_f64();
        let (validation_loss, validation_accuracy) =
            validate(&student, &validation_examples, &preprocessing, hyper, options.seed, plan.cut, blocks.len(), device)?;
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            validation_loss,
            validation_accuracy,
            learning_rate,
            images_per_second: seen as f64 / train_seconds.max(1e-9),
            seconds: epoch_started.elapsed().as_secs_f64(),
        };
        reporter.epoch(&metrics);
        let best_loss = state.best_epoch.checked_sub(1).and_then(|index| state.history.get(index)).map_or(f64::INFINITY, |best| best.validation_loss);
        let better = improves((validation_accuracy, validation_loss), (state.best_accuracy, best_loss));
        state.history.push(metrics);
        write_metrics(&options.out, &state.history)?;
        state.epochs_done += 1;
        epochs_this_call += 1;
        std::fs::create_dir_all(&checkpoint).map_err(|source| GraftError::Io { path: checkpoint.clone(), source })?;
        if better {
            state.best_accuracy = validation_accuracy;
            state.best_epoch = state.epochs_done;
            since_best = 0;
            write_record(&checkpoint.join("best.bpk"), student.clone().into_record())?;
        } else {
            since_best += 1;
        }
        write_record(&checkpoint.join("student.bpk"), student.clone().into_record())?;
        let optimizer_path = checkpoint.join("optimizer.bpk");
        optimizer.save(&optimizer_path).map_err(|error| GraftError::Invalid(format!("cannot write `{}`: {error:?}", optimizer_path.display())))?;
        let json = serde_json::to_vec_pretty(&state).map_err(|error| GraftError::Invalid(error.to_string()))?;
        crate::fsutil::write_atomic(&checkpoint.join("state.json"), &json)?;
    }

    // 6. The best epoch's weights become the student.
    if state.best_epoch > 0 {
        student = student.load_record(read_record(&checkpoint.join("best.bpk"))?);
    }
    let best = state.history.get(state.best_epoch.saturating_sub(1)).cloned();
    let metrics = serde_json::json!({
        "best_epoch": state.best_epoch,
        "validation_accuracy": best.as_ref().map(|m| m.validation_accuracy),
        "validation_loss": best.as_ref().map(|m| m.validation_loss),
        "train_accuracy": best.as_ref().map(|m| m.train_accuracy),
        "epochs_run": state.epochs_done,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let config = RunConfig {
        graft_version: env!("CARGO_PKG_VERSION").to_owned(),
        teacher: teacher.card.name.to_owned(),
        teacher_weights_sha256: teacher.weights_sha256.clone(),
        strategy: options.strategy,
        strategy_reason: options.strategy_reason.clone(),
        frozen_blocks: plan.frozen().to_vec(),
        trainable_blocks: plan.trainable().to_vec(),
        classes,
        preprocessing,
        head: options.head,
        hyperparameters: hyper.clone(),
        seed: options.seed,
        data: options.data.clone(),
        trained_parameters,
        train_images: train_examples.len(),
        validation_images: validation_examples.len(),
        metrics,
    };
    if finished {
        save_run(&options.out, &student, &config)?;
    }
    Ok(TrainOutcome {
        config,
        history: state.history,
        skipped,
        cache_hits,
        cache_misses,
        teacher_forwards,
        seconds: started.elapsed().as_secs_f64(),
        finished,
    })
}

/// AdamW as PyTorch and the paper define it. burn's default epsilon is 1e-5 where PyTorch's is
/// 1e-8: added to `sqrt(v)`, 1e-5 shrinks every step of a parameter whose gradients are around
/// 1e-5 or smaller, which the pretrained blocks' gradients at a tenth of the head's learning rate
/// often are.
pub(crate) fn adamw(weight_decay: f64) -> AdamWConfig {
    AdamWConfig::new().with_weight_decay(weight_decay as f32).with_epsilon(ADAMW_EPSILON)
}

const ADAMW_EPSILON: f32 = 1e-8;

/// Builds the student's input for a batch of examples on `device`.
#[allow(clippy::too_many_arguments)]
fn make_input(
    examples: &[&Example],
    preprocessing: &Preprocessing,
    hyper: &Hyperparameters,
    seed: u64,
    epoch: usize,
    pooled: bool,
    training: bool,
    device: &Device,
) -> Result<StudentInput> {
    let entries: Vec<&Entry> = examples.iter().filter_map(|example| if let Example::Cached(entry) = example { Some(entry) } else { None }).collect();
    if entries.len() == examples.len() {
        return Ok(if pooled {
            StudentInput::Features(batch_from_entries::<2>(&entries, device)?)
        } else {
            StudentInput::Activations(batch_from_entries::<4>(&entries, device)?)
        });
    }
    let mut images = Vec::with_capacity(examples.len());
    for example in examples {
        let Example::Image(item) = example else { unreachable!("a batch is all cached or all images") };
        let image = item.source.load()?;
        images.push(if training {
            let key = crate::rng::hash_str(&item.source.name());
            let mut rng = SplitMix64::derive(seed, &[0xA116, epoch as u64, u64::from_str_radix(&key, 16).unwrap_or(0)]);
            augmented_view(&image, preprocessing, &hyper.augmentation, &mut rng)
        } else {
            preprocess(&image, preprocessing)
        });
    }
    Ok(StudentInput::Activations(batch_tensor(&images, preprocessing.input_size, device)))
}

/// Validation loss (plain cross-entropy) and accuracy, in inference mode.
#[allow(clippy::too_many_arguments)]
fn validate(
    student: &Student,
    examples: &[(Example, usize)],
    preprocessing: &Preprocessing,
    hyper: &Hyperparameters,
    seed: u64,
    cut: usize,
    blocks: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let model = student.valid();
    let fused = FusedBackbone::for_device(&model.backbone, device);
    let loss_function = CrossEntropyLossConfig::new().init(device);
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    for batch in examples.chunks(hyper.batch_size.max(1)) {
        let refs: Vec<&Example> = batch.iter().map(|(example, _)| example).collect();
        let labels: Vec<i64> = batch.iter().map(|(_, label)| *label as i64).collect();
        let input = make_input(&refs, preprocessing, hyper, seed, 0, cut == blocks, false, device)?;
        let logits = model.infer(input, cut, fused.as_ref());
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [labels.len()]), device);
        loss_sum += loss_function.forward(logits.clone(), targets).into_scalar::<f32>() as f64 * batch.len() as f64;
        correct += count_correct(&logits, &labels);
    }
    let count = examples.len().max(1) as f64;
    Ok((loss_sum / count, correct as f64 / count))
}

fn count_correct(logits: &Tensor<2>, labels: &[i64]) -> usize {
    let predicted = logits.clone().argmax(1).into_data().convert::<i64>();
    let predicted = predicted.as_slice::<i64>().unwrap_or_default();
    predicted.iter().zip(labels).filter(|(p, l)| p == l).count()
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

fn write_record(path: &Path, record: ModuleRecord) -> Result<()> {
    let partial = path.with_extension("bpk.partial");
    record.save(&partial).map_err(|error| GraftError::Invalid(format!("cannot write `{}`: {error:?}", partial.display())))?;
    std::fs::rename(&partial, path).map_err(|source| GraftError::Io { path: path.to_owned(), source })
}

fn read_record(path: &Path) -> Result<ModuleRecord> {
    ModuleRecord::load(path).map_err(|error| GraftError::Invalid(format!("cannot read checkpoint `{}`: {error:?}", path.display())))
}

/// Writes `metrics.jsonl`: one line per epoch so far.
fn write_metrics(out: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for metrics in history {
        text.push_str(&serde_json::to_string(metrics).map_err(|error| GraftError::Invalid(error.to_string()))?);
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
