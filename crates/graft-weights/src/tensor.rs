//! The in-memory form every reader produces: a named, dense, row-major tensor.

use std::collections::BTreeMap;
use std::fmt;

/// The element type a tensor had in its file.
///
/// Floating-point tensors are widened to `f32` when read (`F16`, `BF16` and `F64` are
/// converted); integer and boolean tensors are kept as `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element in the file.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether values of this type are read as `f32`.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// The name safetensors uses for this type.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F64 => "F64",
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::I16 => "I16",
            DType::I8 => "I8",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
        }
    }

    /// Parses a safetensors type name.
    pub fn from_safetensors_name(name: &str) -> Option<DType> {
        Some(match name {
            "F64" => DType::F64,
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "I16" => DType::I16,
            "I8" => DType::I8,
            "U8" => DType::U8,
            "BOOL" => DType::Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// The values of a tensor, dense and row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Any floating-point source type, widened to `f32`.
    F32(Vec<f32>),
    /// Any integer or boolean source type, widened to `i64`.
    I64(Vec<i64>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One tensor read from a weight file.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    /// The element type in the file the tensor came from.
    pub source_dtype: DType,
    pub values: Values,
}

impl Tensor {
    /// A float tensor; panics if `values.len()` does not match `shape`, which is a bug in the caller.
    pub fn from_f32(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "shape/values mismatch");
        Tensor { shape, source_dtype: DType::F32, values: Values::F32(values) }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as `f32`, or `None` for an integer tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.values {
            Values::F32(v) => Some(v),
            Values::I64(_) => None,
        }
    }
}

/// Tensors by name, in name order.
pub type TensorMap = BTreeMap<String, Tensor>;

/// Decodes `count` little-endian elements of `dtype` from `bytes`, picking them at the given
/// element indices (already checked to be in bounds by the caller).
pub(crate) fn decode_elements(dtype: DType, bytes: &[u8], indices: impl Iterator<Item = usize>) -> Values {
    let size = dtype.size();
    let at = |index: usize| &bytes[index * size..index * size + size];
    match dtype {
        DType::F32 => Values::F32(indices.map(|i| f32::from_le_bytes(at(i).try_into().unwrap())).collect()),
        DType::F64 => Values::F32(indices.map(|i| f64::from_le_bytes(at(i).try_into().unwrap()) as f32).collect()),
        DType::F16 => Values::F32(
            indices.map(|i| half::f16::from_le_bytes(at(i).try_into().unwrap()).to_f32()).collect(),
        ),
        DType::BF16 => Values::F32(
            indices.map(|i| half::bf16::from_le_bytes(at(i).try_into().unwrap()).to_f32()).collect(),
        ),
        DType::I64 => Values::I64(indices.map(|i| i64::from_le_bytes(at(i).try_into().unwrap())).collect()),
        DType::I32 => Values::I64(indices.map(|i| i32::from_le_bytes(at(i).try_into().unwrap()) as i64).collect()),
        DType::I16 => Values::I64(indices.map(|i| i16::from_le_bytes(at(i).try_into().unwrap()) as i64).collect()),
        DType::I8 => Values::I64(indices.map(|i| bytes[i] as i8 as i64).collect()),
        DType::U8 | DType::Bool => Values::I64(indices.map(|i| bytes[i] as i64).collect()),
    }
}

/// Row-major element indices of a strided view: `offset + sum(index_d * stride_d)` for every
/// index in `shape`, in row-major order.
pub(crate) fn strided_indices(shape: &[usize], strides: &[usize], offset: usize) -> Vec<usize> {
    let numel: usize = shape.iter().product();
    let mut out = Vec::with_capacity(numel);
    if numel == 0 {
        return out;
    }
    let rank = shape.len();
    let mut index = vec![0usize; rank];
    let mut position = offset;
    for _ in 0..numel {
        out.push(position);
        // Increment the multi-index like an odometer, keeping `position` in step.
        for d in (0..rank).rev() {
            index[d] += 1;
            position += strides[d];
            if index[d] < shape[d] {
                break;
            }
            position -= strides[d] * shape[d];
            index[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_indices_of_a_transposed_matrix() {
        // A 2x3 view of a 3x2 row-major storage, transposed: strides (1, 2).
        assert_eq!(strided_indices(&[2, 3], &[1, 2], 0), vec![0, 2, 4, 1, 3, 5]);
    }

    #[test]
    fn strided_indices_with_offset_and_scalar() {
        assert_eq!(strided_indices(&[], &[], 7), vec![7]);
        assert_eq!(strided_indices(&[3], &[2], 1), vec![1, 3, 5]);
        assert!(strided_indices(&[0, 4], &[4, 1], 0).is_empty());
    }

    #[test]
    fn half_precision_is_widened() {
        let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        assert_eq!(decode_elements(DType::F16, &bytes, 0..2), Values::F32(vec![1.5, -2.0]));
        let bytes: Vec<u8> = [0.25f32, 3.0].iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        assert_eq!(decode_elements(DType::BF16, &bytes, 0..2), Values::F32(vec![0.25, 3.0]));
    }
}
