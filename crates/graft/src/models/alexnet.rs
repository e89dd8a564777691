//! AlexNet in torchvision's layout (the single-GPU variant of the paper).
//!
//! Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural
//! Networks", NeurIPS 2012; torchvision follows Krizhevsky's "One weird trick" (2014) widths.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::Device;

use super::layers::{ConvSpec, linear};
use crate::net::{Activation, Block, Layer, Network, Pooling, Top};
use crate::weights::KeyMap;

const HIDDEN: usize = 4096;

#[derive(Module, Debug)]
pub struct AlexNet {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub conv3: Conv2d,
    pub conv4: Conv2d,
    pub conv5: Conv2d,
    pub fc6: Linear,
    pub fc7: Linear,
    pub fc8: Linear,
    pub maxpool: MaxPool2d,
    pub avgpool: AdaptiveAvgPool2d,
    pub dropout: Dropout,
}

/// The checkpoint name of each trainable layer, in order.
const CHECKPOINT_NAMES: [(&str, &str); 8] = [
    ("conv1", "features.0"),
    ("conv2", "features.3"),
    ("conv3", "features.6"),
    ("conv4", "features.8"),
    ("conv5", "features.10"),
    ("fc6", "classifier.1"),
    ("fc7", "classifier.4"),
    ("fc8", "classifier.6"),
];

impl AlexNet {
    pub fn new(classes: usize, device: &Device) -> Self {
        AlexNet {
            conv1: ConvSpec::new(3, 64, 11).stride(4).pad(2).bias().init(device),
            conv2: ConvSpec::new(64, 192, 5).pad(2).bias().init(device),
            conv3: ConvSpec::new(192, 384, 3).pad(1).bias().init(device),
            conv4: ConvSpec::new(384, 256, 3).pad(1).bias().init(device),
            conv5: ConvSpec::new(256, 256, 3).pad(1).bias().init(device),
            fc6: linear(256 * 6 * 6, HIDDEN, device),
            fc7: linear(HIDDEN, HIDDEN, device),
            fc8: linear(HIDDEN, classes, device),
            maxpool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init(),
            avgpool: AdaptiveAvgPool2dConfig::new([6, 6]).init(),
            dropout: DropoutConfig::new(0.5).init(),
        }
    }
}

impl Network for AlexNet {
    /// The five convolutions and the two hidden fully connected layers, by checkpoint name; the
    /// last convolution's block ends with the pooling to 6x6 that the first fully connected
    /// layer takes.
    fn blocks(&self) -> Vec<Block<'_>> {
        let conv = |conv| Layer::Conv { conv, norm: None, activation: Activation::Relu };
        let dense = |linear| Layer::Dense { dropout: &self.dropout, linear, activation: Activation::Relu };
        let layers = vec![
            vec![conv(&self.conv1), Layer::MaxPool(&self.maxpool)],
            vec![conv(&self.conv2), Layer::MaxPool(&self.maxpool)],
            vec![conv(&self.conv3)],
            vec![conv(&self.conv4)],
            vec![conv(&self.conv5), Layer::MaxPool(&self.maxpool), Layer::AdaptiveAvgPool(&self.avgpool)],
            vec![dense(&self.fc6)],
            vec![dense(&self.fc7)],
        ];
        CHECKPOINT_NAMES.iter().zip(layers).map(|((_, name), layers)| Block::new(*name, layers)).collect()
    }

    fn top(&self) -> Top<'_> {
        Top { pooling: Pooling::Flatten, dropout: None, classifier: &self.fc8 }
    }
}

pub struct AlexNetKeys;

impl KeyMap for AlexNetKeys {
    fn checkpoint_key(&self, path: &str) -> String {
        let (layer, rest) = path.split_once('.').unwrap_or((path, ""));
        CHECKPOINT_NAMES
            .iter()
            .find(|(ours, _)| *ours == layer)
            .map(|(_, theirs)| format!("{theirs}.{rest}"))
            .unwrap_or_else(|| path.to_owned())
    }
}
