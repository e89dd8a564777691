//! Small constructors shared by the teacher files, so each architecture reads as its paper does.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

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
        ConvSpec { channels: [channels_in, channels_out], kernel, stride: 1, padding: PaddingConfig2d::Valid, groups: 1, bias: false }
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

/// A convolution, with the 1x1 ones (stride 1, no padding, one group) done as one matrix product
/// over the batch: burn's `flex` convolution runs them per image, which measured 1.5-3x slower
/// forward + backward (`examples/pointwise_conv.rs`). Small planes are multiplied in NHWC order
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
    if conv.groups > 1 && conv.groups == channels && inputs == 1 && outputs == channels && height * width <= DEPTHWISE_DENSE_MAX_PIXELS {
        return depthwise_dense(conv, x);
    }
    if !pointwise {
        return conv.forward(x);
    }
    debug_assert_eq!(channels, inputs);
    let weight = conv.weight.val().reshape([outputs, inputs]);
    let y = if height * width < POINTWISE_BATCHED_MIN_PIXELS {
        let rows = x.permute([0, 2, 3, 1]).reshape([batch * height * width, inputs]);
        rows.matmul(weight.transpose()).reshape([batch, height, width, outputs]).permute([0, 3, 1, 2])
    } else {
        weight.unsqueeze::<3>().matmul(x.reshape([batch, inputs, height * width])).reshape([batch, outputs, height, width])
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
    let [top, left, bottom, right] = padding_sides(&conv.padding, [kernel, kernel_w], stride, height, width);
    let out_h = (height + top + bottom - kernel) / stride[0] + 1;
    let out_w = (width + left + right - kernel_w) / stride[1] + 1;
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
    let matrices = conv.weight.val().reshape([channels, kernel * kernel_w]).matmul(taps).reshape([channels, outputs, pixels]);
    let columns = x.reshape([batch, channels, pixels]).permute([1, 2, 0]);
    let y = matrices.matmul(columns).permute([2, 0, 1]).reshape([batch, channels, out_h, out_w]);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, channels, 1, 1]),
        None => y,
    }
}

/// A convolution's padding as (top, left, bottom, right) for an input of `height` x `width`:
/// `Same` is TensorFlow's (and burn's), one more pixel at the bottom / right when the total is odd.
pub(crate) fn padding_sides(padding: &PaddingConfig2d, kernel: [usize; 2], stride: [usize; 2], height: usize, width: usize) -> [usize; 4] {
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

/// A batch norm's forward. Inside [`collect_batch_statistics`] a batch norm in training mode
/// normalizes with the statistics of the batch it sees, as usual, but hands those statistics to
/// the collector instead of updating its running mean and variance: the caller combines the
/// statistics of every shard of a batch and updates the running state once, from one thread, so
/// the result does not depend on how threads interleave. Everywhere else it is `bn.forward(x)`.
pub fn normalize<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "tch")]
    if D == 4 && bn.training.is_enabled() && super::libtorch::differentiates(&x, &bn.gamma.val()) {
        let dims = x.dims();
        return normalize_libtorch(bn, x.reshape([dims[0], dims[1], dims[2], dims[3]]), Activation::Identity).reshape(dims);
    }
    let collecting = BATCH_STATISTICS.with(|stack| !stack.borrow().is_empty());
    if !(collecting && x.device().is_autodiff() && bn.training.is_enabled()) {
        return bn.forward(x);
    }
    let dims = x.dims();
    let count = dims.iter().product::<usize>() / dims[1];
    let result = burn::tensor::module::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon);
    record_statistics(bn, result.mean.detach(), result.variance.detach(), count);
    result.output
}

/// What follows a batch norm in [`normalize_activated`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
    Relu6,
}

impl Activation {
    pub fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Activation::Identity => x,
            Activation::Relu => burn::tensor::activation::relu(x),
            Activation::Relu6 => relu6(x),
        }
    }
}

/// `activation(normalize(bn, x))`, in one libtorch operation where [`normalize`] trains on
/// libtorch.
pub fn normalize_activated(bn: &BatchNorm, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    #[cfg(feature = "tch")]
    if bn.training.is_enabled() && super::libtorch::differentiates(&x, &bn.gamma.val()) {
        return normalize_libtorch(bn, x, activation);
    }
    activation.apply(normalize(bn, x))
}

