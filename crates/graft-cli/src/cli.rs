//! The command line: clap definitions only.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use graft::audit::harden::Distance;
use graft::choice::Choice;
use graft::data::augment::AugmentChoice;
use graft::train::{BatchNormMode, HeadChoice, HeadFit, HeadInit, Optimizer, Refit, Strategy};

/// Parses one of a library setting's names into its value; `--help` lists the names, and a typo
/// fails while the arguments are read, before any work starts.
fn choice<T: Choice + Clone>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::NAMES).try_map(|name| name.parse::<T>())
}

/// A count that must be at least one (`--batch-size 0` would divide by it, or loop for ever).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(value) => Ok(value),
        Err(error) => Err(error.to_string()),
    }
}

fn at_least_one_u64(text: &str) -> Result<u64, String> {
    at_least_one(text).map(|value| value as u64)
}

/// An image side graft trains at.
fn image_size(text: &str) -> Result<usize, String> {
    use graft::models::zoo::{MAX_INPUT_SIZE, MIN_INPUT_SIZE};
    let size: usize = text.trim().parse().map_err(|error: std::num::ParseIntError| error.to_string())?;
    if !(MIN_INPUT_SIZE..=MAX_INPUT_SIZE).contains(&size) {
        return Err(format!("must be from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} pixels"));
    }
    Ok(size)
}

fn finite(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|error: std::num::ParseFloatError| error.to_string())?;
    if !value.is_finite() {
        return Err("must be a finite number".into());
    }
    Ok(value)
}

/// A rate or a budget: finite and above 0.
fn positive(text: &str) -> Result<f64, String> {
    finite(text).and_then(|value| if value > 0.0 { Ok(value) } else { Err("must be above 0".into()) })
}

fn non_negative(text: &str) -> Result<f64, String> {
    finite(text).and_then(|value| if value >= 0.0 { Ok(value) } else { Err("must be 0 or more".into()) })
}

/// A fraction from 0 up to, not including, 1 (a dropout, a share held out).
fn fraction(text: &str) -> Result<f64, String> {
    non_negative(text).and_then(|value| if value < 1.0 { Ok(value) } else { Err("must be below 1".into()) })
}

fn fraction_f32(text: &str) -> Result<f32, String> {
    fraction(text).map(|value| value as f32)
}

#[derive(Debug, Parser)]
#[command(name = "graft", version, about = "Transfer learning from pretrained teachers, on a laptop CPU.")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Settings every command shares. Each resolves CLI flag > environment variable > default.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Compute backend: `flex` (pure Rust, default), `libtorch`, `wgpu` or `cuda` when built with them.
    #[arg(long, global = true, env = "GRAFT_DEVICE", default_value = "flex")]
    pub device: String,

    /// Where downloaded weights and feature caches live [default: $XDG_CACHE_HOME/graft or ~/.cache/graft].
    #[arg(long, global = true, env = "GRAFT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Never use the network (also set by GRAFT_OFFLINE=1 or HF_HUB_OFFLINE=1).
    #[arg(long, global = true)]
    pub offline: bool,

    /// No progress or log lines on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Print the resolved settings to stderr before running.
    #[arg(long, global = true)]
    pub show_settings: bool,

    /// Run frozen blocks through graft's CPU plan on `flex` (`false`: through burn's modules, to
    /// compare; the same values up to rounding).
    #[arg(long, global = true, env = "GRAFT_FUSED", value_name = "on|off", value_parser = clap::builder::BoolishValueParser::new())]
    pub fused_plan: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a student on a labelled image folder, CSV manifest or IDX files.
    Train(TrainArgs),
    /// Score a trained student on a labelled data set.
    Eval(EvalArgs),
    /// Train a small student on the bundled Fashion-MNIST sample, offline, and report it.
    Demo(DemoArgs),
    /// Train deep, mid, full and from-scratch students under the same budget and compare them.
    Compare(CompareArgs),
    /// Classify images with a pretrained teacher (ImageNet classes), or with a student (`--student RUN`).
    Predict(PredictArgs),
    /// Print a teacher's pooled feature vector for each image.
    Embed(EmbedArgs),
    /// Convert a weight file (safetensors, PyTorch zip or legacy .pth) to safetensors.
    Convert(ConvertArgs),
    /// Write a student as one ONNX file (`--format onnx`: network, head and softmax, for
    /// onnxruntime, tract and other ONNX runtimes), or its network as a weight file of its teacher
    /// (`--format teacher-weights`: safetensors in the published checkpoint's layout, which can
    /// teach new students, `train --weights`, or stand as another network in `audit
    /// --fingerprint --weights`).
    Export(ExportArgs),
    /// Serve trained students over HTTP: POST /v1/predict, GET /v1/model, /healthz, /metrics.
    Serve(ServeArgs),
    /// Measure teacher inference and training steps (images per second) on this machine.
    Bench(BenchArgs),
    /// List the teachers graft knows (with `--blocks`, each one's block names).
    Teachers(TeachersArgs),
    /// Attack a student through its public teacher alone (the mimicry attack), beside noise and
    /// white-box PGD baselines; writes `audit.json` into the run directory.
    Audit(AuditArgs),
    /// Retrain a student away from the mimicry attack (every layer, with a penalty on staying
    /// near the teacher's representation); writes a new run and the attack's success before and
    /// after.
    Harden(HardenArgs),
}

