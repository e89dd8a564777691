//! `graft harden`: retrains a student away from the teacher-mimicry attack, the defense of Wang,
//! Yao, Viswanath, Zheng and Zhao (USENIX Security 2018, section 6; the reference code's
//! `pubfig65_patch_neuron_distance.py`). Every layer trains, with the cross-entropy plus a
//! penalty whenever the student's representation at layer K is within a threshold τ of the
//! teacher's for the same image:
//!
//! `CE + λ·mean_i max(τ − d_i, 0)²`, `d_i = sqrt(Σ_j w_j (S_K(x_i)_j − T_K(x_i)_j)²)`,
//!
//! `w_j` how much the head uses neuron j (the summed absolute weights leaving it, as the
//! reference weighs them; uniform for an activation map K, which no head reads directly), τ
//! ramped up linearly over the first half of the epochs. An attacker who matches the teacher's
//! representation at K then no longer matches what the student computes there.
//!
//! Scales differ from the reference's (a VGG-Face fc7 layer, τ up to 5,000, λ 1e-6): τ is set
//! as a multiple of the mean weighted distance between two training images' teacher
//! representations, and λ so that the whole threshold missed costs `penalty` nats, the penalty
//! term being `penalty·(max(τ − d, 0)/τ_max)²`.
//!
//! `--distance standardised` measures `d` after shifting and scaling each channel of both
//! representations to mean 0 and variance 1 over the batch's images (and positions, for an
//! activation map). Its point: the Euclidean distance can be bought by rescaling channels (the
//! batch norm closing each block does it with two numbers a channel), and a student whose map is
//! a per-channel affine function of the teacher's is as easy to steer with an image that mimics
//! the teacher's as the teacher itself. Both distances are logged whichever one is penalised.
//!
//! `mimicry_examples` adds adversarial training against the attack itself: images crafted on the
//! teacher alone (the attacker's only tool, so they can be crafted once, before training), from
//! training images toward training images of other classes, trained on with their source's
//! label. The student can only classify them right by no longer seeing the target where the
//! teacher does, which is what the attack relies on. One per training image by default: on
//! every frozen-front student measured the penalty alone left the attack a third to two thirds
//! of its pairs, the examples at most one of 16 (docs/AUDIT.md).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::mimicry::{MimicryOptions, TeacherFront, mimic};
use super::pixels::{batch as pixel_tensor, floats, normalise};
use super::run::attacked_cut;
use crate::backend::host_values;
use crate::data::dataset::Dataset;
use crate::error::{GraftError, Result};
use crate::models::{Preprocessing, Teacher};
use crate::rng::SplitMix64;
use crate::train::Reporter;
use crate::train::epochs::{EpochPlan, EpochTotals, Epochs, Step, Steps, run_epochs};
use crate::train::head::Head;
use crate::train::schedule::WarmupCosine;
use crate::train::shards;
use crate::train::strategy::Strategy;
use crate::train::student::{LoadedStudent, RunConfig, RunHeader, Student};
use crate::train::trainer::{adamw, count_trainable, on_training_thread};

/// How a student is hardened.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HardenOptions {
    /// Layer K, a block name; `None` is what `graft audit` attacks by default (the student's
    /// cut, the teacher's last block for a student with no frozen block).
    pub layer: Option<String>,
    pub epochs: usize,
    /// AdamW's peak rate (cosine decay, no warm-up); every layer trains at it. 1e-4 by default:
    /// at graft's rate for `full` from a random head (1e-3) the first steps wreck a trained
    /// student, and it never regains its accuracy (docs/AUDIT.md has the run).
    pub learning_rate: f64,
    pub batch_size: usize,
    /// τ at the end of its ramp, as a multiple of the mean weighted distance between two
    /// training images' teacher representations at K.
    pub threshold: f64,
    /// The penalty, in nats, of a representation still on the teacher's when τ has ramped up.
    pub penalty: f64,
    /// How `d` is measured.
    #[serde(default)]
    pub distance: Distance,
    /// Teacher-mimicry images to train on as well: each crafted by `mimicry` on the teacher
    /// alone from a seeded training image toward a training image of another class, as the
    /// attacker crafts, and labelled as its source (adversarial training against the attack;
    /// the teacher is fixed, so each image is crafted once, before training). Sources cycle
    /// through the training images in a seeded order; an image that stayed over the budget is
    /// not used. `None` (the default): one per training image; `Some(0)`: none, the distance
    /// penalty alone. On every frozen-front student measured (docs/AUDIT.md) the examples
    /// stopped the attack where the penalty alone left it working, at the same accuracy or
    /// higher.
    #[serde(default)]
    pub mimicry_examples: Option<usize>,
    /// The attack that crafts them.
    #[serde(default = "example_attack")]
    pub mimicry: MimicryOptions,
    pub seed: u64,
    /// Set (by a Ctrl-C handler, say) to stop crafting or training at the next batch, with
    /// [`GraftError::Stopped`]; nothing is written.
    #[serde(skip)]
    pub interrupt: Option<crate::interrupt::Interrupt>,
}

