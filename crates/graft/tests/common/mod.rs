//! Helpers shared by graft's integration tests (`graft.rs`, `wgpu.rs`).

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use graft::models::WeightOptions;

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// Offline, with an empty cache: the bundled weights or nothing.
pub fn offline_options() -> WeightOptions {
    WeightOptions {
        weights: None,
        cache_dir: std::env::temp_dir().join("graft-test-empty-cache"),
        offline: true,
        allow_partial: false,
        progress: false,
    }
}

pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// The largest difference is at most `tolerance` times the largest reference value.
pub fn assert_close_within(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let max_diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff <= tolerance * scale, "{what}: max difference {max_diff} against a largest value of {scale}");
}

/// A fresh folder under the temporary directory for one test (`name` and the process id).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graft-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