/// Which teacher and which weights.
#[derive(Debug, Args)]
pub struct TeacherArgs {
    /// Teacher name (see `graft teachers`).
    #[arg(long, default_value = graft::models::zoo::DEFAULT_TEACHER)]
    pub teacher: String,

    /// A local weight file for the teacher (safetensors or .pth), or for a text teacher its
    /// model directory (config.json, tokenizer.json, model.safetensors); works offline.
    #[arg(long)]
    pub weights: Option<PathBuf>,

    /// Load even if the file lacks some tensors or shapes some differently (they keep random values).
    #[arg(long)]
    pub allow_partial: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub teacher: TeacherArgs,

    /// A trained student's run directory: predict its classes instead of ImageNet's.
    #[arg(long, conflicts_with_all = ["weights"])]
    pub student: Option<PathBuf>,

    /// Print CSV rows `path,label,probability` (with `--student` or a teacher).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,

    /// Image files, or folders of images; for a text student, the texts themselves.
    #[arg(required_unless_present = "file", value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from))]
    pub images: Vec<PathBuf>,

    /// Inputs to predict, one per line of this file (`-`: standard input): texts for a text
    /// student, image paths otherwise.
    #[arg(long)]
    pub file: Option<PathBuf>,

    /// How many classes to show per image.
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    pub top: usize,

    /// Print JSON: [{"path", "top": [{"class_index", "label", "probability"}]}].
    #[arg(long)]
    pub json: bool,

    /// Images per forward pass.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub teacher: TeacherArgs,

    /// Image files, or folders of images; for a text teacher, the texts themselves.
    #[arg(required_unless_present = "file", value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from))]
    pub images: Vec<PathBuf>,

    /// Inputs to embed, one per line of this file (`-`: standard input): texts for a text
    /// teacher, image paths otherwise.
    #[arg(long)]
    pub file: Option<PathBuf>,

    /// Print JSON: [{"path", "features": [...]}] (for texts [{"text", "features": [...]}])
    /// (default: CSV rows `path,v1,v2,...`, or `text,v1,v2,...`).
    #[arg(long)]
    pub json: bool,

