//! Teachers: real weights load into the right networks, give the reference outputs, and bad
//! weight files are named with their key and shapes.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use graft::models::{WeightOptions, load_teacher, zoo};

use crate::common::{offline_options, repo, temp_dir};

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
    let fixture =
        graft_weights::read(&repo("crates/graft/tests/fixtures/efficientnet_lite0_logits.safetensors")).unwrap();
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
    let paths = vec![repo("crates/graft-assets/images/chelsea.png"), repo("crates/graft-assets/images/coffee.png")];
    let predictions =
        graft::predict::predict_images(&teacher, &paths, 3, zoo::imagenet_labels(), 8, &device, true).unwrap().0;
    let cat = &predictions[0].top[0];
    assert!(["tabby", "tiger cat", "Egyptian cat"].contains(&cat.label.as_str()), "{:?}", predictions[0]);
    assert_eq!(predictions[1].top[0].label, "espresso", "{:?}", predictions[1]);
    assert!(predictions[1].top[0].probability > 0.5);
    // Through burn's modules instead of the fused CPU plan: the same classes and probabilities.
    let reference =
        graft::predict::predict_images(&teacher, &paths, 3, zoo::imagenet_labels(), 8, &device, false).unwrap().0;
    for (fused, plain) in predictions.iter().zip(&reference) {
        for (a, b) in fused.top.iter().zip(&plain.top) {
            assert_eq!(a.class_index, b.class_index);
            assert!((a.probability - b.probability).abs() < 1e-3, "{a:?} {b:?}");
        }
    }
}

pub fn lite0_tensors() -> graft_weights::TensorMap {
    let bytes = graft::models::hub::BUNDLED_LITE0.expect("built with bundled weights");
    graft_weights::read_bytes(Path::new("lite0.pth"), bytes).unwrap()
}

#[test]
fn wrong_shape_tensor_names_the_file_the_key_and_both_shapes() {
    let dir = temp_dir("wrong-shape");
    let mut tensors = lite0_tensors();
    tensors.insert("_fc.weight".into(), graft_weights::Tensor::from_f32(vec![10, 1280], vec![0.0; 12800]));
    let path = dir.join("ten-classes.safetensors");
    graft_weights::write_safetensors(&path, &tensors).unwrap();
    let options = WeightOptions { weights: Some(path.clone()), ..offline_options() };
    let error = load_teacher("efficientnet_lite0", &options, &Device::flex()).unwrap_err().to_string();
    assert!(error.contains("ten-classes.safetensors"), "{error}");
    assert!(error.contains("`_fc.weight`: expected [1000, 1280], found [10, 1280]"), "{error}");

    // A partial load keeps going and reports the mismatch.
    let options = WeightOptions { allow_partial: true, ..options };
    let (_, report) = load_teacher("efficientnet_lite0", &options, &Device::flex()).unwrap();
    assert_eq!(report.mismatched.len(), 1);
    assert_eq!(report.mismatched[0].key, "_fc.weight");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_tensor_is_an_error_unless_partial() {
    let dir = temp_dir("missing");
    let mut tensors = lite0_tensors();
    tensors.remove("_blocks.3._bn1.running_var");
    tensors.insert("extra.weight".into(), graft_weights::Tensor::from_f32(vec![1], vec![1.0]));
    let path = dir.join("missing.safetensors");
    graft_weights::write_safetensors(&path, &tensors).unwrap();
    let options = WeightOptions { weights: Some(path), ..offline_options() };
    let error = load_teacher("efficientnet_lite0", &options, &Device::flex()).unwrap_err().to_string();
    assert!(error.contains("missing: `_blocks.3._bn1.running_var`"), "{error}");
    let (_, report) =
        load_teacher("efficientnet_lite0", &WeightOptions { allow_partial: true, ..options }, &Device::flex()).unwrap();
    assert_eq!(report.missing, vec!["_blocks.3._bn1.running_var".to_owned()]);
    assert_eq!(report.unused, vec!["extra.weight".to_owned()]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn timm_layout_lite0_loads_to_the_same_network() {
    use graft::weights::KeyMap;
    let device = Device::flex();
    let dir = temp_dir("timm");
    let keys = graft::models::efficientnet_lite::TimmLiteKeys {
        stage_depths: graft::models::efficientnet_lite::stage_depths(
            graft::models::efficientnet_lite::LiteVariant::Lite0,
        ),
    };
    let renamed: graft_weights::TensorMap = lite0_tensors()
        .into_iter()
        .filter(|(key, _)| !key.ends_with("num_batches_tracked"))
        .map(|(key, tensor)| (keys.checkpoint_key(&key), tensor))
        .collect();
    assert!(renamed.contains_key("blocks.1.1.conv_pwl.weight") && renamed.contains_key("conv_stem.weight"));
    let path = dir.join("timm.safetensors");
    graft_weights::write_safetensors(&path, &renamed).unwrap();
    let (timm, report) =
        load_teacher("efficientnet_lite0", &WeightOptions { weights: Some(path), ..offline_options() }, &device)
            .unwrap();
    assert!(report.is_complete() && report.unused.is_empty(), "{report}");
    let (bundled, _) = load_teacher("efficientnet_lite0", &offline_options(), &device).unwrap();
    let input = Tensor::<4>::random([1, 3, 224, 224], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let difference = (timm.logits(input.clone()) - bundled.logits(input)).abs().max().into_scalar::<f32>();
    assert_eq!(difference, 0.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn lite_family_has_the_published_parameter_counts() {
    use graft::models::efficientnet_lite::{EfficientNetLite, LiteVariant};
    // Trainable parameters of the TensorFlow Lite models (1000 classes), as counted by timm's
    // `tf_efficientnet_liteN`: 4.65 M, 5.42 M, 6.09 M, 8.20 M, 13.01 M.
    let device = Device::flex();
    let expected = [
        (LiteVariant::Lite0, 4_652_008),
        (LiteVariant::Lite1, 5_416_680),
        (LiteVariant::Lite2, 6_092_072),
        (LiteVariant::Lite3, 8_197_096),
        (LiteVariant::Lite4, 13_006_568),
    ];
    for (variant, count) in expected {
        let network = EfficientNetLite::new(variant, 1000, &device);
        assert_eq!(graft::weights::count_parameters(&network), count, "{variant:?}");
    }
}

#[test]
fn offline_without_weights_says_what_to_fetch() {
    let error = load_teacher("resnet18", &offline_options(), &Device::flex()).unwrap_err().to_string();
    assert!(error.contains("https://download.pytorch.org/models/resnet18-f37072fd.pth"), "{error}");
    assert!(error.contains("give its path as the weights file"), "{error}");
}
