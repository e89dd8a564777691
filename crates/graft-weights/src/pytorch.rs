//! PyTorch checkpoints: the zip format (`torch.save` since 1.6) and the legacy format before it
//! (a run of pickles followed by the raw storages), both through the allow-listed unpickler.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::error::{Result, WeightsError};
use crate::limits::{Budget, MAX_DICT_DEPTH};
use crate::pickle::{StorageRef, TensorRef, Value, unpickle};
use crate::tensor::{Tensor, TensorMap, decode_elements, strided_indices};

/// `torch.serialization.MAGIC_NUMBER`, the first pickle of a legacy file.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

/// Reads a zip-format checkpoint.
pub(crate) fn parse_zip(path: &Path, bytes: &[u8], budget: &Budget) -> Result<TensorMap> {
    let not_weights = |reason: String| WeightsError::NotWeights { path: path.to_owned(), reason };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|error| match error {
        zip::result::ZipError::Io(_) | zip::result::ZipError::InvalidArchive(_) => {
            WeightsError::Truncated { path: path.to_owned(), what: format!("the zip archive is damaged ({error})") }
        }
        other => not_weights(format!("cannot open the zip archive ({other})")),
    })?;
    let names: Vec<String> = archive.file_names().map(str::to_owned).collect();
    budget.work(names.len() as u64, || "its zip directory".into())?;
    let name_set: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let pickle_name = names
        .iter()
        .find(|name| name.ends_with("data.pkl") && name.matches('/').count() <= 1)
        .ok_or_else(|| not_weights("a zip archive without `data.pkl` is not a PyTorch checkpoint".into()))?
        .clone();
    let prefix = pickle_name.trim_end_matches("data.pkl").to_owned();
    if let Some(byteorder) = name_set.get(format!("{prefix}byteorder").as_str()) {
        let order = read_entry(path, &mut archive, byteorder, budget)?;
        if order != b"little" {
            return Err(not_weights("big-endian checkpoints are not supported".into()));
        }
    }
    let pickle = read_entry(path, &mut archive, &pickle_name, budget)?;
    let mut position = 0;
    let object = unpickle(path, &pickle, &mut position, budget)?;
    let tensors = flatten(path, &object.root, budget)?;
    drop(object);
    let mut storages = HashMap::new();
    for (key, tensor) in &tensors {
        let name = format!("{prefix}data/{}", tensor.storage.key);
        if !storages.contains_key(&tensor.storage.key) {
            if !name_set.contains(name.as_str()) {
                return Err(WeightsError::Truncated {
                    path: path.to_owned(),
                    what: format!("storage `{name}` of tensor `{key}` is missing"),
                });
            }
            storages.insert(tensor.storage.key.clone(), read_entry(path, &mut archive, &name, budget)?);
        }
    }
    materialize(path, tensors, |storage| storages.get(&storage.key).map(Vec::as_slice), budget)
}

/// One zip entry's bytes. Its declared size is charged to the budget before anything is
/// allocated, and no more than that is ever read, whatever the compressed stream expands to.
fn read_entry(
    path: &Path,
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
    budget: &Budget,
) -> Result<Vec<u8>> {
    let truncated =
        |error: String| WeightsError::Truncated { path: path.to_owned(), what: format!("zip entry `{name}`: {error}") };
    let entry = archive.by_name(name).map_err(|error| truncated(error.to_string()))?;
    let size = entry.size();
    budget.charge(size, || format!("zip entry `{name}` ({size} bytes uncompressed)"))?;
    let capacity =
        usize::try_from(size).map_err(|_| truncated(format!("declared size {size} does not fit in memory")))?;
    let mut bytes = Vec::with_capacity(capacity);
    entry.take(size).read_to_end(&mut bytes).map_err(|error| truncated(error.to_string()))?;
    if bytes.len() as u64 != size {
        return Err(truncated(format!("holds {} bytes where its header says {size}", bytes.len())));
    }
    Ok(bytes)
}

