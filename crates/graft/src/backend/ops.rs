//! Operations as graft runs them on each backend, behind the same signatures as burn's modules:
//! on `flex`, 1x1 and small depthwise convolutions as matrix products; on libtorch with
//! autodiff, convolutions and training batch norms differentiated by libtorch itself
//! ([`super::libtorch`]); elsewhere burn's own modules.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

use super::batch_statistics;
use crate::net::Activation;

/// A convolution, with the 1x1 ones (stride 1, no padding, one group) done as one matrix product
/// over the batch: burn's `flex` convolution runs them per image, which is slower forward +
/// backward (docs/PERFORMANCE.md, section 2; `examples/pointwise_conv.rs`). Small planes are multiplied in NHWC order
/// (one product of `[batch * pixels, in] x [in, out]`), larger ones as a batched product over
/// the NCHW planes, which skips the two transposes.
///
/// Only on `flex` (with or without autodiff): other backends run their own convolution kernels.
/// On libtorch with autodiff libtorch differentiates the convolution ([`super::libtorch`]).
pub fn conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    #[cfg(feature = "tch")]
    if conv.dilation == [1, 1] && super::libtorch::differentiates(&x, &conv.weight.val()) {
        let [_, _, height, width] = x.dims();
        let [_, _, kernel_h, kernel_w] = conv.weight.val().dims();
        let padding = padding_sides(&conv.padding, [kernel_h, kernel_w], conv.stride, height, width);
        return super::libtorch::conv2d(conv, x, padding);
    }
    if device != Device::flex() && device != Device::flex().autodiff() {
        return conv.forward(x);
    }
    let [outputs, inputs, kernel_h, kernel_w] = conv.weight.val().dims();
    let pointwise = kernel_h == 1
        && kernel_w == 1
        && conv.stride == [1, 1]
        && conv.groups == 1
        && matches!(conv.padding, PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0));
    let [batch, channels, height, width] = x.dims();
    if conv.groups > 1 && conv.groups == channels && inputs == 1 && outputs == channels && conv.dilation == [1, 1] {
        if height * width <= DEPTHWISE_DENSE_MAX_PIXELS {
            return depthwise_dense(conv, x);
        }
        if super::on_flex_f32(&x) && super::on_flex_f32(&conv.weight.val()) {
            let padding = padding_sides(&conv.padding, [kernel_h, kernel_w], conv.stride, height, width);
            let y = super::depthwise::conv(x, conv.weight.val(), conv.stride, padding);
            return match &conv.bias {
                Some(bias) => y + bias.val().reshape([1, channels, 1, 1]),
                None => y,
            };
        }
    }
    if !pointwise {
        if conv.groups == 1
            && conv.dilation == [1, 1]
            && super::on_flex_f32(&x)
            && super::on_flex_f32(&conv.weight.val())
        {
            let padding = padding_sides(&conv.padding, [kernel_h, kernel_w], conv.stride, height, width);
            let y = super::convolution::conv(x, conv.weight.val(), conv.stride, padding);
            return match &conv.bias {
                Some(bias) => y + bias.val().reshape([1, outputs, 1, 1]),
                None => y,
            };
        }
        return conv.forward(x);
    }
    debug_assert_eq!(channels, inputs);
    let weight = conv.weight.val().reshape([outputs, inputs]);
    let y = if height * width < POINTWISE_BATCHED_MIN_PIXELS {
        let rows = x.permute([0, 2, 3, 1]).reshape([batch * height * width, inputs]);
        rows.matmul(weight.transpose()).reshape([batch, height, width, outputs]).permute([0, 3, 1, 2])
    } else {
        weight
            .unsqueeze::<3>()
            .matmul(x.reshape([batch, inputs, height * width]))
            .reshape([batch, outputs, height, width])
    };
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, outputs, 1, 1]),
        None => y,
    }
}

/// A depthwise convolution on a small plane as one dense matrix per channel: output pixels x
/// input pixels, built from the filter by a fixed 0/1 tap map, applied to every image by a
/// batched matrix product. Forward and backward are then matrix products, where burn's `flex`
/// backward of a depthwise convolution goes through a generic transposed convolution (measured:
/// `examples/depthwise_small.rs`).
fn depthwise_dense(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    let [batch, channels, height, width] = x.dims();
    let [_, _, kernel, kernel_w] = conv.weight.val().dims();
    let stride = conv.stride;
    let padding = padding_sides(&conv.padding, [kernel, kernel_w], stride, height, width);
    let [top, left, ..] = padding;
    let [out_h, out_w] = output_size(height, width, [kernel, kernel_w], stride, padding);
    let (pixels, outputs) = (height * width, out_h * out_w);
    // taps[(ky, kx), (o, i)] = 1 where input pixel i is under tap (ky, kx) of output pixel o.
    let mut taps = vec![0.0f32; kernel * kernel_w * outputs * pixels];
    for oy in 0..out_h {
        for ox in 0..out_w {
            for ky in 0..kernel {
                let Some(iy) = (oy * stride[0] + ky).checked_sub(top).filter(|iy| *iy < height) else { continue };
                for kx in 0..kernel_w {
                    let Some(ix) = (ox * stride[1] + kx).checked_sub(left).filter(|ix| *ix < width) else { continue };
                    taps[((ky * kernel_w + kx) * outputs + oy * out_w + ox) * pixels + iy * width + ix] = 1.0;
                }
            }
        }
    }
    let taps = Tensor::<2>::from_data(TensorData::new(taps, [kernel * kernel_w, outputs * pixels]), &device);
    let matrices =
        conv.weight.val().reshape([channels, kernel * kernel_w]).matmul(taps).reshape([channels, outputs, pixels]);
    let columns = x.reshape([batch, channels, pixels]).permute([1, 2, 0]);
    let y = matrices.matmul(columns).permute([2, 0, 1]).reshape([batch, channels, out_h, out_w]);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, channels, 1, 1]),
        None => y,
    }
}

