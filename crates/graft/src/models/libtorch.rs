//! Grouped (depthwise) convolutions on burn's libtorch backend, differentiated by PyTorch.
//!
//! burn does its own autodiff over libtorch, and burn 0.22's backward of a grouped convolution
//! computes the weight gradient one group at a time: a depthwise convolution with 1152 channels
//! is 1152 libtorch calls and as many slice assignments per step. Measured here (batch 16,
//! `examples/libtorch_depthwise.rs`), a depthwise forward + backward took 2-10x as long as
//! PyTorch's on the same libtorch. So on libtorch with autodiff graft records a grouped
//! convolution as one operation of burn's graph whose backward runs libtorch's own: the forward
//! is computed by libtorch with autograd on (its graph keeps what its backward needs), and the
//! backward asks that graph for the gradients of the inputs burn tracks.

// burn 0.22 marks libtorch deprecated; graft keeps it for its speed.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::{Autodiff, LibTorch};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

type Tracked = Autodiff<LibTorch, NoCheckpointing>;

/// Whether [`grouped_conv`] applies to `conv` on `x`: libtorch, with autodiff on for the input or
/// the weight (without autodiff burn's forward is libtorch's already).
pub fn applies(conv: &Conv2d, x: &Tensor<4>) -> bool {
    x.device() == Device::libtorch() && (x.is_autodiff() || conv.weight.val().is_autodiff())
}

/// `conv` (a grouped convolution, bias added by burn) on an input on libtorch with autodiff,
/// its backward run by libtorch. `padding` is (top, left, bottom, right): TensorFlow's "same"
/// padding can be one pixel larger at the bottom and right, which libtorch's convolution does
/// not take, so the input is padded first inside libtorch's graph. An input or weight without
/// autodiff takes part as a constant, as in burn's own operations.
pub fn grouped_conv(conv: &Conv2d, x: Tensor<4>, padding: [usize; 4]) -> Tensor<4> {
    let weight = conv.weight.val();
    let channels_out = weight.dims()[0];
    let options = Options { stride: conv.stride, dilation: conv.dilation, groups: conv.groups, padding };
    let x = x.autodiff().try_into_primitive::<Tracked>().expect("an input on libtorch with autodiff");
    let weight = weight.autodiff().try_into_primitive::<Tracked>().expect("a weight on libtorch with autodiff");
    let output = match TorchConv.prepare::<NoCheckpointing>([x.node(), weight.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let input = x.primitive().tensor.detach().set_requires_grad(true);
            let filter = weight.primitive().tensor.detach().set_requires_grad(true);
            let output = options.forward(&input, &filter);
            let result = TchTensor::new(output.detach());
            prep.finish(TorchGraph { output, input, filter }, result)
        }
        OpsKind::UnTracked(prep) => {
            let output = tch::no_grad(|| options.forward(&x.primitive().tensor, &weight.primitive().tensor));
            prep.finish(TchTensor::new(output))
        }
    };
    let y = Tensor::<4>::from_primitive::<Tracked>(output);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, channels_out, 1, 1]),
        None => y,
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

/// The burn operation: its state is libtorch's graph of the forward.
#[derive(Debug)]
struct TorchConv;

/// libtorch's output of the forward (with its autograd graph) and the two leaves it grew from.
struct TorchGraph {
    output: tch::Tensor,
    input: tch::Tensor,
    filter: tch::Tensor,
}

impl Clone for TorchGraph {
    fn clone(&self) -> Self {
        Self { output: self.output.shallow_clone(), input: self.input.shallow_clone(), filter: self.filter.shallow_clone() }
    }
}

impl std::fmt::Debug for TorchGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchGraph").field("output", &self.output.size()).field("filter", &self.filter.size()).finish()
    }
}

impl Backward<LibTorch, 2> for TorchConv {
    type State = TorchGraph;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_input, node_filter] = ops.parents;
        let grad = grads.consume::<LibTorch>(&ops.node);
        let graph = ops.state;
        let wanted: Vec<(_, &tch::Tensor)> = [(node_input, &graph.input), (node_filter, &graph.filter)]
            .into_iter()
            .filter_map(|(node, leaf)| node.map(|node| (node, leaf)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        // libtorch's engine seeds each root with ones, so the root is output x incoming gradient:
        // its gradient with respect to the leaves is the vector-Jacobian product wanted.
        let root = &graph.output * &grad.tensor;
        let leaves: Vec<&tch::Tensor> = wanted.iter().map(|(_, leaf)| *leaf).collect();
        let gradients = tch::Tensor::run_backward(&[root], &leaves, false, false);
        for ((node, _), gradient) in wanted.into_iter().zip(gradients) {
            grads.register::<LibTorch>(node.id, TchTensor::new(gradient));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::conv;
    use burn::module::Module;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    fn relative_difference<const D: usize>(expected: Tensor<D>, actual: Tensor<D>) -> f32 {
        let scale = expected.clone().abs().max().into_scalar::<f32>();
        (expected - actual).abs().max().into_scalar::<f32>() / scale
    }

    /// Outputs and gradients equal burn's own convolution's, for depthwise and grouped
    /// convolutions with TensorFlow's asymmetric "same" padding (stride 2 on an even size),
    /// explicit padding and a bias, whether or not the input is tracked.
    #[test]
    fn grouped_convolutions_match_burn_forward_and_backward() {
        let device = Device::libtorch().autodiff();
        let cases = [
            (8, 8, 8, 3, 2, PaddingConfig2d::Same, false, 10),
            (8, 8, 8, 5, 1, PaddingConfig2d::Same, true, 7),
            (6, 12, 3, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), true, 9),
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
                assert!(applies(&layer, &x));
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
                    assert!(relative_difference(b.grad(&expected_grads).unwrap(), b.grad(&actual_grads).unwrap()) < 1e-5);
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
        assert!(!applies(&frozen, &plain));
        let x = plain.clone().autodiff().require_grad();
        assert!(applies(&frozen, &x));
        let expected = layer.forward(plain.clone().autodiff());
        let actual = conv(&frozen, x.clone());
        assert!(relative_difference(expected.clone(), actual.clone()) < 1e-5);
        let grads = actual.sum().backward();
        let expected_grads = layer.forward(x.clone()).sum().backward();
        assert!(relative_difference(x.grad(&expected_grads).unwrap(), x.grad(&grads).unwrap()) < 1e-5);
    }
}
