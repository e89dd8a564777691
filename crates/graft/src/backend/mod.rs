//! How the math runs, apart from what the network is: a network's description run through burn
//! ([`forward`]), operations rewritten for `flex` and for libtorch ([`ops`], [`depthwise`],
//! [`batchnorm`], [`libtorch`]), and
//! frozen blocks compiled for the CPU ([`fused`]).

pub mod batchnorm;
pub mod depthwise;
pub mod forward;
pub mod fused;
#[cfg(feature = "tch")]
pub mod libtorch;
pub mod ops;

use burn::tensor::{Element, TensorData};

use crate::error::{GraftError, Result};

/// A tensor's values on the host, converted to `E`.
///
/// # Errors
/// The backend could not hand the values over (a failed read, an unsupported element type).
pub fn host_values<E: Element>(data: TensorData) -> Result<Vec<E>> {
    data.convert::<E>().try_into_vec::<E>().map_err(|error| GraftError::Tensor(format!("{error:?}")))
}
