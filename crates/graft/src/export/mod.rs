//! A trained student as one self-contained ONNX file, for the runtimes people deploy with
//! (onnxruntime, tract, TensorRT, ONNX.js): the network as trained, the head and the softmax, a
//! dynamic batch axis, and what a reader needs to use it (classes, preprocessing, teacher,
//! strategy, metrics) in the model's metadata.

pub mod graph;
pub mod image;
pub mod proto;
pub mod text;

use std::path::{Path, PathBuf};

use prost::Message;

pub use self::image::ImageInput;
use self::proto::{GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::error::{GraftError, Result};
use crate::run::Student;
use crate::train::student::RunHeader;

/// The ONNX operator set the files use (onnxruntime 1.13 and tract read it).
pub const OPSET: i64 = 17;
/// The IR version that goes with [`OPSET`].
const IR_VERSION: i64 = 8;

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The file to write. A text student's `tokenizer.json` is written beside it.
    pub out: PathBuf,
    /// Image students: take 0-255 RGB pixels (uint8, channels last) at the teacher's size and
    /// normalise them in the graph, instead of the preprocessed float tensor.
    pub with_preprocessing: bool,
}

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    pub path: PathBuf,
    pub bytes: usize,
    /// The graph's inputs, in order.
    pub inputs: Vec<String>,
    pub output: String,
    pub nodes: usize,
    pub parameters: usize,
    /// The tokenizer written beside a text student's file.
    pub tokenizer: Option<PathBuf>,
}

/// Writes `student` as an ONNX file (and a text student's tokenizer beside it).
///
/// # Errors
/// A layer ONNX cannot express at the student's input size, `--with-preprocessing` for a text
/// student, or a file that cannot be written.
pub fn export_onnx(student: &Student, options: &ExportOptions) -> Result<Exported> {
    let header = student.header();
    let mut metadata = common_metadata(header);
    let (graph, tokenizer) = if let Some((text, encoder)) = student.text_parts() {
        if options.with_preprocessing {
            return Err(GraftError::Invalid(format!(
                "`{}` holds a text student: `--with-preprocessing` is for image students (a text student's graph takes token ids; its tokenizer.json is written beside it)",
                student.run_dir().display()
            )));
        }
        let graph = text::student_graph(text, encoder)?;
        let tokenizer = options.out.with_file_name("tokenizer.json");
        encoder.tokenizer.save(&tokenizer)?;
        metadata.push(("pooling", serde_json::to_string(&encoder.pooling).unwrap_or_default()));
        metadata.push(("max_tokens", encoder.tokenizer.max_length().to_string()));
        metadata.push(("tokenizer", "tokenizer.json".to_owned()));
        (graph, Some(tokenizer))
    } else {
        let loaded = student.image().expect("a student that is not a text student is an image student");
        let preprocessing = &loaded.config.preprocessing;
        let input = if options.with_preprocessing { ImageInput::Rgb } else { ImageInput::Preprocessed };
        let graph = image::student_graph(&loaded.student, preprocessing, input, header.classes.len())?;
        metadata.push(("preprocessing", serde_json::to_string(preprocessing).unwrap_or_default()));
        (graph, None)
    };
    // Each input's description under its name (`input`, `rgb`, `input_ids`, ...).
    let described: Vec<(String, String)> = graph
        .input
        .iter()
        .map(|input| (input.name.clone().unwrap_or_default(), input.doc_string.clone().unwrap_or_default()))
        .collect();
    let summary = summary(&graph, options, tokenizer);
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("graft".to_owned()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        model_version: Some(1),
        doc_string: Some(format!(
            "A {} {} student of {} trained by graft: class probabilities for {} classes",
            header.strategy,
            header.modality,
            header.teacher,
            header.classes.len()
        )),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .chain(described)
            .map(|(key, value)| StringStringEntryProto { key: Some(key), value: Some(value) })
            .collect(),
        ..ModelProto::default()
    };
    let bytes = model.encode_to_vec();
    crate::fsutil::write_atomic(&options.out, &bytes)?;
    Ok(Exported { bytes: bytes.len(), ..summary })
}

/// Loads the student in `run` and exports it ([`export_onnx`]).
///
/// # Errors
/// A run that cannot be loaded, or [`export_onnx`]'s.
pub fn export_run(run: &Path, student: &crate::run::StudentOptions, options: &ExportOptions) -> Result<Exported> {
    // The fused plan is for running; the export reads the network itself.
    let student = Student::load(run, &crate::run::StudentOptions { fused_plan: false, ..student.clone() })?;
    export_onnx(&student, options)
}

fn summary(graph: &GraphProto, options: &ExportOptions, tokenizer: Option<PathBuf>) -> Exported {
    Exported {
        path: options.out.clone(),
        bytes: 0,
        inputs: graph.input.iter().map(|input| input.name.clone().unwrap_or_default()).collect(),
        output: graph.output[0].name.clone().unwrap_or_default(),
        nodes: graph.node.len(),
        parameters: graph.initializer.iter().map(|tensor| tensor.dims.iter().product::<i64>().max(1) as usize).sum(),
        tokenizer,
    }
}

/// What every exported student's metadata says, whichever the modality.
fn common_metadata(header: &RunHeader) -> Vec<(&'static str, String)> {
    vec![
        ("classes", serde_json::to_string(&header.classes).unwrap_or_default()),
        ("teacher", header.teacher.clone()),
        ("teacher_weights_sha256", header.teacher_weights_sha256.clone()),
        ("strategy", header.strategy.to_string()),
        ("modality", header.modality.to_string()),
        ("metrics", header.metrics.to_string()),
        ("graft_version", header.graft_version.clone()),
    ]
}