/// Reads a legacy (pre-1.6) checkpoint: magic, protocol, system info, the object, the storage
/// keys, then each storage as an 8-byte element count and its bytes, in key order.
pub(crate) fn parse_legacy(path: &Path, bytes: &[u8], budget: &Budget) -> Result<TensorMap> {
    let mut position = 0;
    match unpickle(path, bytes, &mut position, budget)?.root {
        Value::Int(LEGACY_MAGIC) => {}
        _ => {
            return Err(WeightsError::NotWeights {
                path: path.to_owned(),
                reason: "a pickle, but not a PyTorch checkpoint (wrong magic number)".into(),
            });
        }
    }
    let _protocol_version = unpickle(path, bytes, &mut position, budget)?;
    let _system_info = unpickle(path, bytes, &mut position, budget)?;
    let object = unpickle(path, bytes, &mut position, budget)?;
    let keys = unpickle(path, bytes, &mut position, budget)?;
    let Value::List(keys) = &keys.root else {
        return Err(WeightsError::NotWeights {
            path: path.to_owned(),
            reason: "the storage key list is missing".into(),
        });
    };
    let tensors = flatten(path, &object.root, budget)?;
    drop(object);
    let sizes: HashMap<String, usize> =
        tensors.iter().map(|(_, tensor)| (tensor.storage.key.clone(), tensor.storage.dtype.size())).collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys.borrow().iter() {
        let Value::Str(key) = key else {
            return Err(WeightsError::NotWeights {
                path: path.to_owned(),
                reason: "a storage key is not a string".into(),
            });
        };
        let truncated = || WeightsError::Truncated {
            path: path.to_owned(),
            what: format!("storage `{key}` ends past the end of the file"),
        };
        let count_bytes = position.checked_add(8).and_then(|end| bytes.get(position..end)).ok_or_else(truncated)?;
        let count =
            usize::try_from(u64::from_le_bytes(count_bytes.try_into().expect("8 bytes"))).map_err(|_| truncated())?;
        position += 8;
        // A storage no tensor uses still occupies its bytes; its element size is then unknown
        // only if nothing refers to it, which PyTorch never writes.
        let element_size = *sizes.get(&**key).ok_or_else(|| WeightsError::NotWeights {
            path: path.to_owned(),
            reason: format!("storage `{key}` is not used by any tensor"),
        })?;
        let length = count.checked_mul(element_size).ok_or_else(truncated)?;
        let data = position.checked_add(length).and_then(|end| bytes.get(position..end)).ok_or_else(truncated)?;
        position += length;
        storages.insert(key.to_string(), data);
    }
    materialize(path, tensors, |storage| storages.get(&storage.key).copied(), budget)
}

