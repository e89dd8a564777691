//! The few tensor helpers every layer uses.

use burn::tensor::{Element, TensorData};

use crate::error::{GraftError, Result};

/// A tensor's values on the host, converted to `E`.
///
/// # Errors
/// The backend could not hand the values over (a failed read, an unsupported element type).
pub fn host_values<E: Element>(data: TensorData) -> Result<Vec<E>> {
    data.convert::<E>().try_into_vec::<E>().map_err(|error| GraftError::Tensor(format!("{error:?}")))
}