/// The attack that crafts the training examples by default: `graft audit`'s (budget 0.003, Adam
/// at 0.01) for a quarter of its 200 iterations, to keep crafting within a few times the cost of
/// the hardening itself.
pub fn example_attack() -> MimicryOptions {
    MimicryOptions { iterations: 50, ..MimicryOptions::default() }
}

/// How the distance between the student's and the teacher's representations at K is measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    /// On the representations as they are, each neuron weighted by the head's use of it (the
    /// reference's).
    #[default]
    Euclidean,
    /// The same, after each channel of each representation is shifted and scaled to mean 0 and
    /// variance 1 over the batch (blind to a per-channel rescaling). Over each shard of a batch
    /// (see `shards`), its images and, for an activation map, their positions: a shard of one
    /// image has no spread of pooled features to measure, and counts as distance 0.
    Standardised,
}

crate::choice::choice!(
    Distance,
    "distance",
    [(Distance::Euclidean, "euclidean"), (Distance::Standardised, "standardised")]
);

impl HardenOptions {
    /// # Errors
    /// No epoch, an empty batch, a threshold or learning rate not above 0, a negative penalty.
    pub fn check(&self) -> Result<()> {
        let positive = |value: f64| value.is_finite() && value > 0.0;
        if self.epochs == 0
            || self.batch_size == 0
            || !positive(self.threshold)
            || !positive(self.learning_rate)
            || !(self.penalty.is_finite() && self.penalty >= 0.0)
        {
            return Err(GraftError::Invalid("hardening needs at least one epoch, a batch of at least one image, a positive threshold and learning rate, and a penalty of at least 0".into()));
        }
        if self.mimicry_examples != Some(0)
            && (self.mimicry.iterations == 0 || !positive(self.mimicry.budget) || !positive(self.mimicry.learning_rate))
        {
            return Err(GraftError::Invalid("crafting mimicry examples needs at least one iteration, a positive DSSIM budget and a positive learning rate".into()));
        }
        Ok(())
    }
}

impl Default for HardenOptions {
    fn default() -> HardenOptions {
        HardenOptions {
            layer: None,
            epochs: 10,
            learning_rate: 1e-4,
            batch_size: 32,
            threshold: 1.0,
            penalty: 10.0,
            distance: Distance::Euclidean,
            mimicry_examples: None,
            mimicry: example_attack(),
            seed: 1,
            interrupt: None,
        }
    }
}

/// One epoch of hardening.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HardenEpoch {
    pub epoch: usize,
    /// τ this epoch.
    pub threshold: f64,
    pub cross_entropy: f64,
    pub penalty: f64,
    /// Mean `d` over the epoch's images (as `options.distance` measures it), and the share of
    /// them still within τ.
    pub mean_distance: f64,
    pub within_threshold: f64,
    /// Mean `d` measured either way, whichever one the penalty uses.
    #[serde(default)]
    pub mean_euclidean_distance: f64,
    #[serde(default)]
    pub mean_standardised_distance: f64,
    pub train_accuracy: f64,
    pub seconds: f64,
}

/// What hardening did (`harden.json` beside the hardened run's `graft.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HardenReport {
    /// The hardened run's source, and its strategy.
    pub from_run: String,
    pub from_strategy: Strategy,
    pub layer: String,
    pub cut: usize,
    pub images: usize,
    /// The mean weighted distance between two training images' teacher representations, and
    /// τ at the end of its ramp.
    pub typical_distance: f64,
    pub final_threshold: f64,
    /// The mean distance between two training images' teacher representations measured either
    /// way (`typical_distance` is one of them).
    #[serde(default)]
    pub typical_euclidean_distance: f64,
    #[serde(default)]
    pub typical_standardised_distance: f64,
    pub options: HardenOptions,
    /// The mimicry examples trained on, when asked for.
    #[serde(default)]
    pub mimicry_examples: Option<MimicryExamples>,
    pub history: Vec<HardenEpoch>,
    pub seconds: f64,
}

impl HardenReport {
    /// What the student was hardened on: "N images", and the mimicry examples when there were.
    pub fn images_trained_on(&self) -> String {
        match &self.mimicry_examples {
            Some(examples) => format!("{} images and {} mimicry examples", self.images, examples.used),
            None => format!("{} images", self.images),
        }
    }
}

/// The teacher-mimicry images crafted to train on.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MimicryExamples {
    /// Crafted, and of those within the DSSIM budget (the ones trained on).
    pub crafted: usize,
    pub used: usize,
    /// Over the used ones: DSSIM from the source (rounded pixels), and the teacher's distance
    /// to the target's representation at K left, as a share of where the source started.
    pub mean_dssim: f64,
    pub mean_distance_left: f64,
    pub seconds: f64,
}

/// Pairs of training images whose representations' distance sets the scale of τ.
const SCALE_PAIRS: usize = 512;

