//! EfficientNet-Lite0 to Lite4, in the `efficientnet_pytorch` checkpoint layout.
//!
//! Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019;
//! the Lite variants (TensorFlow, 2020) drop squeeze-and-excitation, use ReLU6, keep the stem and
//! head widths fixed and do not scale the depth of the first and last stages, so they quantize
//! well and run on mobile accelerators. Convolutions use TensorFlow's "SAME" padding, which pads
//! one more pixel at the bottom/right on stride-2 layers; batch norm uses epsilon 1e-3.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear, PaddingConfig2d};
use burn::tensor::Device;

use super::layers::{ConvSpec, batch_norm, linear};
use crate::net::{Activation, Block, Layer, Network, Pooling, Top};
use crate::weights::KeyMap;

const EPSILON: f64 = 1e-3;
const STEM_CHANNELS: usize = 32;
const HEAD_CHANNELS: usize = 1280;

/// One stage of the base network: (repeats, kernel, stride, expand ratio, output channels).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// Blocks per stage for a variant (the first and last stages are never deepened).
pub fn stage_depths(variant: LiteVariant) -> Vec<usize> {
    let (_, depth, _, _) = variant.coefficients();
    STAGES
        .iter()
        .enumerate()
        .map(
            |(stage, &(repeats, ..))| {
                if stage == 0 || stage == STAGES.len() - 1 { repeats } else { round_repeats(repeats, depth) }
            },
        )
        .collect()
}

/// Which member of the family: its scaling coefficients and input resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiteVariant {
    Lite0,
    Lite1,
    Lite2,
    Lite3,
    Lite4,
}

impl LiteVariant {
    /// (width coefficient, depth coefficient, resolution, dropout).
    pub fn coefficients(self) -> (f64, f64, usize, f64) {
        match self {
            LiteVariant::Lite0 => (1.0, 1.0, 224, 0.2),
            LiteVariant::Lite1 => (1.0, 1.1, 240, 0.2),
            LiteVariant::Lite2 => (1.1, 1.2, 260, 0.3),
            LiteVariant::Lite3 => (1.2, 1.4, 280, 0.3),
            LiteVariant::Lite4 => (1.4, 1.8, 300, 0.3),
        }
    }

    pub fn resolution(self) -> usize {
        self.coefficients().2
    }
}

/// TensorFlow's `round_filters`: scale by the width coefficient, round to a multiple of 8, and
/// never round down by more than 10%.
fn round_filters(filters: usize, width: f64) -> usize {
    let scaled = filters as f64 * width;
    let mut rounded = ((scaled + 4.0) as usize / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * scaled {
        rounded += 8;
    }
    rounded
}

fn round_repeats(repeats: usize, depth: f64) -> usize {
    (repeats as f64 * depth).ceil() as usize
}

/// The mobile inverted bottleneck: 1x1 expansion, depthwise convolution, 1x1 linear projection,
/// with a residual connection when the shape is kept.
#[derive(Module, Debug)]
pub struct MbConv {
    _expand_conv: Option<Conv2d>,
    pub _bn0: Option<BatchNorm>,
    pub _depthwise_conv: Conv2d,
    pub _bn1: BatchNorm,
    pub _project_conv: Conv2d,
    pub _bn2: BatchNorm,
    pub residual: bool,
}

impl MbConv {
    fn new(input: usize, output: usize, kernel: usize, stride: usize, expand: usize, device: &Device) -> Self {
        let hidden = input * expand;
        let (expand_conv, bn0) = if expand != 1 {
            (Some(ConvSpec::new(input, hidden, 1).init(device)), Some(batch_norm(hidden, EPSILON, device)))
        } else {
            (None, None)
        };
        MbConv {
            _expand_conv: expand_conv,
            _bn0: bn0,
            _depthwise_conv: ConvSpec::new(hidden, hidden, kernel)
                .stride(stride)
                .groups(hidden)
                .padding(PaddingConfig2d::Same)
                .init(device),
            _bn1: batch_norm(hidden, EPSILON, device),
            _project_conv: ConvSpec::new(hidden, output, 1).init(device),
            _bn2: batch_norm(output, EPSILON, device),
            residual: stride == 1 && input == output,
        }
    }

    fn block(&self, name: String) -> Block<'_> {
        let mut body = Vec::new();
        if let (Some(conv), Some(bn)) = (&self._expand_conv, &self._bn0) {
            body.push(Layer::conv_norm(conv, bn, Activation::Relu6));
        }
        body.push(Layer::conv_norm(&self._depthwise_conv, &self._bn1, Activation::Relu6));
        body.push(Layer::conv_norm(&self._project_conv, &self._bn2, Activation::Identity));
        let layers = if self.residual {
            vec![Layer::Residual { body, shortcut: Vec::new(), activation: Activation::Identity }]
        } else {
            body
        };
        Block::new(name, layers)
    }
}

/// EfficientNet-Lite with the `efficientnet_pytorch` parameter names.
#[derive(Module, Debug)]
pub struct EfficientNetLite {
    pub _conv_stem: Conv2d,
    pub _bn0: BatchNorm,
    pub _blocks: Vec<MbConv>,
    pub _conv_head: Conv2d,
    pub _bn1: BatchNorm,
    pub _dropout: Dropout,
    pub _fc: Linear,
}

