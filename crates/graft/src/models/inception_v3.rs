//! Inception-v3 in torchvision's layout (without the auxiliary classifier, which only matters
//! while training from scratch; its checkpoint keys are ignored).
//!
//! Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the Inception Architecture for
//! Computer Vision", CVPR 2016.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear, PaddingConfig2d, Relu};
use burn::tensor::{Device, Tensor};

use super::layers::{self, batch_norm, global_average, linear};
use crate::weights::KeyMap;

const EPSILON: f64 = 1e-3;

/// Convolution without bias, batch norm (epsilon 1e-3), ReLU.
#[derive(Module, Debug)]
pub struct BasicConv2d {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub relu: Relu,
}

impl BasicConv2d {
    /// `kernel` and `padding` are (height, width); `stride` applies to both.
    fn new(input: usize, output: usize, kernel: [usize; 2], stride: usize, padding: [usize; 2], device: &Device) -> Self {
        BasicConv2d {
            conv: Conv2dConfig::new([input, output], kernel)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(padding[0], padding[1], padding[0], padding[1]))
                .with_bias(false)
                .init(device),
            bn: batch_norm(output, EPSILON, device),
            relu: Relu::new(),
        }
    }

    fn square(input: usize, output: usize, kernel: usize, device: &Device) -> Self {
        Self::new(input, output, [kernel, kernel], 1, [kernel / 2, kernel / 2], device)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.relu.forward(layers::normalize(&self.bn, self.conv.forward(x)))
    }
}

fn max_pool() -> MaxPool2d {
    MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init()
}

