//! Training-time augmentation: random resized crop, horizontal flip, colour jitter.
//!
//! Every draw comes from a generator seeded by (run seed, item, view), so an augmented view is a
//! pure function of those and can be cached and reproduced.

use image::RgbImage;

use crate::models::zoo::Preprocessing;
use crate::rng::SplitMix64;

/// Which augmentations to apply.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augmentation {
    /// Crop a random region of 35–100% of the area, aspect 3:4 to 4:3, resized to the input size.
    pub random_resized_crop: bool,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
    /// Brightness, contrast and saturation each scaled by a factor in [1 - j, 1 + j]; 0 is off.
    pub color_jitter: f32,
}

impl Augmentation {
    pub fn none() -> Self {
        Augmentation { random_resized_crop: false, horizontal_flip: false, color_jitter: 0.0 }
    }

    pub fn standard() -> Self {
        Augmentation { random_resized_crop: true, horizontal_flip: true, color_jitter: 0.2 }
    }

    pub fn is_none(&self) -> bool {
        !self.random_resized_crop && !self.horizontal_flip && self.color_jitter == 0.0
    }
}

/// Whether to augment: `auto` leaves it to the strategy ([`AugmentChoice::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AugmentChoice {
    Auto,
    On,
    Off,
}

crate::choice::choice!(
    AugmentChoice,
    "augmentation",
    [(AugmentChoice::Auto, "auto"), (AugmentChoice::On, "on"), (AugmentChoice::Off, "off")]
);

/// The smallest share of the image's area a random resized crop keeps, and the narrowest aspect.
const MIN_CROP_AREA: f64 = 0.35;
const MIN_CROP_ASPECT: f64 = 3.0 / 4.0;

/// The shorter side an image must keep when it is decoded for views under `augmentation`, so no
/// view is scaled up from fewer pixels than the full image would give it: the resize for the
/// plain view; for random resized crops, the input size over the smallest box's side
/// (`sqrt(0.35 * 3/4)`, about half the shorter side).
pub fn min_decoded_side(preprocessing: &Preprocessing, augmentation: &Augmentation) -> u32 {
    let plain = preprocessing.resize.max(preprocessing.input_size) as u32;
    if augmentation.random_resized_crop {
        plain.max((preprocessing.input_size as f64 / (MIN_CROP_AREA * MIN_CROP_ASPECT).sqrt()).ceil() as u32)
    } else {
        plain
    }
}

/// An augmented view of `image`, preprocessed for the teacher (`[3, size, size]`, normalised).
pub fn augmented_view(
    image: &RgbImage,
    preprocessing: &Preprocessing,
    augmentation: &Augmentation,
    rng: &mut SplitMix64,
) -> Vec<f32> {
    if augmentation.is_none() {
        return super::image::preprocess(image, preprocessing);
    }
    let size = preprocessing.input_size as u32;
    let (width, height) = image.dimensions();
    let cropped = if augmentation.random_resized_crop {
        let (x, y, w, h) = random_crop_box(width, height, rng);
        image::imageops::crop_imm(image, x, y, w, h).to_image()
    } else {
        // The evaluation crop: centre square of the resized image.
        let side = width.min(height);
        image::imageops::crop_imm(image, (width - side) / 2, (height - side) / 2, side, side).to_image()
    };
    let mut view = image::imageops::resize(&cropped, size, size, super::image::RESIZE_FILTER);
    if augmentation.horizontal_flip && rng.next_f64() < 0.5 {
        image::imageops::flip_horizontal_in_place(&mut view);
    }
    let plane = (size * size) as usize;
    let mut rgb: Vec<[f32; 3]> =
        view.pixels().map(|p| [p[0] as f32 / 255.0, p[1] as f32 / 255.0, p[2] as f32 / 255.0]).collect();
    if augmentation.color_jitter > 0.0 {
        jitter(&mut rgb, augmentation.color_jitter as f64, rng);
    }
    let mut out = vec![0.0f32; 3 * plane];
    for (index, pixel) in rgb.iter().enumerate() {
        for channel in 0..3 {
            out[channel * plane + index] = (pixel[channel] - preprocessing.mean[channel]) / preprocessing.std[channel];
        }
    }
    out
}

/// torchvision's RandomResizedCrop box: area 35–100%, log-uniform aspect in [3/4, 4/3]; after
/// ten misses, the centre crop.
fn random_crop_box(width: u32, height: u32, rng: &mut SplitMix64) -> (u32, u32, u32, u32) {
    let area = (width * height) as f64;
    for _ in 0..10 {
        let target = area * rng.uniform(MIN_CROP_AREA, 1.0);
        let aspect = rng.uniform(MIN_CROP_ASPECT.ln(), (1.0 / MIN_CROP_ASPECT).ln()).exp();
        let w = (target * aspect).sqrt().round() as u32;
        let h = (target / aspect).sqrt().round() as u32;
        if w >= 1 && h >= 1 && w <= width && h <= height {
            let x = rng.below((width - w + 1) as usize) as u32;
            let y = rng.below((height - h + 1) as usize) as u32;
            return (x, y, w, h);
        }
    }
    let side = width.min(height);
    ((width - side) / 2, (height - side) / 2, side, side)
}

fn jitter(rgb: &mut [[f32; 3]], amount: f64, rng: &mut SplitMix64) {
    let brightness = rng.uniform(1.0 - amount, 1.0 + amount) as f32;
    let contrast = rng.uniform(1.0 - amount, 1.0 + amount) as f32;
    let saturation = rng.uniform(1.0 - amount, 1.0 + amount) as f32;
    let grey = |p: &[f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mean_grey = rgb.iter().map(grey).sum::<f32>() / rgb.len().max(1) as f32;
    for pixel in rgb.iter_mut() {
        for value in pixel.iter_mut() {
            *value *= brightness;
        }
        for value in pixel.iter_mut() {
            *value = (*value - mean_grey * brightness) * contrast + mean_grey * brightness;
        }
        let g = grey(pixel);
        for value in pixel.iter_mut() {
            *value = ((*value - g) * saturation + g).clamp(0.0, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> RgbImage {
        RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 128]))
    }

    #[test]
    fn views_are_reproducible_and_vary() {
        let preprocessing = Preprocessing { input_size: 16, resize: 18, mean: [0.5; 3], std: [0.5; 3] };
        let view =
            |seed| augmented_view(&gradient(), &preprocessing, &Augmentation::standard(), &mut SplitMix64::new(seed));
        assert_eq!(view(1), view(1));
        assert_ne!(view(1), view(2));
        assert_eq!(view(1).len(), 3 * 16 * 16);
    }

    #[test]
    fn crop_box_stays_inside() {
        let mut rng = SplitMix64::new(9);
        for _ in 0..200 {
            let (x, y, w, h) = random_crop_box(28, 28, &mut rng);
            assert!(x + w <= 28 && y + h <= 28 && w > 0 && h > 0);
        }
    }
}
