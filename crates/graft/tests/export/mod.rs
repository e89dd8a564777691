//! ONNX export: every zoo teacher's student, written by graft and run by tract (a pure-Rust ONNX
//! runtime), gives the probabilities graft's own `Student` gives on the same images.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use graft::export::{ExportOptions, export_onnx};
use graft::models::zoo;
use graft::run::{Student as HeldStudent, StudentOptions};
use graft::train::student::{RunConfig, RunHeader, Student, save_run};
use graft::train::{HeadKind, Hyperparameters, Strategy};
use tract_onnx::prelude::*;

use crate::common::{offline_options, random_backbone_near_identity, repo, temp_dir};

/// The largest difference of probabilities allowed between ONNX and graft.
const TOLERANCE: f32 = 1e-4;

/// The students' input: 128 pixels (as `--image-size 128` trains them; the export follows the
/// student's size), except AlexNet's 224, where its last feature map is the 6x6 its adaptive
/// pooling keeps as it is (other sizes need pooling windows ONNX cannot express), and
/// Inception-v3's 299 (at 128 its last blocks see 2x2 maps, and a random network there is
/// ill-conditioned enough that rounding alone moves its probabilities by 2e-4).
fn exported_preprocessing(card: &zoo::TeacherCard) -> zoo::Preprocessing {
    if matches!(card.name, "alexnet" | "inception_v3") {
        return card.preprocessing.clone();
    }
    zoo::Preprocessing { input_size: 128, resize: 146, ..card.preprocessing.clone() }
}

/// Writes a run directory holding `student` as a `mid` student of `card` (the first half of the
/// blocks frozen), without training: the export reads what a trained run holds.
fn write_run(dir: &Path, card: &zoo::TeacherCard, student: &Student, head: HeadKind, classes: &[&str]) {
    let names = student.backbone.block_names();
    let cut = names.len() / 2;
    let config = RunConfig {
        header: RunHeader::new(
            graft::modality::Modality::Image,
            card.name.to_owned(),
            "random".to_owned(),
            Strategy::Mid,
            classes.iter().map(|class| (*class).to_owned()).collect(),
            1,
            "none".to_owned(),
        ),
        augmentation_choice: None,
        frozen_blocks: names[..cut].to_vec(),
        trainable_blocks: names[cut..].to_vec(),
        preprocessing: exported_preprocessing(card),
        head,
        hyperparameters: Hyperparameters::default(),
        trained_parameters: 0,
        train_images: 0,
        validation_images: 0,
    };
    save_run(dir, student, &config).unwrap();
}

/// A photo, and a flat green image: different enough everywhere that even a network of random
/// weights, whose pooled features average most of a photo's detail away, tells them apart.
fn images() -> Vec<image::RgbImage> {
    let photo = image::open(repo("crates/graft-assets/images/chelsea.png")).unwrap().to_rgb8();
    vec![photo, image::RgbImage::from_pixel(320, 300, image::Rgb([30, 190, 70]))]
}

