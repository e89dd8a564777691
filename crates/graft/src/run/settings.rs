//! How a student is trained, for either modality: every setting of `graft train` with its
//! default decided here, once. Settings whose default depends on the teacher's modality (an
//! encoder fine-tunes at a smaller rate, for fewer epochs) or on the device (shards) are `None`
//! until a run resolves them.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::data::augment::{AugmentChoice, Augmentation};
use crate::interrupt::Interrupt;
use crate::text::TextTrainOptions;
use crate::train::{
    BatchNormMode, HeadFit, HeadInit, HeadKind, Hyperparameters, Optimizer, Refit, Strategy, TrainOptions,
};

/// Every setting of a training run. `Default` gives graft's defaults; set what differs.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    /// `deep`, `mid`, `full`, `scratch` (image teachers) or `auto` (measured and chosen).
    pub strategy: Strategy,
    /// With `mid`: how many trailing blocks (or encoder layers) train.
    pub unfreeze: Option<usize>,
    /// With `mid`: the first block that trains (image teachers).
    pub unfreeze_from: Option<String>,
    pub head: HeadKind,
    pub optimizer: Optimizer,
    /// The head's peak rate; `None`: 1e-3 for image students, the text default for text ones.
    pub learning_rate: Option<f64>,
    /// Unfrozen blocks learn at this fraction of the head's rate; `None`: the modality's default.
    pub backbone_lr_factor: Option<f64>,
    pub weight_decay: f64,
    pub momentum: f64,
    /// `None`: 10 for image students, the text default for a text fine-tune.
    pub epochs: Option<usize>,
    pub batch_size: usize,
    pub warmup_epochs: usize,
    pub label_smoothing: f32,
    pub class_weights: bool,
    pub patience: Option<usize>,
    pub head_fit: HeadFit,
    pub head_init: HeadInit,
    pub batch_norm: BatchNormMode,
    pub refit: Refit,
    pub augment: AugmentChoice,
    pub views: usize,
    /// `None`: as many as pay on the device ([`crate::device::default_shards`]).
    pub shards: Option<usize>,
    pub gradual_unfreeze: usize,
    /// A text encoder's dropout probability while it fine-tunes (`mid`, `full`); `None`: the
    /// text default. Image students' dropout is their architecture's (AlexNet's dense layers,
    /// the MLP head), so this is refused for image teachers.
    pub dropout: Option<f64>,
    /// Held out of each class when the data has no validation set.
    pub validation_fraction: f64,
    /// Train on at most this many examples per class.
    pub per_class: Option<usize>,
    /// An image teacher's input size (`None`: its own).
    pub image_size: Option<usize>,
    pub seed: u64,
    /// The run directory written.
    pub out: PathBuf,
    /// Continue from `out/checkpoint` (image students).
    pub resume: bool,
    pub cache_dir: PathBuf,
    /// Frozen blocks through graft's fused CPU plan on `flex`.
    pub fused_plan: bool,
    /// Stops training at the next batch when requested.
    pub interrupt: Option<Interrupt>,
}

impl Default for TrainSettings {
    fn default() -> TrainSettings {
        let options = TrainOptions::default();
        let hyper = &options.hyperparameters;
        TrainSettings {
            strategy: options.strategy,
            unfreeze: options.unfreeze,
            unfreeze_from: options.unfreeze_from.clone(),
            head: options.head,
            optimizer: hyper.optimizer,
            learning_rate: None,
            backbone_lr_factor: None,
            weight_decay: hyper.weight_decay,
            momentum: hyper.momentum,
            epochs: None,
            batch_size: hyper.batch_size,
            warmup_epochs: hyper.warmup_epochs,
            label_smoothing: hyper.label_smoothing,
            class_weights: hyper.class_weights,
            patience: hyper.patience,
            head_fit: hyper.head_fit,
            head_init: hyper.head_init,
            batch_norm: hyper.batch_norm,
            refit: hyper.refit,
            augment: AugmentChoice::Auto,
            views: hyper.augmented_views,
            shards: None,
            gradual_unfreeze: hyper.gradual_unfreeze_epochs,
            dropout: None,
            validation_fraction: hyper.validation_fraction,
            per_class: None,
            image_size: options.image_size,
            seed: options.seed,
            out: options.out.clone(),
            resume: false,
            cache_dir: options.cache_dir.clone(),
            fused_plan: options.fused_plan,
            interrupt: None,
        }
    }
}

impl TrainSettings {
    /// The image trainer's options for data recorded as `data`; `pooled_validation` when graft
    /// split the validation images off (a `deep` probe may then be fitted to all of them).
    pub fn image_options(&self, data: &Path, pooled_validation: bool, device: &Device) -> TrainOptions {
        let defaults = Hyperparameters::for_device(device);
        let hyperparameters = Hyperparameters {
            optimizer: self.optimizer,
            learning_rate: self.learning_rate.unwrap_or(defaults.learning_rate),
            backbone_learning_rate_factor: self.backbone_lr_factor.unwrap_or(defaults.backbone_learning_rate_factor),
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            epochs: self.epochs.unwrap_or(defaults.epochs),
            batch_size: self.batch_size,
            warmup_epochs: self.warmup_epochs,
            label_smoothing: self.label_smoothing,
            class_weights: self.class_weights,
            patience: self.patience,
            gradual_unfreeze_epochs: self.gradual_unfreeze,
            // Set by `train_run` from `augment` and the strategy.
            augmentation: Augmentation::none(),
            augmented_views: self.views,
            validation_fraction: self.validation_fraction,
            shards: self.shards.unwrap_or(defaults.shards),
            head_fit: self.head_fit,
            head_init: self.head_init,
            batch_norm: self.batch_norm,
            refit: self.refit,
        };
        TrainOptions {
            strategy: self.strategy,
            unfreeze: self.unfreeze,
            unfreeze_from: self.unfreeze_from.clone(),
            head: self.head,
            hyperparameters,
            seed: self.seed,
            image_size: self.image_size,
            cache_dir: self.cache_dir.clone(),
            out: self.out.clone(),
            resume: self.resume,
            fused_plan: self.fused_plan,
            data: data.display().to_string(),
            pooled_validation,
            interrupt: self.interrupt.clone(),
            ..TrainOptions::default()
        }
    }

    /// The text trainer's options for data recorded as `data`.
    pub fn text_options(&self, data: &Path, device: &Device) -> TextTrainOptions {
        let defaults = TextTrainOptions::default();
        TextTrainOptions {
            strategy: self.strategy,
            unfreeze: self.unfreeze,
            epochs: self.epochs.unwrap_or(defaults.epochs),
            learning_rate: self.learning_rate.unwrap_or(defaults.learning_rate),
            encoder_factor: self.backbone_lr_factor.unwrap_or(defaults.encoder_factor),
            weight_decay: self.weight_decay,
            shards: self.shards.unwrap_or_else(|| crate::device::default_shards(device)),
            dropout: self.dropout.unwrap_or(defaults.dropout),
            validation_fraction: self.validation_fraction,
            seed: self.seed,
            cache_dir: self.cache_dir.clone(),
            out: self.out.clone(),
            batch_size: self.batch_size,
            data: data.display().to_string(),
            interrupt: self.interrupt.clone(),
            resume: self.resume,
            refit: self.refit,
        }
    }
}
