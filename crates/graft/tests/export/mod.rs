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

use crate::common::{offline_options, random_backbone, repo, temp_dir};

/// The largest difference of probabilities allowed between ONNX and graft.
const TOLERANCE: f32 = 1e-4;

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
        preprocessing: card.preprocessing.clone(),
        head,
        hyperparameters: Hyperparameters::default(),
        trained_parameters: 0,
        train_images: 0,
        validation_images: 0,
    };
    save_run(dir, student, &config).unwrap();
}

fn images() -> Vec<image::RgbImage> {
    ["chelsea.png", "coffee.png"]
        .iter()
        .map(|name| image::open(repo(&format!("crates/graft-assets/images/{name}"))).unwrap().to_rgb8())
        .collect()
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
}

/// Every teacher of the zoo: EfficientNet-Lite0 with its ImageNet weights, the others with
/// seeded random weights and batch-norm statistics far from (0, 1) (their published weights
/// are downloads), each under a new head (an MLP head on ResNet-18).
#[test]
fn every_zoo_teachers_student_exports_and_agrees_in_tract() {
    let device = Device::flex();
    let dir = temp_dir("export-zoo");
    for (index, card) in zoo::cards().iter().enumerate() {
        let backbone = if card.name == zoo::DEFAULT_TEACHER {
            graft::models::load_teacher(card.name, &offline_options(), &device).unwrap().0.backbone
        } else {
            random_backbone(card.architecture, 20 + index as u64, &device)
        };
        let head = if card.name == "resnet18" { HeadKind::Mlp { hidden: 16 } } else { HeadKind::Linear };
        let classes = ["cat", "coffee", "other"];
        let student = Box::new(Student {
            head: graft::train::head::Head::new(head, backbone.feature_dim(), classes.len(), 3, &device),
            backbone,
        });
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
