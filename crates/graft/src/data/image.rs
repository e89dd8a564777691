//! Decoding image files and turning them into a teacher's input.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use image::imageops::FilterType;

use crate::error::{GraftError, Result};
use crate::models::zoo::Preprocessing;

/// File extensions graft decodes.
pub const IMAGE_EXTENSIONS: [&str; 9] = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp", "ppm"];

/// Whether a path looks like an image by its extension (case-insensitive).
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| IMAGE_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str()))
}

/// Decodes an image file of any colour mode into 8-bit RGB (greyscale is replicated, alpha dropped).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let reader = image::ImageReader::open(path).map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    let reader = reader.with_guessed_format().map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    let image = reader.decode().map_err(|error| GraftError::Image { path: path.to_owned(), reason: error.to_string() })?;
    Ok(image.to_rgb8())
}

/// Resizes the shorter side to `resize` (bilinear, antialiased when shrinking), centre-crops
/// `input_size` square, and normalises: returns `[3, input_size, input_size]` values, channel-major.
pub fn preprocess(image: &RgbImage, preprocessing: &Preprocessing) -> Vec<f32> {
    let (width, height) = image.dimensions();
    let shorter = width.min(height).max(1) as f64;
    let scale = preprocessing.resize as f64 / shorter;
    let new_width = ((width as f64 * scale).round() as u32).max(preprocessing.input_size as u32);
    let new_height = ((height as f64 * scale).round() as u32).max(preprocessing.input_size as u32);
    let resized = image::imageops::resize(image, new_width, new_height, FilterType::Triangle);
    let size = preprocessing.input_size as u32;
    let left = (new_width - size) / 2;
    let top = (new_height - size) / 2;
    let plane = (size * size) as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for y in 0..size {
        for x in 0..size {
            let pixel = resized.get_pixel(left + x, top + y);
            let at = (y * size + x) as usize;
            for channel in 0..3 {
                out[channel * plane + at] =
                    (pixel[channel] as f32 / 255.0 - preprocessing.mean[channel]) / preprocessing.std[channel];
            }
        }
    }
    out
}

/// Stacks preprocessed images (each `[3, size, size]`) into one `[N, 3, size, size]` tensor.
pub fn batch_tensor(images: &[Vec<f32>], size: usize, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = images.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(values, [images.len(), 3, size, size]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_crops_the_centre_and_normalises() {
        // A 4x2 image whose left half is black and right half white; resize 2, crop 2.
        let mut image = RgbImage::new(4, 2);
        for y in 0..2 {
            for x in 2..4 {
                image.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        let preprocessing = Preprocessing { input_size: 2, resize: 2, mean: [0.5; 3], std: [0.5; 3] };
        let out = preprocess(&image, &preprocessing);
        assert_eq!(out.len(), 12);
        // Row-major per channel: left column dark (< 0), right column bright (> 0).
        assert!(out[0] < 0.0 && out[1] > 0.0, "{out:?}");
    }
}
