//! A batch norm in training mode with the activation after it, on `flex`, as one operation with
//! graft's own forward and backward.
//!
//! burn 0.22's batch norm in training mode is a composition: it transposes the activation to take
//! each channel's mean and variance, and its backward makes about ten more passes; the ReLU6
//! after it adds a comparison and two masked fills each way, much of it on one thread
//! (docs/PERFORMANCE.md, section 2). Here the forward is two passes (the channels' statistics,
//! then the normalised and activated output, plane by plane) and the backward two (the
//! channels' sums of the gradient, then the input's gradient), each spread over the cores. The
//! statistics are summed in double precision. Outputs and gradients equal burn's composition up
//! to rounding (tests below).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::{flex_tensor, flex_values as values};
use crate::net::Activation;

type Tracked = Autodiff<Flex, NoCheckpointing>;

/// `activation(batch_norm(x))` with the batch's own statistics, tracked by burn's autodiff when
/// any input is. Returns the output and the batch's mean and (biased) variance, untracked.
pub fn train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    activation: Activation,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let dims = x.dims();
    let [batch, channels, height, width] = dims;
    let shape = Shape { batch, channels, plane: height * width };
    let statistic = |values: Vec<f32>| Tensor::<1>::from_primitive::<Flex>(flex_tensor(values, [channels]));
    // The statistics, and the output they give, from the inputs' values.
    let normalize = |x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor| {
        let x = values(x);
        let (mean, variance) = statistics(&x, &shape);
        let inverse = inverse_std(&variance, epsilon);
        let y =
            flex_tensor(forward_values(&x, &values(gamma), &values(beta), &mean, &inverse, activation, &shape), dims);
        (y, mean, variance, inverse)
    };
    if !x.is_autodiff() && !gamma.is_autodiff() && !beta.is_autodiff() {
        let plain = |tensor: Tensor<1>| tensor.try_into_primitive::<Flex>().expect("a tensor on flex");
        let (y, mean, variance, _) =
            normalize(&x.try_into_primitive::<Flex>().expect("a tensor on flex"), &plain(gamma), &plain(beta));
        return (Tensor::<4>::from_primitive::<Flex>(y), statistic(mean), statistic(variance));
    }
    let x = x.autodiff().try_into_primitive::<Tracked>().expect("a tensor on flex");
    let gamma = gamma.autodiff().try_into_primitive::<Tracked>().expect("a tensor on flex");
    let beta = beta.autodiff().try_into_primitive::<Tracked>().expect("a tensor on flex");
    let (y, mean, variance, inverse) = normalize(x.primitive(), gamma.primitive(), beta.primitive());
    let output =
        match NormBackward.prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = NormState {
                    x: x.primitive().clone(),
                    gamma: gamma.primitive().clone(),
                    output: y.clone(),
                    mean: mean.clone(),
                    inverse_std: inverse,
                    activation,
                    shape,
                    dims,
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
    (Tensor::<4>::from_primitive::<Tracked>(output), statistic(mean), statistic(variance))
}

/// `[batch, channels, plane]` with `plane` = height x width.
#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: usize,
    channels: usize,
    plane: usize,
}

impl Shape {
    /// The `plane`-long slices of channel `c`, one per image.
    fn planes<'a>(&self, values: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (channels, plane) = (self.channels, self.plane);
        (0..self.batch).map(move |n| &values[(n * channels + c) * plane..(n * channels + c + 1) * plane])
    }

    fn count(&self) -> usize {
        self.batch * self.plane
    }
}

/// Each channel's mean and biased variance, summed in double precision, one channel per task.
fn statistics(x: &[f32], shape: &Shape) -> (Vec<f32>, Vec<f32>) {
    let count = shape.count().max(1) as f64;
    let pairs: Vec<(f32, f32)> = (0..shape.channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = shape.planes(x, c).map(sum_f64).sum();
            let mean = sum / count;
            let squares: f64 = shape.planes(x, c).map(|plane| squares_f64(plane, mean)).sum();
            (mean as f32, (squares / count) as f32)
        })
        .collect();
    pairs.into_iter().unzip()
}

/// Lanes of the sums below: independent accumulators the compiler keeps in vector registers (one
/// accumulator would make every addition wait for the one before it).
const LANES: usize = 8;

