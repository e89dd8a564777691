//! Small constructors shared by the teacher files, so each architecture reads as its paper does.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::Device;

/// A convolution's shape: channels, square kernel, stride, padding and groups.
#[derive(Debug, Clone)]
pub struct ConvSpec {
    pub channels: [usize; 2],
    pub kernel: usize,
    pub stride: usize,
    pub padding: PaddingConfig2d,
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// A bias-free `kernel`x`kernel` convolution with stride 1, "valid" padding and one group.
    pub fn new(channels_in: usize, channels_out: usize, kernel: usize) -> Self {
        ConvSpec {
            channels: [channels_in, channels_out],
            kernel,
            stride: 1,
            padding: PaddingConfig2d::Valid,
            groups: 1,
            bias: false,
        }
    }

    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Symmetric zero padding of `pad` on every side.
    pub fn pad(mut self, pad: usize) -> Self {
        self.padding = PaddingConfig2d::Explicit(pad, pad, pad, pad);
        self
    }

    pub fn padding(mut self, padding: PaddingConfig2d) -> Self {
        self.padding = padding;
        self
    }

    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    pub fn bias(mut self) -> Self {
        self.bias = true;
        self
    }

    pub fn init(&self, device: &Device) -> Conv2d {
        Conv2dConfig::new(self.channels, [self.kernel, self.kernel])
            .with_stride([self.stride, self.stride])
            .with_padding(self.padding.clone())
            .with_groups(self.groups)
            .with_bias(self.bias)
            .init(device)
    }
}

/// A batch norm over `channels` with the given epsilon (PyTorch's default is 1e-5, TensorFlow's 1e-3).
pub fn batch_norm(channels: usize, epsilon: f64, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).with_epsilon(epsilon).init(device)
}

pub fn linear(input: usize, output: usize, device: &Device) -> Linear {
    LinearConfig::new(input, output).init(device)
}