/// Retrains `student` (a student of `teacher`) on `data` away from the teacher's representation
/// at layer K. Returns the hardened student (inference form) and its run config: a `full` student,
/// every block trained, saved like any run (see [`crate::train::save_run`]).
///
/// # Errors
/// A teacher other than the student's, data whose classes are not the student's, fewer than
/// two readable images, a layer the teacher does not have, a loss that stops being finite.
pub fn harden(
    student: &LoadedStudent,
    teacher: &Teacher,
    data: &Dataset,
    options: &HardenOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(Student, RunConfig, HardenReport)> {
    // On a thread with a training session's stack, as `train` (debug builds give every copy of a
    // network its own stack slot).
    on_training_thread(|| harden_on_this_thread(student, teacher, data, options, device, reporter))
}

fn harden_on_this_thread(
    student: &LoadedStudent,
    teacher: &Teacher,
    data: &Dataset,
    options: &HardenOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(Student, RunConfig, HardenReport)> {
    let started = std::time::Instant::now();
    let config = &student.config;
    if teacher.card.name != config.header.teacher || teacher.weights_sha256 != config.header.teacher_weights_sha256 {
        return Err(GraftError::Invalid(format!(
            "the student was trained from `{}` weights {}, not `{}` weights {}",
            config.header.teacher, config.header.teacher_weights_sha256, teacher.card.name, teacher.weights_sha256
        )));
    }
    options.check()?;
    let names = teacher.block_names();
    let blocks = names.len();
    let cut = attacked_cut(config, teacher, options.layer.as_deref())?;
    let preprocessing = config.preprocessing.clone();
    let size = preprocessing.input_size;
    let data = data.clone().align_classes(&config.header.classes)?;

    let (mut images, mut labels) = read_images(&data, &preprocessing, reporter)?;

    // The teacher's representation of each image at K, computed once (of the mimicry examples
    // too, which join the training images).
    let front = TeacherFront::new(teacher, cut, &preprocessing)?;
    let clean = images.len();
    let examples = match options.mimicry_examples.unwrap_or(clean) {
        0 => None,
        count => Some(add_mimicry_examples(&front, &mut images, &mut labels, count, size, options, device, reporter)?),
    };
    reporter.start(&format!("the teacher's representations at `{}`", names[cut - 1]), images.len());
    let teacher_rows = representations(&front, &images, options.batch_size, size, device, reporter)?;
    reporter.finish();
    let dim = teacher_rows[0].len();
    let channels = front.channels(size, device)?;
    if channels == 0 || !dim.is_multiple_of(channels) {
        return Err(GraftError::Invalid(format!(
            "the representation at `{}` has {dim} values, not a whole number of its {channels} channels",
            names[cut - 1]
        )));
    }
    let weights = neuron_weights(&student.student.head, cut == blocks, dim)?;
    // τ's scale from the training images as they are.
    let (typical_euclidean_distance, typical_standardised_distance) =
        typical_distances(&teacher_rows[..clean], &weights, channels, options.seed, device)?;
    let typical_distance = match options.distance {
        Distance::Euclidean => typical_euclidean_distance,
        Distance::Standardised => typical_standardised_distance,
    };
    let final_threshold = options.threshold * typical_distance;
    reporter.note(&format!(
        "hardening at `{}`: τ ramps to {final_threshold:.3} ({} × the mean {} distance between two images' teacher representations, {typical_distance:.3})",
        names[cut - 1],
        options.threshold,
        options.distance
    ));

    let training = device.clone().autodiff();
    training.seed(options.seed);
    let model = Student {
        backbone: student
            .student
            .backbone
            .clone()
            .fork(&training)
            .train()
            .freeze_until(0)?
            .freeze_batch_norm_statistics(),
        head: student.student.head.clone().fork(&training).train(),
    };
    let mut steps = HardenSteps {
        images: &images,
        labels: &labels,
        teacher_rows: &teacher_rows,
        size,
        preprocessing: &preprocessing,
        cut,
        blocks,
        dim,
        channels,
        options,
        final_threshold,
        ramp: options.epochs.div_ceil(2).max(1),
        shard_count: config.hyperparameters.shards.max(1),
        optimizer: adamw(config.hyperparameters.weight_decay).init(),
        loss_function: CrossEntropyLossConfig::new().init(&training),
        weight_tensor: Tensor::<2>::from_data(TensorData::new(weights, [1, dim]), &training),
        schedule: WarmupCosine {
            peak: options.learning_rate,
            warmup_steps: 0,
            total_steps: images.len().div_ceil(options.batch_size) * options.epochs,
            step: 0,
        },
        step: 0,
        epoch: 0,
        training,
        typical_euclidean_distance,
        typical_standardised_distance,
        reporter,
        history: Vec::with_capacity(options.epochs),
    };
    let plan = EpochPlan {
        first_epoch: 0,
        epochs: options.epochs,
        batch_size: options.batch_size,
        items: images.len(),
        seed: options.seed,
        order_stream: 0x4A2D,
        interrupt: options.interrupt.as_ref(),
        stage: "hardening",
    };
    let model = run_epochs(&mut steps, model, &plan, reporter)?;
    let history = steps.history;
    let hardened = model.valid();
    let report = HardenReport {
        from_run: student.run.display().to_string(),
        from_strategy: config.header.strategy,
        layer: names[cut - 1].clone(),
        cut,
        images: clean,
        typical_distance,
        final_threshold,
        typical_euclidean_distance,
        typical_standardised_distance,
        options: options.clone(),
        mimicry_examples: examples,
        history,
        seconds: started.elapsed().as_secs_f64(),
    };
    let hardened_config = hardened_config(config, &names, &report, count_trainable(&model));
    Ok((hardened, hardened_config, report))
}

/// Every readable image's pixels (8-bit, as resized: a quarter of the memory of floats) and
/// label (no augmentation: the distance is to the teacher's representation of the same view);
/// unreadable ones are skipped and named.
fn read_images(
    data: &Dataset,
    preprocessing: &Preprocessing,
    reporter: &dyn Reporter,
) -> Result<(Vec<Vec<u8>>, Vec<usize>)> {
    reporter.start("reading images", data.len());
    let mut images: Vec<Vec<u8>> = Vec::with_capacity(data.len());
    let mut labels: Vec<usize> = Vec::with_capacity(data.len());
    for item in &data.items {
        match item.source.load_at_least(preprocessing.resize as u32) {
            Ok(image) => {
                images.push(
                    crate::data::image::pixels(&image, preprocessing).into_iter().map(|value| value as u8).collect(),
                );
                labels.push(item.label);
            }
            Err(error) => reporter.note(&format!("skipped {}: {error}", item.source.name())),
        }
        reporter.advance(1, "");
    }
    reporter.finish();
    if images.len() < 2 {
        return Err(GraftError::Invalid("hardening needs at least two readable images".into()));
    }
    Ok((images, labels))
}

/// The teacher's representation of each image at the cut, one row each, in batches.
fn representations(
    front: &TeacherFront,
    images: &[Vec<u8>],
    batch_size: usize,
    size: usize,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Vec<Vec<f32>>> {
    let mut rows: Vec<Vec<f32>> = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch_size.max(1)) {
        let representation = front.representation(pixel_tensor(&floats(chunk), size, device))?;
        let [count, dim] = representation.dims();
        let values = host_values::<f32>(representation.into_data())?;
        rows.extend((0..count).map(|row| values[row * dim..(row + 1) * dim].to_vec()));
        reporter.advance(chunk.len(), "");
    }
    Ok(rows)
}

/// The mean weighted distance between two training images' teacher representations, as they
/// are and standardised per channel: τ's scale.
fn typical_distances(
    rows: &[Vec<f32>],
    weights: &[f32],
    channels: usize,
    seed: u64,
    device: &Device,
) -> Result<(f64, f64)> {
    let dim = rows[0].len();
    let euclidean = mean_pair_distance(rows, weights, seed);
    let standardised_rows = {
        let all = Tensor::<2>::from_data(TensorData::new(rows.concat(), [rows.len(), dim]), device);
        let values = host_values::<f32>(standardise(all, channels).into_data())?;
        values.chunks(dim).map(<[f32]>::to_vec).collect::<Vec<_>>()
    };
    Ok((euclidean, mean_pair_distance(&standardised_rows, weights, seed)))
}

/// The hardened student's run record: every block trained, what it was hardened from and how.
fn hardened_config(
    config: &RunConfig,
    names: &[String],
    report: &HardenReport,
    trained_parameters: usize,
) -> RunConfig {
    let last = report.history.last().map(|epoch| epoch.train_accuracy);
    RunConfig {
        header: RunHeader {
            strategy: Strategy::Full,
            strategy_reason: Some(format!(
                "hardened (`graft harden`) from the `{}` student {} against the mimicry attack at `{}`",
                config.header.strategy, report.from_run, report.layer
            )),
            // The caller knows where the images came from (the CLI names the folder).
            data: format!("{} (hardening)", report.images_trained_on()),
            metrics: serde_json::json!({
                "train_accuracy": last,
                "seconds": report.seconds,
                "harden": {"layer": report.layer, "threshold": report.final_threshold, "epochs": report.options.epochs, "from_run": report.from_run, "mimicry_examples": report.mimicry_examples.as_ref().map(|examples| examples.used)},
                "before_hardening": config.header.metrics,
            }),
            ..config.header.clone()
        },
        frozen_blocks: Vec::new(),
        trainable_blocks: names.to_vec(),
        trained_parameters,
        train_images: report.images,
        validation_images: 0,
        ..config.clone()
    }
}

/// Crafts `count` mimicry examples on the teacher alone (see [`HardenOptions::mimicry_examples`])
/// and adds those within the budget to `images`, each with its source image's label.
#[allow(clippy::too_many_arguments)]
fn add_mimicry_examples(
    front: &TeacherFront,
    images: &mut Vec<Vec<u8>>,
    labels: &mut Vec<usize>,
    count: usize,
    size: usize,
    options: &HardenOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<MimicryExamples> {
    let started = std::time::Instant::now();
    if labels.iter().all(|label| *label == labels[0]) {
        return Err(GraftError::Invalid("mimicry examples need training images of at least two classes".into()));
    }
    let mut random = SplitMix64::derive(options.seed, &[0x3A7C]);
    let mut order: Vec<usize> = (0..images.len()).collect();
    random.shuffle(&mut order);
    let pairs: Vec<(usize, usize)> = (0..count)
        .map(|at| {
            let source = order[at % order.len()];
            let target = loop {
                let candidate = random.below(images.len());
                if labels[candidate] != labels[source] {
                    break candidate;
                }
            };
            (source, target)
        })
        .collect();
    reporter.start("crafting mimicry examples on the teacher", count);
    let (mut crafted, mut sources) = (Vec::new(), Vec::new());
    let (mut dssim_sum, mut left_sum) = (0.0f64, 0.0f64);
    for chunk in pairs.chunks(EXAMPLE_BATCH) {
        crate::interrupt::check(options.interrupt.as_ref(), "hardening")?;
        let from = floats(chunk.iter().map(|(source, _)| &images[*source]));
        let toward = floats(chunk.iter().map(|(_, target)| &images[*target]));
        for ((source, _), image) in
            chunk.iter().zip(mimic(front, &from, &toward, size, &options.mimicry, device, &crate::train::Silent)?)
        {
            if image.within_budget {
                dssim_sum += image.dssim;
                left_sum += image.distance / image.start_distance.max(f64::MIN_POSITIVE);
                crafted.push(image.pixels);
                sources.push(*source);
            }
        }
        reporter.advance(chunk.len(), &format!("{} within budget", crafted.len()));
    }
    reporter.finish();
    let used = crafted.len();
    let mean = |sum: f64| if used == 0 { 0.0 } else { sum / used as f64 };
    let figures = MimicryExamples {
        crafted: count,
        used,
        mean_dssim: mean(dssim_sum),
        mean_distance_left: mean(left_sum),
        seconds: started.elapsed().as_secs_f64(),
    };
    reporter.note(&format!(
        "{} of {} mimicry examples within the DSSIM budget {} (mean DSSIM {:.4}; the teacher's distance to the target left: {:.0}%; {:.0}s)",
        figures.used,
        figures.crafted,
        options.mimicry.budget,
        figures.mean_dssim,
        figures.mean_distance_left * 100.0,
        figures.seconds
    ));
    labels.extend(sources.iter().map(|source| labels[*source]).collect::<Vec<_>>());
    images.extend(crafted);
    Ok(figures)
}

/// Pairs crafted side by side (as `graft audit` crafts them).
const EXAMPLE_BATCH: usize = 8;

/// Hardening as the training loop sees it: batches of training images (and mimicry examples),
/// sharded, each trained on the cross-entropy plus the penalty for staying within τ of the
/// teacher's representation at K, τ ramped up over the first half of the epochs.
struct HardenSteps<'a> {
    images: &'a [Vec<u8>],
    labels: &'a [usize],
    teacher_rows: &'a [Vec<f32>],
    size: usize,
    preprocessing: &'a Preprocessing,
    cut: usize,
    blocks: usize,
    dim: usize,
    channels: usize,
    options: &'a HardenOptions,
    final_threshold: f64,
    /// Epochs over which τ ramps up to `final_threshold`.
    ramp: usize,
    shard_count: usize,
    optimizer: burn::optim::ModuleOptimizer,
    loss_function: burn::nn::loss::CrossEntropyLoss,
    weight_tensor: Tensor<2>,
    schedule: WarmupCosine,
    step: usize,
    /// The epoch in progress, from 0.
    epoch: usize,
    training: Device,
    typical_euclidean_distance: f64,
    typical_standardised_distance: f64,
    reporter: &'a dyn Reporter,
    history: Vec<HardenEpoch>,
}

impl HardenSteps<'_> {
    /// τ in the epoch in progress.
    fn threshold(&self) -> f64 {
        self.final_threshold * ((self.epoch + 1) as f64 / self.ramp as f64).min(1.0)
    }
}

impl Steps for HardenSteps<'_> {
    type Model = Student;
    type Figures = Vec<ShardFigures>;

    fn step(&mut self, model: &Student, batch: &[usize]) -> Result<Step<Vec<ShardFigures>>> {
        let count = batch.len();
        // The batch split into shards trained side by side (see `shards`).
        let parts = shards::split(batch, self.shard_count);
        let shares: Vec<f64> = parts.iter().map(|part| part.len() as f64 / count as f64).collect();
        let (images, labels, teacher_rows) = (self.images, self.labels, self.teacher_rows);
        let (size, preprocessing, training) = (self.size, self.preprocessing, &self.training);
        let (cut, blocks, dim, channels) = (self.cut, self.blocks, self.dim, self.channels);
        let (threshold, final_threshold, options) = (self.threshold(), self.final_threshold, self.options);
        let (loss_function, weight_tensor) = (&self.loss_function, &self.weight_tensor);
        let pass = |replica: &Student,
                    part: Vec<usize>|
         -> Result<(f64, Tensor<2>, burn::optim::GradientsParams, ShardFigures)> {
            let rows = part.len();
            let pixels = floats(part.iter().map(|image| &images[*image]));
            let input = normalise(pixel_tensor(&pixels, size, training), preprocessing.mean, preprocessing.std);
            let reference: Vec<f32> = part.iter().flat_map(|image| teacher_rows[*image].iter().copied()).collect();
            let reference = Tensor::<2>::from_data(TensorData::new(reference, [rows, dim]), training);
            let targets: Vec<i64> = part.iter().map(|image| labels[*image] as i64).collect();
            let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [rows]), training);
            let (representation, logits) = forward_at(replica, input, cut, blocks)?;
            let cross_entropy = loss_function.forward(logits.clone(), targets);
            // `d` with a floor inside the root: at the start the student's representation is
            // the teacher's exactly, where the root's derivative is infinite.
            let measure = |a: Tensor<2>, b: Tensor<2>| {
                ((a - b).powf_scalar(2.0) * weight_tensor.clone().expand([rows, dim]))
                    .sum_dim(1)
                    .add_scalar(1e-12)
                    .sqrt()
            };
            let euclidean = measure(representation.clone(), reference.clone());
            let standardised = measure(standardise(representation, channels), standardise(reference, channels));
            let euclidean_values = host_values::<f32>(euclidean.clone().valid().into_data())?;
            let standardised_values = host_values::<f32>(standardised.clone().valid().into_data())?;
            let sum = |values: &[f32]| values.iter().map(|value| *value as f64).sum::<f64>();
            let (euclidean_sum, standardised_sum) = (sum(&euclidean_values), sum(&standardised_values));
            let (distance, distances) = match options.distance {
                Distance::Euclidean => (euclidean, euclidean_values),
                Distance::Standardised => (standardised, standardised_values),
            };
            let shortfall = distance.clone().neg().add_scalar(threshold).clamp_min(0.0) / final_threshold;
            let penalty = shortfall.powf_scalar(2.0).mean() * options.penalty;
            let loss = cross_entropy.clone() + penalty.clone();
            let (cross_entropy, penalty) = (scalar(cross_entropy)?, scalar(penalty)?);
            let predicted = host_values::<f32>(logits.clone().valid().argmax(1).float().into_data())?;
            let correct =
                predicted.iter().zip(&part).filter(|(class, image)| **class as usize == labels[**image]).count();
            let gradients = burn::optim::GradientsParams::from_grads(loss.backward(), replica);
            Ok((
                cross_entropy + penalty,
                logits.valid(),
                gradients,
                ShardFigures {
                    rows,
                    cross_entropy,
                    penalty,
                    distances,
                    euclidean: euclidean_sum,
                    standardised: standardised_sum,
                    correct,
                },
            ))
        };
        let (result, figures) = shards::parallel(model, parts, &shares, training, pass)?;
        Ok(Step { loss: result.loss, gradients: result.gradients, figures })
    }

    fn apply(&mut self, model: Student, gradients: burn::optim::GradientsParams) -> Student {
        let model = self.optimizer.step(self.schedule.at(self.step), model, gradients);
        self.step += 1;
        model
    }

    fn stopped(&self) -> GraftError {
        GraftError::Stopped { what: "hardening".to_owned() }
    }

    fn diverged(&self, loss: f64) -> GraftError {
        GraftError::Diverged {
            what: "hardening loss",
            value: loss,
            epoch: self.epoch + 1,
            learning_rate: self.options.learning_rate,
            kept_epoch: None,
        }
    }
}

