//! The safetensors format: an 8-byte little-endian header length, a JSON header mapping names to
//! `{dtype, shape, data_offsets}`, then the raw little-endian bytes.

use std::path::Path;

use crate::error::{Result, WeightsError};
use crate::limits::{Budget, MAX_TENSOR_RANK};
use crate::tensor::{DType, Tensor, TensorMap, Values, decode_elements};

/// The largest header graft accepts: real headers are kilobytes, so anything near this is corrupt.
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// Parses safetensors `bytes` (the whole file); `path` is only used in error messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<TensorMap> {
    parse_with(path, bytes, &Budget::for_file(path, bytes.len()))
}

/// [`parse`], charging the tensors' values to `budget`: tensors may share byte ranges, so the
/// values read can exceed the file's size.
pub(crate) fn parse_with(path: &Path, bytes: &[u8], budget: &Budget) -> Result<TensorMap> {
    let not_weights = |reason: String| WeightsError::NotWeights { path: path.to_owned(), reason };
    if bytes.len() < 8 {
        return Err(WeightsError::Truncated {
            path: path.to_owned(),
            what: "shorter than the 8-byte header length".into(),
        });
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_BYTES {
        return Err(not_weights(format!("header length {header_len} is implausible")));
    }
    let header_end = 8 + header_len as usize;
    if bytes.len() < header_end {
        return Err(WeightsError::Truncated {
            path: path.to_owned(),
            what: format!("header says {header_len} bytes, file has {}", bytes.len() - 8),
        });
    }
    // Parsed JSON takes up to ~16 bytes per byte of text (`[0,0,0,...]`): charged before parsing.
    budget.charge(header_len.saturating_mul(16), || format!("its JSON header ({header_len} bytes)"))?;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..header_end])
        .map_err(|error| not_weights(format!("header is not JSON ({error})")))?;
    let entries = header.as_object().ok_or_else(|| not_weights("header is not a JSON object".into()))?;
    let data = &bytes[header_end..];

    let mut tensors = TensorMap::new();
    for (key, entry) in entries {
        if key == "__metadata__" {
            continue;
        }
        let bad = |reason: String| WeightsError::BadTensor { path: path.to_owned(), key: key.clone(), reason };
        let dtype_name = entry["dtype"].as_str().ok_or_else(|| bad("no `dtype`".into()))?;
        let dtype =
            DType::from_safetensors_name(dtype_name).ok_or_else(|| bad(format!("unsupported dtype `{dtype_name}`")))?;
        let shape = entry["shape"].as_array().ok_or_else(|| bad("no `shape`".into()))?;
        if shape.len() > MAX_TENSOR_RANK {
            return Err(bad(format!("{} dimensions, more than the {MAX_TENSOR_RANK} graft reads", shape.len())));
        }
        let shape: Vec<usize> = shape
            .iter()
            .map(|dim| dim.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("`shape` is not a list of non-negative integers".into()))?;
        let offsets = entry["data_offsets"].as_array().ok_or_else(|| bad("no `data_offsets`".into()))?;
        let (start, end) = match offsets.as_slice() {
            [start, end] => (
                start.as_u64().and_then(|v| usize::try_from(v).ok()).ok_or_else(|| bad("bad `data_offsets`".into()))?,
                end.as_u64().and_then(|v| usize::try_from(v).ok()).ok_or_else(|| bad("bad `data_offsets`".into()))?,
            ),
            _ => return Err(bad("`data_offsets` must have two entries".into())),
        };
        let numel =
            shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d)).ok_or_else(|| bad("shape overflows".into()))?;
        let expected = numel.checked_mul(dtype.size()).ok_or_else(|| bad("shape overflows".into()))?;
        if end < start || end - start != expected {
            return Err(bad(format!(
                "{} bytes of data for shape {shape:?} of {dtype} (needs {expected})",
                end.saturating_sub(start)
            )));
        }
        if end > data.len() {
            return Err(WeightsError::Truncated {
                path: path.to_owned(),
                what: format!("tensor `{key}` ends at byte {end} of the data, which has only {}", data.len()),
            });
        }
        let element_bytes = if dtype.is_float() { 4 } else { 8 };
        budget.charge((numel as u64).saturating_mul(element_bytes), || format!("tensor `{key}` (shape {shape:?})"))?;
        let values = decode_elements(dtype, &data[start..end], 0..numel);
        tensors.insert(key.clone(), Tensor { shape, source_dtype: dtype, values });
    }
    Ok(tensors)
}

/// Serializes tensors as safetensors: floats as `F32`, integers as `I64`.
pub fn serialize(tensors: &TensorMap) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (key, tensor) in tensors {
        let start = data.len();
        let dtype = match &tensor.values {
            Values::F32(values) => {
                data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
                DType::F32
            }
            Values::I64(values) => {
                data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
                DType::I64
            }
        };
        header.insert(
            key.clone(),
            serde_json::json!({ "dtype": dtype.safetensors_name(), "shape": tensor.shape, "data_offsets": [start, data.len()] }),
        );
    }
    let mut header_bytes = serde_json::to_vec(&serde_json::Value::Object(header)).expect("JSON of plain values");
    // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
    while !(8 + header_bytes.len()).is_multiple_of(8) {
        header_bytes.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header_bytes.len() + data.len());
    out.extend((header_bytes.len() as u64).to_le_bytes());
    out.extend(header_bytes);
    out.extend(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut tensors = TensorMap::new();
        tensors.insert("a.weight".into(), Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.5]));
        tensors.insert(
            "a.count".into(),
            Tensor { shape: vec![], source_dtype: DType::I64, values: Values::I64(vec![42]) },
        );
        let bytes = serialize(&tensors);
        let back = parse(Path::new("x.safetensors"), &bytes).unwrap();
        assert_eq!(back, tensors);
    }

    #[test]
    fn truncated_data_names_the_tensor() {
        let mut tensors = TensorMap::new();
        tensors.insert("fc.weight".into(), Tensor::from_f32(vec![4], vec![1.0; 4]));
        let bytes = serialize(&tensors);
        let error = parse(Path::new("m.safetensors"), &bytes[..bytes.len() - 3]).unwrap_err().to_string();
        assert!(
            error.contains("m.safetensors") && error.contains("fc.weight") && error.contains("truncated"),
            "{error}"
        );
    }
}
