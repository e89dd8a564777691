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

/// A backbone with seeded random weights and batch-norm statistics far from (0, 1), so that a
/// folding mistake cannot hide behind an identity batch norm.
pub fn random_backbone(
    architecture: graft::models::zoo::Architecture,
    seed: u64,
    device: &burn::tensor::Device,
) -> graft::models::Backbone {
    random_backbone_with(architecture, seed, device, 1.0, |field, u| match field {
        "running_var" => 0.2 + 2.0 * u,
        "weight" => 0.5 + u,
        _ => u - 0.5,
    })
}

/// A backbone with seeded random weights at He's scale (variance 2 / fan-in, which keeps a
/// signal's size through ReLU layers; burn's default halves it at every layer) and batch-norm
/// statistics near the identity's (each within about 20% of it): far enough to catch a folding
/// mistake, near enough that an image's signal survives fifty random layers, so that different
/// images give different outputs.
pub fn random_backbone_near_identity(
    architecture: graft::models::zoo::Architecture,
    seed: u64,
    device: &burn::tensor::Device,
) -> graft::models::Backbone {
    // burn draws convolutions with variance 1 / fan-in.
    random_backbone_with(architecture, seed, device, std::f32::consts::SQRT_2, |field, u| match field {
        "running_var" | "weight" => 0.8 + 0.4 * u,
        _ => 0.2 * (u - 0.5),
    })
}

/// A backbone with seeded random weights, each convolution's (`[outputs, inputs / groups, kh,
/// kw]`) times `convolution_scale`, and each batch norm's `field` (`running_mean`,
/// `running_var`, `weight`, `bias`) set to `statistic(field, u)` for uniform draws `u`.
fn random_backbone_with(
    architecture: graft::models::zoo::Architecture,
    seed: u64,
    device: &burn::tensor::Device,
    convolution_scale: f32,
    statistic: impl Fn(&str, f32) -> f32,
) -> graft::models::Backbone {
    use graft::weights::{SameKeys, collect_tensors, load_into};
    let backbone = graft::models::Backbone::new(architecture, 1000, device);
    let mut tensors = collect_tensors(&backbone, &SameKeys).unwrap();
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let norms: Vec<String> =
        tensors.keys().filter_map(|name| name.strip_suffix(".running_var").map(str::to_owned)).collect();
    for (name, tensor) in tensors.iter_mut() {
        let graft_weights::Values::F32(values) = &mut tensor.values else { continue };
        let Some((layer, field)) = name.rsplit_once('.') else { continue };
        if norms.iter().any(|norm| norm == layer) {
            for value in values.iter_mut() {
                *value = statistic(field, next());
            }
            continue;
        }
        // Drawn here, not by burn: its generator is shared by every test thread, and another
        // test's draws between the seed and these would change them. Burn's own bound, uniform
        // within 1 / sqrt(fan-in) (weights `[outputs, inputs / groups, kh, kw]` and
        // `[inputs, outputs]`); biases within 0.1.
        let (bound, scale) = match tensor.shape[..] {
            [_, inputs, kh, kw] => ((1.0 / (inputs * kh * kw) as f32).sqrt(), convolution_scale),
            [inputs, _] => ((1.0 / inputs as f32).sqrt(), 1.0),
            _ => (0.1, 1.0),
        };
        for value in values.iter_mut() {
            *value = (2.0 * next() - 1.0) * bound * scale;
        }
    }
    load_into(backbone, &tensors, &SameKeys, std::path::Path::new("random"), false).unwrap().0
}
