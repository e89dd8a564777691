//! How the math runs, apart from what the network is: a network's description run through burn
//! ([`forward`]), operations rewritten for `flex` and for libtorch ([`ops`], [`convolution`],
//! [`depthwise`], [`batchnorm`], [`libtorch`]), frozen blocks compiled for the CPU ([`fused`]),
//! and the hook that collects a sharded step's
//! batch-norm statistics ([`batch_statistics`]).

pub mod batch_statistics;
pub mod batchnorm;
pub mod convolution;
pub mod depthwise;
mod flexop;
pub mod forward;
pub mod fused;
#[cfg(feature = "tch")]
pub mod libtorch;
pub mod ops;
pub(crate) mod simd;

use burn::tensor::TensorData;

pub use crate::tensor::host_values;

/// Whether `tensor` is float32 on `flex` (with or without autodiff): what graft's own `flex`
/// operations ([`convolution`], [`depthwise`], [`batchnorm`]) take.
pub(crate) fn on_flex_f32<const D: usize>(tensor: &burn::tensor::Tensor<D>) -> bool {
    let device = tensor.device();
    (device == burn::tensor::Device::flex() || device == burn::tensor::Device::flex().autodiff())
        && tensor.dtype() == burn::tensor::DType::F32
}

/// A float tensor's values on `flex`, row-major (copied only if its layout is strided).
pub(crate) fn flex_values(tensor: &burn::backend::flex::FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(values) => std::borrow::Cow::Borrowed(values),
        None => {
            std::borrow::Cow::Owned(tensor.to_contiguous().as_slice::<f32>().expect("a contiguous f32 tensor").to_vec())
        }
    }
}

/// Row-major values as a `flex` tensor.
pub(crate) fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> burn::backend::flex::FlexTensor {
    burn::backend::flex::FlexTensor::from_data(TensorData::new(values, shape))
}

/// The largest difference between two tensors relative to the largest magnitude in `expected`
/// (tests of graft's own operations against burn's).
#[cfg(test)]
pub(crate) fn relative_difference<const D: usize>(
    expected: burn::tensor::Tensor<D>,
    actual: burn::tensor::Tensor<D>,
) -> f32 {
    let scale = expected.clone().abs().max().into_scalar::<f32>().max(1e-12);
    (expected - actual).abs().max().into_scalar::<f32>() / scale
}