    /// Images per forward pass.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The weight file to read.
    pub input: PathBuf,
    /// The safetensors file to write.
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run directory of a trained student.
    pub run: PathBuf,
    /// `onnx`: the whole student (network, head, softmax) for ONNX runtimes; `teacher-weights`:
    /// the student's network as a safetensors weight file of its teacher (the head stays in the
    /// run), which `--weights` takes.
    #[arg(long, value_parser = ["onnx", "teacher-weights"])]
    pub format: String,
    /// The file to write [default for onnx: RUN/student.onnx].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// ONNX of an image student: take 0-255 RGB pixels (uint8, `[batch, size, size, 3]`) and
    /// normalise them in the graph, instead of the preprocessed float tensor.
    #[arg(long)]
    pub with_preprocessing: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The run directory of the student to serve (the default student: `/v1/predict`).
    #[arg(required_unless_present = "student")]
    pub run: Option<PathBuf>,
    /// More students, as NAME=RUN, each at `/v1/students/NAME/predict` (the first is the default
    /// when no RUN is given).
    #[arg(long, value_name = "NAME=RUN")]
    pub student: Vec<String>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Inputs per forward pass at most: requests that arrive together share one.
    #[arg(long, default_value_t = graft_serve::ServeOptions::default().max_batch, value_parser = at_least_one)]
    pub max_batch: usize,
    /// Milliseconds an idle worker waits for more requests after one arrives.
    #[arg(long, default_value_t = graft_serve::ServeOptions::default().batch_window.as_millis() as u64)]
    pub batch_window_ms: u64,
    /// Prediction requests that may wait per student; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = graft_serve::ServeOptions::default().queue_capacity, value_parser = at_least_one)]
    pub queue: usize,
    /// The largest request body in MiB (413 above).
    #[arg(long, default_value_t = (graft_serve::ServeOptions::default().max_body_bytes >> 20) as u64, value_parser = at_least_one_u64)]
    pub max_body_mib: u64,
    /// Images or texts per request at most (413 above).
    #[arg(long, default_value_t = graft_serve::ServeOptions::default().max_inputs, value_parser = at_least_one)]
    pub max_inputs: usize,
    /// Open connections at most; more are answered 503.
    #[arg(long, default_value_t = graft_serve::ServeOptions::default().max_connections, value_parser = at_least_one)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers, and its body (408 after).
    #[arg(long, default_value_t = graft_serve::ServeOptions::default().read_timeout.as_secs(), value_parser = at_least_one_u64)]
    pub read_timeout: u64,
}

/// How to train: strategy, head, optimisation, data handling.
#[derive(Debug, Args, Clone)]
pub struct TrainingArgs {
    /// deep (frozen teacher, new head), mid (last blocks too), full (everything), scratch
    /// (random init, a baseline), or auto (graft measures and picks).
    #[arg(long, default_value_t = graft::train::TrainOptions::default().strategy, value_parser = choice::<Strategy>())]
    pub strategy: Strategy,

    /// With `mid`: how many trailing blocks to train.
    #[arg(long)]
    pub unfreeze: Option<usize>,

    /// With `mid`: train from this block on (see `graft teachers --blocks`).
    #[arg(long)]
    pub unfreeze_from: Option<String>,

    /// The new head: `linear` or `mlp`.
    #[arg(long, default_value = "linear", value_parser = choice::<HeadChoice>())]
    pub head: HeadChoice,

    /// Hidden width of the `mlp` head.
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    pub hidden: usize,

    /// `adamw` or `sgd` (Nesterov momentum).
    #[arg(long, default_value_t = graft::train::Hyperparameters::default().optimizer, value_parser = choice::<Optimizer>())]
    pub optimizer: Optimizer,

    /// Peak learning rate of the head (after warm-up; cosine decay to 0) [default: 1e-3].
    #[arg(long, value_parser = positive)]
    pub learning_rate: Option<f64>,

    /// Unfrozen teacher blocks learn at this fraction of the head's rate [default: 1 for image
    /// teachers (measured against 0.1 in docs/QUALITY.md); 0.05 for a text encoder, 5e-5].
    #[arg(long, value_parser = non_negative)]
    pub backbone_lr_factor: Option<f64>,

    #[arg(long, default_value_t = graft::train::Hyperparameters::default().weight_decay, value_parser = non_negative)]
    pub weight_decay: f64,

    /// SGD momentum.
    #[arg(long, default_value_t = graft::train::Hyperparameters::default().momentum, value_parser = fraction)]
    pub momentum: f64,

    /// Training epochs [default: 10; 3 for a text student's fine-tuning].
    #[arg(long, value_parser = at_least_one)]
    pub epochs: Option<usize>,

    #[arg(long, default_value_t = graft::train::Hyperparameters::default().batch_size, value_parser = at_least_one)]
    pub batch_size: usize,