impl EfficientNetLite {
    /// A randomly initialized network of the given variant with `classes` outputs.
    pub fn new(variant: LiteVariant, classes: usize, device: &Device) -> Self {
        let (width, _, _, dropout) = variant.coefficients();
        let mut blocks = Vec::new();
        let mut channels = STEM_CHANNELS;
        for (&(_, kernel, stride, expand, output), repeats) in STAGES.iter().zip(stage_depths(variant)) {
            let output = round_filters(output, width);
            for repeat in 0..repeats {
                let stride = if repeat == 0 { stride } else { 1 };
                blocks.push(MbConv::new(channels, output, kernel, stride, expand, device));
                channels = output;
            }
        }
        EfficientNetLite {
            _conv_stem: ConvSpec::new(3, STEM_CHANNELS, 3).stride(2).padding(PaddingConfig2d::Same).init(device),
            _bn0: batch_norm(STEM_CHANNELS, EPSILON, device),
            _blocks: blocks,
            _conv_head: ConvSpec::new(channels, HEAD_CHANNELS, 1).init(device),
            _bn1: batch_norm(HEAD_CHANNELS, EPSILON, device),
            _dropout: DropoutConfig::new(dropout).init(),
            _fc: linear(HEAD_CHANNELS, classes, device),
        }
    }
}

impl Network for EfficientNetLite {
    /// The stem, each MBConv block, the head convolution.
    fn blocks(&self) -> Vec<Block<'_>> {
        let mut blocks =
            vec![Block::new("_conv_stem", vec![Layer::conv_norm(&self._conv_stem, &self._bn0, Activation::Relu6)])];
        blocks.extend(self._blocks.iter().enumerate().map(|(index, block)| block.block(format!("_blocks.{index}"))));
        blocks.push(Block::new("_conv_head", vec![Layer::conv_norm(&self._conv_head, &self._bn1, Activation::Relu6)]));
        blocks
    }

    fn top(&self) -> Top<'_> {
        Top { pooling: Pooling::GlobalAverage, dropout: Some(&self._dropout), classifier: &self._fc }
    }
}

/// timm's names for the same network (`timm/tf_efficientnet_liteN.in1k` on the Hugging Face hub):
/// blocks are numbered by stage and position, and the first stage's depthwise-separable blocks
/// have no expansion, which shifts their layer names.
pub struct TimmLiteKeys {
    pub stage_depths: Vec<usize>,
}

impl KeyMap for TimmLiteKeys {
    fn checkpoint_key(&self, path: &str) -> String {
        let top = [
            ("_conv_stem.", "conv_stem."),
            ("_bn0.", "bn1."),
            ("_conv_head.", "conv_head."),
            ("_bn1.", "bn2."),
            ("_fc.", "classifier."),
        ];
        for (ours, theirs) in top {
            if let Some(rest) = path.strip_prefix(ours) {
                return format!("{theirs}{rest}");
            }
        }
        let Some((index, rest)) = path.strip_prefix("_blocks.").and_then(|rest| rest.split_once('.')) else {
            return path.to_owned();
        };
        let Ok(mut index) = index.parse::<usize>() else {
            return path.to_owned();
        };
        let mut stage = 0;
        while stage + 1 < self.stage_depths.len() && index >= self.stage_depths[stage] {
            index -= self.stage_depths[stage];
            stage += 1;
        }
        let (layer, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let expanded = stage != 0;
        let theirs = match (layer, expanded) {
            ("_expand_conv", _) => "conv_pw",
            ("_bn0", _) => "bn1",
            ("_depthwise_conv", _) => "conv_dw",
            ("_bn1", true) => "bn2",
            ("_bn1", false) => "bn1",
            ("_project_conv", true) => "conv_pwl",
            ("_project_conv", false) => "conv_pw",
            ("_bn2", true) => "bn3",
            ("_bn2", false) => "bn2",
            (other, _) => other,
        };
        format!("blocks.{stage}.{index}.{theirs}.{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_filters_matches_tensorflow() {
        assert_eq!(round_filters(16, 1.0), 16);
        assert_eq!(round_filters(24, 1.1), 24); // 26.4 -> 24, within 10%
        assert_eq!(round_filters(40, 1.2), 48);
        assert_eq!(round_filters(320, 1.4), 448);
        assert_eq!(round_filters(112, 1.4), 160);
    }

    #[test]
    fn stage_depths_scale_only_the_middle_stages() {
        assert_eq!(stage_depths(LiteVariant::Lite0), vec![1, 2, 2, 3, 3, 4, 1]);
        assert_eq!(stage_depths(LiteVariant::Lite4), vec![1, 4, 4, 6, 6, 8, 1]);
    }

    #[test]
    fn timm_keys() {
        let keys = TimmLiteKeys { stage_depths: stage_depths(LiteVariant::Lite0) };
        assert_eq!(keys.checkpoint_key("_blocks.0._depthwise_conv.weight"), "blocks.0.0.conv_dw.weight");
        assert_eq!(keys.checkpoint_key("_blocks.0._bn2.running_var"), "blocks.0.0.bn2.running_var");
        assert_eq!(keys.checkpoint_key("_blocks.2._project_conv.weight"), "blocks.1.1.conv_pwl.weight");
        assert_eq!(keys.checkpoint_key("_blocks.15._bn1.weight"), "blocks.6.0.bn2.weight");
        assert_eq!(keys.checkpoint_key("_bn1.bias"), "bn2.bias");
        assert_eq!(keys.checkpoint_key("_fc.weight"), "classifier.weight");
    }
}