/// A batch norm in training mode on libtorch (see [`super::libtorch::batch_norm_train`]): its
/// statistics go to the collector if one is open (sharded steps), or update the running state
/// at once, as burn's batch norm does.
#[cfg(feature = "tch")]
fn normalize_libtorch(bn: &BatchNorm, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    let [batch, _, height, width] = x.dims();
    let (output, mean, variance) = super::libtorch::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon, activation);
    let collecting = BATCH_STATISTICS.with(|stack| !stack.borrow().is_empty());
    if collecting {
        record_statistics(bn, mean, variance, batch * height * width);
    } else {
        update_running_statistics(vec![vec![BatchStatistics { layer: bn.clone(), mean, variance, count: batch * height * width }]]);
    }
    output
}

fn record_statistics(bn: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>, count: usize) {
    let statistics = BatchStatistics { layer: bn.clone(), mean, variance, count };
    BATCH_STATISTICS.with(|stack| stack.borrow_mut().last_mut().expect("a collector is open").push(statistics));
}

/// One batch norm's statistics over one shard of a batch (see [`normalize`]).
pub struct BatchStatistics {
    /// The layer (a clone: its running state is shared with the model's).
    layer: BatchNorm,
    mean: Tensor<1>,
    /// The biased variance, as batch norm normalizes with.
    variance: Tensor<1>,
    /// Values per channel the statistics were taken over.
    count: usize,
}

thread_local! {
    static BATCH_STATISTICS: std::cell::RefCell<Vec<Vec<BatchStatistics>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with the batch norms it calls (through [`normalize`]) on this thread collecting their
/// training statistics instead of updating their running state; returns them in call order.
pub fn collect_batch_statistics<R>(f: impl FnOnce() -> R) -> (R, Vec<BatchStatistics>) {
    BATCH_STATISTICS.with(|stack| stack.borrow_mut().push(Vec::new()));
    let result = f();
    let statistics = BATCH_STATISTICS.with(|stack| stack.borrow_mut().pop().expect("the collector pushed above"));
    (result, statistics)
}

/// Updates each batch norm's running mean and variance once from the statistics of all the
/// shards of a batch (each shard's list in the same layer order), combined into those of the
/// whole batch: the mean of the means weighted by size, and the variance including the spread
/// between the shard means. The same update as one batch norm over the whole batch.
pub fn update_running_statistics(shards: Vec<Vec<BatchStatistics>>) {
    let mut shards: Vec<std::vec::IntoIter<BatchStatistics>> = shards.into_iter().map(Vec::into_iter).collect();
    let Some((first, rest)) = shards.split_first_mut() else { return };
    for head in first.by_ref() {
        let parts: Vec<BatchStatistics> = std::iter::once(head).chain(rest.iter_mut().map(|shard| shard.next().expect("every shard runs the same layers"))).collect();
        let total: usize = parts.iter().map(|part| part.count).sum();
        let mean = parts.iter().map(|part| part.mean.clone().mul_scalar(part.count as f64 / total as f64)).reduce(|a, b| a + b).expect("one shard at least");
        let variance = parts
            .iter()
            .map(|part| (part.variance.clone() + (part.mean.clone() - mean.clone()).powi_scalar(2)).mul_scalar(part.count as f64 / total as f64))
            .reduce(|a, b| a + b)
            .expect("one shard at least");
        let layer = &parts[0].layer;
        let momentum = layer.momentum;
        let running_mean = layer.running_mean.value_sync().to_device(&mean.device());
        let running_var = layer.running_var.value_sync().to_device(&mean.device());
        layer.running_mean.update(running_mean.mul_scalar(1.0 - momentum).add(mean.mul_scalar(momentum)).detach());
        layer.running_var.update(running_var.mul_scalar(1.0 - momentum).add(variance.mul_scalar(momentum)).detach());
    }
}

/// Depthwise convolutions on planes up to this many pixels run as dense per-channel matrices.
const DEPTHWISE_DENSE_MAX_PIXELS: usize = 64;

/// Below this many pixels per plane a 1x1 convolution is one NHWC product (measured crossover).
const POINTWISE_BATCHED_MIN_PIXELS: usize = 64;

pub fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// Global average pooling: `[N, C, H, W]` -> `[N, C]`.
pub fn global_average(x: Tensor<4>) -> Tensor<2> {
    let [batch, channels, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([batch, channels])
}

/// Freezes the `index`-th module of a list, leaving the others as they are.
pub fn freeze_at<M: Module>(modules: Vec<M>, index: usize) -> Vec<M> {
    modules.into_iter().enumerate().map(|(at, module)| if at == index { module.freeze() } else { module }).collect()
}
