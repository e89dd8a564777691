//! Classifying images with a teacher: top-k classes with probabilities, and feature vectors.

use std::path::PathBuf;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use crate::backend::fused::FusedBackbone;
use crate::backend::host_values;
use crate::data::dataset::ItemSource;
use crate::data::image::batch_tensor;
use crate::error::Result;
use crate::models::Teacher;
use crate::train::cache::Skipped;
use crate::train::evaluate::decode_sources;

/// One class of a prediction.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassScore {
    pub class_index: usize,
    pub label: String,
    pub probability: f32,
}

/// The top classes for one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    pub path: PathBuf,
    pub top: Vec<ClassScore>,
}

/// The readable images of a batch, preprocessed for `teacher`, with their paths; the unreadable
/// ones go to `skipped` with the reason (decoded as a student's predictions and evaluation decode
/// them: [`decode_sources`]).
fn load_batch<'a>(
    teacher: &Teacher,
    paths: &'a [PathBuf],
    device: &Device,
    skipped: &mut Vec<Skipped>,
) -> Option<(burn::tensor::Tensor<4>, Vec<&'a PathBuf>)> {
    let preprocessing = &teacher.card.preprocessing;
    let sources: Vec<ItemSource> = paths.iter().cloned().map(ItemSource::File).collect();
    let (images, kept, bad) = decode_sources(&sources.iter().collect::<Vec<_>>(), preprocessing);
    skipped.extend(bad);
    let kept = kept.into_iter().map(|position| &paths[position]).collect();
    (!images.is_empty()).then(|| (batch_tensor(&images, preprocessing.input_size, device), kept))
}

/// The teacher's pooled features of preprocessed images: through graft's fused CPU plan where
/// `fused` has one (see [`FusedBackbone::for_device`]), else through burn's modules.
fn teacher_features(teacher: &Teacher, images: Tensor<4>, fused: Option<&FusedBackbone>) -> Result<Tensor<2>> {
    match fused {
        Some(fused) => fused.features_from(images, 0),
        None => Ok(teacher.features(images)),
    }
}

/// The `k` most probable ImageNet classes for each readable image, `batch_size` images at a
/// time; the unreadable images are returned with the reason. `fused_plan`: whether the teacher
/// may run through graft's fused CPU plan on `flex` (the same values up to rounding, faster).
#[allow(clippy::too_many_arguments)] // each is a different kind of input; none group naturally.
pub fn predict_images(
    teacher: &Teacher,
    paths: &[PathBuf],
    k: usize,
    labels: &[String],
    batch_size: usize,
    device: &Device,
    fused_plan: bool,
) -> Result<(Vec<Prediction>, Vec<Skipped>)> {
    let mut predictions = Vec::with_capacity(paths.len());
    let mut skipped = Vec::new();
    let fused = FusedBackbone::for_device(&teacher.backbone, device, fused_plan);
    for chunk in paths.chunks(batch_size.max(1)) {
        let Some((images, kept)) = load_batch(teacher, chunk, device, &mut skipped) else { continue };
        let probabilities = softmax(teacher.backbone.classify(teacher_features(teacher, images, fused.as_ref())?), 1);
        let [_, classes] = probabilities.dims();
        let values = host_values::<f32>(probabilities.into_data())?;
        for (row, path) in values.chunks(classes).zip(kept) {
            predictions.push(Prediction { path: path.clone(), top: top_k(row, k, labels) });
        }
    }
    Ok((predictions, skipped))
}

/// The `k` largest entries of `probabilities`, most probable first.
pub fn top_k(probabilities: &[f32], k: usize, labels: &[String]) -> Vec<ClassScore> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|a, b| probabilities[*b].total_cmp(&probabilities[*a]));
    order
        .into_iter()
        .take(k)
        .map(|index| ClassScore {
            class_index: index,
            label: labels.get(index).cloned().unwrap_or_else(|| format!("class {index}")),
            probability: probabilities[index],
        })
        .collect()
}

/// The teacher's pooled feature vector for each readable image, with its path; the unreadable
/// images are returned with the reason. `interrupt`, when requested, stops it before the next
/// batch.
///
/// # Errors
/// A tensor that cannot be read back, or the stop request.
#[allow(clippy::type_complexity)]
pub fn embed_images(
    teacher: &Teacher,
    paths: &[PathBuf],
    batch_size: usize,
    device: &Device,
    fused_plan: bool,
    interrupt: Option<&crate::interrupt::Interrupt>,
) -> Result<(Vec<(PathBuf, Vec<f32>)>, Vec<Skipped>)> {
    let mut out = Vec::with_capacity(paths.len());
    let mut skipped = Vec::new();
    let fused = FusedBackbone::for_device(&teacher.backbone, device, fused_plan);
    for chunk in paths.chunks(batch_size.max(1)) {
        crate::interrupt::check(interrupt, "embedding")?;
        let Some((images, kept)) = load_batch(teacher, chunk, device, &mut skipped) else { continue };
        let features = teacher_features(teacher, images, fused.as_ref())?;
        let [_, width] = features.dims();
        out.extend(
            kept.into_iter().cloned().zip(host_values::<f32>(features.into_data())?.chunks(width).map(<[f32]>::to_vec)),
        );
    }
    Ok((out, skipped))
}