impl Epochs for HardenSteps<'_> {
    fn end_epoch(
        &mut self,
        _model: &Student,
        epoch: usize,
        totals: EpochTotals<Vec<ShardFigures>>,
        seconds: f64,
    ) -> Result<()> {
        let threshold = self.threshold();
        let (mut cross_entropy_sum, mut penalty_sum, mut distance_sum, mut within, mut correct) =
            (0.0f64, 0.0f64, 0.0f64, 0usize, 0usize);
        let (mut euclidean_sum, mut standardised_sum) = (0.0f64, 0.0f64);
        for shard in totals.figures.iter().flatten() {
            cross_entropy_sum += shard.cross_entropy * shard.rows as f64;
            penalty_sum += shard.penalty * shard.rows as f64;
            distance_sum += shard.distances.iter().map(|d| *d as f64).sum::<f64>();
            within += shard.distances.iter().filter(|d| (**d as f64) < threshold).count();
            correct += shard.correct;
            euclidean_sum += shard.euclidean;
            standardised_sum += shard.standardised;
        }
        let seen = self.images.len() as f64;
        let record = HardenEpoch {
            epoch: epoch + 1,
            threshold,
            cross_entropy: cross_entropy_sum / seen,
            penalty: penalty_sum / seen,
            mean_distance: distance_sum / seen,
            within_threshold: within as f64 / seen,
            mean_euclidean_distance: euclidean_sum / seen,
            mean_standardised_distance: standardised_sum / seen,
            train_accuracy: correct as f64 / seen,
            seconds,
        };
        let options = self.options;
        self.reporter.note(&format!(
            "hardening epoch {}/{}: cross-entropy {:.4}, penalty {:.4}, {} distance to the teacher {:.3} (τ {:.3}, {:.0}% of images within it; euclidean {:.3}, standardised {:.3}: {:.2} and {:.2} of two images'), training accuracy {:.1}%",
            record.epoch,
            options.epochs,
            record.cross_entropy,
            record.penalty,
            options.distance,
            record.mean_distance,
            threshold,
            record.within_threshold * 100.0,
            record.mean_euclidean_distance,
            record.mean_standardised_distance,
            record.mean_euclidean_distance / self.typical_euclidean_distance,
            record.mean_standardised_distance / self.typical_standardised_distance,
            record.train_accuracy * 100.0
        ));
        self.history.push(record);
        self.epoch = epoch + 1;
        Ok(())
    }
}

