//! Images as the audit handles them: `[3, S, S]` pixel values in 0–255, channel-major (what
//! [`crate::data::image::pixels`] returns), batched and normalised on the way into a network.

use burn::tensor::{Device, Tensor, TensorData};

use crate::backend::host_values;
use crate::error::Result;
use crate::models::zoo::Preprocessing;
use crate::train::student::Student;

/// 8-bit images (rounded crafted pixels, decoded training images) as the float pixels [`batch`]
/// takes.
pub fn floats<'a>(images: impl IntoIterator<Item = &'a Vec<u8>>) -> Vec<Vec<f32>> {
    images.into_iter().map(|image| image.iter().map(|value| *value as f32).collect()).collect()
}

/// Images `[3, size, size]` each as one `[N, 3, size, size]` tensor.
pub fn batch(images: &[Vec<f32>], size: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(images.iter().flatten().copied().collect::<Vec<f32>>(), [images.len(), 3, size, size]),
        device,
    )
}

/// Pixels in 0–255 to a network's input: `(pixel / 255 − mean) / std` per channel, as
/// [`crate::data::image::preprocess`] (differentiable).
pub fn normalise(pixels: Tensor<4>, mean: [f32; 3], std: [f32; 3]) -> Tensor<4> {
    let device = pixels.device();
    let channel = |values: [f32; 3]| Tensor::<4>::from_data(TensorData::new(values.to_vec(), [1, 3, 1, 1]), &device);
    (pixels / 255.0 - channel(mean)) / channel(std)
}

/// A student's class probabilities for images given as pixels in its own preprocessing's size:
/// one row per image, concatenated. Only the student's answers: what a black-box query returns.
pub fn student_probabilities(
    model: &Student,
    images: &[Vec<f32>],
    preprocessing: &Preprocessing,
    device: &Device,
) -> Result<Vec<f32>> {
    let input = normalise(batch(images, preprocessing.input_size, device), preprocessing.mean, preprocessing.std);
    host_values::<f32>(burn::tensor::activation::softmax(model.logits(input)?, 1).into_data())
}
