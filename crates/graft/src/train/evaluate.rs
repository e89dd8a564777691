//! Using a trained student: class probabilities for images, and scores on a labelled set.
//!
//! A student whose front blocks are the frozen teacher reuses the feature cache, so evaluating
//! on a set the teacher has already seen costs only the trainable part.

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::Device;
use burn::tensor::activation::softmax;
use rayon::prelude::*;

use super::cache::{CacheSpec, FeatureCache, Skipped, View, batch_from_entries};
use super::metrics::{Evaluation, evaluate};
use super::reporter::Reporter;
use super::student::{LoadedStudent, RunConfig, Student, StudentInput};
use crate::backend::fused::FusedBackbone;
use crate::backend::host_values;
use crate::data::augment::Augmentation;
use crate::data::dataset::{Dataset, ItemSource};
use crate::data::image::{batch_tensor, preprocess};
use crate::error::Result;
use crate::models::zoo::Preprocessing;
use crate::models::{Teacher, zoo};

/// Class probabilities per image, `None` where the image could not be read.
pub type Probabilities = Vec<Option<Vec<f32>>>;

/// How a student runs on new images.
#[derive(Debug, Clone)]
pub struct InferenceOptions {
    pub batch_size: usize,
    /// Where the feature cache lives (the student's frozen front reuses the teacher's entries).
    pub cache_dir: PathBuf,
    /// Frozen blocks through the fused CPU plan on `flex` (see [`FusedBackbone::for_device`]).
    pub fused_plan: bool,
}

