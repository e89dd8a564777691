//! Frozen blocks on the CPU without the framework: batch norm folded into the convolutions, and
//! each image run through every frozen block on one core.
//!
//! A frozen block never changes, so inference is all it needs, and inference of a
//! convolution + batch norm + activation is one convolution with a bias followed by a clamp.
//! On burn's `flex` backend most of a frozen EfficientNet-Lite's time goes to its depthwise
//! convolutions, the element-wise batch-norm and activation passes, and page faults for fresh
//! tensors (the profile is in docs/PERFORMANCE.md, section 1). Here:
//! - batch norm is folded into the weights and bias once, when the plan is built;
//! - bias, activation and the residual add run over each output while it is still in cache;
//! - ordinary convolutions are one matrix product per image (1x1: directly; others through
//!   im2col), with the `gemm` crate that `flex` itself uses;
//! - depthwise convolutions run plane by plane over a padded copy, stride-2 columns split into
//!   phases so every inner loop reads contiguous memory;
//! - images are independent: the batch is split across cores, each image staying on one core
//!   through all the blocks, so nothing is shared and nothing waits.
//!
//! The plan covers the convolutional teachers built from plain convolutions, depthwise
//! convolutions, batch norm, ReLU / ReLU6, max pooling and residual adds (EfficientNet-Lite,
//! MobileNetV2, ResNet); [`FusedBackbone::new`] returns `None` for the others, which then run
//! through burn. `tests/graft.rs` checks the results against burn's for every covered family.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::ops::{output_size, padding_sides};
use crate::error::{GraftError, Result};
use crate::net::{Activation, Layer as Described, Network};

/// A convolution with its batch norm folded in, and the activation after it.
#[derive(Debug, Clone)]
struct ConvOp {
    inputs: usize,
    outputs: usize,
    kernel: usize,
    stride: usize,
    padding: PaddingConfig2d,
    depthwise: bool,
    /// `[outputs, inputs (1 if depthwise), kernel, kernel]`, row-major.
    weight: Vec<f32>,
    bias: Vec<f32>,
    activation: Activation,
}

fn values<const D: usize>(tensor: Tensor<D>) -> Option<Vec<f32>> {
    tensor.into_data().convert::<f32>().try_into_vec::<f32>().ok()
}

/// A convolution's weight (`[outputs, inputs / groups, kh, kw]`, row-major) and bias with the
/// batch norm that follows it, if any, folded in (its stored statistics): the one convolution
/// that computes both. `None` for a tensor that cannot be read back.
pub(crate) fn folded(conv: &Conv2d, bn: Option<&BatchNorm>) -> Option<(Vec<f32>, Vec<f32>)> {
    let outputs = conv.weight.val().dims()[0];
    let mut weight = values(conv.weight.val())?;
    let mut bias = match &conv.bias {
        Some(bias) => values(bias.val())?,
        None => vec![0.0; outputs],
    };
    if let Some(bn) = bn {
        let gamma = values(bn.gamma.val())?;
        let beta = values(bn.beta.val())?;
        let mean = values(bn.running_mean.value())?;
        let variance = values(bn.running_var.value())?;
        let per_output = weight.len() / outputs;
        for channel in 0..outputs {
            let scale = gamma[channel] as f64 / (variance[channel] as f64 + bn.epsilon).sqrt();
            for w in &mut weight[channel * per_output..(channel + 1) * per_output] {
                *w = (*w as f64 * scale) as f32;
            }
            bias[channel] = ((bias[channel] as f64 - mean[channel] as f64) * scale + beta[channel] as f64) as f32;
        }
    }
    Some((weight, bias))
}

impl ConvOp {
    fn fold(conv: &Conv2d, bn: Option<&BatchNorm>, activation: Activation) -> Option<ConvOp> {
        let [outputs, per_group, kernel_h, kernel_w] = conv.weight.val().dims();
        if kernel_h != kernel_w || conv.stride[0] != conv.stride[1] || conv.dilation != [1, 1] {
            return None;
        }
        let groups = conv.groups;
        let inputs = per_group * groups;
        let depthwise = groups > 1;
        if depthwise && !(groups == inputs && inputs == outputs) {
            return None;
        }
        let (weight, bias) = folded(conv, bn)?;
        let padding = conv.padding.clone();
        Some(ConvOp {
            inputs,
            outputs,
            kernel: kernel_h,
            stride: conv.stride[0],
            padding,
            depthwise,
            weight,
            bias,
            activation,
        })
    }
}