    #[arg(long, default_value_t = graft::train::Hyperparameters::default().warmup_epochs)]
    pub warmup_epochs: usize,

    #[arg(long, default_value_t = graft::train::Hyperparameters::default().label_smoothing, value_parser = fraction_f32)]
    pub label_smoothing: f32,

    /// Weight the loss by inverse class frequency (for unbalanced data).
    #[arg(long)]
    pub class_weights: bool,

    /// Stop when validation accuracy has not improved (nor held at a lower loss) for this many epochs.
    #[arg(long)]
    pub patience: Option<usize>,

    /// How a `deep` head is trained: `probe` (logistic regression fitted to convergence by
    /// L-BFGS, its L2 penalty chosen by 5-fold cross-validation on the cached features), `epochs`
    /// (the optimizer for `--epochs`, as other strategies), or `auto` (probe for a linear head
    /// without augmentation on up to 20,000 images).
    #[arg(long, default_value_t = graft::train::Hyperparameters::default().head_fit, value_parser = choice::<HeadFit>())]
    pub head_fit: HeadFit,

    /// Where the head starts when teacher blocks train (mid, full): `random`, or `probe` (a
    /// linear probe fitted on the frozen teacher's features first, then fine-tuned with the
    /// blocks: LP-FT; docs/QUALITY.md measures both).
    #[arg(long, default_value_t = graft::train::Hyperparameters::default().head_init, value_parser = choice::<HeadInit>())]
    pub head_init: HeadInit,

    /// How batch norms in trained teacher blocks normalise: `stored` (the teacher's statistics,
    /// as in inference; scale and shift still train), `batch` (each batch's own, PyTorch's
    /// `model.train()`), or `auto` (stored, but batch from scratch).
    #[arg(long, default_value_t = graft::train::Hyperparameters::default().batch_norm, value_parser = choice::<BatchNormMode>())]
    pub batch_norm: BatchNormMode,

    /// Train the student again on every image once the held-out images have chosen the epoch
    /// count: `auto` (when graft split the validation images off and the student trains by
    /// epochs), `on`, `off`. The held-out scores stay as the estimate.
    #[arg(long, default_value_t = graft::train::Hyperparameters::default().refit, value_parser = choice::<Refit>())]
    pub refit: Refit,

    /// Augmentation (random resized crop, flip, colour jitter): `auto` (on for mid/full), `on`, `off`.
    #[arg(long, default_value = "auto", value_parser = choice::<AugmentChoice>())]
    pub augment: AugmentChoice,

    /// Views cached per training image when part of the teacher is frozen and augmentation is on:
    /// the plain (evaluation) view and N-1 augmented ones; each epoch draws one per image.
    #[arg(long, default_value_t = graft::train::Hyperparameters::default().augmented_views)]
    pub views: usize,

    /// When teacher blocks train (mid, full, scratch): split each batch into this many shards
    /// trained at the same time on their own threads (batch norm normalizes each shard on its own,
    /// as in PyTorch's DistributedDataParallel); 1 trains the whole batch at once. Default: 2 on
    /// the CPU (flex, libtorch), 1 on a GPU. Not used with dropout (the MLP head, AlexNet).
    #[arg(long, value_parser = at_least_one)]
    pub shards: Option<usize>,

    /// Train only the head for this many epochs first, then the unfrozen blocks too.
    #[arg(long, default_value_t = graft::train::Hyperparameters::default().gradual_unfreeze_epochs)]
    pub gradual_unfreeze: usize,

    /// Text teachers, `mid` and `full`: the encoder's dropout probability while it fine-tunes
    /// (BERT's places: embeddings, attention weights, each sublayer's output) [default: 0].
    #[arg(long, value_parser = fraction)]
    pub dropout: Option<f64>,

    /// Fraction of each class held out for validation when the data has no validation set.
    #[arg(long, default_value_t = graft::train::Hyperparameters::default().validation_fraction, value_parser = fraction)]
    pub validation_fraction: f64,

    /// Use at most this many training images per class.
    #[arg(long, value_parser = at_least_one)]
    pub per_class: Option<usize>,