/// 3x3 average pooling, stride 1, padding 1, counting the padding (PyTorch's default).
fn average_pool() -> AvgPool2d {
    AvgPool2dConfig::new([3, 3]).with_strides([1, 1]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init()
}

#[derive(Module, Debug)]
pub struct InceptionA {
    pub branch1x1: BasicConv2d,
    pub branch5x5_1: BasicConv2d,
    pub branch5x5_2: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
    pub branch_pool: BasicConv2d,
    pub pool: AvgPool2d,
}

impl InceptionA {
    fn new(input: usize, pool_features: usize, device: &Device) -> Self {
        InceptionA {
            branch1x1: BasicConv2d::square(input, 64, 1, device),
            branch5x5_1: BasicConv2d::square(input, 48, 1, device),
            branch5x5_2: BasicConv2d::square(48, 64, 5, device),
            branch3x3dbl_1: BasicConv2d::square(input, 64, 1, device),
            branch3x3dbl_2: BasicConv2d::square(64, 96, 3, device),
            branch3x3dbl_3: BasicConv2d::square(96, 96, 3, device),
            branch_pool: BasicConv2d::square(input, pool_features, 1, device),
            pool: average_pool(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = self.branch1x1.forward(x.clone());
        let b = self.branch5x5_2.forward(self.branch5x5_1.forward(x.clone()));
        let c = self.branch3x3dbl_3.forward(self.branch3x3dbl_2.forward(self.branch3x3dbl_1.forward(x.clone())));
        let d = self.branch_pool.forward(self.pool.forward(x));
        Tensor::cat(vec![a, b, c, d], 1)
    }
}

#[derive(Module, Debug)]
pub struct InceptionB {
    pub branch3x3: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
    pub pool: MaxPool2d,
}

impl InceptionB {
    fn new(input: usize, device: &Device) -> Self {
        InceptionB {
            branch3x3: BasicConv2d::new(input, 384, [3, 3], 2, [0, 0], device),
            branch3x3dbl_1: BasicConv2d::square(input, 64, 1, device),
            branch3x3dbl_2: BasicConv2d::square(64, 96, 3, device),
            branch3x3dbl_3: BasicConv2d::new(96, 96, [3, 3], 2, [0, 0], device),
            pool: max_pool(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = self.branch3x3.forward(x.clone());
        let b = self.branch3x3dbl_3.forward(self.branch3x3dbl_2.forward(self.branch3x3dbl_1.forward(x.clone())));
        let c = self.pool.forward(x);
        Tensor::cat(vec![a, b, c], 1)
    }
}

#[derive(Module, Debug)]
pub struct InceptionC {
    pub branch1x1: BasicConv2d,
    pub branch7x7_1: BasicConv2d,
    pub branch7x7_2: BasicConv2d,
    pub branch7x7_3: BasicConv2d,
    pub branch7x7dbl_1: BasicConv2d,
    pub branch7x7dbl_2: BasicConv2d,
    pub branch7x7dbl_3: BasicConv2d,
    pub branch7x7dbl_4: BasicConv2d,
    pub branch7x7dbl_5: BasicConv2d,
    pub branch_pool: BasicConv2d,
    pub pool: AvgPool2d,
}

impl InceptionC {
    fn new(input: usize, c7: usize, device: &Device) -> Self {
        let row = |i, o| BasicConv2d::new(i, o, [1, 7], 1, [0, 3], device);
        let column = |i, o| BasicConv2d::new(i, o, [7, 1], 1, [3, 0], device);
        InceptionC {
            branch1x1: BasicConv2d::square(input, 192, 1, device),
            branch7x7_1: BasicConv2d::square(input, c7, 1, device),
            branch7x7_2: row(c7, c7),
            branch7x7_3: column(c7, 192),
            branch7x7dbl_1: BasicConv2d::square(input, c7, 1, device),
            branch7x7dbl_2: column(c7, c7),
            branch7x7dbl_3: row(c7, c7),
            branch7x7dbl_4: column(c7, c7),
            branch7x7dbl_5: row(c7, 192),
            branch_pool: BasicConv2d::square(input, 192, 1, device),
            pool: average_pool(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = self.branch1x1.forward(x.clone());
        let b = self.branch7x7_3.forward(self.branch7x7_2.forward(self.branch7x7_1.forward(x.clone())));
        let mut c = self.branch7x7dbl_1.forward(x.clone());
        for layer in [&self.branch7x7dbl_2, &self.branch7x7dbl_3, &self.branch7x7dbl_4, &self.branch7x7dbl_5] {
            c = layer.forward(c);
        }
        let d = self.branch_pool.forward(self.pool.forward(x));
        Tensor::cat(vec![a, b, c, d], 1)
    }
}

#[derive(Module, Debug)]
pub struct InceptionD {
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2: BasicConv2d,
    pub branch7x7x3_1: BasicConv2d,
    pub branch7x7x3_2: BasicConv2d,
    pub branch7x7x3_3: BasicConv2d,
    pub branch7x7x3_4: BasicConv2d,
    pub pool: MaxPool2d,
}

impl InceptionD {
    fn new(input: usize, device: &Device) -> Self {
        InceptionD {
            branch3x3_1: BasicConv2d::square(input, 192, 1, device),
            branch3x3_2: BasicConv2d::new(192, 320, [3, 3], 2, [0, 0], device),
            branch7x7x3_1: BasicConv2d::square(input, 192, 1, device),
            branch7x7x3_2: BasicConv2d::new(192, 192, [1, 7], 1, [0, 3], device),
            branch7x7x3_3: BasicConv2d::new(192, 192, [7, 1], 1, [3, 0], device),
            branch7x7x3_4: BasicConv2d::new(192, 192, [3, 3], 2, [0, 0], device),
            pool: max_pool(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = self.branch3x3_2.forward(self.branch3x3_1.forward(x.clone()));
        let mut b = self.branch7x7x3_1.forward(x.clone());
        for layer in [&self.branch7x7x3_2, &self.branch7x7x3_3, &self.branch7x7x3_4] {
            b = layer.forward(b);
        }
        let c = self.pool.forward(x);
        Tensor::cat(vec![a, b, c], 1)
    }
}

#[derive(Module, Debug)]
pub struct InceptionE {
    pub branch1x1: BasicConv2d,
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2a: BasicConv2d,
    pub branch3x3_2b: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3a: BasicConv2d,
    pub branch3x3dbl_3b: BasicConv2d,
    pub branch_pool: BasicConv2d,
    pub pool: AvgPool2d,
}

impl InceptionE {
    fn new(input: usize, device: &Device) -> Self {
        let row = |i, o| BasicConv2d::new(i, o, [1, 3], 1, [0, 1], device);
        let column = |i, o| BasicConv2d::new(i, o, [3, 1], 1, [1, 0], device);
        InceptionE {
            branch1x1: BasicConv2d::square(input, 320, 1, device),
            branch3x3_1: BasicConv2d::square(input, 384, 1, device),
            branch3x3_2a: row(384, 384),
            branch3x3_2b: column(384, 384),
            branch3x3dbl_1: BasicConv2d::square(input, 448, 1, device),
            branch3x3dbl_2: BasicConv2d::square(448, 384, 3, device),
            branch3x3dbl_3a: row(384, 384),
            branch3x3dbl_3b: column(384, 384),
            branch_pool: BasicConv2d::square(input, 192, 1, device),
            pool: average_pool(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = self.branch1x1.forward(x.clone());
        let b = self.branch3x3_1.forward(x.clone());
        let b = Tensor::cat(vec![self.branch3x3_2a.forward(b.clone()), self.branch3x3_2b.forward(b)], 1);
        let c = self.branch3x3dbl_2.forward(self.branch3x3dbl_1.forward(x.clone()));
        let c = Tensor::cat(vec![self.branch3x3dbl_3a.forward(c.clone()), self.branch3x3dbl_3b.forward(c)], 1);
        let d = self.branch_pool.forward(self.pool.forward(x));
        Tensor::cat(vec![a, b, c, d], 1)
    }
}

/// Fields are torchvision's names in snake case (`conv2d_1a_3x3` is `conv2d_1a_3x3`); the key map
/// restores the capitals.
#[derive(Module, Debug)]
pub struct InceptionV3 {
    pub conv2d_1a_3x3: BasicConv2d,
    pub conv2d_2a_3x3: BasicConv2d,
    pub conv2d_2b_3x3: BasicConv2d,
    pub conv2d_3b_1x1: BasicConv2d,
    pub conv2d_4a_3x3: BasicConv2d,
    pub mixed_5b: InceptionA,
    pub mixed_5c: InceptionA,
    pub mixed_5d: InceptionA,
    pub mixed_6a: InceptionB,
    pub mixed_6b: InceptionC,
    pub mixed_6c: InceptionC,
    pub mixed_6d: InceptionC,
    pub mixed_6e: InceptionC,
    pub mixed_7a: InceptionD,
    pub mixed_7b: InceptionE,
    pub mixed_7c: InceptionE,
    pub maxpool: MaxPool2d,
    pub dropout: Dropout,
    pub fc: Linear,
}

const BLOCKS: [&str; 16] = [
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
];

impl InceptionV3 {
    pub fn new(classes: usize, device: &Device) -> Self {
        InceptionV3 {
            conv2d_1a_3x3: BasicConv2d::new(3, 32, [3, 3], 2, [0, 0], device),
            conv2d_2a_3x3: BasicConv2d::new(32, 32, [3, 3], 1, [0, 0], device),
            conv2d_2b_3x3: BasicConv2d::square(32, 64, 3, device),
            conv2d_3b_1x1: BasicConv2d::square(64, 80, 1, device),
            conv2d_4a_3x3: BasicConv2d::new(80, 192, [3, 3], 1, [0, 0], device),
            mixed_5b: InceptionA::new(192, 32, device),
            mixed_5c: InceptionA::new(256, 64, device),
            mixed_5d: InceptionA::new(288, 64, device),
            mixed_6a: InceptionB::new(288, device),
            mixed_6b: InceptionC::new(768, 128, device),
            mixed_6c: InceptionC::new(768, 160, device),
            mixed_6d: InceptionC::new(768, 160, device),
            mixed_6e: InceptionC::new(768, 192, device),
            mixed_7a: InceptionD::new(768, device),
            mixed_7b: InceptionE::new(1280, device),
            mixed_7c: InceptionE::new(2048, device),
            maxpool: max_pool(),
            dropout: DropoutConfig::new(0.5).init(),
            fc: linear(2048, classes, device),
        }
    }

    pub fn block_names(&self) -> Vec<String> {
        BLOCKS.map(str::to_owned).to_vec()
    }

    /// The stem's two max-pools belong to the blocks they follow (`conv2d_2b_3x3`, `conv2d_4a_3x3`).
    pub fn forward_block(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        match index {
            0 => self.conv2d_1a_3x3.forward(x),
            1 => self.conv2d_2a_3x3.forward(x),
            2 => self.maxpool.forward(self.conv2d_2b_3x3.forward(x)),
            3 => self.conv2d_3b_1x1.forward(x),
            4 => self.maxpool.forward(self.conv2d_4a_3x3.forward(x)),
            5 => self.mixed_5b.forward(x),
            6 => self.mixed_5c.forward(x),
            7 => self.mixed_5d.forward(x),
            8 => self.mixed_6a.forward(x),
            9 => self.mixed_6b.forward(x),
            10 => self.mixed_6c.forward(x),
            11 => self.mixed_6d.forward(x),
            12 => self.mixed_6e.forward(x),
            13 => self.mixed_7a.forward(x),
            14 => self.mixed_7b.forward(x),
            _ => self.mixed_7c.forward(x),
        }
    }

    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        global_average(x)
    }

    pub fn classify(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc.forward(self.dropout.forward(features))
    }

    pub fn freeze_block(mut self, index: usize) -> Self {
        match index {
            0 => self.conv2d_1a_3x3 = self.conv2d_1a_3x3.freeze(),
            1 => self.conv2d_2a_3x3 = self.conv2d_2a_3x3.freeze(),
            2 => self.conv2d_2b_3x3 = self.conv2d_2b_3x3.freeze(),
            3 => self.conv2d_3b_1x1 = self.conv2d_3b_1x1.freeze(),
            4 => self.conv2d_4a_3x3 = self.conv2d_4a_3x3.freeze(),
            5 => self.mixed_5b = self.mixed_5b.freeze(),
            6 => self.mixed_5c = self.mixed_5c.freeze(),
            7 => self.mixed_5d = self.mixed_5d.freeze(),
            8 => self.mixed_6a = self.mixed_6a.freeze(),
            9 => self.mixed_6b = self.mixed_6b.freeze(),
            10 => self.mixed_6c = self.mixed_6c.freeze(),
            11 => self.mixed_6d = self.mixed_6d.freeze(),
            12 => self.mixed_6e = self.mixed_6e.freeze(),
            13 => self.mixed_7a = self.mixed_7a.freeze(),
            14 => self.mixed_7b = self.mixed_7b.freeze(),
            _ => self.mixed_7c = self.mixed_7c.freeze(),
        }
        self
    }

    pub fn freeze_classifier(mut self) -> Self {
        self.fc = self.fc.freeze();
        self
    }

    pub fn feature_dim(&self) -> usize {
        2048
    }
}

/// torchvision's names with their capitals; the auxiliary classifier's keys carry nothing graft uses.
pub struct InceptionV3Keys;

impl KeyMap for InceptionV3Keys {
    fn checkpoint_key(&self, path: &str) -> String {
        if let Some(rest) = path.strip_prefix("conv2d_") {
            format!("Conv2d_{rest}")
        } else if let Some(rest) = path.strip_prefix("mixed_") {
            format!("Mixed_{rest}")
        } else {
            path.to_owned()
        }
    }

    fn is_ignored(&self, key: &str) -> bool {
        key.starts_with("AuxLogits.") || key.ends_with("num_batches_tracked")
    }
}
