//! `Student`: the teacher's network (frozen in front of the cut) plus a new head, and the run
//! directory it is saved in (`student.safetensors` + `graft.json`).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::head::{Head, HeadKind};
use super::strategy::{FreezePlan, Strategy};
use crate::backend::fused::FusedBackbone;
use crate::data::augment::Augmentation;
use crate::error::{GraftError, Result};
use crate::modality::Modality;
use crate::models::Backbone;
use crate::models::zoo::{self, Preprocessing};
use crate::weights::{SameKeys, collect_tensors, load_into};

/// The trainable network: all of the teacher's blocks and a new head.
#[derive(Module, Debug)]
pub struct Student {
    pub backbone: Backbone,
    pub head: Head,
}

/// Where a student's input enters it.
#[derive(Debug, Clone)]
pub enum StudentInput {
    /// Preprocessed images, or block activations at the cut: `[N, C, H, W]`.
    Activations(Tensor<4>),
    /// Pooled features (the whole teacher frozen): `[N, D]`.
    Features(Tensor<2>),
}

impl Student {
    /// A student of `backbone` (moved to `device`) with the plan's blocks frozen and a new head
    /// drawn from `seed`.
    ///
    /// # Errors
    /// A plan whose cut is past the backbone's last block.
    pub fn new(
        backbone: Backbone,
        plan: &FreezePlan,
        head: HeadKind,
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Student> {
        let features = backbone.feature_dim();
        // A teacher loaded for inference carries no autodiff: `train` turns it on for the copy on
        // the training device, then the front of the cut (and the unused ImageNet classifier) is
        // frozen again.
        Ok(Student {
            backbone: backbone.fork(device).train().freeze_until(plan.cut)?,
            head: Head::new(head, features, classes, seed, device),
        })
    }

    /// Logits for inputs entering at block `cut`.
    ///
    /// # Errors
    /// A cut past the backbone's last block.
    pub fn forward(&self, input: StudentInput, cut: usize) -> Result<Tensor<2>> {
        let features = match input {
            StudentInput::Features(features) => features,
            StudentInput::Activations(x) => {
                let blocks = self.backbone.blocks();
                let behind = blocks.get(cut..).ok_or(GraftError::BlockRange {
                    start: cut,
                    end: blocks.len(),
                    count: blocks.len(),
                })?;
                self.backbone.features(crate::backend::forward::blocks(behind, x))
            }
        };
        Ok(self.head.forward(features))
    }

    /// Logits in inference mode (call it on `valid()`), the teacher's blocks from `cut` on run
    /// through `fused` where given (see [`FusedBackbone::for_device`]); the same values as
    /// [`Self::forward`] up to rounding, several times faster on the CPU.
    pub fn infer(&self, input: StudentInput, cut: usize, fused: Option<&FusedBackbone>) -> Result<Tensor<2>> {
        match (input, fused) {
            (StudentInput::Activations(x), Some(fused)) => Ok(self.head.forward(fused.features_from(x, cut)?)),
            (input, _) => self.forward(input, cut),
        }
    }

    /// Whether a training forward draws random numbers (dropout in the MLP head or in AlexNet's
    /// fully connected blocks).
    pub fn draws_random(&self) -> bool {
        matches!(self.head, Head::Mlp(_)) || matches!(self.backbone, Backbone::AlexNet(_))
    }

    /// Logits for preprocessed images.
    pub fn logits(&self, images: Tensor<4>) -> Result<Tensor<2>> {
        self.forward(StudentInput::Activations(images), 0)
    }
}

/// The optimizer of a run: AdamW (the default) or SGD with Nesterov momentum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    AdamW,
    Sgd,
}

crate::choice::choice!(Optimizer, "optimizer", [(Optimizer::AdamW, "adamw"), (Optimizer::Sgd, "sgd")]);

/// How the head on a fully frozen teacher (`deep`) is trained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadFit {
    /// The linear probe when it applies (`deep`, a linear head, no augmentation, at most
    /// [`super::probe::MAX_PROBE_IMAGES`] images), epochs otherwise.
    Auto,
    /// Epochs of the optimizer, as every other strategy trains (and as runs saved before the
    /// probe existed did).
    #[default]
    Epochs,
    /// The linear probe: L-BFGS to convergence, the L2 penalty chosen by cross-validation.
    Probe,
}

crate::choice::choice!(
    HeadFit,
    "head fit",
    [(HeadFit::Auto, "auto"), (HeadFit::Epochs, "epochs"), (HeadFit::Probe, "probe")]
);

