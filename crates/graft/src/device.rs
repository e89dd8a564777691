//! Choosing the compute device: burn picks the backend at run time from the device.

use burn::tensor::Device;

use crate::error::{GraftError, Result};

/// The backends graft was built with, by the name `--device` takes.
pub fn available() -> Vec<&'static str> {
    let mut names = vec!["flex"];
    if cfg!(feature = "tch") {
        names.push("libtorch");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    names
}

/// The device for a backend name: `flex` (pure Rust, the default), `libtorch`, `wgpu`, `cuda`.
pub fn parse(name: &str) -> Result<Device> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        #[cfg(feature = "tch")]
        #[allow(deprecated)] // burn 0.22 marks libtorch deprecated; graft keeps it for its speed.
        "libtorch" | "tch" => Ok(Device::libtorch()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        other => Err(GraftError::Invalid(format!(
            "unknown device `{other}`; this build of graft has: {}",
            available().join(", ")
        ))),
    }
}

/// How many shards graft splits a training batch into by default on `device` (see
/// `train::shards`): 2 on the CPU backends (`flex` keeps only about one core busy on a student's
/// smaller tensors, and libtorch gains too: docs/PERFORMANCE.md, sections 2 and 2b), 1 on a GPU,
/// which wants whole batches.
pub fn default_shards(device: &Device) -> usize {
    if is_cpu(device) { 2 } else { 1 }
}

/// Whether `device` computes on the CPU (`flex` or libtorch's CPU device).
pub fn is_cpu(device: &Device) -> bool {
    if *device == Device::flex() {
        return true;
    }
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    if *device == Device::libtorch() {
        return true;
    }
    false
}