#[derive(Debug, Clone)]
enum Layer {
    Conv(ConvOp),
    /// Max pooling with -inf padding (PyTorch's and burn's).
    MaxPool {
        kernel: usize,
        stride: usize,
        pad: usize,
    },
}

#[derive(Debug, Clone)]
enum Shortcut {
    None,
    Identity,
    Conv(ConvOp),
}

/// Layers in sequence, then an optional residual add and an activation after it.
#[derive(Debug, Clone)]
struct Unit {
    layers: Vec<Layer>,
    shortcut: Shortcut,
    activation: Activation,
}

impl Unit {
    fn plain(layers: Vec<Layer>) -> Unit {
        Unit { layers, shortcut: Shortcut::None, activation: Activation::Identity }
    }
}

/// One image's activations, `[channels, height, width]`.
struct Map {
    channels: usize,
    height: usize,
    width: usize,
    data: Vec<f32>,
}

/// A teacher's blocks, compiled for CPU inference: one list of units per block.
#[derive(Debug, Clone)]
pub struct FusedBackbone {
    blocks: Vec<Vec<Unit>>,
}

impl FusedBackbone {
    /// The plan for a backbone, compiled from its description, or `None` where a block holds a
    /// layer the plan does not cover.
    pub fn new(backbone: &(impl Network + ?Sized)) -> Option<FusedBackbone> {
        let blocks = backbone.blocks().iter().map(|block| block_units(&block.layers)).collect::<Option<Vec<_>>>()?;
        Some(FusedBackbone { blocks })
    }

    /// The plan for `backbone` where graft uses it: on the `flex` device (other backends bring
    /// their own fast kernels), unless `use_plan` is off (burn's modules, to compare).
    pub fn for_device(backbone: &(impl Network + ?Sized), device: &Device, use_plan: bool) -> Option<FusedBackbone> {
        if *device != Device::flex() || !use_plan {
            return None;
        }
        FusedBackbone::new(backbone)
    }