/// The sum of `term(value)` over `values` in double precision, in [`LANES`] lanes.
#[inline(always)]
fn lane_sum(values: &[f32], term: impl Fn(f32) -> f64) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&v| term(v)).sum();
    for chunk in chunks {
        for lane in 0..LANES {
            lanes[lane] += term(chunk[lane]);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// The sum of `values` in double precision.
fn sum_f64(values: &[f32]) -> f64 {
    lane_sum(values, |v| v as f64)
}

/// The sum of `(value - mean)^2` over `values` in double precision.
fn squares_f64(values: &[f32], mean: f64) -> f64 {
    lane_sum(values, |v| (v as f64 - mean).powi(2))
}

fn inverse_std(variance: &[f32], epsilon: f64) -> Vec<f32> {
    variance.iter().map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32).collect()
}

/// `activation(gamma (x - mean) / std + beta)`, one plane per task.
fn forward_values(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    inverse_std: &[f32],
    activation: Activation,
    shape: &Shape,
) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(shape.plane.max(1)).zip(x.par_chunks(shape.plane.max(1))).enumerate().for_each(
        |(plane, (out, input))| {
            let c = plane % shape.channels;
            let scale = gamma[c] * inverse_std[c];
            let shift = beta[c] - mean[c] * scale;
            match activation {
                Activation::Identity => out.iter_mut().zip(input).for_each(|(o, &v)| *o = v * scale + shift),
                Activation::Relu => out.iter_mut().zip(input).for_each(|(o, &v)| *o = (v * scale + shift).max(0.0)),
                Activation::Relu6 => {
                    out.iter_mut().zip(input).for_each(|(o, &v)| *o = (v * scale + shift).clamp(0.0, 6.0))
                }
            }
        },
    );
    y
}

/// What the backward needs: the input, gamma, the output (whose value says where the
/// activation passed the gradient), the statistics and the shape.
#[derive(Debug, Clone)]
struct NormState {
    x: FlexTensor,
    gamma: FlexTensor,
    output: FlexTensor,
    mean: Vec<f32>,
    inverse_std: Vec<f32>,
    activation: Activation,
    shape: Shape,
    /// The input's `[batch, channels, height, width]`.
    dims: [usize; 4],
}

/// The output gradient with the activation's backward applied: zero where it clamped (read
/// from the output: ReLU passes where it is above 0, ReLU6 strictly between 0 and 6). Each is a
/// function of its own so the loops below are compiled once per activation, branch-free.
fn pass_identity(_output: f32, grad: f32) -> f32 {
    grad
}

fn pass_relu(output: f32, grad: f32) -> f32 {
    if output > 0.0 { grad } else { 0.0 }
}

fn pass_relu6(output: f32, grad: f32) -> f32 {
    if output > 0.0 && output < 6.0 { grad } else { 0.0 }
}

/// The backward's two passes for one activation's `pass`: per channel the sum of the passed
/// gradient and of it times the normalised input (beta's and gamma's gradients), then, when
/// `input` is asked for, the input's gradient
/// `gamma / std * (g - mean(g) - xhat * mean(g * xhat))`, one plane per task.
#[allow(clippy::too_many_arguments)]
fn backward_values(
    pass: impl Fn(f32, f32) -> f32 + Sync + Copy,
    gy: &[f32],
    x: &[f32],
    y: &[f32],
    gamma: &[f32],
    mean: &[f32],
    inverse: &[f32],
    shape: Shape,
    input: bool,
) -> (Vec<(f64, f64)>, Option<Vec<f32>>) {
    let sums: Vec<(f64, f64)> = (0..shape.channels)
        .into_par_iter()
        .map(|c| {
            let (mut sum, mut dot) = (0.0f64, 0.0f64);
            let center = mean[c];
            for ((g, x), y) in shape.planes(gy, c).zip(shape.planes(x, c)).zip(shape.planes(y, c)) {
                let (mut s, mut d) = ([0.0f32; LANES], [0.0f32; LANES]);
                let whole = g.len() / LANES * LANES;
                for ((g, x), y) in g[..whole]
                    .chunks_exact(LANES)
                    .zip(x[..whole].chunks_exact(LANES))
                    .zip(y[..whole].chunks_exact(LANES))
                {
                    for lane in 0..LANES {
                        let g = pass(y[lane], g[lane]);
                        s[lane] += g;
                        d[lane] += g * (x[lane] - center);
                    }
                }
                for ((&g, &x), &y) in g[whole..].iter().zip(&x[whole..]).zip(&y[whole..]) {
                    let g = pass(y, g);
                    s[0] += g;
                    d[0] += g * (x - center);
                }
                sum += s.iter().map(|&v| v as f64).sum::<f64>();
                dot += d.iter().map(|&v| v as f64).sum::<f64>();
            }
            (sum, dot * inverse[c] as f64)
        })
        .collect();
    if !input {
        return (sums, None);
    }
    let count = shape.count().max(1) as f64;
    let mut gx = vec![0.0f32; x.len()];
    let plane_len = shape.plane.max(1);
    gx.par_chunks_mut(plane_len).enumerate().for_each(|(plane, out)| {
        let c = plane % shape.channels;
        let at = plane * plane_len;
        let (g, x, y) = (&gy[at..at + plane_len], &x[at..at + plane_len], &y[at..at + plane_len]);
        let scale = gamma[c] * inverse[c];
        let (center, inverse) = (mean[c], inverse[c]);
        let mean_g = (sums[c].0 / count) as f32;
        let mean_gx = (sums[c].1 / count) as f32;
        for (((o, &g), &x), &y) in out.iter_mut().zip(g).zip(x).zip(y) {
            let xhat = (x - center) * inverse;
            *o = scale * (pass(y, g) - mean_g - xhat * mean_gx);
        }
    });
    (sums, Some(gx))
}

