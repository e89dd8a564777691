//! A trained student as one self-contained ONNX file, for the runtimes people deploy with
//! (onnxruntime, tract, TensorRT, ONNX.js): the network as trained, the head and the softmax, a
//! dynamic batch axis, and what a reader needs to use it (classes, preprocessing, teacher,
//! strategy, metrics) in the model's metadata.

pub mod graph;
pub mod image;
pub mod proto;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use prost::Message;

pub use self::image::ImageInput;
use self::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::error::{GraftError, Result};
use crate::modality::Modality;
use crate::train::student::{RunHeader, load_run, read_header};

/// The ONNX operator set the files use (onnxruntime 1.13 and tract read it).
pub const OPSET: i64 = 17;
/// The IR version that goes with [`OPSET`].
const IR_VERSION: i64 = 8;

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The file to write.
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
    pub input: String,
    pub output: String,
    pub nodes: usize,
    pub parameters: usize,
}

/// Writes the student in `run` as an ONNX file.
///
/// # Errors
/// A run that cannot be loaded, a layer ONNX cannot express at the student's input size, a
/// text student (not exported yet), or a file that cannot be written.
pub fn export_onnx(run: &Path, options: &ExportOptions) -> Result<Exported> {
    let header = read_header(run)?;
    if header.modality == Modality::Text {
        return Err(GraftError::Invalid(format!(
            "`{}` holds a text student; ONNX export covers image students so far",
            run.display()
        )));
    }
    let loaded = load_run(run, &Device::flex())?;
    let student = loaded.student.valid();
    let preprocessing = loaded.config.preprocessing.clone();
    let input = if options.with_preprocessing { ImageInput::Rgb } else { ImageInput::Preprocessed };
    let graph = image::student_graph(&student, &preprocessing, input, header.classes.len())?;
    let mut metadata = common_metadata(&header);
    metadata.push(("preprocessing", serde_json::to_string(&preprocessing).unwrap_or_default()));
    metadata.push(("input", graph.input[0].doc_string.clone().unwrap_or_default()));
    let summary = Exported {
        path: options.out.clone(),
        bytes: 0,
        input: graph.input[0].name.clone().unwrap_or_default(),
        output: graph.output[0].name.clone().unwrap_or_default(),
        nodes: graph.node.len(),
        parameters: graph.initializer.iter().map(|tensor| tensor.dims.iter().product::<i64>().max(1) as usize).sum(),
    };
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("graft".to_owned()),
        producer_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        model_version: Some(1),
        doc_string: Some(format!(
            "A {} student of {} trained by graft: class probabilities for {} classes",
            header.strategy,
            header.teacher,
            header.classes.len()
        )),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key: Some(key.to_owned()), value: Some(value) })
            .collect(),
        ..ModelProto::default()
    };
    let bytes = model.encode_to_vec();
    crate::fsutil::write_atomic(&options.out, &bytes)?;
    Ok(Exported { bytes: bytes.len(), ..summary })
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
