//! `Teacher`: a pretrained network cut into ordered named blocks, with its card.
//!
//! Every architecture exposes the same four operations: run one block, pool the last block's
//! output into the feature vector, classify a feature vector, and name its blocks. "Frozen
//! prefix / trainable suffix" is then one cut, used alike by training, caching and the audit.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use graft_weights::TensorMap;

use super::alexnet::{AlexNet, AlexNetKeys};
use super::efficientnet_lite::{EfficientNetLite, TimmLiteKeys, stage_depths};
use super::inception_v3::{InceptionV3, InceptionV3Keys};
use super::mobilenet_v2::{MobileNetV2, MobileNetV2Keys};
use super::resnet::{ResNet, ResNetKeys};
use super::zoo::{Architecture, CheckpointLayout, TeacherCard};
use crate::error::Result;
use crate::weights::{KeyMap, LoadReport, SameKeys, load_into};

pub use super::layers::global_average;

/// The network itself, whichever architecture it is. One per model, so the size of its largest
/// variant costs nothing worth boxing (burn's `Module` derive would not see through a box).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Backbone {
    AlexNet(AlexNet),
    InceptionV3(InceptionV3),
    ResNet(ResNet),
    MobileNetV2(MobileNetV2),
    EfficientNetLite(EfficientNetLite),
}

macro_rules! dispatch {
    ($self:expr, $net:ident => $body:expr) => {
        match $self {
            Backbone::AlexNet($net) => $body,
            Backbone::InceptionV3($net) => $body,
            Backbone::ResNet($net) => $body,
            Backbone::MobileNetV2($net) => $body,
            Backbone::EfficientNetLite($net) => $body,
        }
    };
}

impl Backbone {
    /// A randomly initialized network with `classes` outputs.
    pub fn new(architecture: Architecture, classes: usize, device: &Device) -> Self {
        match architecture {
            Architecture::AlexNet => Backbone::AlexNet(AlexNet::new(classes, device)),
            Architecture::InceptionV3 => Backbone::InceptionV3(InceptionV3::new(classes, device)),
            Architecture::ResNet(depth) => Backbone::ResNet(ResNet::new(depth, classes, device)),
            Architecture::MobileNetV2 => Backbone::MobileNetV2(MobileNetV2::new(classes, device)),
            Architecture::EfficientNetLite(variant) => Backbone::EfficientNetLite(EfficientNetLite::new(variant, classes, device)),
        }
    }

    /// The ordered block names, as the checkpoint names them (`layer3`, `_blocks.7`).
    pub fn block_names(&self) -> Vec<String> {
        dispatch!(self, net => net.block_names())
    }

    /// Runs block `index` (0-based) on `x`.
    pub fn forward_block(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        dispatch!(self, net => net.forward_block(index, x))
    }

    /// The pooled penultimate vector from the last block's output.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        dispatch!(self, net => net.features(x))
    }

    /// The classifier applied to feature vectors.
    pub fn classify(&self, features: Tensor<2>) -> Tensor<2> {
        dispatch!(self, net => net.classify(features))
    }

    pub fn feature_dim(&self) -> usize {
        dispatch!(self, net => net.feature_dim())
    }

    /// Freezes blocks `[0, cut)` and the ImageNet classifier: they get no gradients and their
    /// batch norms run on stored statistics.
    pub fn freeze_until(self, cut: usize) -> Self {
        let mut backbone = match self {
            Backbone::AlexNet(net) => Backbone::AlexNet(net.freeze_classifier()),
            Backbone::InceptionV3(net) => Backbone::InceptionV3(net.freeze_classifier()),
            Backbone::ResNet(net) => Backbone::ResNet(net.freeze_classifier()),
            Backbone::MobileNetV2(net) => Backbone::MobileNetV2(net.freeze_classifier()),
            Backbone::EfficientNetLite(net) => Backbone::EfficientNetLite(net.freeze_classifier()),
        };
        for index in 0..cut {
            backbone = match backbone {
                Backbone::AlexNet(net) => Backbone::AlexNet(net.freeze_block(index)),
                Backbone::InceptionV3(net) => Backbone::InceptionV3(net.freeze_block(index)),
                Backbone::ResNet(net) => Backbone::ResNet(net.freeze_block(index)),
                Backbone::MobileNetV2(net) => Backbone::MobileNetV2(net.freeze_block(index)),
                Backbone::EfficientNetLite(net) => Backbone::EfficientNetLite(net.freeze_block(index)),
            };
        }
        backbone
    }

    /// How this network's parameter paths map to a checkpoint of the given layout.
    pub fn key_map(&self, layout: CheckpointLayout, architecture: Architecture) -> Box<dyn KeyMap> {
        match (self, layout, architecture) {
            (Backbone::EfficientNetLite(_), CheckpointLayout::Timm, Architecture::EfficientNetLite(variant)) => {
                Box::new(TimmLiteKeys { stage_depths: stage_depths(variant) })
            }
            (Backbone::AlexNet(_), ..) => Box::new(AlexNetKeys),
            (Backbone::InceptionV3(_), ..) => Box::new(InceptionV3Keys),
            (Backbone::ResNet(_), ..) => Box::new(ResNetKeys),
            (Backbone::MobileNetV2(net), ..) => Box::new(MobileNetV2Keys { blocks: net.blocks.len() }),
            (Backbone::EfficientNetLite(_), ..) => Box::new(SameKeys),
        }
    }
}

/// A pretrained network with its card and the checksum of the weights it was loaded from.
#[derive(Debug, Clone)]
pub struct Teacher {
    pub card: TeacherCard,
    pub backbone: Backbone,
    /// SHA-256 of the weight file (the cache key of everything computed from this teacher).
    pub weights_sha256: String,
}

impl Teacher {
    /// Builds the teacher's network and loads `tensors` into it.
    pub fn from_tensors(
        card: &TeacherCard,
        tensors: &TensorMap,
        layout: CheckpointLayout,
        weights_sha256: String,
        file: &Path,
        device: &Device,
        allow_partial: bool,
    ) -> Result<(Teacher, LoadReport)> {
        let backbone = Backbone::new(card.architecture, 1000, device);
        let keys = backbone.key_map(layout, card.architecture);
        let (backbone, report) = load_into(backbone, tensors, keys.as_ref(), file, allow_partial)?;
        Ok((Teacher { card: card.clone(), backbone, weights_sha256 }, report))
    }

    pub fn block_names(&self) -> Vec<String> {
        self.backbone.block_names()
    }

    /// Runs blocks `[0, until)`: the part in front of a cut.
    pub fn forward_until(&self, x: Tensor<4>, until: usize) -> Tensor<4> {
        (0..until).fold(x, |x, index| self.backbone.forward_block(index, x))
    }

    /// Runs blocks `[from, end)`: the part behind a cut.
    pub fn forward_from(&self, x: Tensor<4>, from: usize) -> Tensor<4> {
        (from..self.block_names().len()).fold(x, |x, index| self.backbone.forward_block(index, x))
    }

    /// Pooled penultimate features of preprocessed images `[N, 3, H, W]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        self.backbone.features(self.forward_from(images, 0))
    }

    /// ImageNet logits of preprocessed images.
    pub fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.backbone.classify(self.features(images))
    }
}
