//! Convolutions and training batch norms on burn's libtorch backend, differentiated by libtorch.
//!
//! burn does its own autodiff over libtorch: each backward is a composition of eager libtorch
//! calls. Profiled on EfficientNet-Lite0's `full` training step, three of them dominated:
//! - a grouped (depthwise) convolution's weight gradient is computed one group at a time, so a
//!   depthwise convolution with 1152 channels is 1152 libtorch calls and as many slice
//!   assignments per step: forward + backward took 2-25x as long as libtorch's own
//!   (`examples/depthwise_small.rs libtorch`);
//! - any other convolution's weight gradient is a convolution of the input with the output's
//!   gradient as the filter, which libtorch runs through im2col;
//! - a batch norm in training mode is about ten element-wise passes each way with transposes,
//!   and the ReLU6 / ReLU after it a comparison and two masked fills (libtorch's slowest
//!   element-wise kernel) backward.
//!
//! So on libtorch with autodiff graft records each convolution, and each training batch norm with
//! its activation, as one operation of burn's graph whose forward libtorch computes with its
//! autograd on (its graph keeps what its backward needs) and whose backward asks that graph for
//! the gradients of the inputs burn tracks: libtorch's fused batch-norm kernels and its
//! convolution backward, as PyTorch runs them.

// burn 0.22 marks libtorch deprecated; graft keeps it for its speed.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, LibTorch};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use crate::net::Activation;

type Tracked = Autodiff<LibTorch, NoCheckpointing>;

/// burn's autodiff tensor on libtorch.
type AutodiffTensor = FloatTensor<Tracked>;

/// Whether libtorch differentiates an operation on `x` with `parameter` ([`conv2d`],
/// [`batch_norm_train`]): on libtorch, with autodiff on for either (without autodiff burn's
/// forward is libtorch's already).
pub fn differentiates<const D: usize, const E: usize>(x: &Tensor<D>, parameter: &Tensor<E>) -> bool {
    x.device() == Device::libtorch() && (x.is_autodiff() || parameter.is_autodiff())
}

/// `conv` (its bias added by burn) on an input on libtorch with autodiff, its backward run by
/// libtorch. `padding` is (top, left, bottom, right): TensorFlow's "same" padding can be one
/// pixel larger at the bottom and right, which libtorch's convolution does not take, so the
/// input is padded first inside libtorch's graph. An input or weight without autodiff takes
/// part as a constant, as in burn's own operations.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>, padding: [usize; 4]) -> Tensor<4> {
    let weight = conv.weight.val();
    let channels_out = weight.dims()[0];
    let options = Options { stride: conv.stride, dilation: conv.dilation, groups: conv.groups, padding };
    let (output, ()) =
        record(TorchConv, [tracked(x), tracked(weight)], |[input, filter]| (options.forward(input, filter), ()));
    let y = Tensor::<4>::from_primitive::<Tracked>(output);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, channels_out, 1, 1]),
        None => y,
    }
}

/// A batch norm in training mode (normalized with the batch's own statistics) followed by
/// `activation`, forward and backward by libtorch's fused kernels, where burn's batch norm is a
/// composition of about ten element-wise passes each way and its clamp's backward two masked
/// fills. Returns the output, and the batch's mean and (biased) variance, detached.
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    activation: Activation,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let (output, (mean, variance)) =
        record(TorchBatchNorm, [tracked(x), tracked(gamma), tracked(beta)], |[x, gamma, beta]| {
            let (output, mean, inverse_std) = x.native_batch_norm(
                Some(gamma),
                Some(beta),
                None::<&tch::Tensor>,
                None::<&tch::Tensor>,
                true,
                0.0,
                epsilon,
            );
            let output = match activation {
                Activation::Identity => output,
                // Not `relu`, whose backward reads its output: burn may write into that in place.
                Activation::Relu => output.clamp_min(0.0),
                Activation::Relu6 => output.relu6(),
            };
            let variance = inverse_std.detach().pow_tensor_scalar(-2.0) - epsilon;
            (output, (mean.detach(), variance))
        });
    let statistic = |tensor: tch::Tensor| Tensor::<1>::from_primitive::<LibTorch>(TchTensor::new(tensor));
    (Tensor::<4>::from_primitive::<Tracked>(output), statistic(mean), statistic(variance))
}

/// `tensor` as burn's autodiff primitive on libtorch (a tensor without autodiff gets it, as a
/// constant).
fn tracked<const D: usize>(tensor: Tensor<D>) -> AutodiffTensor {
    tensor.autodiff().try_into_primitive::<Tracked>().expect("a tensor on libtorch")
}