/// One shard's figures in a hardening step: its size, mean cross-entropy and penalty, each
/// image's distance to the teacher at K, and how many it classified correctly.
struct ShardFigures {
    rows: usize,
    cross_entropy: f64,
    penalty: f64,
    distances: Vec<f32>,
    /// The summed distances measured either way.
    euclidean: f64,
    standardised: f64,
    correct: usize,
}

/// The student's representation at the output of block `cut` (flattened; the pooled features
/// after the last block) and its logits, in one pass.
fn forward_at(student: &Student, input: Tensor<4>, cut: usize, blocks: usize) -> Result<(Tensor<2>, Tensor<2>)> {
    let activations = student.backbone.forward_blocks(input, 0..cut)?;
    if cut == blocks {
        let features = student.backbone.features(activations);
        return Ok((features.clone(), student.head.forward(features)));
    }
    let representation = activations.clone().flatten(1, 3);
    let behind = student.backbone.forward_blocks(activations, cut..blocks)?;
    Ok((representation, student.head.forward(student.backbone.features(behind))))
}

/// How much the head uses each of the `dim` neurons at K: for the pooled features the head reads
/// (`pooled`), the summed absolute weights leaving each, as the reference weighs them; otherwise
/// (an activation map) 1 each. Scaled to a mean of 1, so that `d` is on the scale of a plain
/// Euclidean distance.
fn neuron_weights(head: &Head, pooled: bool, dim: usize) -> Result<Vec<f32>> {
    if !pooled {
        return Ok(vec![1.0; dim]);
    }
    let first = match head {
        Head::Linear(linear) => &linear.weight,
        Head::Mlp(mlp) => &mlp.hidden.weight,
    };
    // burn's layout: `[inputs, outputs]`.
    let [inputs, outputs] = first.val().dims();
    if inputs != dim {
        return Err(GraftError::Invalid(format!(
            "the head reads {inputs} features, the teacher's representation has {dim}"
        )));
    }
    let values = host_values::<f32>(first.val().into_data())?;
    let mut sums: Vec<f32> = values.chunks(outputs).map(|row| row.iter().map(|w| w.abs()).sum()).collect();
    let mean = sums.iter().map(|s| *s as f64).sum::<f64>() / dim as f64;
    if mean > 0.0 {
        sums.iter_mut().for_each(|s| *s = (*s as f64 / mean) as f32);
    } else {
        sums.fill(1.0);
    }
    Ok(sums)
}

