//! MobileNetV2 in torchvision's layout.
//!
//! Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and Linear
//! Bottlenecks", CVPR 2018.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear};
use burn::tensor::Device;

use super::layers::{ConvSpec, batch_norm, linear};
use crate::net::{Activation, Block, Layer, Network, Pooling, Top};
use crate::weights::KeyMap;

const EPSILON: f64 = 1e-5;
const LAST_CHANNELS: usize = 1280;

/// (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
const SETTINGS: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

/// Convolution, batch norm, ReLU6 (torchvision's `Conv2dNormActivation`).
#[derive(Module, Debug)]
pub struct ConvBnRelu6 {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl ConvBnRelu6 {
    fn new(spec: ConvSpec, device: &Device) -> Self {
        let channels = spec.channels[1];
        ConvBnRelu6 { conv: spec.init(device), bn: batch_norm(channels, EPSILON, device) }
    }

    fn layer(&self) -> Layer<'_> {
        Layer::conv_norm(&self.conv, &self.bn, Activation::Relu6)
    }
}

#[derive(Module, Debug)]
pub struct InvertedResidual {
    pub expand: Option<ConvBnRelu6>,
    pub depthwise: ConvBnRelu6,
    pub project: Conv2d,
    pub project_bn: BatchNorm,
    pub residual: bool,
}

impl InvertedResidual {
    fn new(input: usize, output: usize, stride: usize, expansion: usize, device: &Device) -> Self {
        let hidden = input * expansion;
        InvertedResidual {
            expand: (expansion != 1).then(|| ConvBnRelu6::new(ConvSpec::new(input, hidden, 1), device)),
            depthwise: ConvBnRelu6::new(ConvSpec::new(hidden, hidden, 3).stride(stride).pad(1).groups(hidden), device),
            project: ConvSpec::new(hidden, output, 1).init(device),
            project_bn: batch_norm(output, EPSILON, device),
            residual: stride == 1 && input == output,
        }
    }

    fn block(&self, name: String) -> Block<'_> {
        let mut body: Vec<Layer<'_>> = self.expand.iter().map(ConvBnRelu6::layer).collect();
        body.push(self.depthwise.layer());
        body.push(Layer::conv_norm(&self.project, &self.project_bn, Activation::Identity));
        let layers = if self.residual {
            vec![Layer::Residual { body, shortcut: Vec::new(), activation: Activation::Identity }]
        } else {
            body
        };
        Block::new(name, layers)
    }
}

#[derive(Module, Debug)]
pub struct MobileNetV2 {
    pub stem: ConvBnRelu6,
    pub blocks: Vec<InvertedResidual>,
    pub head: ConvBnRelu6,
    pub dropout: Dropout,
    pub classifier: Linear,
}

impl MobileNetV2 {
    pub fn new(classes: usize, device: &Device) -> Self {
        let mut channels = 32;
        let mut blocks = Vec::new();
        for (expansion, output, repeats, stride) in SETTINGS {
            for repeat in 0..repeats {
                blocks.push(InvertedResidual::new(
                    channels,
                    output,
                    if repeat == 0 { stride } else { 1 },
                    expansion,
                    device,
                ));
                channels = output;
            }
        }
        MobileNetV2 {
            stem: ConvBnRelu6::new(ConvSpec::new(3, 32, 3).stride(2).pad(1), device),
            blocks,
            head: ConvBnRelu6::new(ConvSpec::new(channels, LAST_CHANNELS, 1), device),
            dropout: DropoutConfig::new(0.2).init(),
            classifier: linear(LAST_CHANNELS, classes, device),
        }
    }
}

impl Network for MobileNetV2 {
    /// `features.0` (stem) to `features.18` (the last 1x1 convolution), as torchvision numbers them.
    fn blocks(&self) -> Vec<Block<'_>> {
        let mut blocks = vec![Block::new("features.0", vec![self.stem.layer()])];
        blocks.extend(
            self.blocks.iter().enumerate().map(|(index, block)| block.block(format!("features.{}", index + 1))),
        );
        blocks.push(Block::new(format!("features.{}", self.blocks.len() + 1), vec![self.head.layer()]));
        blocks
    }

    fn top(&self) -> Top<'_> {
        Top { pooling: Pooling::GlobalAverage, dropout: Some(&self.dropout), classifier: &self.classifier }
    }
}

/// torchvision numbers every layer: `features.N.conv.M.K`; only the first block lacks the
/// expansion, which shifts the numbering of its other layers down by one.
pub struct MobileNetV2Keys {
    pub blocks: usize,
}

impl KeyMap for MobileNetV2Keys {
    fn checkpoint_key(&self, path: &str) -> String {
        if let Some(rest) = path.strip_prefix("stem.") {
            return format!("features.0.{}", conv_bn_index(rest));
        }
        if let Some(rest) = path.strip_prefix("head.") {
            return format!("features.{}.{}", self.blocks + 1, conv_bn_index(rest));
        }
        if let Some(rest) = path.strip_prefix("classifier.") {
            return format!("classifier.1.{rest}");
        }
        let Some(rest) = path.strip_prefix("blocks.") else {
            return path.to_owned();
        };
        let Some((index, rest)) = rest.split_once('.') else {
            return path.to_owned();
        };
        let Ok(index) = index.parse::<usize>() else {
            return path.to_owned();
        };
        let shift = usize::from(index != 0);
        let (layer, rest) = rest.split_once('.').unwrap_or((rest, ""));
        let inner = match layer {
            "expand" => format!("0.{}", conv_bn_index(rest)),
            "depthwise" => format!("{shift}.{}", conv_bn_index(rest)),
            "project" => format!("{}.{rest}", shift + 1),
            "project_bn" => format!("{}.{rest}", shift + 2),
            other => format!("{other}.{rest}"),
        };
        format!("features.{}.conv.{inner}", index + 1)
    }
}

/// `conv.X` -> `0.X`, `bn.X` -> `1.X`.
fn conv_bn_index(rest: &str) -> String {
    if let Some(tail) = rest.strip_prefix("conv.") {
        format!("0.{tail}")
    } else if let Some(tail) = rest.strip_prefix("bn.") {
        format!("1.{tail}")
    } else {
        rest.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_torchvision_numbering() {
        let keys = MobileNetV2Keys { blocks: 17 };
        assert_eq!(keys.checkpoint_key("stem.conv.weight"), "features.0.0.weight");
        assert_eq!(keys.checkpoint_key("blocks.0.depthwise.bn.running_mean"), "features.1.conv.0.1.running_mean");
        assert_eq!(keys.checkpoint_key("blocks.0.project.weight"), "features.1.conv.1.weight");
        assert_eq!(keys.checkpoint_key("blocks.0.project_bn.bias"), "features.1.conv.2.bias");
        assert_eq!(keys.checkpoint_key("blocks.3.expand.conv.weight"), "features.4.conv.0.0.weight");
        assert_eq!(keys.checkpoint_key("blocks.3.depthwise.conv.weight"), "features.4.conv.1.0.weight");
        assert_eq!(keys.checkpoint_key("blocks.3.project.weight"), "features.4.conv.2.weight");
        assert_eq!(keys.checkpoint_key("blocks.3.project_bn.weight"), "features.4.conv.3.weight");
        assert_eq!(keys.checkpoint_key("head.bn.weight"), "features.18.1.weight");
        assert_eq!(keys.checkpoint_key("classifier.weight"), "classifier.1.weight");
    }
}
