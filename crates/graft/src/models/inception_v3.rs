//! Inception-v3 in torchvision's layout (without the auxiliary classifier, which only matters
//! while training from scratch; its checkpoint keys are ignored).
//!
//! Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the Inception Architecture for
//! Computer Vision", CVPR 2016.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::tensor::Device;

use super::layers::{batch_norm, linear};
use crate::net::{Activation, Block, Layer, Network, Pooling, Top};
use crate::weights::KeyMap;

const EPSILON: f64 = 1e-3;

/// Convolution without bias, batch norm (epsilon 1e-3), ReLU.
#[derive(Module, Debug)]
pub struct BasicConv2d {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl BasicConv2d {
    /// `kernel` and `padding` are (height, width); `stride` applies to both.
    fn new(
        input: usize,
        output: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: [usize; 2],
        device: &Device,
    ) -> Self {
        BasicConv2d {
            conv: Conv2dConfig::new([input, output], kernel)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(padding[0], padding[1], padding[0], padding[1]))
                .with_bias(false)
                .init(device),
            bn: batch_norm(output, EPSILON, device),
        }
    }

    fn square(input: usize, output: usize, kernel: usize, device: &Device) -> Self {
        Self::new(input, output, [kernel, kernel], 1, [kernel / 2, kernel / 2], device)
    }

    fn layer(&self) -> Layer<'_> {
        Layer::conv_norm(&self.conv, &self.bn, Activation::Relu)
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

    fn layer(&self) -> Layer<'_> {
        Layer::Concat(vec![
            vec![self.branch1x1.layer()],
            vec![self.branch5x5_1.layer(), self.branch5x5_2.layer()],
            vec![self.branch3x3dbl_1.layer(), self.branch3x3dbl_2.layer(), self.branch3x3dbl_3.layer()],
            vec![Layer::AvgPool(&self.pool), self.branch_pool.layer()],
        ])
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

    fn layer(&self) -> Layer<'_> {
        Layer::Concat(vec![
            vec![self.branch3x3.layer()],
            vec![self.branch3x3dbl_1.layer(), self.branch3x3dbl_2.layer(), self.branch3x3dbl_3.layer()],
            vec![Layer::MaxPool(&self.pool)],
        ])
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

    fn layer(&self) -> Layer<'_> {
        Layer::Concat(vec![
            vec![self.branch1x1.layer()],
            vec![self.branch7x7_1.layer(), self.branch7x7_2.layer(), self.branch7x7_3.layer()],
            [
                &self.branch7x7dbl_1,
                &self.branch7x7dbl_2,
                &self.branch7x7dbl_3,
                &self.branch7x7dbl_4,
                &self.branch7x7dbl_5,
            ]
            .map(BasicConv2d::layer)
            .into(),
            vec![Layer::AvgPool(&self.pool), self.branch_pool.layer()],
        ])
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

    fn layer(&self) -> Layer<'_> {
        Layer::Concat(vec![
            vec![self.branch3x3_1.layer(), self.branch3x3_2.layer()],
            [&self.branch7x7x3_1, &self.branch7x7x3_2, &self.branch7x7x3_3, &self.branch7x7x3_4]
                .map(BasicConv2d::layer)
                .into(),
            vec![Layer::MaxPool(&self.pool)],
        ])
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

    fn layer(&self) -> Layer<'_> {
        Layer::Concat(vec![
            vec![self.branch1x1.layer()],
            vec![
                self.branch3x3_1.layer(),
                Layer::Concat(vec![vec![self.branch3x3_2a.layer()], vec![self.branch3x3_2b.layer()]]),
            ],
            vec![
                self.branch3x3dbl_1.layer(),
                self.branch3x3dbl_2.layer(),
                Layer::Concat(vec![vec![self.branch3x3dbl_3a.layer()], vec![self.branch3x3dbl_3b.layer()]]),
            ],
            vec![Layer::AvgPool(&self.pool), self.branch_pool.layer()],
        ])
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
}

impl Network for InceptionV3 {
    /// The stem's two max-pools belong to the blocks they follow (`Conv2d_2b_3x3`, `Conv2d_4a_3x3`).
    fn blocks(&self) -> Vec<Block<'_>> {
        let layers = vec![
            vec![self.conv2d_1a_3x3.layer()],
            vec![self.conv2d_2a_3x3.layer()],
            vec![self.conv2d_2b_3x3.layer(), Layer::MaxPool(&self.maxpool)],
            vec![self.conv2d_3b_1x1.layer()],
            vec![self.conv2d_4a_3x3.layer(), Layer::MaxPool(&self.maxpool)],
            vec![self.mixed_5b.layer()],
            vec![self.mixed_5c.layer()],
            vec![self.mixed_5d.layer()],
            vec![self.mixed_6a.layer()],
            vec![self.mixed_6b.layer()],
            vec![self.mixed_6c.layer()],
            vec![self.mixed_6d.layer()],
            vec![self.mixed_6e.layer()],
            vec![self.mixed_7a.layer()],
            vec![self.mixed_7b.layer()],
            vec![self.mixed_7c.layer()],
        ];
        BLOCKS.iter().zip(layers).map(|(name, layers)| Block::new(*name, layers)).collect()
    }

    fn top(&self) -> Top<'_> {
        Top { pooling: Pooling::GlobalAverage, dropout: Some(&self.dropout), classifier: &self.fc }
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