/// Class probabilities for each source (`None` where the image could not be read; those are
/// listed with the reason).
pub fn predict_sources(
    loaded: &LoadedStudent,
    sources: &[ItemSource],
    options: &InferenceOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(Probabilities, Vec<Skipped>)> {
    let batch_size = options.batch_size.max(1);
    let config = &loaded.config;
    let plan = config.plan();
    let model = loaded.student.valid();
    let fused = FusedBackbone::for_device(&model.backbone, device, options.fused_plan);
    let classes = config.header.classes.len();
    let probabilities = |input: StudentInput| -> Result<Vec<f32>> {
        host_values::<f32>(softmax(model.infer(input, plan.cut, fused.as_ref())?, 1).into_data())
    };
    if plan.cut > 0 {
        let mut out: Probabilities = vec![None; sources.len()];
        let mut skipped = Vec::new();
        // The frozen front of the student is the teacher it was trained from: same cache keys.
        let card = zoo::find(&config.header.teacher)?.clone();
        let teacher = Teacher {
            card,
            backbone: model.backbone.clone(),
            weights_sha256: config.header.teacher_weights_sha256.clone(),
        };
        let spec = CacheSpec {
            preprocessing: config.preprocessing.clone(),
            augmentation: Augmentation::none(),
            cut: plan.cut,
            seed: config.header.seed,
            fused_plan: options.fused_plan,
        };
        let cache = FeatureCache::new(&options.cache_dir, &teacher, &spec, device)?;
        let requests: Vec<_> = sources.iter().map(|source| (source.clone(), View::Eval)).collect();
        let (entries, bad) =
            cache.prepare(&teacher, &spec, &requests, batch_size, device, reporter, "computing features")?;
        skipped.extend(bad);
        let ready: Vec<(usize, &super::cache::Entry)> =
            entries.iter().enumerate().filter_map(|(i, e)| e.as_ref().map(|e| (i, e))).collect();
        for chunk in ready.chunks(batch_size) {
            let refs: Vec<&super::cache::Entry> = chunk.iter().map(|(_, entry)| *entry).collect();
            let input = if plan.is_head_only() {
                StudentInput::Features(batch_from_entries::<2>(&refs, device)?)
            } else {
                StudentInput::Activations(batch_from_entries::<4>(&refs, device)?)
            };
            for ((index, _), row) in chunk.iter().zip(probabilities(input)?.chunks(classes)) {
                out[*index] = Some(row.to_vec());
            }
        }
        Ok((out, skipped))
    } else {
        predict_decoded(&model, config, sources, batch_size, fused.as_ref(), device, reporter)
    }
}

/// Class probabilities for each source, decoded and run through every block of `model` (in
/// inference form) and its head, `batch_size` at a time, `None` where an image could not be read
/// (listed with the reason). Nothing is read from or written to the feature cache.
///
/// # Errors
/// A tensor that cannot be read back.
pub fn predict_decoded(
    model: &Student,
    config: &RunConfig,
    sources: &[ItemSource],
    batch_size: usize,
    fused: Option<&FusedBackbone>,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(Probabilities, Vec<Skipped>)> {
    let batch_size = batch_size.max(1);
    let classes = config.header.classes.len();
    let mut out: Probabilities = vec![None; sources.len()];
    let mut skipped = Vec::new();
    reporter.start("predicting", sources.len());
    for (index, chunk) in sources.chunks(batch_size).enumerate() {
        let (images, kept, bad) = decode_sources(&chunk.iter().collect::<Vec<_>>(), &config.preprocessing);
        skipped.extend(bad);
        if !images.is_empty() {
            let rows = whole_student_probabilities(model, images, config, fused, device)?;
            for (position, row) in kept.iter().zip(rows.chunks(classes)) {
                out[index * batch_size + position] = Some(row.to_vec());
            }
        }
        reporter.advance(chunk.len(), "");
    }
    reporter.finish();
    Ok((out, skipped))
}

/// Decodes and preprocesses `sources` in parallel (large JPEGs at the reduced scale the resize
/// needs): the images, the positions in `sources` they came from, and the unreadable ones with
/// the reason.
pub fn decode_sources(
    sources: &[&ItemSource],
    preprocessing: &Preprocessing,
) -> (Vec<Vec<f32>>, Vec<usize>, Vec<Skipped>) {
    let side = preprocessing.resize as u32;
    let prepared: Vec<Result<Vec<f32>>> =
        sources.par_iter().map(|source| Ok(preprocess(&source.load_at_least(side)?, preprocessing))).collect();
    let (mut images, mut kept, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (position, (source, image)) in sources.iter().zip(prepared).enumerate() {
        match image {
            Ok(image) => {
                images.push(image);
                kept.push(position);
            }
            Err(error) => skipped.push(Skipped { name: source.name(), reason: error.to_string() }),
        }
    }
    (images, kept, skipped)
}

/// Class probabilities (`[images, classes]`, row-major) of preprocessed images through every
/// block of `model` (in inference form) and its head: the frozen front computed here, not read
/// from the feature cache, so nothing is written to disk.
///
/// # Errors
/// A tensor that cannot be read back.
pub fn whole_student_probabilities(
    model: &Student,
    images: Vec<Vec<f32>>,
    config: &RunConfig,
    fused: Option<&FusedBackbone>,
    device: &Device,
) -> Result<Vec<f32>> {
    let input = StudentInput::Activations(batch_tensor(&images, config.preprocessing.input_size, device));
    host_values::<f32>(softmax(model.infer(input, 0, fused)?, 1).into_data())
}

/// Scores a student on a labelled data set whose classes are (a subset of) the student's.
pub fn evaluate_run(
    loaded: &LoadedStudent,
    data: Dataset,
    options: &InferenceOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Evaluation> {
    let data = data.align_classes(&loaded.config.header.classes)?;
    if data.is_empty() {
        return Err(crate::GraftError::Invalid("the evaluation set holds no images".into()));
    }
    let sources: Vec<ItemSource> = data.items.iter().map(|item| item.source.clone()).collect();
    let (probabilities, skipped) = predict_sources(loaded, &sources, options, device, reporter)?;
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (item, row) in data.items.iter().zip(probabilities) {
        if let Some(row) = row {
            rows.extend(row);
            labels.push(item.label);
        }
    }
    let mut evaluation = evaluate(&rows, &labels, &loaded.config.header.classes);
    evaluation.skipped = skipped.into_iter().map(|s| format!("{}: {}", s.name, s.reason)).collect();
    Ok(evaluation)
}
