//! Classifying images with a teacher: top-k classes with probabilities, and feature vectors.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use burn::tensor::activation::softmax;

use crate::backend::host_values;
use crate::data::image::{batch_tensor, load_rgb, preprocess};
use crate::error::Result;
use crate::models::Teacher;

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

/// The images of a batch, preprocessed for `teacher`.
fn load_batch(teacher: &Teacher, paths: &[&Path], device: &Device) -> Result<burn::tensor::Tensor<4>> {
    let preprocessing = &teacher.card.preprocessing;
    let images = paths
        .iter()
        .map(|path| Ok(preprocess(&load_rgb(path)?, preprocessing)))
        .collect::<Result<Vec<_>>>()?;
    Ok(batch_tensor(&images, preprocessing.input_size, device))
}

/// The `k` most probable ImageNet classes for each image, `batch_size` images at a time.
pub fn predict_images(teacher: &Teacher, paths: &[PathBuf], k: usize, labels: &[String], batch_size: usize, device: &Device) -> Result<Vec<Prediction>> {
    let mut predictions = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch_size.max(1)) {
        let refs: Vec<&Path> = chunk.iter().map(PathBuf::as_path).collect();
        let probabilities = softmax(teacher.logits(load_batch(teacher, &refs, device)?), 1);
        let [_, classes] = probabilities.dims();
        let values = host_values::<f32>(probabilities.into_data())?;
        for (row, path) in values.chunks(classes).zip(chunk) {
            predictions.push(Prediction { path: path.clone(), top: top_k(row, k, labels) });
        }
    }
    Ok(predictions)
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

/// The teacher's pooled feature vector for each image.
pub fn embed_images(teacher: &Teacher, paths: &[PathBuf], batch_size: usize, device: &Device) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch_size.max(1)) {
        let refs: Vec<&Path> = chunk.iter().map(PathBuf::as_path).collect();
        let features = teacher.features(load_batch(teacher, &refs, device)?);
        let [_, width] = features.dims();
        out.extend(host_values::<f32>(features.into_data())?.chunks(width).map(<[f32]>::to_vec));
    }
    Ok(out)
}