/// How the teacher's batch norms normalise while its blocks train (`mid`, `full`, `scratch`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchNormMode {
    /// `stored` for a pretrained teacher, `batch` from scratch (random statistics mean nothing).
    Auto,
    /// Each batch's own statistics, the running ones updated (PyTorch's `model.train()`; runs
    /// saved before this setting existed trained so).
    #[default]
    Batch,
    /// The teacher's stored statistics, as in inference; scale and shift still train.
    Stored,
}

crate::choice::choice!(
    BatchNormMode,
    "batch-norm mode",
    [(BatchNormMode::Auto, "auto"), (BatchNormMode::Batch, "batch"), (BatchNormMode::Stored, "stored")]
);

/// Where a new head starts when teacher blocks train with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadInit {
    /// Drawn from the seed (the default).
    #[default]
    Random,
    /// A linear probe fitted on the frozen teacher's pooled features of the training images,
    /// then fine-tuned with the blocks ("LP-FT", Kumar et al., ICLR 2022). Measured on small
    /// sets (docs/QUALITY.md): level with `random` near ImageNet's domain, behind it on the
    /// digits, whose features must move: a probe that already fits every training image leaves
    /// the blocks almost no gradient to adapt with.
    Probe,
}

crate::choice::choice!(HeadInit, "head init", [(HeadInit::Random, "random"), (HeadInit::Probe, "probe")]);

/// Whether a student trained by epochs on a hold-out graft split off is trained again on every
/// image once the hold-out has chosen its epoch count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Refit {
    /// `on` when graft split the validation images off the training data and the student
    /// trains by epochs (`mid`, `full`, `scratch`, a `deep` head by epochs); `off` when the data
    /// came with its own validation set (the user kept it apart on purpose) or a linear probe
    /// fits the head (it already fits every image, scored by cross-validation).
    Auto,
    /// After the held-out run, a second run on training and validation images together, on the
    /// same schedule for as many epochs (to the best epoch where early stopping ended the
    /// held-out run); its last epoch is the student, and the held-out run's scores at that same
    /// epoch are the estimate of its accuracy. Measured on small sets (docs/QUALITY.md): it pays
    /// where the hold-out is a large share of few images; a refit to the held-out run's best epoch
    /// instead lost accuracy (a best epoch picked on a few images is noise).
    On,
    /// The hold-out run's best epoch is the student (runs saved before this setting existed).
    #[default]
    Off,
}

crate::choice::choice!(Refit, "refit", [(Refit::Auto, "auto"), (Refit::On, "on"), (Refit::Off, "off")]);

/// Hyper-parameters of a run, saved in `graft.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hyperparameters {
    pub optimizer: Optimizer,
    pub learning_rate: f64,
    /// Multiplies the learning rate of unfrozen teacher blocks (the head gets the full rate).
    pub backbone_learning_rate_factor: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub warmup_epochs: usize,
    pub label_smoothing: f32,
    pub class_weights: bool,
    pub patience: Option<usize>,
    /// Head-only epochs before the unfrozen blocks join (fastai's `fine_tune`); 0 is off.
    pub gradual_unfreeze_epochs: usize,
    pub augmentation: Augmentation,
    /// Views cached per training image when part of the teacher is frozen and augmentation is
    /// on: the plain view and `augmented_views - 1` augmented ones; each epoch draws one per image.
    pub augmented_views: usize,
    pub validation_fraction: f64,
    /// Each training batch is split into this many shards trained at the same time on their own
    /// threads (batch norm then normalizes each shard with its own statistics); 1 is the whole
    /// batch at once. Runs saved before this setting existed trained with 1.
    #[serde(default = "one")]
    pub shards: usize,
    /// How a `deep` head is trained; saved resolved (`epochs` or `probe`).
    #[serde(default)]
    pub head_fit: HeadFit,
    /// How batch norms in trained teacher blocks normalise; saved resolved.
    #[serde(default)]
    pub batch_norm: BatchNormMode,
    /// Where the head starts when teacher blocks train; saved resolved.
    #[serde(default)]
    pub head_init: HeadInit,
    /// Whether the student is trained again on every image after the hold-out run; saved resolved.
    #[serde(default)]
    pub refit: Refit,
}

fn one() -> usize {
    1
}