/// Floor under a channel's variance when it is standardised (a channel constant over the batch,
/// such as a dead one, comes out 0).
const VARIANCE_FLOOR: f64 = 1e-5;

/// Representations `[N, C·P]` (C channels of P positions, each channel's positions one after
/// another), each channel shifted and scaled to mean 0 and variance 1 over the N rows and P
/// positions.
fn standardise(representation: Tensor<2>, channels: usize) -> Tensor<2> {
    let [rows, dim] = representation.dims();
    let positions = dim / channels;
    let map = representation.reshape([rows, channels, positions]);
    let mean = map.clone().mean_dim(2).mean_dim(0).expand([rows, channels, positions]);
    let centred = map - mean;
    let variance = centred.clone().powf_scalar(2.0).mean_dim(2).mean_dim(0).add_scalar(VARIANCE_FLOOR);
    (centred / variance.sqrt().expand([rows, channels, positions])).reshape([rows, dim])
}

/// The mean weighted distance between the representations of seeded pairs of distinct rows.
fn mean_pair_distance(rows: &[Vec<f32>], weights: &[f32], seed: u64) -> f64 {
    let mut random = SplitMix64::derive(seed, &[0x7A0]);
    let mut total = 0.0;
    for _ in 0..SCALE_PAIRS {
        let first = random.below(rows.len());
        let second = (first + 1 + random.below(rows.len() - 1)) % rows.len();
        total += weighted_distance(&rows[first], &rows[second], weights);
    }
    total / SCALE_PAIRS as f64
}

