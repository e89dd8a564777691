//! AlexNet in torchvision's layout (the single-GPU variant of the paper).
//!
//! Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural
//! Networks", NeurIPS 2012; torchvision follows Krizhevsky's "One weird trick" (2014) widths.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, Relu};
use burn::tensor::{Device, Tensor};

use super::layers::{ConvSpec, linear};
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
    pub relu: Relu,
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
            relu: Relu::new(),
        }
    }

    /// The five convolutions and the two hidden fully connected layers, by checkpoint name.
    pub fn block_names(&self) -> Vec<String> {
        CHECKPOINT_NAMES[..7].iter().map(|(_, name)| (*name).to_owned()).collect()
    }

    /// Fully connected blocks keep the `[N, C, 1, 1]` shape so every block maps a 4-D tensor.
    pub fn forward_block(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        let relu = |x| self.relu.forward(x);
        match index {
            0 => self.maxpool.forward(relu(self.conv1.forward(x))),
            1 => self.maxpool.forward(relu(self.conv2.forward(x))),
            2 => relu(self.conv3.forward(x)),
            3 => relu(self.conv4.forward(x)),
            4 => self.avgpool.forward(self.maxpool.forward(relu(self.conv5.forward(x)))),
            _ => {
                let layer = if index == 5 { &self.fc6 } else { &self.fc7 };
                let [batch, ..] = x.dims();
                let flat: Tensor<2> = x.reshape([batch as i64, -1]);
                let out = self.relu.forward(layer.forward(self.dropout.forward(flat)));
                let [_, width] = out.dims();
                out.reshape([batch, width, 1, 1])
            }
        }
    }

    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        let [batch, channels, _, _] = x.dims();
        x.reshape([batch, channels])
    }

    pub fn classify(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc8.forward(features)
    }

    pub fn freeze_block(mut self, index: usize) -> Self {
        match index {
            0 => self.conv1 = self.conv1.freeze(),
            1 => self.conv2 = self.conv2.freeze(),
            2 => self.conv3 = self.conv3.freeze(),
            3 => self.conv4 = self.conv4.freeze(),
            4 => self.conv5 = self.conv5.freeze(),
            5 => self.fc6 = self.fc6.freeze(),
            _ => self.fc7 = self.fc7.freeze(),
        }
        self
    }

    pub fn freeze_classifier(mut self) -> Self {
        self.fc8 = self.fc8.freeze();
        self
    }

    pub fn feature_dim(&self) -> usize {
        HIDDEN
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