    /// Input size for the teacher (default: the teacher's own); smaller is faster for small images.
    #[arg(long, value_parser = image_size)]
    pub image_size: Option<usize>,

    #[arg(long, default_value_t = graft::train::TrainOptions::default().seed)]
    pub seed: u64,
}

impl TrainingArgs {
    /// The library's settings: what the flags say, the library's defaults for what they leave.
    pub fn settings(
        &self,
        out: &std::path::Path,
        resume: bool,
        settings: &crate::settings::Settings,
    ) -> graft::run::TrainSettings {
        graft::run::TrainSettings {
            strategy: self.strategy,
            unfreeze: self.unfreeze,
            unfreeze_from: self.unfreeze_from.clone(),
            head: self.head.kind(self.hidden),
            optimizer: self.optimizer,
            learning_rate: self.learning_rate,
            backbone_lr_factor: self.backbone_lr_factor,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            epochs: self.epochs,
            batch_size: self.batch_size,
            warmup_epochs: self.warmup_epochs,
            label_smoothing: self.label_smoothing,
            class_weights: self.class_weights,
            patience: self.patience,
            head_fit: self.head_fit,
            head_init: self.head_init,
            batch_norm: self.batch_norm,
            refit: self.refit,
            augment: self.augment,
            views: self.views,
            shards: self.shards,
            gradual_unfreeze: self.gradual_unfreeze,
            dropout: self.dropout,
            validation_fraction: self.validation_fraction,
            per_class: self.per_class,
            image_size: self.image_size,
            seed: self.seed,
            out: out.to_owned(),
            resume,
            cache_dir: settings.cache_dir.clone(),
            fused_plan: settings.fused_plan,
            interrupt: Some(crate::INTERRUPT.clone()),
        }
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub teacher: TeacherArgs,

    /// DIR/<class>/<images>, DIR/{train,val,test}/<class>/..., a CSV `path,label`, or IDX files.
    #[arg(long)]
    pub data: PathBuf,

    /// The run directory to write (student.safetensors, graft.json, metrics.jsonl, report.html).
    #[arg(long)]
    pub out: PathBuf,

    /// Continue an interrupted run from `OUT/checkpoint`.
    #[arg(long)]
    pub resume: bool,

    #[command(flatten)]
    pub training: TrainingArgs,

    #[command(flatten)]
    pub columns: TextColumnArgs,

    /// Print the run summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The run directory of a trained student.
    pub run: PathBuf,

    /// Labelled data to score on (any form `train --data` takes; its `test/` part if it has one).
    #[arg(long)]
    pub data: PathBuf,

    /// Print JSON (accuracy, top_k, per_class, confusion, ...).
    #[arg(long)]
    pub json: bool,

    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub batch_size: usize,

    #[command(flatten)]
    pub columns: TextColumnArgs,
}

/// Which columns of a CSV/TSV (or keys of JSON Lines) hold a text student's data.
#[derive(Debug, Args)]
pub struct TextColumnArgs {
    /// The text column (default: the first of text, sentence, review, content, message, body,
    /// document).
    #[arg(long)]
    pub text_column: Option<String>,

    /// The label column (default: the first of label, category, class, target, sentiment, y).
    #[arg(long)]
    pub label_column: Option<String>,
}

impl TextColumnArgs {
    pub fn columns(&self) -> graft::text::Columns {
        graft::text::Columns { text: self.text_column.clone(), label: self.label_column.clone() }
    }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The run directory of a trained student.
    pub run: PathBuf,

    /// Labelled images to draw sources and targets from (any form `train --data` takes; its
    /// `test/` part if it has one).
    #[arg(long)]
    pub data: PathBuf,

    /// (source, target class) pairs to attack.
    #[arg(long, default_value_t = graft::audit::run::AuditOptions::default().pairs, value_parser = at_least_one)]
    pub pairs: usize,

    /// The DSSIM budget of a crafted image.
    #[arg(long, default_value_t = graft::audit::run::AuditOptions::default().mimicry.budget, value_parser = positive)]
    pub budget: f64,

