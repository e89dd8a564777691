//! Putting tensors read by `graft-weights` into burn modules, with a report of what matched.
//!
//! A module's parameters are found by their path (`_blocks.3._bn1.gamma`); the checkpoint key is
//! that path with burn's batch-norm names turned into PyTorch's (`gamma` -> `weight`, `beta` ->
//! `bias`) and then passed through the teacher's own key map. PyTorch stores linear weights as
//! `[out, in]` and burn as `[in, out]`, so those are transposed on the way in.

use std::collections::BTreeSet;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use graft_weights::{TensorMap, Values};

use crate::error::{GraftError, Result};
pub use crate::error::{LoadReport, ShapeMismatch};

/// How to map a module's parameter paths to checkpoint keys.
pub trait KeyMap {
    /// The checkpoint key for a parameter path (after `gamma`/`beta` renaming).
    fn checkpoint_key(&self, path: &str) -> String;

    /// Checkpoint keys that carry no weight and are never reported as unused.
    fn is_ignored(&self, key: &str) -> bool {
        key.ends_with("num_batches_tracked")
    }
}

/// The identity key map: module paths are checkpoint keys.
pub struct SameKeys;

impl KeyMap for SameKeys {
    fn checkpoint_key(&self, path: &str) -> String {
        path.to_owned()
    }
}

/// Copies `tensors` into `module`. With `allow_partial`, missing and mismatched tensors are only
/// reported; without it they make the load fail with the whole report in the message.
pub fn load_into<M: Module>(
    module: M,
    tensors: &TensorMap,
    keys: &dyn KeyMap,
    file: &Path,
    allow_partial: bool,
) -> Result<(M, LoadReport)> {
    let mut loader =
        Loader { tensors, keys, position: Position::default(), report: LoadReport::default(), used: BTreeSet::new() };
    let module = module.map(&mut loader);
    let Loader { mut report, used, .. } = loader;
    report.unused = tensors.keys().filter(|key| !used.contains(*key) && !keys.is_ignored(key)).cloned().collect();
    if !allow_partial && !report.is_complete() {
        return Err(GraftError::IncompleteLoad { file: file.to_owned(), report: Box::new(report) });
    }
    Ok((module, report))
}

struct Loader<'a> {
    tensors: &'a TensorMap,
    keys: &'a dyn KeyMap,
    position: Position,
    report: LoadReport,
    used: BTreeSet<String>,
}

/// Where a module walk is: the field path and the type of each enclosing module.
#[derive(Default)]
struct Position {
    path: Vec<String>,
    containers: Vec<String>,
}

impl Position {
    fn enter(&mut self, name: &str, container_type: &str) {
        self.path.push(name.to_owned());
        self.containers.push(container_type.to_owned());
    }

    fn exit(&mut self) {
        self.path.pop();
        self.containers.pop();
    }

    fn key(&self, keys: &dyn KeyMap) -> String {
        let container = self.containers.last().map(String::as_str).unwrap_or("");
        // An enum's variant name is burn's, not the checkpoint's: leave it out of the key.
        let mut parts: Vec<&str> = self
            .path
            .iter()
            .zip(&self.containers)
            .filter(|(_, container)| !container.starts_with("Enum:"))
            .map(|(name, _)| name.as_str())
            .collect();
        if container == "Struct:BatchNorm"
            && let Some(last) = parts.last_mut()
        {
            *last = match *last {
                "gamma" => "weight",
                "beta" => "bias",
                other => other,
            };
        }
        keys.checkpoint_key(&parts.join("."))
    }