/// Every tensor in the object, named by its dotted path through nested dicts. Dicts nested
/// deeper than [`MAX_DICT_DEPTH`] and dicts that contain themselves are refused. Each dict is
/// walked once, by identity: a dict reached again by another path (`{'model': sd, 'ema': sd}`,
/// or a chain of dicts each holding the next twice) names the tensors found the first time
/// under the new path, each name charged to the budget, instead of walking it again, so the
/// work is the file's containers plus the names it yields, never the number of paths.
fn flatten(path: &Path, root: &Value, budget: &Budget) -> Result<Vec<(String, TensorRef)>> {
    /// Where a walked dict's tensors sit in the output, and the length of the name it had.
    struct Seen {
        range: std::ops::Range<usize>,
        prefix_len: usize,
    }
    struct Walk<'a> {
        path: &'a Path,
        budget: &'a Budget<'a>,
        /// The dicts from the root down to the one being read, to detect cycles.
        open: Vec<*const ()>,
        seen: HashMap<*const (), Seen>,
        out: Vec<(String, TensorRef)>,
    }
    impl Walk<'_> {
        fn name(&mut self, name: String, tensor: TensorRef) -> Result<()> {
            self.budget.work(1 + name.len() as u64 / 64, || format!("the names of its tensors (at `{name}`)"))?;
            self.budget.charge((name.len() + std::mem::size_of::<(String, TensorRef)>()) as u64, || {
                format!("the names of its tensors (at `{name}`)")
            })?;
            self.out.push((name, tensor));
            Ok(())
        }

        fn walk(&mut self, prefix: &str, value: &Value) -> Result<()> {
            match value {
                Value::Tensor(tensor) => self.name(prefix.to_owned(), TensorRef::clone(tensor))?,
                Value::Dict(entries) => {
                    let identity = std::rc::Rc::as_ptr(entries).cast::<()>();
                    let not_weights = |reason: String| WeightsError::NotWeights { path: self.path.to_owned(), reason };
                    if self.open.contains(&identity) {
                        return Err(not_weights(format!("the dict at `{prefix}` contains itself")));
                    }
                    if let Some(seen) = self.seen.get(&identity) {
                        let (range, prefix_len) = (seen.range.clone(), seen.prefix_len);
                        for index in range {
                            let (name, tensor) = &self.out[index];
                            let alias = format!("{prefix}{}", &name[prefix_len..]);
                            let tensor = tensor.clone();
                            self.name(alias, tensor)?;
                        }
                        return Ok(());
                    }
                    if self.open.len() >= MAX_DICT_DEPTH {
                        return Err(not_weights(format!(
                            "dicts are nested more than {MAX_DICT_DEPTH} levels deep (at `{prefix}`)"
                        )));
                    }
                    self.open.push(identity);
                    let start = self.out.len();
                    let entries =
                        entries.try_borrow().map_err(|_| not_weights(format!("the dict at `{prefix}` is in use")))?;
                    self.budget.work(1 + entries.len() as u64, || format!("its dicts (at `{prefix}`)"))?;
                    for (key, value) in entries.iter() {
                        let key = match key {
                            Value::Str(key) => key.to_string(),
                            Value::Int(key) => key.to_string(),
                            _ => continue,
                        };
                        let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                        self.walk(&name, value)?;
                    }
                    self.open.pop();
                    self.seen.insert(identity, Seen { range: start..self.out.len(), prefix_len: prefix.len() });
                }
                // Lists, numbers and strings (epoch counters, optimizer hyper-parameters) hold no weights.
                _ => {}
            }
            Ok(())
        }
    }
    let mut walk = Walk { path, budget, open: Vec::new(), seen: HashMap::new(), out: Vec::new() };
    walk.walk("", root)?;
    if walk.out.is_empty() {
        return Err(WeightsError::NotWeights { path: path.to_owned(), reason: "it holds no tensors".into() });
    }
    Ok(walk.out)
}

/// Copies every tensor out of its storage, honouring offsets and strides. Each tensor's values
/// are charged to the budget before they are allocated: a view with stride 0 and a huge shape
/// passes the bounds check with a tiny storage, and would otherwise fill memory.
fn materialize<'s>(
    path: &Path,
    refs: Vec<(String, TensorRef)>,
    storage_bytes: impl Fn(&StorageRef) -> Option<&'s [u8]>,
    budget: &Budget,
) -> Result<TensorMap> {
    let mut tensors = TensorMap::new();
    for (key, tensor) in refs {
        let bad = |reason: String| WeightsError::BadTensor { path: path.to_owned(), key: key.clone(), reason };
        let bytes = storage_bytes(&tensor.storage)
            .ok_or_else(|| bad(format!("storage `{}` is missing", tensor.storage.key)))?;
        let dtype = tensor.storage.dtype;
        let available = bytes.len() / dtype.size();
        let offset =
            tensor.storage.view_offset.checked_add(tensor.offset).ok_or_else(|| bad("its offset overflows".into()))?;
        let numel = tensor
            .shape
            .iter()
            .try_fold(1usize, |acc, size| acc.checked_mul(*size))
            .ok_or_else(|| bad(format!("shape {:?} overflows", tensor.shape)))?;
        if numel > 0 {
            let last = tensor.shape.iter().zip(&tensor.strides).try_fold(offset, |acc, (size, stride)| {
                (size - 1).checked_mul(*stride).and_then(|step| acc.checked_add(step))
            });
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
        let element_bytes = if dtype.is_float() { 4 } else { 8 };
        budget.charge((numel as u64).saturating_mul(element_bytes), || {
            format!("tensor `{key}` (shape {:?}, {numel} elements)", tensor.shape)
        })?;
        let values = decode_elements(dtype, bytes, strided_indices(&tensor.shape, &tensor.strides, offset));
        tensors.insert(key, Tensor { shape: tensor.shape, source_dtype: dtype, values });
    }
    Ok(tensors)
}
