//! The one description of a network: its ordered named blocks, each a sequence of layers
//! borrowed from the model's own modules, and the top that turns the last block's output into
//! features and ImageNet logits.
//!
//! A model file says what its network is once, in [`Network::blocks`] and [`Network::top`];
//! everything else derives from that: the block names, running blocks through burn
//! ([`crate::backend::forward`]), freezing blocks, and the CPU plan for frozen blocks
//! ([`crate::backend::fused`]). A block that is not in the table cannot run or be frozen.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
use burn::nn::{BatchNorm, Dropout, Linear};
use burn::tensor::Tensor;

/// What follows a convolution (and its batch norm), or a residual add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
    Relu6,
}

/// One step of a block.
#[derive(Debug)]
pub enum Layer<'a> {
    /// A convolution, then its batch norm if it has one, then the activation.
    Conv {
        conv: &'a Conv2d,
        norm: Option<&'a BatchNorm>,
        activation: Activation,
    },
    MaxPool(&'a MaxPool2d),
    AvgPool(&'a AvgPool2d),
    AdaptiveAvgPool(&'a AdaptiveAvgPool2d),
    /// Flatten, dropout, the fully connected layer and its activation; the output stays 4-D
    /// (`[N, outputs, 1, 1]`), so every block maps a 4-D tensor to a 4-D tensor.
    Dense {
        dropout: &'a Dropout,
        linear: &'a Linear,
        activation: Activation,
    },
    /// `activation(body(x) + shortcut(x))`; an empty shortcut is the identity.
    Residual {
        body: Vec<Layer<'a>>,
        shortcut: Vec<Layer<'a>>,
        activation: Activation,
    },
    /// Branches on the same input, their outputs concatenated along the channels.
    Concat(Vec<Vec<Layer<'a>>>),
}

impl Layer<'_> {
    /// A convolution followed by its batch norm and an activation.
    pub fn conv_norm<'a>(conv: &'a Conv2d, norm: &'a BatchNorm, activation: Activation) -> Layer<'a> {
        Layer::Conv { conv, norm: Some(norm), activation }
    }

    /// The ids of the parameters (and training flags) this layer holds, so a block can be
    /// frozen through burn's `freeze_group`. A dense layer's dropout is left out: AlexNet shares
    /// one dropout between its fully connected blocks and its classifier.
    fn collect_ids(&self, ids: &mut IdCollector) {
        match self {
            Layer::Conv { conv, norm, .. } => {
                conv.visit(ids);
                if let Some(norm) = norm {
                    norm.visit(ids);
                }
            }
            Layer::Dense { linear, .. } => linear.visit(ids),
            Layer::MaxPool(_) | Layer::AvgPool(_) | Layer::AdaptiveAvgPool(_) => {}
            Layer::Residual { body, shortcut, .. } => {
                body.iter().chain(shortcut).for_each(|layer| layer.collect_ids(ids))
            }
            Layer::Concat(branches) => branches.iter().flatten().for_each(|layer| layer.collect_ids(ids)),
        }
    }
}

/// A named block: the checkpoint's name for it (`layer3`, `_blocks.7`, `Mixed_6a`) and its layers.
#[derive(Debug)]
pub struct Block<'a> {
    pub name: String,
    pub layers: Vec<Layer<'a>>,
}

impl<'a> Block<'a> {
    pub fn new(name: impl Into<String>, layers: Vec<Layer<'a>>) -> Block<'a> {
        Block { name: name.into(), layers }
    }

    /// The ids of every parameter and training flag the block holds.
    pub fn param_ids(&self) -> Vec<ParamId> {
        let mut ids = IdCollector::default();
        self.layers.iter().for_each(|layer| layer.collect_ids(&mut ids));
        ids.0
    }
}

/// How the last block's output becomes a feature vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of each channel over the plane.
    GlobalAverage,
    /// `[N, C, 1, 1]` -> `[N, C]` (AlexNet, whose last block is fully connected).
    Flatten,
}

/// What follows the blocks: pooling into the penultimate feature vector, then the ImageNet
/// classifier (dropout, if any, and a linear layer), which a student replaces.
#[derive(Debug)]
pub struct Top<'a> {
    pub pooling: Pooling,
    pub dropout: Option<&'a Dropout>,
    pub classifier: &'a Linear,
}

impl Top<'_> {
    /// The length of the feature vector: the classifier's inputs.
    pub fn feature_dim(&self) -> usize {
        self.classifier.weight.dims()[0]
    }

    pub fn classifier_ids(&self) -> Vec<ParamId> {
        let mut ids = IdCollector::default();
        self.classifier.visit(&mut ids);
        ids.0
    }
}

/// A network described once: every architecture file implements this and nothing else about
/// how it runs.
pub trait Network {
    /// The ordered blocks, each with its layers.
    fn blocks(&self) -> Vec<Block<'_>>;

    /// Pooling and classifier after the last block.
    fn top(&self) -> Top<'_>;
}

#[derive(Default)]
struct IdCollector(Vec<ParamId>);

impl ModuleVisitor for IdCollector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }

    fn visit_flag(&mut self, flag: &Param<burn::module::Flag>) {
        self.0.push(flag.id);
    }
}
