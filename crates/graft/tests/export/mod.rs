//! ONNX export: every zoo teacher's student, written by graft and run by tract (a pure-Rust ONNX
//! runtime), gives the probabilities graft's own `Student` gives on the same images.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use graft::export::{ExportOptions, export_run};
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
    let exported = export(run, &ExportOptions { out: plain.clone(), with_preprocessing: false }).unwrap();
    assert_eq!((exported.inputs, exported.output.as_str()), (vec!["input".to_owned()], "probabilities"));
    let values: Vec<f32> =
        images.iter().flat_map(|image| graft::data::image::preprocess(image, preprocessing)).collect();
    let got = tract_probabilities(&plain, Tensor::from_shape(&[2, 3, size, size], &values).unwrap());
    let difference = largest_difference(&got, &want);
    assert!(difference <= TOLERANCE, "{name}: ONNX and graft differ by {difference}");
    let kept = keep_for_onnxruntime(
        name,
        &plain,
        &[Kept::new("input", "float32", &[2, 3, size, size], float_bytes(&values))],
        &want,
    );
    if !from_rgb {
        return;
    }

    let rgb = run.join("student-rgb.onnx");
    export(run, &ExportOptions { out: rgb.clone(), with_preprocessing: true }).unwrap();
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
        keep_for_onnxruntime(
            &format!("{name}-rgb"),
            &rgb,
            &[Kept::new("rgb", "uint8", &[2, size, size, 3], pixels)],
            &want,
        );
    }
}

fn float_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|value| value.to_le_bytes()).collect()
}

/// Exports the student in `run` as the CLI does (offline: a text student's teacher is where it
/// was trained from).
fn export(run: &Path, options: &ExportOptions) -> graft::Result<graft::export::Exported> {
    export_run(run, &StudentOptions { offline: true, ..StudentOptions::default() }, options)
}

/// One input of an exported graph as the onnxruntime check is given it.
struct Kept {
    name: &'static str,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl Kept {
    fn new(name: &'static str, dtype: &'static str, shape: &[usize], bytes: Vec<u8>) -> Kept {
        Kept { name, dtype, shape: shape.to_vec(), bytes }
    }
}