fn weighted_distance(a: &[f32], b: &[f32], weights: &[f32]) -> f64 {
    a.iter().zip(b).zip(weights).map(|((x, y), w)| *w as f64 * (*x as f64 - *y as f64).powi(2)).sum::<f64>().sqrt()
}

fn scalar(tensor: Tensor<1>) -> Result<f64> {
    Ok(host_values::<f32>(tensor.valid().into_data())?[0] as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_cannot_craft_mimicry_examples_are_refused() {
        assert!(HardenOptions::default().check().is_ok());
        let examples = HardenOptions { mimicry_examples: Some(4), ..HardenOptions::default() };
        assert!(examples.check().is_ok());
        let penalty_only = HardenOptions { mimicry_examples: Some(0), ..HardenOptions::default() };
        for mimicry in [
            MimicryOptions { iterations: 0, ..example_attack() },
            MimicryOptions { budget: 0.0, ..example_attack() },
            MimicryOptions { learning_rate: f64::NAN, ..example_attack() },
        ] {
            for crafting in [examples.clone(), HardenOptions::default()] {
                let error = HardenOptions { mimicry: mimicry.clone(), ..crafting }.check().unwrap_err().to_string();
                assert!(error.contains("mimicry examples"), "{error}");
            }
            // Without examples the crafting settings are not used, so not checked.
            assert!(HardenOptions { mimicry, ..penalty_only.clone() }.check().is_ok());
        }
    }

    #[test]
    fn pair_distances_weigh_each_neuron() {
        assert_eq!(weighted_distance(&[0.0, 0.0], &[3.0, 4.0], &[1.0, 1.0]), 5.0);
        assert_eq!(weighted_distance(&[0.0, 0.0], &[3.0, 4.0], &[0.0, 1.0]), 4.0);
        // Two rows: every pair is that one pair, whichever way round.
        let rows = vec![vec![0.0, 0.0], vec![3.0, 4.0]];
        assert!((mean_pair_distance(&rows, &[1.0, 1.0], 3) - 5.0).abs() < 1e-12);
    }

    #[test]
    fn standardised_representations_are_blind_to_a_per_channel_rescaling_only() {
        let device = Device::flex();
        // 4 rows of 2 channels × 3 positions.
        let rows: Vec<Vec<f32>> =
            (0..4).map(|row| (0..6).map(|at| ((row * 7 + at * 3) % 5) as f32 + 0.5 * at as f32).collect()).collect();
        let standardised = |rows: &[Vec<f32>]| -> Vec<Vec<f32>> {
            let tensor = Tensor::<2>::from_data(TensorData::new(rows.concat(), [rows.len(), 6]), &device);
            host_values::<f32>(standardise(tensor, 2).into_data()).unwrap().chunks(6).map(<[f32]>::to_vec).collect()
        };
        let a = standardised(&rows);
        // Each channel over its rows and positions: mean 0, variance 1.
        for channel in 0..2 {
            let values: Vec<f32> = a.iter().flat_map(|row| row[channel * 3..channel * 3 + 3].to_vec()).collect();
            let mean = values.iter().sum::<f32>() / 12.0;
            let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 12.0;
            assert!(
                mean.abs() < 1e-5 && (variance - 1.0).abs() < 1e-3,
                "channel {channel}: mean {mean}, variance {variance}"
            );
        }
        // Channel 0 times 3 plus 1, channel 1 times 0.5 minus 2: far in the Euclidean sense, the
        // same standardised.
        let rescaled: Vec<Vec<f32>> = rows
            .iter()
            .map(|row| {
                row.iter().enumerate().map(|(at, v)| if at < 3 { 3.0 * v + 1.0 } else { 0.5 * v - 2.0 }).collect()
            })
            .collect();
        let ones = [1.0; 6];
        assert!(weighted_distance(&rows[0], &rescaled[0], &ones) > 1.0);
        let b = standardised(&rescaled);
        assert!((0..4).all(|row| weighted_distance(&a[row], &b[row], &ones) < 1e-3));
        // A change that mixes positions is not a rescaling: it stays.
        let mut moved = rows.clone();
        moved[0].swap(0, 2);
        let c = standardised(&moved);
        assert!(weighted_distance(&a[0], &c[0], &ones) > 0.1);
    }

    #[test]
    fn a_linear_heads_neuron_weights_are_its_summed_absolute_weights_at_mean_one() {
        let device = Device::flex();
        let mut head = Head::new(crate::train::head::HeadKind::Linear, 3, 2, 1, &device);
        if let Head::Linear(linear) = &mut head {
            // Rows: neuron 0 sends 1 + 1, neuron 1 sends 0 + 0, neuron 2 sends 2 + 2 (mean 2).
            let weight =
                Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -1.0, 0.0, 0.0, 2.0, -2.0], [3, 2]), &device);
            linear.weight = burn::module::Param::from_tensor(weight);
        }
        assert_eq!(neuron_weights(&head, true, 3).unwrap(), vec![1.0, 0.0, 2.0]);
        assert_eq!(neuron_weights(&head, false, 5).unwrap(), vec![1.0; 5]);
        assert!(neuron_weights(&head, true, 4).is_err(), "a head that reads another width");
    }
}