    /// The teacher block whose output the attack mimics (default: the student's last frozen
    /// block; the teacher's last for a student with none frozen). With `--fingerprint`: the
    /// block the fingerprints aim at (default: each candidate's last).
    #[arg(long)]
    pub layer: Option<String>,

    /// Attack iterations per pair (the reference runs 2,000 of Adadelta).
    #[arg(long, default_value_t = graft::audit::run::AuditOptions::default().mimicry.iterations, value_parser = at_least_one)]
    pub iterations: usize,

    /// `adam` or `adadelta` (the reference's, at rate 1).
    #[arg(long, default_value_t = graft::audit::run::AuditOptions::default().mimicry.optimizer, value_parser = choice::<graft::audit::mimicry::AttackOptimizer>())]
    pub optimizer: graft::audit::mimicry::AttackOptimizer,

    /// The optimizer's rate, in tanh space.
    #[arg(long, default_value_t = graft::audit::run::AuditOptions::default().mimicry.learning_rate, value_parser = positive)]
    pub learning_rate: f64,

    /// Pairs attacked at once.
    #[arg(long, default_value_t = graft::audit::run::AuditOptions::default().batch_size, value_parser = at_least_one)]
    pub batch_size: usize,

    /// Instead of the attack: which public teacher the student was built on. Every zoo teacher
    /// whose weights are at hand (bundled or cached; `--weights` adds one) gets a fingerprint
    /// input, and the student, queried as a black box, is scored on how near-uniformly it
    /// answers; writes `fingerprint.json`.
    #[arg(long)]
    pub fingerprint: bool,

    /// What a fingerprint input carries at the candidate's last layer: `mean` (the mean over
    /// `--data`'s images) or `zero` (the reference's; misses students whose head was fitted as
    /// a linear probe, see docs/AUDIT.md).
    #[arg(long, default_value = "mean", value_parser = choice::<graft::audit::fingerprint::Aim>())]
    pub aim: graft::audit::fingerprint::Aim,

    #[arg(long, default_value_t = graft::audit::run::AuditOptions::default().seed)]
    pub seed: u64,

    /// The teacher's weight file when it is not in the cache (works offline). With
    /// `--fingerprint`: one more candidate, a network of the student's teacher's architecture
    /// (another public model built on it, or a student written out by `graft export`).
    #[arg(long)]
    pub weights: Option<PathBuf>,

    /// Print the audit as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HardenArgs {
    /// The run directory of the student to harden.
    pub run: PathBuf,

    /// Labelled images to retrain on (any form `train --data` takes; its training and validation
    /// parts together), usually the student's own training data.
    #[arg(long)]
    pub data: PathBuf,

    /// Where to write the hardened run (a run directory `eval`, `predict` and `audit` take).
    #[arg(long)]
    pub out: PathBuf,

    /// Labelled images the accuracy and the attack are measured on, before and after (default:
    /// `--data`'s `test/` part, or else `--data` itself, which then measures the training images).
    #[arg(long)]
    pub test: Option<PathBuf>,

    /// The teacher block whose output the student is moved away from (default: what `graft audit`
    /// attacks: the student's last frozen block, the teacher's last for a student with none).
    #[arg(long)]
    pub layer: Option<String>,

    #[arg(long, default_value_t = graft::audit::harden::HardenOptions::default().epochs, value_parser = at_least_one)]
    pub epochs: usize,

    /// AdamW's peak rate for every layer (cosine decay; 1e-3 wrecks a trained student).
    #[arg(long, default_value_t = graft::audit::harden::HardenOptions::default().learning_rate, value_parser = positive)]
    pub learning_rate: f64,

    #[arg(long, default_value_t = graft::audit::harden::HardenOptions::default().batch_size, value_parser = at_least_one)]
    pub batch_size: usize,

    /// The distance the student's representation must keep from the teacher's, as a multiple of
    /// the mean distance between two training images' teacher representations (ramped up over
    /// the first half of the epochs).
    #[arg(long, default_value_t = graft::audit::harden::HardenOptions::default().threshold, value_parser = finite)]
    pub threshold: f64,

    /// What a representation still on the teacher's costs, in nats of cross-entropy.
    #[arg(long, default_value_t = graft::audit::harden::HardenOptions::default().penalty, value_parser = non_negative)]
    pub penalty: f64,