/// With `GRAFT_ONNX_CHECK_DIR` set, moves the exported file there (`<dir>/<name>/student.onnx`)
/// with its inputs (`<input>.bin`, raw little-endian; names, types and shapes in
/// `expected.json`) and graft's probabilities (`expected.json`), for
/// `scripts/onnx/check_onnxruntime.py` to run through onnxruntime. Returns whether it did.
fn keep_for_onnxruntime(name: &str, onnx: &Path, inputs: &[Kept], want: &[f32]) -> bool {
    let Some(root) = std::env::var_os("GRAFT_ONNX_CHECK_DIR") else { return false };
    let dir = PathBuf::from(root).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(onnx, dir.join("student.onnx")).unwrap();
    let declared: Vec<serde_json::Value> = inputs
        .iter()
        .map(|input| {
            std::fs::write(dir.join(format!("{}.bin", input.name)), &input.bytes).unwrap();
            serde_json::json!({"name": input.name, "shape": input.shape, "dtype": input.dtype})
        })
        .collect();
    let expected = serde_json::json!({"inputs": declared, "probabilities": want});
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
    let message = export(&dir.join("missing"), &out).unwrap_err().to_string();
    assert!(message.contains("missing/graft.json"), "{message}");
    assert!(!dir.join("student.onnx").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Labelled texts of two topics, alternating.
fn two_topics(count: usize) -> graft::text::TextDataset {
    use graft::text::data::TextItem;
    graft::text::TextDataset {
        classes: vec!["animals".into(), "food".into()],
        items: (0..count)
            .map(|i| TextItem {
                text: if i % 2 == 0 {
                    format!("the dog chased the fox across field {i}")
                } else {
                    format!("we ate bread and soup at dinner {i}")
                },
                label: i % 2,
                location: format!("row {i}"),
            })
            .collect(),
        skipped: Vec::new(),
    }
}

/// Trains a text student of `teacher` on two topics into `out`.
fn train_text_student(teacher: &graft::text::TextTeacher, strategy: Strategy, out: &Path) {
    use graft::text::{TextTrainOptions, train_text};
    let options = TextTrainOptions {
        strategy,
        epochs: 2,
        learning_rate: 0.05,
        batch_size: 6,
        seed: 5,
        out: out.to_owned(),
        cache_dir: out.with_extension("cache"),
        ..TextTrainOptions::default()
    };
    train_text(teacher, &two_topics(20), None, &options, &Device::flex(), &graft::train::Silent).unwrap();
}

/// Texts of different lengths (a batch padded to the longest), one of them longer than the
/// teacher reads (cut, as graft cuts it).
fn probe_texts(limit: usize) -> Vec<String> {
    vec![
        "a fox".to_owned(),
        "soup and bread for dinner tonight".to_owned(),
        "the quick brown fox jumps over the lazy dog ".repeat(limit / 4),
    ]
}

/// Exports the text student in `run` and checks it in tract against graft's predictions on
/// [`probe_texts`], tokenized by the `tokenizer.json` written beside the file.
fn check_text_run(run: &Path, name: &str) {
    let held = HeldStudent::load(run, &StudentOptions { offline: true, ..StudentOptions::default() }).unwrap();
    let (_, encoder) = held.text_parts().unwrap();
    let texts = probe_texts(encoder.tokenizer.max_length());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (rows, truncated) = held.predict_texts(&refs).unwrap();
    assert_eq!(truncated, 1, "{name}: the long text is cut");
    let want = rows.concat();
    assert!(largest_difference(&rows[0], &rows[1]) > 10.0 * TOLERANCE, "{name}: the texts' rows agree: {want:?}");

    let path = run.join("export").join("student.onnx");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let exported = export(run, &ExportOptions { out: path.clone(), with_preprocessing: false }).unwrap();
    assert_eq!(exported.inputs, ["input_ids", "attention_mask", "token_type_ids"]);
    // The tokenizer beside the file tokenizes as graft does, the long text cut at graft's limit.
    let tokenizer_path = exported.tokenizer.unwrap();
    assert_eq!(tokenizer_path, run.join("export").join("tokenizer.json"));
    let limit = encoder.tokenizer.max_length();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&tokenizer_path).unwrap()).unwrap();
    assert_eq!(
        (json["truncation"]["max_length"].as_u64(), &json["padding"]),
        (Some(limit as u64), &serde_json::Value::Null)
    );
    let written = graft::text::TextTokenizer::from_file(&tokenizer_path, limit).unwrap();
    let encoded = written.encode(&refs).unwrap();
    assert_eq!(encoded, encoder.tokenizer.encode(&refs).unwrap(), "{name}: the written tokenizer differs");
    let batch = graft::text::bert::TokenBatch::pad(&encoded.iter().collect::<Vec<_>>());
    let shape = [batch.rows, batch.length];
    let mask: Vec<i64> = batch.mask.iter().map(|&m| m as i64).collect();

    let model = tract_onnx::onnx()
        .model_for_path(&path)
        .unwrap_or_else(|error| panic!("tract cannot read {}: {error:?}", path.display()))
        .into_optimized()
        .unwrap_or_else(|error| panic!("tract cannot optimise {}: {error:?}", path.display()))
        .into_runnable()
        .unwrap();
    let inputs =
        [&batch.ids, &mask, &batch.type_ids].map(|values| Tensor::from_shape(&shape, values).unwrap().into_tvalue());
    let outputs = model.run(inputs.into_iter().collect()).unwrap();
    let got: Vec<f32> = outputs[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
    let difference = largest_difference(&got, &want);
    assert!(difference <= TOLERANCE, "{name}: ONNX and graft differ by {difference}");
    let as_bytes = |values: &[i64]| values.iter().flat_map(|value| value.to_le_bytes()).collect::<Vec<u8>>();
    keep_for_onnxruntime(
        name,
        &path,
        &[
            Kept::new("input_ids", "int64", &shape, as_bytes(&batch.ids)),
            Kept::new("attention_mask", "int64", &shape, as_bytes(&mask)),
            Kept::new("token_type_ids", "int64", &shape, as_bytes(&batch.type_ids)),
        ],
        &want,
    );
}

/// Text students export: a fully fine-tuned tiny BERT (its trained layers in the graph, mean
/// pooling), a `deep` one over the same BERT set to pool its `[CLS]` state, and a `deep`
/// all-MiniLM-L6-v2 student with its real weights when they are at hand (CI fetches them).
#[test]
fn text_students_export_and_agree_in_tract() {
    let device = Device::flex();
    let dir = temp_dir("export-text");
    let tiny = repo("crates/graft/tests/fixtures/tiny-bert");
    let teacher = graft::text::TextTeacher::from_directory(None, &tiny, &device).unwrap().0;
    train_text_student(&teacher, Strategy::Full, &dir.join("tiny-full"));
    check_text_run(&dir.join("tiny-full"), "tiny-bert-full");

    let cls = dir.join("tiny-bert-cls");
    std::fs::create_dir_all(cls.join("1_Pooling")).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny.join(file), cls.join(file)).unwrap();
    }
    std::fs::write(
        cls.join("1_Pooling/config.json"),
        r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": false}"#,
    )
    .unwrap();
    let teacher = graft::text::TextTeacher::from_directory(None, &cls, &device).unwrap().0;
    assert_eq!(teacher.pooling, graft::text::Pooling::Cls);
    train_text_student(&teacher, Strategy::Deep, &dir.join("tiny-cls"));
    check_text_run(&dir.join("tiny-cls"), "tiny-bert-cls-deep");

    if let Some(minilm) = crate::text::minilm_directory() {
        let teacher = graft::text::TextTeacher::from_directory(Some("all_minilm_l6_v2"), &minilm, &device).unwrap().0;
        train_text_student(&teacher, Strategy::Deep, &dir.join("minilm"));
        check_text_run(&dir.join("minilm"), "all-minilm-l6-v2-deep");
    } else {
        eprintln!("all-MiniLM-L6-v2 skipped: not at hand (scripts/fetch-test-assets.sh fetches it; CI does)");
    }

    // A text student's graph takes token ids: no pixel form.
    let out = ExportOptions { out: dir.join("rgb.onnx"), with_preprocessing: true };
    let message = export(&dir.join("tiny-cls"), &out).unwrap_err().to_string();
    assert!(message.contains("text student") && message.contains("--with-preprocessing"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}