/// graft's recipe for a new run (each choice measured in docs/QUALITY.md). The settings enums'
/// own `Default`s are something else: the value a run saved before that setting existed is read
/// back with.
impl Hyperparameters {
    /// Whether these numbers can train: counts of at least one, finite rates of 0 or more (a
    /// rate of 0 trains nothing, which a diagnostic may want), fractions below 1. A library caller gets the message a flag would.
    ///
    /// # Errors
    /// The first number out of bounds, named.
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str, value: String, bound: &str| {
            Err(GraftError::Invalid(format!("{what} of {value} cannot train: it {bound}")))
        };
        if self.epochs == 0 {
            return bad("epochs", "0".into(), "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("a batch size", "0".into(), "must be at least 1");
        }
        for (what, value) in [
            ("a learning rate", self.learning_rate),
            ("a weight decay", self.weight_decay),
            ("a backbone learning-rate factor", self.backbone_learning_rate_factor),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return bad(what, value.to_string(), "must be finite and 0 or more");
            }
        }
        for (what, value) in [
            ("a momentum", self.momentum),
            ("a label smoothing", self.label_smoothing as f64),
            ("a validation fraction", self.validation_fraction),
        ] {
            if !(0.0..1.0).contains(&value) {
                return bad(what, value.to_string(), "must be from 0 up to (not including) 1");
            }
        }
        Ok(())
    }
}

impl Default for Hyperparameters {
    fn default() -> Hyperparameters {
        Hyperparameters {
            optimizer: Optimizer::AdamW,
            learning_rate: 1e-3,
            backbone_learning_rate_factor: 1.0,
            weight_decay: 1e-4,
            momentum: 0.9,
            epochs: 10,
            batch_size: 32,
            warmup_epochs: 1,
            label_smoothing: 0.1,
            class_weights: false,
            patience: None,
            gradual_unfreeze_epochs: 0,
            // Resolved per strategy by `run::train_run` (measured for `mid` and `full`).
            augmentation: Augmentation::none(),
            augmented_views: 2,
            validation_fraction: 0.2,
            shards: crate::device::default_shards(&Device::flex()),
            head_fit: HeadFit::Auto,
            batch_norm: BatchNormMode::Auto,
            head_init: HeadInit::Random,
            refit: Refit::Auto,
        }
    }
}

impl Hyperparameters {
    /// The defaults with the batch split into as many shards as pays on `device` (see
    /// [`crate::device::default_shards`]).
    pub fn for_device(device: &Device) -> Hyperparameters {
        Hyperparameters { shards: crate::device::default_shards(device), ..Hyperparameters::default() }
    }
}

/// `graft.json`: everything needed to rebuild, evaluate and trust a student.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunConfig {
    /// What every run record holds (its `modality` is always `image`; records from before text
    /// students have none, and read as images).
    #[serde(flatten)]
    pub header: RunHeader,
    /// What `--augment auto` measured and chose, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augmentation_choice: Option<super::augment_choice::Choice>,
    pub frozen_blocks: Vec<String>,
    pub trainable_blocks: Vec<String>,
    pub preprocessing: Preprocessing,
    pub head: HeadKind,
    pub hyperparameters: Hyperparameters,
    pub trained_parameters: usize,
    pub train_images: usize,
    pub validation_images: usize,
}

impl RunConfig {
    pub fn plan(&self) -> FreezePlan {
        let mut blocks = self.frozen_blocks.clone();
        blocks.extend(self.trainable_blocks.iter().cloned());
        FreezePlan { cut: self.frozen_blocks.len(), blocks }
    }
}

/// What every run's `graft.json` holds under the same names: one record, whose modality adds its
/// own fields beside these (an image run's [`RunConfig`], a text run's
/// [`crate::text::TextRunConfig`], each flattening this into itself). Read from either by
/// [`read_header`], for what needs to know a run without knowing its kind (which loader, a
/// listing), and written by one report ([`crate::report::write_run_report`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunHeader {
    pub graft_version: String,
    #[serde(default)]
    pub modality: Modality,
    pub teacher: String,
    pub teacher_weights_sha256: String,
    pub strategy: Strategy,
    #[serde(default)]
    pub strategy_reason: Option<String>,
    pub classes: Vec<String>,
    pub seed: u64,
    pub data: String,
    pub metrics: serde_json::Value,
}

impl RunHeader {
    /// A header for a run of this graft version, its metrics not measured yet.
    pub fn new(
        modality: Modality,
        teacher: String,
        teacher_weights_sha256: String,
        strategy: Strategy,
        classes: Vec<String>,
        seed: u64,
        data: String,
    ) -> RunHeader {
        RunHeader {
            graft_version: env!("CARGO_PKG_VERSION").to_owned(),
            modality,
            teacher,
            teacher_weights_sha256,
            strategy,
            strategy_reason: None,
            classes,
            seed,
            data,
            metrics: serde_json::Value::Null,
        }
    }
}

/// The header of the run in `run` (see [`RunHeader`]).
///
/// # Errors
/// No `graft.json` there, or one that is not a run record, naming the file.
pub fn read_header(run: &Path) -> Result<RunHeader> {
    let path = run.join(CONFIG_FILE);
    let bytes = crate::fsutil::read_limited(&path, MAX_RECORD_BYTES, "a run record")?;
    serde_json::from_slice(&bytes)
        .map_err(|error| GraftError::Invalid(format!("`{}` is not a graft run record: {error}", path.display())))
}