    /// How the distance to the teacher's representation is measured: `euclidean` (the
    /// reference's), or `standardised` (each channel shifted and scaled to mean 0, variance 1 over
    /// the batch first, so that rescaling channels does not count as moving away).
    #[arg(long, default_value_t = graft::audit::harden::HardenOptions::default().distance, value_parser = choice::<Distance>())]
    pub distance: Distance,

    /// Also train on this many teacher-mimicry images, crafted on the teacher alone from the
    /// training images (each toward a training image of another class, within `--budget`) and
    /// labelled as their source: adversarial training against the attack. Default: one per
    /// training image (crafting costs a few seconds an image on a laptop CPU); 0: none, the
    /// distance penalty alone.
    #[arg(long)]
    pub mimicry_examples: Option<usize>,

    /// Iterations of the attack crafting each mimicry example (Adam at 0.01).
    #[arg(long, default_value_t = graft::audit::harden::HardenOptions::default().mimicry.iterations, value_parser = at_least_one)]
    pub mimicry_example_iterations: usize,

    /// Attacked pairs before and after (0: accuracy only). The same crafted images score both
    /// students: the attack never sees the student.
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,

    /// The attack's DSSIM budget.
    #[arg(long, default_value_t = graft::audit::run::AuditOptions::default().mimicry.budget, value_parser = positive)]
    pub budget: f64,

    /// The attack's iterations per pair (Adam at 0.01, as `graft audit`).
    #[arg(long, default_value_t = graft::audit::run::AuditOptions::default().mimicry.iterations, value_parser = at_least_one)]
    pub iterations: usize,

    #[arg(long, default_value_t = graft::audit::harden::HardenOptions::default().seed)]
    pub seed: u64,

    /// The teacher's weight file when it is not in the cache (works offline).
    #[arg(long)]
    pub weights: Option<PathBuf>,

    /// Print the before/after figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the demo's run directory.
    #[arg(long, default_value = "graft-demo-run")]
    pub out: PathBuf,

    /// deep, mid or full.
    #[arg(long, default_value = "deep", value_parser = choice::<Strategy>())]
    pub strategy: Strategy,
}

#[derive(Debug, Args)]
pub struct TeachersArgs {
    /// Also list each teacher's block names (what `--unfreeze-from` takes).
    #[arg(long)]
    pub blocks: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub teacher: TeacherArgs,

    /// Labelled data, as `train --data` takes it.
    #[arg(long)]
    pub data: PathBuf,

    /// Where each strategy's run directory and the comparison report go.
    #[arg(long, default_value = "graft-compare")]
    pub out: PathBuf,

    /// Strategies to compare, in order (text teachers: deep, mid and full; `scratch` is skipped).
    #[arg(long, value_delimiter = ',', default_value = "deep,mid,full,scratch", value_parser = choice::<Strategy>())]
    pub strategies: Vec<Strategy>,

    /// Also score each student on this labelled test data (or the data's own `test/` part).
    #[arg(long)]
    pub test: Option<PathBuf>,

    #[command(flatten)]
    pub training: TrainingArgs,

    #[command(flatten)]
    pub columns: TextColumnArgs,

    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Teachers to measure (the published weights where graft bundles them, EfficientNet-Lite0;
    /// random weights for the others).
    #[arg(long, value_delimiter = ',', default_value = "resnet18,resnet50,efficientnet_lite0")]
    pub teachers: Vec<String>,

    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub batch_size: usize,

    /// Timed iterations per operation (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    pub iterations: usize,

    /// Untimed iterations before the timed ones.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,

    /// `images`: real photos (the bundled Fashion-MNIST sample); `random`: normal noise.
    #[arg(long, default_value = "images", value_parser = ["images", "random"])]
    pub inputs: String,

    /// Only these operations (inference, inference_burn, train_full, train_last_block); all
    /// when left out.
    #[arg(long, value_delimiter = ',', value_parser = ["inference", "inference_burn", "train_full", "train_last_block"])]
    pub operations: Vec<String>,
}
