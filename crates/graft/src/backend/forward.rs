//! A network's description ([`crate::net`]) run on burn tensors, with graft's
//! operations where they are faster ([`super::ops`]). Training, caching and inference on every
//! backend go through here; only frozen blocks on the CPU take the fused plan instead.

use burn::tensor::Tensor;

use super::ops;
use crate::net::{Block, Layer, Pooling, Top};

/// Runs the blocks in order on `x`.
pub fn blocks(blocks: &[Block<'_>], x: Tensor<4>) -> Tensor<4> {
    blocks.iter().fold(x, |x, block| layers(&block.layers, x))
}

/// Runs layers in sequence.
pub fn layers(layers: &[Layer<'_>], x: Tensor<4>) -> Tensor<4> {
    layers.iter().fold(x, |x, layer| self::layer(layer, x))
}

fn layer(layer: &Layer<'_>, x: Tensor<4>) -> Tensor<4> {
    match layer {
        Layer::Conv { conv, norm: Some(norm), activation } => {
            ops::normalize_activated(norm, ops::conv(conv, x), *activation)
        }
        Layer::Conv { conv, norm: None, activation } => ops::activate(ops::conv(conv, x), *activation),
        Layer::MaxPool(pool) => pool.forward(x),
        Layer::AvgPool(pool) => pool.forward(x),
        Layer::AdaptiveAvgPool(pool) => pool.forward(x),
        Layer::Dense { dropout, linear, activation } => {
            let [batch, ..] = x.dims();
            let flat: Tensor<2> = x.reshape([batch as i64, -1]);
            let out = linear.forward(dropout.forward(flat));
            let [_, width] = out.dims();
            ops::activate(out.reshape([batch, width, 1, 1]), *activation)
        }
        Layer::Residual { body, shortcut, activation } => {
            let y = layers(body, x.clone());
            let shortcut = if shortcut.is_empty() { x } else { layers(shortcut, x) };
            ops::activate(y + shortcut, *activation)
        }
        Layer::Concat(branches) => Tensor::cat(branches.iter().map(|branch| layers(branch, x.clone())).collect(), 1),
    }
}

/// The pooled penultimate vector from the last block's output.
pub fn features(top: &Top<'_>, x: Tensor<4>) -> Tensor<2> {
    match top.pooling {
        Pooling::GlobalAverage => ops::global_average(x),
        Pooling::Flatten => {
            let [batch, channels, _, _] = x.dims();
            x.reshape([batch, channels])
        }
    }
}

/// The ImageNet classifier applied to feature vectors.
pub fn classify(top: &Top<'_>, features: Tensor<2>) -> Tensor<2> {
    let features = match top.dropout {
        Some(dropout) => dropout.forward(features),
        None => features,
    };
    top.classifier.forward(features)
}
