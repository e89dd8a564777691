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
        DType::F16 => {
            Values::F32(indices.map(|i| half::f16::from_le_bytes(at(i).try_into().unwrap()).to_f32()).collect())
        }
        DType::BF16 => {
            Values::F32(indices.map(|i| half::bf16::from_le_bytes(at(i).try_into().unwrap()).to_f32()).collect())
        }
        DType::I64 => Values::I64(indices.map(|i| i64::from_le_bytes(at(i).try_into().unwrap())).collect()),
        DType::I32 => Values::I64(indices.map(|i| i32::from_le_bytes(at(i).try_into().unwrap()) as i64).collect()),
        DType::I16 => Values::I64(indices.map(|i| i16::from_le_bytes(at(i).try_into().unwrap()) as i64).collect()),
        DType::I8 => Values::I64(indices.map(|i| bytes[i] as i8 as i64).collect()),
        DType::U8 | DType::Bool => Values::I64(indices.map(|i| bytes[i] as i64).collect()),
    }
}

/// Row-major element indices of a strided view: `offset + sum(index_d * stride_d)` for every
/// index in `shape`, in row-major order. The caller has checked that the last index is in bounds
/// (so no position overflows).
pub(crate) fn strided_indices<'a>(shape: &'a [usize], strides: &'a [usize], offset: usize) -> StridedIndices<'a> {
    let remaining = shape.iter().product();
    StridedIndices { shape, strides, index: vec![0; shape.len()], position: offset, remaining }
}

/// The iterator of [`strided_indices`]: an odometer over the multi-index, keeping the flat
/// position in step, so no list of indices is ever allocated.
pub(crate) struct StridedIndices<'a> {
    shape: &'a [usize],
    strides: &'a [usize],
    index: Vec<usize>,
    position: usize,
    remaining: usize,
}

impl Iterator for StridedIndices<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.position;
        if self.remaining > 0 {
            for d in (0..self.shape.len()).rev() {
                self.index[d] += 1;
                if self.index[d] < self.shape[d] {
                    self.position += self.strides[d];
                    break;
                }
                self.position -= self.strides[d] * (self.shape[d] - 1);
                self.index[d] = 0;
            }
        }
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedIndices<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_indices_of_a_transposed_matrix() {
        // A 2x3 view of a 3x2 row-major storage, transposed: strides (1, 2).
        assert_eq!(strided_indices(&[2, 3], &[1, 2], 0).collect::<Vec<_>>(), vec![0, 2, 4, 1, 3, 5]);
    }

    #[test]
    fn strided_indices_with_offset_and_scalar() {
        assert_eq!(strided_indices(&[], &[], 7).collect::<Vec<_>>(), vec![7]);
        assert_eq!(strided_indices(&[3], &[2], 1).collect::<Vec<_>>(), vec![1, 3, 5]);
        assert_eq!(strided_indices(&[0, 4], &[4, 1], 0).count(), 0);
        // A 2x2x3 view with a broadcast (stride 0) middle dimension.
        assert_eq!(
            strided_indices(&[2, 2, 3], &[3, 0, 1], 2).collect::<Vec<_>>(),
            vec![2, 3, 4, 2, 3, 4, 5, 6, 7, 5, 6, 7]
        );
    }

    #[test]
    fn half_precision_is_widened() {
        let bytes: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        assert_eq!(decode_elements(DType::F16, &bytes, 0..2), Values::F32(vec![1.5, -2.0]));
        let bytes: Vec<u8> = [0.25f32, 3.0].iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        assert_eq!(decode_elements(DType::BF16, &bytes, 0..2), Values::F32(vec![0.25, 3.0]));
    }
}