pub const STUDENT_FILE: &str = "student.safetensors";
pub const CONFIG_FILE: &str = "graft.json";

/// Writes the student's weights (safetensors) and its config into `run`.
pub fn save_run(run: &Path, student: &Student, config: &RunConfig) -> Result<()> {
    std::fs::create_dir_all(run).map_err(|source| GraftError::Io { path: run.to_owned(), source })?;
    let tensors = collect_tensors(&student.valid(), &SameKeys)?;
    graft_weights::write_safetensors(&run.join(STUDENT_FILE), &tensors)?;
    let json = serde_json::to_vec_pretty(config).map_err(|error| GraftError::Invalid(error.to_string()))?;
    crate::fsutil::write_atomic(&run.join(CONFIG_FILE), &json)
}

/// Writes a trained student's network as a weight file of its teacher (safetensors, in the
/// layout of the teacher's published checkpoint: the same tensor names and shapes, so PyTorch
/// code that loads the teacher loads it too): every block as the student has it, batch-norm
/// statistics included, and the teacher's ImageNet classifier, which no strategy trains. The
/// student's head is not in it. `--weights` takes the file as that teacher's weights: a student
/// fine-tuned on one domain can teach students of another, or stand as another network in a
/// fingerprint. Returns the number of tensors written.
///
/// # Errors
/// A teacher the zoo does not know; the file cannot be written.
pub fn export_teacher_weights(student: &LoadedStudent, path: &Path) -> Result<usize> {
    let card = zoo::find(&student.config.header.teacher)?;
    let backbone = &student.student.backbone;
    let keys = backbone.key_map(card.source.layout, card.architecture);
    let tensors = collect_tensors(backbone, keys.as_ref())?;
    graft_weights::write_safetensors(path, &tensors)?;
    Ok(tensors.len())
}

/// The most classes a run record may name.
pub const MAX_CLASSES: usize = 100_000;
/// The widest MLP head a run record may ask for.
pub const MAX_HIDDEN: usize = 1 << 16;
/// The largest run record graft reads.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// Reads a run's config, checked against graft's limits before anything is sized from it (a
/// record is a file anyone can edit: an input size of 70,000 would ask for 15 GB per image).
///
/// # Errors
/// No record, one that is not a run config, or one whose numbers are out of bounds (named).
pub fn load_config(run: &Path) -> Result<RunConfig> {
    let path = run.join(CONFIG_FILE);
    let text = crate::fsutil::read_limited(&path, MAX_RECORD_BYTES, "a run record")?;
    let config: RunConfig = serde_json::from_slice(&text)
        .map_err(|error| GraftError::Invalid(format!("`{}` is not a graft run config: {error}", path.display())))?;
    let out_of_bounds = |what: String| GraftError::Invalid(format!("`{}` asks for {what}", path.display()));
    config.preprocessing.check().map_err(out_of_bounds)?;
    let classes = config.header.classes.len();
    if !(1..=MAX_CLASSES).contains(&classes) {
        return Err(out_of_bounds(format!("{classes} classes (graft reads 1 to {MAX_CLASSES})")));
    }
    if let HeadKind::Mlp { hidden } = config.head
        && !(1..=MAX_HIDDEN).contains(&hidden)
    {
        return Err(out_of_bounds(format!("an MLP head {hidden} wide (graft reads 1 to {MAX_HIDDEN})")));
    }
    Ok(config)
}

/// A trained student loaded from its run directory, ready for inference on `device`.
pub struct LoadedStudent {
    pub student: Student,
    pub config: RunConfig,
    pub run: PathBuf,
}

pub fn load_run(run: &Path, device: &Device) -> Result<LoadedStudent> {
    let config = load_config(run)?;
    let card = zoo::find(&config.header.teacher)?;
    let backbone = Backbone::new(card.architecture, 1000, device);
    let expected = backbone.block_names();
    let found = config.plan().blocks;
    if found != expected {
        return Err(GraftError::BlocksMismatch {
            file: run.join(CONFIG_FILE),
            teacher: config.header.teacher.clone(),
            expected,
            found,
        });
    }
    // The head's initial values are replaced by the trained ones below.
    let student = Student {
        head: Head::new(config.head, backbone.feature_dim(), config.header.classes.len(), 0, device),
        backbone,
    };
    let path = run.join(STUDENT_FILE);
    let tensors = graft_weights::read(&path)?;
    let (student, _) = load_into(student, &tensors, &SameKeys, &path, false)?;
    Ok(LoadedStudent { student, config, run: run.to_owned() })
}