    fn is_linear_weight(&self) -> bool {
        self.containers.last().is_some_and(|c| c == "Struct:Linear") && self.path.last().is_some_and(|p| p == "weight")
    }
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.position.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.position.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.position.key(self.keys);
        let expected: Vec<usize> = param.lazy_shape().as_slice().to_vec();
        let Some(tensor) = self.tensors.get(&key) else {
            self.report.missing.push(key);
            return param;
        };
        self.used.insert(key.clone());
        let transpose = self.position.is_linear_weight() && tensor.shape.len() == 2;
        let found_as_module: Vec<usize> =
            if transpose { vec![tensor.shape[1], tensor.shape[0]] } else { tensor.shape.clone() };
        let values: Vec<f32> = match &tensor.values {
            Values::F32(values) => values.clone(),
            Values::I64(values) => values.iter().map(|v| *v as f32).collect(),
        };
        // A scalar stored as shape [] fits a parameter of shape [1].
        let same_numel = found_as_module.iter().product::<usize>() == expected.iter().product::<usize>();
        if found_as_module != expected && !(same_numel && (found_as_module.is_empty() || expected.is_empty())) {
            // Report both shapes in the file's orientation, so they can be compared directly.
            let expected = if transpose { expected.iter().rev().copied().collect() } else { expected };
            self.report.mismatched.push(ShapeMismatch { key, expected, found: tensor.shape.clone() });
            return param;
        }
        let values = if transpose { transpose_2d(&values, tensor.shape[0], tensor.shape[1]) } else { values };
        let device = param.lazy_device();
        let id = param.id;
        let value = Tensor::<D>::from_data(TensorData::new(values, expected.clone()), &device);
        self.report.applied.push(key);
        param.transform_for_load(value, id)
    }
}

/// A row-major `rows` x `columns` matrix transposed (PyTorch's `[out, in]` <-> burn's `[in, out]`).
pub(crate) fn transpose_2d(values: &[f32], rows: usize, columns: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for row in 0..rows {
        for column in 0..columns {
            out[column * rows + row] = values[row * columns + column];
        }
    }
    out
}

/// Reads a module's parameters out as checkpoint-named tensors (linear weights back in PyTorch's
/// `[out, in]` order), the inverse of [`load_into`].
pub fn collect_tensors<M: Module>(module: &M, keys: &dyn KeyMap) -> Result<TensorMap> {
    let mut collector = Collector { keys, position: Position::default(), tensors: TensorMap::new(), failure: None };
    module.visit(&mut collector);
    match collector.failure {
        Some(error) => Err(error),
        None => Ok(collector.tensors),
    }
}

struct Collector<'a> {
    keys: &'a dyn KeyMap,
    position: Position,
    tensors: TensorMap,
    /// The first parameter whose values could not be read.
    failure: Option<GraftError>,
}

impl ModuleVisitor for Collector<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.position.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.position.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let key = self.position.key(self.keys);
        let transpose = self.position.is_linear_weight() && D == 2;
        let value = param.val();
        let shape = value.dims().to_vec();
        let values = match crate::tensor::host_values::<f32>(value.into_data()) {
            Ok(values) => values,
            Err(error) => {
                self.failure.get_or_insert(GraftError::Tensor(format!("`{key}`: {error}")));
                return;
            }
        };
        let (shape, values) = if transpose {
            (vec![shape[1], shape[0]], transpose_2d(&values, shape[0], shape[1]))
        } else {
            (shape, values)
        };
        self.tensors.insert(key, graft_weights::Tensor::from_f32(shape, values));
    }
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    Ok(crate::fsutil::hex(&hasher.finalize()))
}

/// The number of learnable values in a module: every float parameter except batch-norm running
/// statistics (which burn's `num_params` counts too).
pub fn count_parameters<M: Module>(module: &M) -> usize {
    struct Counter {
        position: Position,
        count: usize,
    }
    impl ModuleVisitor for Counter {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.position.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.position.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !self.position.path.last().is_some_and(|name| name.starts_with("running_")) {
                self.count += param.lazy_shape().num_elements();
            }
        }
    }
    let mut counter = Counter { position: Position::default(), count: 0 };
    module.visit(&mut counter);
    counter.count
}
