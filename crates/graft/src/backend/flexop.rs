//! Running a convolution of graft's own on `flex` (an input and a filter in, one output; see
//! [`super::convolution`] and [`super::depthwise`]): without autodiff it is computed directly;
//! with autodiff on either input it is recorded in burn's graph as one operation whose backward
//! is the convolution's own gradient kernels (burn's `Backward` trait, as the libtorch
//! operations are).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;

use super::{flex_tensor, flex_values};

type Tracked = Autodiff<Flex, NoCheckpointing>;

/// A convolution's shape and its three kernels on row-major values.
pub(crate) trait Kernels: Clone + Send + Sync + std::fmt::Debug + 'static {
    fn input_shape(&self) -> [usize; 4];
    fn filter_shape(&self) -> [usize; 4];
    fn output_shape(&self) -> [usize; 4];
    fn forward(&self, x: &[f32], w: &[f32]) -> Vec<f32>;
    /// The filter's gradient for the output gradient `gy`.
    fn filter_gradient(&self, gy: &[f32], x: &[f32]) -> Vec<f32>;
    /// The input's gradient for the output gradient `gy`.
    fn input_gradient(&self, gy: &[f32], w: &[f32]) -> Vec<f32>;
}

/// `kernels`' convolution of `x` with `weight`, both float32 on `flex` (with or without autodiff).
pub(crate) fn run<K: Kernels>(x: Tensor<4>, weight: Tensor<4>, kernels: K) -> Tensor<4> {
    let out_shape = kernels.output_shape();
    if !x.is_autodiff() && !weight.is_autodiff() {
        let x = x.try_into_primitive::<Flex>().expect("a tensor on flex");
        let w = weight.try_into_primitive::<Flex>().expect("a tensor on flex");
        let y = kernels.forward(&flex_values(&x), &flex_values(&w));
        return Tensor::from_primitive::<Flex>(flex_tensor(y, out_shape));
    }
    let x = x.autodiff().try_into_primitive::<Tracked>().expect("a tensor on flex");
    let w = weight.autodiff().try_into_primitive::<Tracked>().expect("a tensor on flex");
    let y = flex_tensor(kernels.forward(&flex_values(x.primitive()), &flex_values(w.primitive())), out_shape);
    let output = match Recorded::<K>(std::marker::PhantomData)
        .prepare::<NoCheckpointing>([x.node(), w.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((x.primitive().clone(), w.primitive().clone(), kernels), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    Tensor::from_primitive::<Tracked>(output)
}

/// The operation in burn's graph.
#[derive(Debug)]
struct Recorded<K>(std::marker::PhantomData<fn() -> K>);

impl<K: Kernels> Backward<Flex, 2> for Recorded<K> {
    /// The input, the filter and the kernels.
    type State = (FlexTensor, FlexTensor, K);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, w, kernels) = ops.state;
        let gy = flex_values(&grad);
        let [x_node, w_node] = ops.parents;
        if let Some(node) = w_node {
            grads.register::<Flex>(
                node.id,
                flex_tensor(kernels.filter_gradient(&gy, &flex_values(&x)), kernels.filter_shape()),
            );
        }
        if let Some(node) = x_node {
            grads.register::<Flex>(
                node.id,
                flex_tensor(kernels.input_gradient(&gy, &flex_values(&w)), kernels.input_shape()),
            );
        }
    }
}