/// A convolution's output `[height, width]` for an input of `height` x `width` with `padding`
/// as (top, left, bottom, right).
pub(crate) fn output_size(
    height: usize,
    width: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    [top, left, bottom, right]: [usize; 4],
) -> [usize; 2] {
    [(height + top + bottom - kernel[0]) / stride[0] + 1, (width + left + right - kernel[1]) / stride[1] + 1]
}

/// A convolution's padding as (top, left, bottom, right) for an input of `height` x `width`:
/// `Same` is TensorFlow's (and burn's), one more pixel at the bottom / right when the total is odd.
pub(crate) fn padding_sides(
    padding: &PaddingConfig2d,
    kernel: [usize; 2],
    stride: [usize; 2],
    height: usize,
    width: usize,
) -> [usize; 4] {
    match *padding {
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
        PaddingConfig2d::Same => {
            let same = |size: usize, kernel: usize, stride: usize| {
                let out = size.div_ceil(stride);
                let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(size);
                (total / 2, total - total / 2)
            };
            let (top, bottom) = same(height, kernel[0], stride[0]);
            let (left, right) = same(width, kernel[1], stride[1]);
            [top, left, bottom, right]
        }
    }
}

/// A batch norm's forward. While the trainer collects batch statistics
/// ([`batch_statistics::collect`], for sharded steps) a batch norm in training mode normalizes
/// with the statistics of the batch it sees, as usual, but hands those statistics to the
/// collector instead of updating its running mean and variance. Everywhere else it is
/// `bn.forward(x)`.
pub fn normalize<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if D == 4 && bn.training.is_enabled() && super::libtorch::differentiates(&x, &bn.gamma.val()) {
        let dims = x.dims();
        return normalize_libtorch(bn, x.reshape([dims[0], dims[1], dims[2], dims[3]]), Activation::Identity)
            .reshape(dims);
    }
    if !(batch_statistics::is_collecting() && x.device().is_autodiff() && bn.training.is_enabled()) {
        return bn.forward(x);
    }
    let dims = x.dims();
    let count = dims.iter().product::<usize>() / dims[1];
    let result = burn::tensor::module::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon);
    batch_statistics::record(bn, result.mean.detach(), result.variance.detach(), count);
    result.output
}

/// `activation(x)`.
pub fn activate(x: Tensor<4>, activation: Activation) -> Tensor<4> {
    match activation {
        Activation::Identity => x,
        Activation::Relu => burn::tensor::activation::relu(x),
        Activation::Relu6 => x.clamp(0.0, 6.0),
    }
}

/// `activation(normalize(bn, x))`, in one libtorch operation where [`normalize`] trains on
/// libtorch.
pub fn normalize_activated(bn: &BatchNorm, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if bn.training.is_enabled() && super::libtorch::differentiates(&x, &bn.gamma.val()) {
        return normalize_libtorch(bn, x, activation);
    }
    // On flex, training with autodiff: graft's fused batch norm and activation.
    if bn.training.is_enabled()
        && (x.is_autodiff() || bn.gamma.val().is_autodiff())
        && super::on_flex_f32(&x)
        && super::on_flex_f32(&bn.gamma.val())
    {
        let [batch, _, height, width] = x.dims();
        let (output, mean, variance) =
            super::batchnorm::train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon, activation);
        batch_statistics::record(bn, mean, variance, batch * height * width);
        return output;
    }
    activate(normalize(bn, x), activation)
}

/// A batch norm in training mode on libtorch (see [`super::libtorch::batch_norm_train`]): its
/// statistics go to the collector if one is open (sharded steps), or update the running state
/// at once, as burn's batch norm does.
#[cfg(feature = "tch")]
fn normalize_libtorch(bn: &BatchNorm, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    let [batch, _, height, width] = x.dims();
    let (output, mean, variance) =
        super::libtorch::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon, activation);
    batch_statistics::record(bn, mean, variance, batch * height * width);
    output
}

/// Depthwise convolutions on planes up to this many pixels run as dense per-channel matrices.
const DEPTHWISE_DENSE_MAX_PIXELS: usize = 64;

/// Below this many pixels per plane a 1x1 convolution is one NHWC product (measured crossover).
const POINTWISE_BATCHED_MIN_PIXELS: usize = 64;

/// Global average pooling: `[N, C, H, W]` -> `[N, C]`.
pub fn global_average(x: Tensor<4>) -> Tensor<2> {
    let [batch, channels, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([batch, channels])
}
