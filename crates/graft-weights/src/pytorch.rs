//! PyTorch checkpoints: the zip format (`torch.save` since 1.6) and the legacy format before it
//! (a run of pickles followed by the raw storages), both through the allow-listed unpickler.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::error::{Result, WeightsError};
use crate::pickle::{StorageRef, TensorRef, Value, unpickle};
use crate::tensor::{Tensor, TensorMap, decode_elements, strided_indices};

/// `torch.serialization.MAGIC_NUMBER`, the first pickle of a legacy file.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

/// Reads a zip-format checkpoint.
pub fn parse_zip(path: &Path, bytes: &[u8]) -> Result<TensorMap> {
    let not_weights = |reason: String| WeightsError::NotWeights { path: path.to_owned(), reason };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|error| match error {
        zip::result::ZipError::Io(_) | zip::result::ZipError::InvalidArchive(_) => WeightsError::Truncated {
            path: path.to_owned(),
            what: format!("the zip archive is damaged ({error})"),
        },
        other => not_weights(format!("cannot open the zip archive ({other})")),
    })?;
    let names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    let pickle_name = names
        .iter()
        .find(|name| name.ends_with("data.pkl") && name.matches('/').count() <= 1)
        .ok_or_else(|| not_weights("a zip archive without `data.pkl` is not a PyTorch checkpoint".into()))?
        .clone();
    let prefix = pickle_name.trim_end_matches("data.pkl").to_owned();
    if let Some(byteorder) = names.iter().find(|name| **name == format!("{prefix}byteorder")) {
        let order = read_entry(path, &mut archive, byteorder)?;
        if order != b"little" {
            return Err(not_weights("big-endian checkpoints are not supported".into()));
        }
    }
    let pickle = read_entry(path, &mut archive, &pickle_name)?;
    let mut position = 0;
    let root = unpickle(path, &pickle, &mut position)?;
    let tensors = flatten(path, &root)?;
    let mut storages = HashMap::new();
    for (key, tensor) in &tensors {
        let name = format!("{prefix}data/{}", tensor.storage.key);
        if !storages.contains_key(&tensor.storage.key) {
            if !names.contains(&name) {
                return Err(WeightsError::Truncated { path: path.to_owned(), what: format!("storage `{name}` of tensor `{key}` is missing") });
            }
            storages.insert(tensor.storage.key.clone(), read_entry(path, &mut archive, &name)?);
        }
    }
    materialize(path, tensors, |storage| storages.get(&storage.key).map(Vec::as_slice))
}

fn read_entry(path: &Path, archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str) -> Result<Vec<u8>> {
    let truncated = |error: String| WeightsError::Truncated { path: path.to_owned(), what: format!("zip entry `{name}`: {error}") };
    let mut entry = archive.by_name(name).map_err(|error| truncated(error.to_string()))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).map_err(|error| truncated(error.to_string()))?;
    Ok(bytes)
}