/// The probabilities tract computes from `input` through the ONNX file at `path`.
fn tract_probabilities(path: &Path, input: Tensor) -> Vec<f32> {
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap_or_else(|error| panic!("tract cannot read {}: {error:?}", path.display()))
        .into_optimized()
        .unwrap_or_else(|error| panic!("tract cannot optimise {}: {error:?}", path.display()))
        .into_runnable()
        .unwrap();
    let outputs = model.run(tvec!(input.into_tvalue())).unwrap();
    outputs[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

/// The student with its last layer scaled so that its largest logit on the two images is 2: a
/// fresh head's are all near 0, its probabilities near uniform whatever the network computes,
/// and a comparison of those would pass a wrong network. Checks that the images' logits differ
/// by at least 1% of that, so that what the network makes of each image shows.
fn sharpen(mut student: Box<Student>, preprocessing: &zoo::Preprocessing, device: &Device) -> Box<Student> {
    use burn::module::Param;
    let size = preprocessing.input_size;
    let values: Vec<f32> =
        images().iter().flat_map(|image| graft::data::image::preprocess(image, preprocessing)).collect();
    let input = burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(values, [2, 3, size, size]), device);
    let logits =
        crate::common::values(student.forward(graft::train::student::StudentInput::Activations(input), 0).unwrap());
    let classes = logits.len() / 2;
    let apart = largest_difference(&logits[..classes], &logits[classes..]);
    let scale = logits.iter().fold(0.0f32, |largest, logit| largest.max(logit.abs()));
    assert!(apart > 0.01 * scale, "the network gives both images nearly the same logits: {logits:?}");
    // The largest logit at 2: probabilities between saturation and uniformity, where they
    // follow the logits most closely.
    let factor = 2.0 / scale;
    let last = match &mut student.head {
        graft::train::head::Head::Linear(linear) => linear,
        graft::train::head::Head::Mlp(mlp) => &mut mlp.output,
    };
    last.weight = Param::from_tensor(last.weight.val().mul_scalar(factor));
    last.bias = last.bias.take().map(|bias| Param::from_tensor(bias.val().mul_scalar(factor)));
    student
}

/// The backbone with every batch norm's stored statistics set to those its input has on the
/// test images, as training leaves them: each normalises what reaches it, so an image's signal
/// reaches the features (with statistics drawn at random, a deep random network gives every
/// image nearly the same features, and a comparison of those would miss a wrong layer).
fn calibrated(backbone: graft::models::Backbone, card: &zoo::TeacherCard, device: &Device) -> graft::models::Backbone {
    use burn::module::Module;
    use graft::backend::batch_statistics::{collect, update_running_statistics};
    let training = device.clone().autodiff();
    let net = backbone.fork(&training).train();
    let preprocessing = exported_preprocessing(card);
    let size = preprocessing.input_size;
    let mut values: Vec<f32> =
        images().iter().flat_map(|image| graft::data::image::preprocess(image, &preprocessing)).collect();
    let coffee = image::open(repo("crates/graft-assets/images/coffee.png")).unwrap().to_rgb8();
    values.extend(graft::data::image::preprocess(&coffee, &preprocessing));
    let input =
        burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(values, [3, 3, size, size]), &training);
    let blocks = net.block_names().len();
    let (_, statistics) = collect(|| net.forward_blocks(input, 0..blocks).unwrap());
    // Each update moves the stored statistics a momentum's share of the way.
    for _ in 0..100 {
        update_running_statistics(vec![statistics.clone()]);
    }
    net.valid()
}

fn largest_difference(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// Exports the student in `run` (also in the form that takes RGB pixels, `from_rgb`) and checks
/// each against graft's predictions on the two images (a batch of two: the batch axis is
/// dynamic).
fn check_run(run: &Path, name: &str, from_rgb: bool) {
    let held = HeldStudent::load(run, &StudentOptions::default()).unwrap();
    let images = images();
    let want: Vec<f32> = held.predict_images(&images).unwrap().concat();
    // A comparison with power: confident rows, and the two images' rows apart.
    let classes = want.len() / 2;
    assert!(want.iter().copied().fold(0.0, f32::max) > 0.45, "{name}: probabilities near uniform: {want:?}");
    assert!(
        largest_difference(&want[..classes], &want[classes..]) > 10.0 * TOLERANCE,
        "{name}: the images' rows agree: {want:?}"
    );
    let preprocessing = &held.image().unwrap().config.preprocessing;
    let size = preprocessing.input_size;

    let plain = run.join("student.onnx");
    let exported = export_onnx(run, &ExportOptions { out: plain.clone(), with_preprocessing: false }).unwrap();
    assert_eq!((exported.input.as_str(), exported.output.as_str()), ("input", "probabilities"));
    let values: Vec<f32> =
        images.iter().flat_map(|image| graft::data::image::preprocess(image, preprocessing)).collect();
    let got = tract_probabilities(&plain, Tensor::from_shape(&[2, 3, size, size], &values).unwrap());
    let difference = largest_difference(&got, &want);
    assert!(difference <= TOLERANCE, "{name}: ONNX and graft differ by {difference}");
    let kept = keep_for_onnxruntime(name, &plain, "input", &[2, 3, size, size], &float_bytes(&values), &want);
    if !from_rgb {
        return;
    }

    let rgb = run.join("student-rgb.onnx");
    export_onnx(run, &ExportOptions { out: rgb.clone(), with_preprocessing: true }).unwrap();
    // The resized and cropped pixels, channels last, as bytes.
    let pixels: Vec<u8> = images
        .iter()
        .flat_map(|image| {
            let planar = graft::data::image::pixels(image, preprocessing);
            let plane = size * size;
            (0..plane * 3).map(|at| planar[(at % 3) * plane + at / 3] as u8).collect::<Vec<_>>()
        })
        .collect();
    let got = tract_probabilities(&rgb, Tensor::from_shape(&[2, size, size, 3], &pixels).unwrap());
    let difference = largest_difference(&got, &want);
    assert!(difference <= TOLERANCE, "{name}, from RGB pixels: ONNX and graft differ by {difference}");
    if kept {
        keep_for_onnxruntime(&format!("{name}-rgb"), &rgb, "rgb", &[2, size, size, 3], &pixels, &want);
    }
}

fn float_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|value| value.to_le_bytes()).collect()
}