/// Records `operation` on `inputs` in burn's graph: `forward` computes its output (and anything
/// else it returns) with libtorch, with libtorch's autograd on when burn tracks the operation,
/// and the operation's backward is libtorch's backward of that graph.
fn record<O, const N: usize, R>(
    operation: O,
    inputs: [AutodiffTensor; N],
    forward: impl Fn([&tch::Tensor; N]) -> (tch::Tensor, R),
) -> (AutodiffTensor, R)
where
    O: Backward<LibTorch, N, State = TorchGraph>,
{
    match operation.prepare::<NoCheckpointing>(inputs.each_ref().map(|input| input.node())).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            // Leaves on the inputs' storage, detached, with libtorch's autograd on.
            let leaves = inputs.each_ref().map(|input| input.primitive().tensor.detach().set_requires_grad(true));
            let (output, rest) = forward(leaves.each_ref());
            let result = TchTensor::new(output.detach());
            let graph = TorchGraph {
                output,
                leaves: leaves.into(),
                _inputs: inputs.map(|input| input.into_primitive()).into(),
            };
            (prep.finish(graph, result), rest)
        }
        OpsKind::UnTracked(prep) => {
            let (output, rest) = tch::no_grad(|| forward(inputs.each_ref().map(|input| &input.primitive().tensor)));
            (prep.finish(TchTensor::new(output)), rest)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Options {
    stride: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    padding: [usize; 4],
}

impl Options {
    fn forward(&self, input: &tch::Tensor, filter: &tch::Tensor) -> tch::Tensor {
        let [top, left, bottom, right] = self.padding.map(|side| side as i64);
        let (input, padding) = if top == bottom && left == right {
            (input.shallow_clone(), [top, left])
        } else {
            (input.constant_pad_nd([left, right, top, bottom]), [0, 0])
        };
        let stride = self.stride.map(|s| s as i64);
        let dilation = self.dilation.map(|d| d as i64);
        input.conv2d(filter, None::<tch::Tensor>, stride, padding, dilation, self.groups as i64)
    }
}

/// The burn operations: their state is libtorch's graph of the forward.
#[derive(Debug)]
struct TorchConv;

#[derive(Debug)]
struct TorchBatchNorm;

/// libtorch's output of a forward (with its autograd graph) and the leaves it grew from, one per
/// input of the burn operation, in order.
struct TorchGraph {
    output: tch::Tensor,
    leaves: Vec<tch::Tensor>,
    /// burn's handles on the inputs, held until the backward: the leaves share their storage,
    /// which libtorch's graph may have saved, and burn's libtorch backend writes in place into
    /// a tensor whose storage it holds no other handle on.
    _inputs: Vec<TchTensor>,
}

impl TorchGraph {
    /// The gradients of the leaves marked in `wanted` (the inputs burn tracks) for an incoming
    /// `grad`, computed by libtorch's backward of the recorded graph; `None` for the others.
    fn gradients(self, wanted: &[bool], grad: TchTensor) -> Vec<Option<tch::Tensor>> {
        let leaves: Vec<&tch::Tensor> =
            self.leaves.iter().zip(wanted).filter(|(_, wanted)| **wanted).map(|(leaf, _)| leaf).collect();
        if leaves.is_empty() {
            return wanted.iter().map(|_| None).collect();
        }
        // libtorch's engine seeds each root with ones, so the root is the dot product of the
        // output and the incoming gradient: its gradient with respect to the leaves is the
        // vector-Jacobian product wanted (one read of each forward, one product backward).
        let root = self.output.reshape([-1]).dot(&grad.tensor.reshape([-1]));
        let mut gradients = tch::Tensor::run_backward(&[root], &leaves, false, false).into_iter();
        wanted.iter().map(|wanted| if *wanted { gradients.next() } else { None }).collect()
    }
}

/// The `Backward` of a burn operation whose state is a [`TorchGraph`].
macro_rules! torch_backward {
    ($operation:ty, $inputs:literal) => {
        impl Backward<LibTorch, $inputs> for $operation {
            type State = TorchGraph;

            fn backward(self, ops: Ops<Self::State, $inputs>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let grad = grads.consume::<LibTorch>(&ops.node);
                let wanted = ops.parents.each_ref().map(Option::is_some);
                for (node, gradient) in ops.parents.into_iter().zip(ops.state.gradients(&wanted, grad)) {
                    if let (Some(node), Some(gradient)) = (node, gradient) {
                        grads.register::<LibTorch>(node.id, TchTensor::new(gradient));
                    }
                }
            }
        }
    };
}

torch_backward!(TorchConv, 2);
torch_backward!(TorchBatchNorm, 3);

impl Clone for TorchGraph {
    fn clone(&self) -> Self {
        Self {
            output: self.output.shallow_clone(),
            leaves: self.leaves.iter().map(tch::Tensor::shallow_clone).collect(),
            _inputs: self._inputs.clone(),
        }
    }
}

impl std::fmt::Debug for TorchGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchGraph").field("output", &self.output.size()).field("leaves", &self.leaves.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ops::conv;
    use burn::module::Module;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    fn relative_difference<const D: usize>(expected: Tensor<D>, actual: Tensor<D>) -> f32 {
        let scale = expected.clone().abs().max().into_scalar::<f32>();
        (expected - actual).abs().max().into_scalar::<f32>() / scale
    }

    /// Outputs and gradients equal burn's own convolution's, for depthwise, grouped and plain
    /// convolutions with TensorFlow's asymmetric "same" padding (stride 2 on an even size),
    /// explicit padding and a bias, whether or not the input is tracked.
    #[test]
    fn convolutions_match_burn_forward_and_backward() {
        let device = Device::libtorch().autodiff();
        let cases = [
            (8, 8, 8, 3, 2, PaddingConfig2d::Same, false, 10),
            (8, 8, 8, 5, 1, PaddingConfig2d::Same, true, 7),
            (6, 12, 3, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), true, 9),
            (5, 7, 1, 1, 1, PaddingConfig2d::Valid, false, 6),
            (3, 8, 1, 3, 2, PaddingConfig2d::Same, true, 12),
        ];
        for (inputs, outputs, groups, kernel, stride, padding, bias, size) in cases {
            let layer = Conv2dConfig::new([inputs, outputs], [kernel, kernel])
                .with_groups(groups)
                .with_stride([stride, stride])
                .with_padding(padding)
                .with_bias(bias)
                .init(&device);
            for input_tracked in [true, false] {
                let x = Tensor::<4>::random([3, inputs, size, size], Distribution::Normal(0.0, 1.0), &device);
                let x = if input_tracked { x.require_grad() } else { x };
                assert!(differentiates(&x, &layer.weight.val()));
                let expected = layer.forward(x.clone());
                let actual = conv(&layer, x.clone());
                assert_eq!(expected.dims(), actual.dims());
                assert!(relative_difference(expected.clone(), actual.clone()) < 1e-5);
                let target = Tensor::<4>::random(expected.dims(), Distribution::Normal(0.0, 1.0), &device);
                let expected_grads = (expected * target.clone()).sum().backward();
                let actual_grads = (actual * target).sum().backward();
                let weight = |grads| layer.weight.grad(grads).expect("a weight gradient");
                assert!(relative_difference(weight(&expected_grads), weight(&actual_grads)) < 1e-5);
                if let Some(b) = &layer.bias {
                    assert!(
                        relative_difference(b.grad(&expected_grads).unwrap(), b.grad(&actual_grads).unwrap()) < 1e-5
                    );
                }
                match (x.grad(&expected_grads), x.grad(&actual_grads)) {
                    (Some(expected), Some(actual)) => assert!(relative_difference(expected, actual) < 1e-5),
                    (None, None) => assert!(!input_tracked),
                    _ => panic!("the input's gradient exists for one implementation only"),
                }
            }
        }
    }

    /// A model in inference mode (no autodiff on its weights) with an input without autodiff runs
    /// burn's forward; with a tracked input the weight takes part as a constant.
    #[test]
    fn untracked_weights_are_constants() {
        let device = Device::libtorch().autodiff();
        let layer = Conv2dConfig::new([4, 4], [3, 3]).with_groups(4).with_padding(PaddingConfig2d::Same).init(&device);
        let frozen = layer.clone().valid();
        let plain = Tensor::<4>::random([2, 4, 6, 6], Distribution::Normal(0.0, 1.0), &Device::libtorch());
        assert!(!differentiates(&plain, &frozen.weight.val()));
        let x = plain.clone().autodiff().require_grad();
        assert!(differentiates(&x, &frozen.weight.val()));
        let expected = layer.forward(plain.clone().autodiff());
        let actual = conv(&frozen, x.clone());
        assert!(relative_difference(expected.clone(), actual.clone()) < 1e-5);
        let grads = actual.sum().backward();
        let expected_grads = layer.forward(x.clone()).sum().backward();
        assert!(relative_difference(x.grad(&expected_grads).unwrap(), x.grad(&grads).unwrap()) < 1e-5);
    }

    /// A training batch norm with each activation: output, batch statistics and the gradients of
    /// the input, scale and shift equal burn's.
    #[test]
    fn training_batch_norms_match_burn() {
        let device = Device::libtorch().autodiff();
        for activation in [Activation::Identity, Activation::Relu, Activation::Relu6] {
            let bn = burn::nn::BatchNormConfig::new(5).with_epsilon(1e-3).init(&device);
            let gamma = Tensor::<1>::random([5], Distribution::Uniform(0.5, 1.5), &device).require_grad();
            let beta = Tensor::<1>::random([5], Distribution::Uniform(-4.0, 4.0), &device).require_grad();
            let x = (Tensor::<4>::random([4, 5, 3, 3], Distribution::Normal(0.0, 1.0), &device) * 3.0).require_grad();
            let expected = burn::tensor::module::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), bn.epsilon);
            let expected_output = match activation {
                Activation::Identity => expected.output,
                Activation::Relu => burn::tensor::activation::relu(expected.output),
                Activation::Relu6 => expected.output.clamp(0.0, 6.0),
            };
            let (output, mean, variance) =
                batch_norm_train(x.clone(), gamma.clone(), beta.clone(), bn.epsilon, activation);
            assert!(relative_difference(expected_output.clone(), output.clone()) < 1e-5, "{activation:?}");
            assert!(relative_difference(expected.mean.detach(), mean.autodiff()) < 1e-5);
            assert!(relative_difference(expected.variance.detach(), variance.autodiff()) < 1e-5);
            let target = Tensor::<4>::random(output.dims(), Distribution::Normal(0.0, 1.0), &device);
            let expected_grads = (expected_output * target.clone()).sum().backward();
            let grads = (output * target).sum().backward();
            let (expected, actual) = x.grad(&expected_grads).zip(x.grad(&grads)).expect("the input's gradients");
            assert!(relative_difference(expected, actual) < 1e-4, "{activation:?} x");
            for (name, parameter) in [("gamma", &gamma), ("beta", &beta)] {
                let (expected, actual) = parameter.grad(&expected_grads).zip(parameter.grad(&grads)).expect(name);
                assert!(relative_difference(expected, actual) < 1e-4, "{activation:?} {name}");
            }
        }
    }

    /// Outside a sharded step, `ops::normalize` on libtorch updates the running statistics as
    /// burn's batch norm does.
    #[test]
    fn batch_norm_running_statistics_update_as_burn_does() {
        let device = Device::libtorch().autodiff();
        let bn = burn::nn::BatchNormConfig::new(3).init(&device);
        let reference = burn::nn::BatchNormConfig::new(3).init(&device);
        let x = Tensor::<4>::random([6, 3, 4, 4], Distribution::Normal(2.0, 3.0), &device);
        assert!(differentiates(&x, &bn.gamma.val()));
        let output = crate::backend::ops::normalize(&bn, x.clone());
        let expected = reference.forward(x);
        assert!(relative_difference(expected, output) < 1e-5);
        assert!(relative_difference(reference.running_mean.value_sync(), bn.running_mean.value_sync()) < 1e-5);
        assert!(relative_difference(reference.running_var.value_sync(), bn.running_var.value_sync()) < 1e-5);
    }

    /// burn's libtorch backend adds in place into a tensor whose storage nothing else in burn
    /// holds; a convolution's input that is also used elsewhere (a residual connection) must not
    /// be overwritten before libtorch's backward reads it.
    #[test]
    fn inputs_saved_by_libtorch_are_not_overwritten() {
        let device = Device::libtorch().autodiff();
        let layer = Conv2dConfig::new([3, 3], [3, 3]).with_padding(PaddingConfig2d::Same).init(&device);
        let a = Tensor::<4>::random([2, 3, 5, 5], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let run = |ours: bool| {
            let h = a.clone() * 2.0;
            let y = if ours { conv(&layer, h.clone()) } else { layer.forward(h.clone()) };
            let residual = h + 1.0;
            let grads = (y * residual).sum().backward();
            (a.grad(&grads).unwrap(), layer.weight.grad(&grads).unwrap())
        };
        let (expected_input, expected_weight) = run(false);
        let (input, weight) = run(true);
        assert!(relative_difference(expected_input, input) < 1e-5);
        assert!(relative_difference(expected_weight, weight) < 1e-5);
    }
}
