//! `Teacher`: a pretrained network cut into ordered named blocks, with its card.
//!
//! Every architecture describes itself once ([`crate::net::Network`]); from that description
//! the backbone names its blocks, runs any range of them, pools, classifies and freezes. "Frozen
//! prefix / trainable suffix" is then one cut, used alike by training, caching and the audit.

use std::ops::Range;
use std::path::Path;

use burn::module::{Module, ParamGroup};
use burn::tensor::{Device, Tensor};
use graft_weights::TensorMap;

use super::alexnet::{AlexNet, AlexNetKeys};
use super::efficientnet_lite::{EfficientNetLite, TimmLiteKeys, stage_depths};
use super::inception_v3::{InceptionV3, InceptionV3Keys};
use super::mobilenet_v2::{MobileNetV2, MobileNetV2Keys};
use super::resnet::{ResNet, ResNetKeys};
use super::zoo::{Architecture, CheckpointLayout, TeacherCard};
use crate::backend::forward;
use crate::error::{GraftError, Result};
use crate::net::{Block, Network, Top};
use crate::weights::{KeyMap, LoadReport, SameKeys, load_into};

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
            Architecture::EfficientNetLite(variant) => {
                Backbone::EfficientNetLite(EfficientNetLite::new(variant, classes, device))
            }
        }
    }

    /// The network as its file describes it: its ordered named blocks.
    pub fn blocks(&self) -> Vec<Block<'_>> {
        dispatch!(self, net => net.blocks())
    }

    /// Pooling and the ImageNet classifier after the last block.
    pub fn top(&self) -> Top<'_> {
        dispatch!(self, net => net.top())
    }

    /// The ordered block names, as the checkpoint names them (`layer3`, `_blocks.7`).
    pub fn block_names(&self) -> Vec<String> {
        self.blocks().into_iter().map(|block| block.name).collect()
    }

    /// Runs blocks `range` (0-based, end excluded) on `x`: `0..cut` is the part in front of a
    /// cut, `cut..count` the part behind it.
    ///
    /// # Errors
    /// A range that is not within this network's blocks.
    pub fn forward_blocks(&self, x: Tensor<4>, range: Range<usize>) -> Result<Tensor<4>> {
        let blocks = self.blocks();
        let selected = blocks.get(range.clone()).ok_or(GraftError::BlockRange {
            start: range.start,
            end: range.end,
            count: blocks.len(),
        })?;
        Ok(forward::blocks(selected, x))
    }

    /// The pooled penultimate vector from the last block's output.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        forward::features(&self.top(), x)
    }

    /// The classifier applied to feature vectors.
    pub fn classify(&self, features: Tensor<2>) -> Tensor<2> {
        forward::classify(&self.top(), features)
    }

    pub fn feature_dim(&self) -> usize {
        self.top().feature_dim()
    }

    /// Freezes blocks `[0, cut)` and the ImageNet classifier, through burn's `freeze_group`:
    /// they get no gradients and their batch norms run on stored statistics.
    ///
    /// # Errors
    /// A cut past the last block.
    pub fn freeze_until(self, cut: usize) -> Result<Self> {
        let blocks = self.blocks();
        let frozen = blocks.get(..cut).ok_or(GraftError::BlockRange { start: 0, end: cut, count: blocks.len() })?;
        let mut ids = self.top().classifier_ids();
        ids.extend(frozen.iter().flat_map(Block::param_ids));
        drop(blocks);
        Ok(self.freeze_group(ParamGroup::from_ids(ids)))
    }

    /// Puts every batch norm on its stored statistics (as in inference) while its scale and
    /// shift, and every other parameter, keep training: the `stored` batch-norm mode of
    /// fine-tuning. On a few hundred images, batches of 32 give noisy statistics far from the
    /// ones the teacher was trained with (docs/QUALITY.md measures what that costs).
    pub fn freeze_batch_norm_statistics(self) -> Self {
        let mut finder = BatchNormFlags::default();
        self.visit(&mut finder);
        self.freeze_group(ParamGroup::from_ids(finder.ids))
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

/// Collects the training flags of the batch norms in a module (not those of dropout layers).
#[derive(Default)]
struct BatchNormFlags {
    containers: Vec<bool>,
    ids: Vec<burn::module::ParamId>,
}

impl burn::module::ModuleVisitor for BatchNormFlags {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.containers.push(container_type == "Struct:BatchNorm");
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.containers.pop();
    }

    fn visit_flag(&mut self, flag: &burn::module::Param<burn::module::Flag>) {
        if self.containers.last() == Some(&true) {
            self.ids.push(flag.id);
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

    /// The blocks in front of block `layer`'s output (its index plus one), as a cut.
    ///
    /// # Errors
    /// A block name this teacher does not have; the message lists the ones it has.
    pub fn cut_after(&self, layer: &str) -> Result<usize> {
        let names = self.block_names();
        names.iter().position(|name| name == layer).map(|index| index + 1).ok_or_else(|| {
            GraftError::Invalid(format!(
                "teacher `{}` has no block `{layer}`; its blocks: {}",
                self.card.name,
                names.join(", ")
            ))
        })
    }

    /// Runs blocks `[0, until)`: the part in front of a cut.
    pub fn forward_until(&self, x: Tensor<4>, until: usize) -> Result<Tensor<4>> {
        self.backbone.forward_blocks(x, 0..until)
    }

    /// Pooled penultimate features of preprocessed images `[N, 3, H, W]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let blocks = self.backbone.blocks();
        self.backbone.features(forward::blocks(&blocks, images))
    }

    /// ImageNet logits of preprocessed images.
    pub fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.backbone.classify(self.features(images))
    }
}

/// A backbone describes itself as its architecture does (so the backend's plans take any
/// [`Network`]).
impl Network for Backbone {
    fn blocks(&self) -> Vec<Block<'_>> {
        Backbone::blocks(self)
    }

    fn top(&self) -> Top<'_> {
        Backbone::top(self)
    }
}