    /// Pooled features of the activations `x` entering block `from`, through the last block
    /// (moved to the host and back to `x`'s device).
    pub fn features_from(&self, x: Tensor<4>, from: usize) -> Result<Tensor<2>> {
        let device = x.device();
        let shape = x.dims();
        let values = super::host_values::<f32>(x.into_data())?;
        let (values, shape) = self.forward_range(&values, shape, from, self.blocks.len(), true)?;
        Ok(Tensor::from_data(TensorData::new(values, shape), &device))
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Runs blocks `[0, until)` on preprocessed images `[batch, channels, height, width]`
    /// (row-major). Returns the values and shape at the cut, or, with `pool`, the global average
    /// of the last block's output (`[batch, channels]`).
    pub fn forward(
        &self,
        images: &[f32],
        shape: [usize; 4],
        until: usize,
        pool: bool,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        self.forward_range(images, shape, 0, until, pool)
    }

    /// Runs blocks `[from, until)` on the activations entering block `from`.
    ///
    /// # Errors
    /// A range outside the plan's blocks, or `input` shorter than `shape` says.
    pub fn forward_range(
        &self,
        input: &[f32],
        shape: [usize; 4],
        from: usize,
        until: usize,
        pool: bool,
    ) -> Result<(Vec<f32>, Vec<usize>)> {
        let [batch, channels, height, width] = shape;
        let per_image = channels * height * width;
        let blocks = self.blocks.get(from..until).ok_or(GraftError::BlockRange {
            start: from,
            end: until,
            count: self.blocks.len(),
        })?;
        if input.len() != batch * per_image {
            return Err(GraftError::Tensor(format!("{} values for a batch of shape {shape:?}", input.len())));
        }
        let outputs: Vec<Map> = (0..batch)
            .into_par_iter()
            .with_max_len(1)
            .map(|index| {
                let mut map =
                    Map { channels, height, width, data: input[index * per_image..(index + 1) * per_image].to_vec() };
                for unit in blocks.iter().flatten() {
                    map = run_unit(unit, map);
                }
                if pool {
                    let plane = map.height * map.width;
                    let data =
                        map.data.chunks(plane.max(1)).map(|values| values.iter().sum::<f32>() / plane as f32).collect();
                    map = Map { channels: map.channels, height: 1, width: 1, data };
                }
                map
            })
            .collect();
        let first = outputs.first();
        let item_shape = match (first, pool) {
            (Some(map), true) => vec![map.channels],
            (Some(map), false) => vec![map.channels, map.height, map.width],
            (None, _) => vec![0],
        };
        let mut out_shape = vec![batch];
        out_shape.extend(item_shape);
        let mut values = Vec::with_capacity(out_shape.iter().product());
        for map in outputs {
            values.extend_from_slice(&map.data);
        }
        Ok((values, out_shape))
    }
}

fn run_unit(unit: &Unit, input: Map) -> Map {
    let mut x = None;
    for layer in &unit.layers {
        let current = x.as_ref().unwrap_or(&input);
        x = Some(match layer {
            Layer::Conv(op) => conv(op, current),
            Layer::MaxPool { kernel, stride, pad } => max_pool(current, *kernel, *stride, *pad),
        });
    }
    let mut x = x.unwrap_or_else(|| input_clone(&input));
    let shortcut = match &unit.shortcut {
        Shortcut::None => None,
        Shortcut::Identity => Some(input),
        Shortcut::Conv(op) => Some(conv(op, &input)),
    };
    if let Some(shortcut) = shortcut {
        debug_assert_eq!(shortcut.data.len(), x.data.len());
        kernels::add_activate(&mut x.data, &shortcut.data, unit.activation);
    } else if unit.activation != Activation::Identity {
        kernels::bias_activate(&mut x.data, 0.0, unit.activation);
    }
    x
}

fn input_clone(map: &Map) -> Map {
    Map { channels: map.channels, height: map.height, width: map.width, data: map.data.clone() }
}

fn conv(op: &ConvOp, x: &Map) -> Map {
    debug_assert_eq!(x.channels, op.inputs);
    let padding = padding_sides(&op.padding, [op.kernel; 2], [op.stride; 2], x.height, x.width);
    let [top, left, bottom, right] = padding;
    let (k, s) = (op.kernel, op.stride);
    let [out_h, out_w] = output_size(x.height, x.width, [k, k], [s, s], padding);
    let plane = out_h * out_w;
    let mut out = vec![0.0f32; op.outputs * plane];
    if op.depthwise {
        depthwise(op, x, [top, left, bottom, right], out_h, out_w, &mut out);
        return Map { channels: op.outputs, height: out_h, width: out_w, data: out };
    }
    let depth = op.inputs * k * k;
    if k == 1 && s == 1 && top + left + bottom + right == 0 {
        matmul(&op.weight, &x.data, &mut out, op.outputs, depth, plane);
    } else {
        let mut columns = vec![0.0f32; depth * plane];
        super::convolution::im2col(
            &x.data,
            [x.channels, x.height, x.width],
            [k, k],
            [s, s],
            [top, left],
            [out_h, out_w],
            &mut columns,
        );
        matmul(&op.weight, &columns, &mut out, op.outputs, depth, plane);
    }
    for (channel, values) in out.chunks_mut(plane).enumerate() {
        kernels::bias_activate(values, op.bias[channel], op.activation);
    }
    Map { channels: op.outputs, height: out_h, width: out_w, data: out }
}

/// `out[m x n] = lhs[m x k] * rhs[k x n]`, all row-major, on the calling thread.
fn matmul(lhs: &[f32], rhs: &[f32], out: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(lhs.len() >= m * k && rhs.len() >= k * n && out.len() >= m * n);
    // SAFETY: the three buffers hold at least m*k, k*n and m*n values (checked above), the
    // strides describe row-major matrices inside them, and `out` is not aliased.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// One filter per channel. The plane is copied once into a zero-padded buffer split into
/// `stride` x `stride` phases (rows and columns), so that every tap of the filter is a single
/// contiguous multiply-add over the whole output plane, computed `phase_width` wide; the columns
/// past the output's width are scratch and dropped when the plane is copied out.
fn depthwise(
    op: &ConvOp,
    x: &Map,
    [top, left, bottom, right]: [usize; 4],
    out_h: usize,
    out_w: usize,
    out: &mut [f32],
) {
    let (k, s) = (op.kernel, op.stride);
    let phase_h = (x.height + top + bottom).div_ceil(s);
    let phase_w = (x.width + left + right).div_ceil(s);
    // One spare row past the last one a tap can reach keeps every run inside its phase.
    let rows = phase_h.max(out_h + (k - 1) / s) + 1;
    let phase_len = rows * phase_w;
    let run = out_h * phase_w;
    let mut phases = vec![0.0f32; s * s * phase_len];
    let mut acc = vec![0.0f32; run];
    let plane = out_h * out_w;
    // Where each input row and each column phase lands, worked out once for every channel.
    let rows_at: Vec<usize> =
        (0..x.height).map(|y| ((y + top) % s) * s * phase_len + ((y + top) / s) * phase_w).collect();
    let columns_at: Vec<(usize, usize, usize)> = (0..s)
        .filter_map(|column_phase| {
            let first = (column_phase + s - left % s) % s;
            (first < x.width)
                .then(|| (first, (x.width - first).div_ceil(s), column_phase * phase_len + (first + left) / s))
        })
        .collect();
    // Every channel writes the same positions, so the padding stays zero from one to the next.
    for channel in 0..x.channels {
        let input = &x.data[channel * x.height * x.width..(channel + 1) * x.height * x.width];
        for (y, row_at) in rows_at.iter().enumerate() {
            let source = &input[y * x.width..(y + 1) * x.width];
            if s == 1 {
                let start = row_at + left;
                phases[start..start + x.width].copy_from_slice(source);
                continue;
            }
            for &(first, count, column_at) in &columns_at {
                let start = row_at + column_at;
                let target = &mut phases[start..start + count];
                let source = &source[first..first + (count - 1) * s + 1];
                for (i, value) in target.iter_mut().enumerate() {
                    *value = source[i * s];
                }
            }
        }
        acc.fill(op.bias[channel]);
        let weights = &op.weight[channel * k * k..(channel + 1) * k * k];
        for ky in 0..k {
            for kx in 0..k {
                let start = ((ky % s) * s + kx % s) * phase_len + (ky / s) * phase_w + kx / s;
                kernels::axpy(&mut acc, &phases[start..start + run], weights[ky * k + kx]);
            }
        }
        let output = &mut out[channel * plane..(channel + 1) * plane];
        for (target, source) in output.chunks_mut(out_w).zip(acc.chunks(phase_w)) {
            kernels::activate_into(target, &source[..out_w], op.activation);
        }
    }
}

/// The element-wise inner loops, compiled for AVX-512 and AVX2+FMA as well as the baseline, and
/// chosen once at run time from what the processor has.
mod kernels {
    use super::Activation;
    use crate::backend::simd::multiversion;

    multiversion! {
        /// `acc += w * source`.
        pub fn axpy(acc: &mut [f32], source: &[f32], w: f32) [fma] {
            for (a, s) in acc.iter_mut().zip(source) {
                *a = fma(*s, w, *a);
            }
        }
    }

    multiversion! {
        /// `target = activation(source)`.
        pub fn activate_into(target: &mut [f32], source: &[f32], activation: Activation) [fma] {
            match activation {
                Activation::Identity => target.copy_from_slice(source),
                Activation::Relu => target.iter_mut().zip(source).for_each(|(t, s)| *t = s.max(0.0)),
                Activation::Relu6 => target.iter_mut().zip(source).for_each(|(t, s)| *t = s.clamp(0.0, 6.0)),
            }
        }
    }

    multiversion! {
        /// `values = activation(values + bias)`.
        pub fn bias_activate(values: &mut [f32], bias: f32, activation: Activation) [fma] {
            match activation {
                Activation::Identity => values.iter_mut().for_each(|v| *v += bias),
                Activation::Relu => values.iter_mut().for_each(|v| *v = (*v + bias).max(0.0)),
                Activation::Relu6 => values.iter_mut().for_each(|v| *v = (*v + bias).clamp(0.0, 6.0)),
            }
        }
    }

    multiversion! {
        /// `values = activation(values + other)`.
        pub fn add_activate(values: &mut [f32], other: &[f32], activation: Activation) [fma] {
            match activation {
                Activation::Identity => values.iter_mut().zip(other).for_each(|(v, o)| *v += o),
                Activation::Relu => values.iter_mut().zip(other).for_each(|(v, o)| *v = (*v + o).max(0.0)),
                Activation::Relu6 => values.iter_mut().zip(other).for_each(|(v, o)| *v = (*v + o).clamp(0.0, 6.0)),
            }
        }
    }
}

fn max_pool(x: &Map, kernel: usize, stride: usize, pad: usize) -> Map {
    let out_h = (x.height + 2 * pad - kernel) / stride + 1;
    let out_w = (x.width + 2 * pad - kernel) / stride + 1;
    let mut out = vec![f32::NEG_INFINITY; x.channels * out_h * out_w];
    for channel in 0..x.channels {
        let input = &x.data[channel * x.height * x.width..(channel + 1) * x.height * x.width];
        let output = &mut out[channel * out_h * out_w..(channel + 1) * out_h * out_w];
        for oy in 0..out_h {
            for ox in 0..out_w {
                let mut best = f32::NEG_INFINITY;
                for ky in 0..kernel {
                    let Some(iy) = (oy * stride + ky).checked_sub(pad).filter(|iy| *iy < x.height) else { continue };
                    for kx in 0..kernel {
                        if let Some(ix) = (ox * stride + kx).checked_sub(pad).filter(|ix| *ix < x.width) {
                            best = best.max(input[iy * x.width + ix]);
                        }
                    }
                }
                output[oy * out_w + ox] = best;
            }
        }
    }
    Map { channels: x.channels, height: out_h, width: out_w, data: out }
}

/// A block's units: each residual layer one unit, consecutive plain layers gathered into one.
fn block_units(layers: &[Described<'_>]) -> Option<Vec<Unit>> {
    let mut units = Vec::new();
    let mut plain = Vec::new();
    for layer in layers {
        match layer {
            Described::Residual { body, shortcut, activation } => {
                if !plain.is_empty() {
                    units.push(Unit::plain(std::mem::take(&mut plain)));
                }
                let shortcut = match shortcut.as_slice() {
                    [] => Shortcut::Identity,
                    [Described::Conv { conv, norm, activation }] => {
                        Shortcut::Conv(ConvOp::fold(conv, *norm, *activation)?)
                    }
                    _ => return None,
                };
                let layers = body.iter().map(plain_layer).collect::<Option<Vec<_>>>()?;
                units.push(Unit { layers, shortcut, activation: *activation });
            }
            layer => plain.push(plain_layer(layer)?),
        }
    }
    if !plain.is_empty() {
        units.push(Unit::plain(plain));
    }
    Some(units)
}

/// A layer the plan runs in sequence, or `None` for one it does not cover.
fn plain_layer(layer: &Described<'_>) -> Option<Layer> {
    match layer {
        Described::Conv { conv, norm, activation } => ConvOp::fold(conv, *norm, *activation).map(Layer::Conv),
        Described::MaxPool(pool) => {
            let [kernel, kernel_w] = pool.kernel_size;
            let [stride, stride_w] = pool.stride;
            if kernel != kernel_w || stride != stride_w || pool.dilation != [1, 1] || pool.ceil_mode {
                return None;
            }
            let pad = match &pool.padding {
                PaddingConfig2d::Explicit(top, left, bottom, right)
                    if top == left && left == bottom && bottom == right =>
                {
                    *top
                }
                PaddingConfig2d::Valid => 0,
                _ => return None,
            };
            Some(Layer::MaxPool { kernel, stride, pad })
        }
        Described::AvgPool(_)
        | Described::AdaptiveAvgPool(_)
        | Described::Dense { .. }
        | Described::Residual { .. }
        | Described::Concat(_) => None,
    }
}