#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let state = ops.state;
        let shape = state.shape;
        let (gy, x, y, gamma) = (values(&grad), values(&state.x), values(&state.output), values(&state.gamma));
        let (mean, inverse) = (&state.mean, &state.inverse_std);
        let [x_node, gamma_node, beta_node] = ops.parents;
        let input = x_node.is_some();
        let (sums, gx) = match state.activation {
            Activation::Identity => backward_values(pass_identity, &gy, &x, &y, &gamma, mean, inverse, shape, input),
            Activation::Relu => backward_values(pass_relu, &gy, &x, &y, &gamma, mean, inverse, shape, input),
            Activation::Relu6 => backward_values(pass_relu6, &gy, &x, &y, &gamma, mean, inverse, shape, input),
        };
        let channels = shape.channels;
        let per_channel = |values: Vec<f32>| flex_tensor(values, [channels]);
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, per_channel(sums.iter().map(|(_, dot)| *dot as f32).collect()));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, per_channel(sums.iter().map(|(sum, _)| *sum as f32).collect()));
        }
        if let (Some(node), Some(gx)) = (x_node, gx) {
            grads.register::<Flex>(node.id, flex_tensor(gx, state.dims));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::relative_difference;
    use burn::tensor::{Device, Distribution};

    /// Output, statistics and the gradients of input, gamma and beta equal burn's batch norm
    /// followed by the activation, for each activation, with and without a tracked input.
    #[test]
    fn batch_norm_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        for activation in [Activation::Identity, Activation::Relu, Activation::Relu6] {
            for (batch, channels, size) in [(4, 3, 5), (2, 8, 9), (3, 5, 1)] {
                for input_tracked in [true, false] {
                    let x =
                        Tensor::<4>::random([batch, channels, size, size + 2], Distribution::Normal(0.5, 2.0), &device);
                    let x = if input_tracked { x.require_grad() } else { x };
                    let gamma = Tensor::<1>::random([channels], Distribution::Normal(1.0, 0.5), &device).require_grad();
                    let beta = Tensor::<1>::random([channels], Distribution::Normal(0.0, 1.0), &device).require_grad();
                    let expected = burn::tensor::module::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-3);
                    let expected_output = crate::backend::ops::activate(expected.output, activation);
                    let (output, mean, variance) = train(x.clone(), gamma.clone(), beta.clone(), 1e-3, activation);
                    assert!(relative_difference(expected_output.clone(), output.clone()) < 1e-5);
                    assert!(relative_difference(expected.mean.inner(), mean) < 1e-5);
                    assert!(relative_difference(expected.variance.inner(), variance) < 1e-5);
                    let target = Tensor::<4>::random(output.dims(), Distribution::Normal(0.0, 1.0), &device);
                    let expected_grads = (expected_output * target.clone()).sum().backward();
                    let actual_grads = (output * target).sum().backward();
                    for (name, parameter) in [("gamma", &gamma), ("beta", &beta)] {
                        let (e, a) = (parameter.grad(&expected_grads).unwrap(), parameter.grad(&actual_grads).unwrap());
                        assert!(relative_difference(e, a) < 1e-4, "{name} {activation:?} {batch} {channels} {size}");
                    }
                    match (x.grad(&expected_grads), x.grad(&actual_grads)) {
                        (Some(e), Some(a)) => {
                            assert!(relative_difference(e, a) < 1e-4, "x {activation:?} {batch} {channels} {size}")
                        }
                        (None, None) => assert!(!input_tracked),
                        _ => panic!("the input's gradient exists for one implementation only"),
                    }
                }
            }
        }
        // Without autodiff: the same output.
        let plain = Device::flex();
        let x = Tensor::<4>::random([3, 4, 6, 6], Distribution::Normal(0.0, 1.0), &plain);
        let (gamma, beta) = (Tensor::<1>::ones([4], &plain), Tensor::<1>::zeros([4], &plain));
        let expected =
            burn::tensor::module::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5).output.clamp(0.0, 6.0);
        let (output, _, _) = train(x, gamma, beta, 1e-5, Activation::Relu6);
        assert!(!output.is_autodiff());
        assert!(relative_difference(expected, output) < 1e-5);
    }
}