/// Reads a legacy (pre-1.6) checkpoint: magic, protocol, system info, the object, the storage
/// keys, then each storage as an 8-byte element count and its bytes, in key order.
pub fn parse_legacy(path: &Path, bytes: &[u8]) -> Result<TensorMap> {
    let mut position = 0;
    match unpickle(path, bytes, &mut position)? {
        Value::Int(LEGACY_MAGIC) => {}
        _ => return Err(WeightsError::NotWeights { path: path.to_owned(), reason: "a pickle, but not a PyTorch checkpoint (wrong magic number)".into() }),
    }
    let _protocol_version = unpickle(path, bytes, &mut position)?;
    let _system_info = unpickle(path, bytes, &mut position)?;
    let root = unpickle(path, bytes, &mut position)?;
    let keys = unpickle(path, bytes, &mut position)?;
    let Value::List(keys) = keys else {
        return Err(WeightsError::NotWeights { path: path.to_owned(), reason: "the storage key list is missing".into() });
    };
    let tensors = flatten(path, &root)?;
    let sizes: HashMap<String, usize> = tensors
        .iter()
        .map(|(_, tensor)| (tensor.storage.key.clone(), tensor.storage.dtype.size()))
        .collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys.borrow().iter() {
        let Value::Str(key) = key else {
            return Err(WeightsError::NotWeights { path: path.to_owned(), reason: "a storage key is not a string".into() });
        };
        let truncated = || WeightsError::Truncated { path: path.to_owned(), what: format!("storage `{key}` ends past the end of the file") };
        let count_bytes = bytes.get(position..position + 8).ok_or_else(truncated)?;
        let count = u64::from_le_bytes(count_bytes.try_into().expect("8 bytes")) as usize;
        position += 8;
        // A storage no tensor uses still occupies its bytes; its element size is then unknown
        // only if nothing refers to it, which PyTorch never writes.
        let element_size = *sizes.get(key).ok_or_else(|| WeightsError::NotWeights {
            path: path.to_owned(),
            reason: format!("storage `{key}` is not used by any tensor"),
        })?;
        let length = count.checked_mul(element_size).ok_or_else(truncated)?;
        let data = bytes.get(position..position + length).ok_or_else(truncated)?;
        position += length;
        storages.insert(key.clone(), data);
    }
    materialize(path, tensors, |storage| storages.get(&storage.key).copied())
}

/// Every tensor in the object, named by its dotted path through nested dicts.
fn flatten(path: &Path, root: &Value) -> Result<Vec<(String, TensorRef)>> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, TensorRef)>) {
        match value {
            Value::Tensor(tensor) => out.push((prefix.to_owned(), tensor.clone())),
            Value::Dict(entries) => {
                for (key, value) in entries.borrow().iter() {
                    let key = match key {
                        Value::Str(key) => key.clone(),
                        Value::Int(key) => key.to_string(),
                        _ => continue,
                    };
                    let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                    walk(&name, value, out);
                }
            }
            // Lists, numbers and strings (epoch counters, optimizer hyper-parameters) hold no weights.
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", root, &mut out);
    if out.is_empty() {
        return Err(WeightsError::NotWeights { path: path.to_owned(), reason: "it holds no tensors".into() });
    }
    Ok(out)
}

/// Copies every tensor out of its storage, honouring offsets and strides.
fn materialize<'s>(path: &Path, refs: Vec<(String, TensorRef)>, storage_bytes: impl Fn(&StorageRef) -> Option<&'s [u8]>) -> Result<TensorMap> {
    let mut tensors = TensorMap::new();
    for (key, tensor) in refs {
        let bad = |reason: String| WeightsError::BadTensor { path: path.to_owned(), key: key.clone(), reason };
        let bytes = storage_bytes(&tensor.storage).ok_or_else(|| bad(format!("storage `{}` is missing", tensor.storage.key)))?;
        let dtype = tensor.storage.dtype;
        let available = bytes.len() / dtype.size();
        let offset = tensor.storage.view_offset + tensor.offset;
        let numel: usize = tensor.shape.iter().product();
        if numel > 0 {
            let last = tensor
                .shape
                .iter()
                .zip(&tensor.strides)
                .try_fold(offset, |acc, (size, stride)| (size - 1).checked_mul(*stride).and_then(|step| acc.checked_add(step)));
            match last {
                Some(last) if last < available => {}
                _ => {
                    return Err(bad(format!(
                        "shape {:?} with strides {:?} at offset {offset} reaches past its storage of {available} elements",
                        tensor.shape, tensor.strides
                    )));
                }
            }
        }
        let indices = strided_indices(&tensor.shape, &tensor.strides, offset);
        let values = decode_elements(dtype, bytes, indices.into_iter());
        tensors.insert(key, Tensor { shape: tensor.shape, source_dtype: dtype, values });
    }
    Ok(tensors)
}
