//! ResNet-18 and ResNet-50 in torchvision's layout.
//!
//! He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016. torchvision's
//! version (v1.5) puts the stride of a bottleneck's downsampling on its 3x3 convolution.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::Device;

use super::layers::{ConvSpec, batch_norm, linear};
use crate::net::{Activation, Block, Layer, Network, Pooling, Top};
use crate::weights::KeyMap;

const EPSILON: f64 = 1e-5;

/// ResNet depth: 18 uses basic blocks, 50 bottlenecks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetDepth {
    ResNet18,
    ResNet50,
}

/// The 1x1 projection on a residual connection whose shape changes (`downsample.0/1`).
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

/// A basic block (two 3x3 convolutions) or a bottleneck (1x1, 3x3, 1x1 with expansion 4).
#[derive(Module, Debug)]
pub struct ResidualBlock {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub conv2: Conv2d,
    pub bn2: BatchNorm,
    pub conv3: Option<Conv2d>,
    pub bn3: Option<BatchNorm>,
    pub downsample: Option<Downsample>,
}

impl ResidualBlock {
    fn basic(input: usize, planes: usize, stride: usize, device: &Device) -> Self {
        ResidualBlock {
            conv1: ConvSpec::new(input, planes, 3).stride(stride).pad(1).init(device),
            bn1: batch_norm(planes, EPSILON, device),
            conv2: ConvSpec::new(planes, planes, 3).pad(1).init(device),
            bn2: batch_norm(planes, EPSILON, device),
            conv3: None,
            bn3: None,
            downsample: (stride != 1 || input != planes).then(|| Downsample {
                conv: ConvSpec::new(input, planes, 1).stride(stride).init(device),
                bn: batch_norm(planes, EPSILON, device),
            }),
        }
    }

    fn bottleneck(input: usize, planes: usize, stride: usize, device: &Device) -> Self {
        let output = planes * 4;
        ResidualBlock {
            conv1: ConvSpec::new(input, planes, 1).init(device),
            bn1: batch_norm(planes, EPSILON, device),
            conv2: ConvSpec::new(planes, planes, 3).stride(stride).pad(1).init(device),
            bn2: batch_norm(planes, EPSILON, device),
            conv3: Some(ConvSpec::new(planes, output, 1).init(device)),
            bn3: Some(batch_norm(output, EPSILON, device)),
            downsample: (stride != 1 || input != output).then(|| Downsample {
                conv: ConvSpec::new(input, output, 1).stride(stride).init(device),
                bn: batch_norm(output, EPSILON, device),
            }),
        }
    }

    /// `relu(body(x) + shortcut(x))`.
    fn layer(&self) -> Layer<'_> {
        let mut body = vec![Layer::conv_norm(&self.conv1, &self.bn1, Activation::Relu)];
        match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => {
                body.push(Layer::conv_norm(&self.conv2, &self.bn2, Activation::Relu));
                body.push(Layer::conv_norm(conv3, bn3, Activation::Identity));
            }
            _ => body.push(Layer::conv_norm(&self.conv2, &self.bn2, Activation::Identity)),
        }
        let shortcut = match &self.downsample {
            Some(downsample) => vec![Layer::conv_norm(&downsample.conv, &downsample.bn, Activation::Identity)],
            None => Vec::new(),
        };
        Layer::Residual { body, shortcut, activation: Activation::Relu }
    }
}

/// ResNet with torchvision's parameter names.
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: BatchNorm,
    pub maxpool: MaxPool2d,
    pub layer1: Vec<ResidualBlock>,
    pub layer2: Vec<ResidualBlock>,
    pub layer3: Vec<ResidualBlock>,
    pub layer4: Vec<ResidualBlock>,
    pub fc: Linear,
}

impl ResNet {
    pub fn new(depth: ResNetDepth, classes: usize, device: &Device) -> Self {
        let (repeats, bottleneck) = match depth {
            ResNetDepth::ResNet18 => ([2, 2, 2, 2], false),
            ResNetDepth::ResNet50 => ([3, 4, 6, 3], true),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let mut channels = 64;
        let mut layers: Vec<Vec<ResidualBlock>> = Vec::new();
        for (stage, repeats) in repeats.into_iter().enumerate() {
            let planes = 64 << stage;
            let stride = if stage == 0 { 1 } else { 2 };
            let blocks = (0..repeats)
                .map(|index| {
                    let stride = if index == 0 { stride } else { 1 };
                    let block = if bottleneck {
                        ResidualBlock::bottleneck(channels, planes, stride, device)
                    } else {
                        ResidualBlock::basic(channels, planes, stride, device)
                    };
                    channels = planes * expansion;
                    block
                })
                .collect();
            layers.push(blocks);
        }
        let mut layers = layers.into_iter();
        let mut next = || layers.next().unwrap_or_default();
        ResNet {
            conv1: ConvSpec::new(3, 64, 7).stride(2).pad(3).init(device),
            bn1: batch_norm(64, EPSILON, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1: next(),
            layer2: next(),
            layer3: next(),
            layer4: next(),
            fc: linear(channels, classes, device),
        }
    }
}

impl Network for ResNet {
    /// The stem (convolution, batch norm, ReLU, max pooling), then the four stages.
    fn blocks(&self) -> Vec<Block<'_>> {
        let stem = vec![Layer::conv_norm(&self.conv1, &self.bn1, Activation::Relu), Layer::MaxPool(&self.maxpool)];
        let mut blocks = vec![Block::new("conv1", stem)];
        for (name, stage) in
            [("layer1", &self.layer1), ("layer2", &self.layer2), ("layer3", &self.layer3), ("layer4", &self.layer4)]
        {
            blocks.push(Block::new(name, stage.iter().map(ResidualBlock::layer).collect()));
        }
        blocks
    }

    fn top(&self) -> Top<'_> {
        Top { pooling: Pooling::GlobalAverage, dropout: None, classifier: &self.fc }
    }
}

/// torchvision names the downsample's convolution and batch norm by position.
pub struct ResNetKeys;

impl KeyMap for ResNetKeys {
    fn checkpoint_key(&self, path: &str) -> String {
        path.replace(".downsample.conv.", ".downsample.0.").replace(".downsample.bn.", ".downsample.1.")
    }
}