/// With `GRAFT_ONNX_CHECK_DIR` set, moves the exported file there (`<dir>/<name>/student.onnx`)
/// with its input (`input.bin`, raw little-endian) and graft's probabilities (`expected.json`),
/// for `scripts/onnx/check_onnxruntime.py` to run through onnxruntime. Returns whether it did.
fn keep_for_onnxruntime(name: &str, onnx: &Path, input: &str, shape: &[usize], bytes: &[u8], want: &[f32]) -> bool {
    let Some(root) = std::env::var_os("GRAFT_ONNX_CHECK_DIR") else { return false };
    let dir = PathBuf::from(root).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(onnx, dir.join("student.onnx")).unwrap();
    std::fs::write(dir.join("input.bin"), bytes).unwrap();
    let element = if input == "rgb" { "uint8" } else { "float32" };
    let expected = serde_json::json!({"input": input, "shape": shape, "dtype": element, "probabilities": want});
    std::fs::write(dir.join("expected.json"), expected.to_string()).unwrap();
    true
}

/// Every teacher of the zoo: EfficientNet-Lite0 with its ImageNet weights, the others with
/// seeded random weights and batch-norm statistics off the identity (their published weights
/// are downloads), each under a new head (an MLP head on ResNet-18).
#[test]
fn every_zoo_teachers_student_exports_and_agrees_in_tract() {
    // Networks this size, moved about in debug builds, need more than a test thread's stack.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(export_every_zoo_teacher)
        .unwrap()
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

fn export_every_zoo_teacher() {
    let device = Device::flex();
    let dir = temp_dir("export-zoo");
    for (index, card) in zoo::cards().iter().enumerate() {
        let backbone = if card.name == zoo::DEFAULT_TEACHER {
            graft::models::load_teacher(card.name, &offline_options(), &device).unwrap().0.backbone
        } else {
            calibrated(random_backbone_near_identity(card.architecture, 20 + index as u64, &device), card, &device)
        };
        let head = if card.name == "resnet18" { HeadKind::Mlp { hidden: 16 } } else { HeadKind::Linear };
        let classes = ["cat", "coffee", "other"];
        let student = Box::new(Student {
            head: graft::train::head::Head::new(head, backbone.feature_dim(), classes.len(), 3, &device),
            backbone,
        });
        let student = sharpen(student, &exported_preprocessing(card), &device);
        let run: PathBuf = dir.join(card.name);
        write_run(&run, card, &student, head, &classes);
        drop(student);
        // The pixel form's normalisation once per kind of preprocessing (TensorFlow's, ImageNet's).
        check_run(&run, card.name, matches!(card.name, "efficientnet_lite0" | "resnet18"));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Export says what it cannot do, naming the run.
#[test]
fn export_errors_name_the_run() {
    let dir = temp_dir("export-errors");
    let out = ExportOptions { out: dir.join("student.onnx"), with_preprocessing: false };
    let message = export_onnx(&dir.join("missing"), &out).unwrap_err().to_string();
    assert!(message.contains("missing/graft.json"), "{message}");
    std::fs::create_dir_all(dir.join("text")).unwrap();
    std::fs::write(dir.join("text/graft.json"), r#"{"graft_version": "0.1.0", "modality": "text", "teacher": "all_minilm_l6_v2", "teacher_weights_sha256": "", "strategy": "deep", "classes": ["a", "b"], "seed": 1, "data": "", "metrics": null}"#).unwrap();
    let message = export_onnx(&dir.join("text"), &out).unwrap_err().to_string();
    assert!(message.contains("holds a text student") && message.contains("text"), "{message}");
    assert!(!dir.join("student.onnx").exists());
    std::fs::remove_dir_all(dir).unwrap();
}
