//! ResNet-18 and ResNet-50 in torchvision's layout.
//!
//! He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016. torchvision's
//! version (v1.5) puts the stride of a bottleneck's downsampling on its 3x3 convolution.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Linear, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};

use super::layers::{self, Activation, ConvSpec, batch_norm, global_average, linear};
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
    pub relu: Relu,
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
            relu: Relu::new(),
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
            relu: Relu::new(),
        }
    }

    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let x = layers::normalize_activated(&self.bn1, layers::conv(&self.conv1, input.clone()), Activation::Relu);
        let x = layers::conv(&self.conv2, x);
        let x = match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => layers::normalize(bn3, layers::conv(conv3, layers::normalize_activated(&self.bn2, x, Activation::Relu))),
            _ => layers::normalize(&self.bn2, x),
        };
        let identity = match &self.downsample {
            Some(downsample) => layers::normalize(&downsample.bn, layers::conv(&downsample.conv, input)),
            None => input,
        };
        self.relu.forward(x + identity)
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
    pub relu: Relu,
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
            relu: Relu::new(),
        }
    }

    pub fn block_names(&self) -> Vec<String> {
        ["conv1", "layer1", "layer2", "layer3", "layer4"].map(str::to_owned).to_vec()
    }

    pub fn forward_block(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        let stage = match index {
            0 => return self.maxpool.forward(layers::normalize_activated(&self.bn1, layers::conv(&self.conv1, x), Activation::Relu)),
            1 => &self.layer1,
            2 => &self.layer2,
            3 => &self.layer3,
            _ => &self.layer4,
        };
        stage.iter().fold(x, |x, block| block.forward(x))
    }

    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        global_average(x)
    }

    pub fn classify(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc.forward(features)
    }

    pub fn freeze_block(mut self, index: usize) -> Self {
        let freeze_all = |blocks: Vec<ResidualBlock>| blocks.into_iter().map(Module::freeze).collect();
        match index {
            0 => {
                self.conv1 = self.conv1.freeze();
                self.bn1 = self.bn1.freeze();
            }
            1 => self.layer1 = freeze_all(self.layer1),
            2 => self.layer2 = freeze_all(self.layer2),
            3 => self.layer3 = freeze_all(self.layer3),
            _ => self.layer4 = freeze_all(self.layer4),
        }
        self
    }

    pub fn freeze_classifier(mut self) -> Self {
        self.fc = self.fc.freeze();
        self
    }

    pub fn feature_dim(&self) -> usize {
        self.fc.weight.dims()[0]
    }
}

/// torchvision names the downsample's convolution and batch norm by position.
pub struct ResNetKeys;

impl KeyMap for ResNetKeys {
    fn checkpoint_key(&self, path: &str) -> String {
        path.replace(".downsample.conv.", ".downsample.0.").replace(".downsample.bn.", ".downsample.1.")
    }
}
