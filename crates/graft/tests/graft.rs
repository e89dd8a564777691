//! graft's integration tests: real weights, real images, reference outputs.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use graft::models::{WeightOptions, load_teacher, zoo};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn offline_options() -> WeightOptions {
    WeightOptions { weights: None, cache_dir: std::env::temp_dir().join("graft-test-empty-cache"), offline: true, allow_partial: false }
}

fn to_tensor(tensor: &graft_weights::Tensor, device: &Device) -> Tensor<4> {
    let values = tensor.as_f32().expect("float tensor").to_vec();
    Tensor::from_data(TensorData::new(values, tensor.shape.clone()), device)
}

#[test]
fn efficientnet_lite0_matches_reference_logits() {
    let device = Device::flex();
    let (teacher, report) = load_teacher("efficientnet_lite0", &offline_options(), &device).unwrap();
    assert!(report.is_complete() && report.unused.is_empty(), "{report}");
    // 296 tensors in the file, less the 49 batch-norm `num_batches_tracked` counters.
    assert_eq!(report.applied.len(), 296 - 49, "{report}");
    let fixture = graft_weights::read(&repo("crates/graft/tests/fixtures/efficientnet_lite0_logits.safetensors")).unwrap();
    let logits = teacher.logits(to_tensor(&fixture["input"], &device));
    let logits = logits.into_data().convert::<f32>();
    let got = logits.as_slice::<f32>().unwrap();
    let want = fixture["logits"].as_f32().unwrap();
    assert_eq!(got.len(), want.len());
    let max_diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff <= 1e-3, "max abs logit difference {max_diff}");
}

#[test]
fn lite0_recognises_the_cat_and_the_espresso() {
    let device = Device::flex();
    let (teacher, _) = load_teacher("efficientnet_lite0", &offline_options(), &device).unwrap();
    let paths = vec![repo("assets/images/chelsea.png"), repo("assets/images/coffee.png")];
    let predictions = graft::predict::predict_images(&teacher, &paths, 3, zoo::imagenet_labels(), 8, &device).unwrap();
    let cat = &predictions[0].top[0];
    assert!(["tabby", "tiger cat", "Egyptian cat"].contains(&cat.label.as_str()), "{:?}", predictions[0]);
    assert_eq!(predictions[1].top[0].label, "espresso", "{:?}", predictions[1]);
    assert!(predictions[1].top[0].probability > 0.5);
}
