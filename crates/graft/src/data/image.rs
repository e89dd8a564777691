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

/// The filter every resize uses (bilinear, antialiased when shrinking); part of the feature
/// cache's key.
pub const RESIZE_FILTER: FilterType = FilterType::Triangle;

/// The largest width or height graft decodes.
pub const MAX_IMAGE_SIDE: u32 = 32_768;
/// The most memory one decoded image may take (a 12,000 x 11,000 RGBA photo): a header that
/// claims more is refused before anything is allocated.
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

/// Decodes an image file of any colour mode into 8-bit RGB (greyscale is replicated, alpha
/// dropped, 16-bit scaled down), turned upright as its EXIF orientation tag says.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = crate::fsutil::read_limited(path, crate::fsutil::MAX_IMAGE_FILE_BYTES, "an image")?;
    decode_rgb(path, &bytes)
}

/// [`load_rgb`] for a use that needs the shorter side to be only `min_side` pixels: a JPEG at
/// least twice that size is decoded at 1/2, 1/4 or 1/8 scale (its decoder scales in the DCT
/// domain, as Pillow's draft mode and libjpeg do), the largest reduction that keeps the shorter
/// side at or above `min_side`. A phone photo of 4000 x 3000 pixels decodes at 500 x 375 for a
/// teacher that resizes to 256, several times faster than whole. Other formats, and JPEGs that
/// are not that much larger, decode whole, pixel for pixel as [`load_rgb`] does.
pub fn load_rgb_at_least(path: &Path, min_side: u32) -> Result<RgbImage> {
    let bytes = crate::fsutil::read_limited(path, crate::fsutil::MAX_IMAGE_FILE_BYTES, "an image")?;
    decode_rgb_at_least(path, &bytes, min_side)
}

/// [`load_rgb_at_least`] on a file's bytes; `path` names it in errors.
pub fn decode_rgb_at_least(path: &Path, bytes: &[u8], min_side: u32) -> Result<RgbImage> {
    refuse_truncated_jpeg(path, bytes)?;
    match decode_jpeg_reduced(bytes, min_side) {
        Some(image) => Ok(image),
        None => decode_whole(path, bytes),
    }
}

/// Whether `bytes` are a JPEG cut short: no end-of-image marker after its last start-of-scan.
/// The JPEG decoders fill what is missing with grey and carry on (as browsers draw a partial
/// image); graft refuses such a file, as Pillow does by default, rather than learn from or
/// predict on an image that is part grey. Entropy-coded data cannot hold either marker (a 0xFF
/// byte there is followed by 0x00 or a restart marker), so the last start-of-scan is the main
/// image's last scan, after any thumbnail in its metadata.
fn refuse_truncated_jpeg(path: &Path, bytes: &[u8]) -> Result<()> {
    if truncated_jpeg(bytes) {
        return Err(GraftError::Image {
            path: path.to_owned(),
            reason: "a truncated JPEG: its last scan has no end-of-image marker (the file was cut short)".to_owned(),
        });
    }
    Ok(())
}

fn truncated_jpeg(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let Some(scan) = bytes.windows(2).rposition(|pair| pair == [0xFF, 0xDA]) else {
        // No scan at all: the decoders say what is wrong.
        return false;
    };
    !bytes[scan..].windows(2).any(|pair| pair == [0xFF, 0xD9])
}

/// The reduced decode of [`decode_rgb_at_least`], or `None` where it does not apply: not a
/// JPEG, less than twice `min_side`, a colour mode other than greyscale or YCbCr/RGB (CMYK goes
/// through the full decoder's conversion), past the size limits, or anything the scaling
/// decoder cannot read (the full decoder then decodes it, or says what is wrong).
fn decode_jpeg_reduced(bytes: &[u8], min_side: u32) -> Option<RgbImage> {
    use jpeg_decoder::PixelFormat;
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let (width, height) = (info.width as u32, info.height as u32);
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || width as u64 * height as u64 * 3 > MAX_DECODED_BYTES {
        return None;
    }
    if !matches!(info.pixel_format, PixelFormat::L8 | PixelFormat::RGB24) {
        return None;
    }
    let eighths = reduced_eighths(width.min(height), min_side)?;
    let scaled = |side: u32| (side * eighths).div_ceil(8);
    let (scaled_width, scaled_height) = (scaled(width), scaled(height));
    let (out_width, out_height) = decoder.scale(scaled_width as u16, scaled_height as u16).ok()?;
    if (out_width as u32, out_height as u32) != (scaled_width, scaled_height) {
        return None;
    }
    decoder.set_max_decoding_buffer_size(MAX_DECODED_BYTES as usize);
    let pixels = decoder.decode().ok()?;
    let image = match info.pixel_format {
        PixelFormat::RGB24 => image::DynamicImage::ImageRgb8(RgbImage::from_raw(scaled_width, scaled_height, pixels)?),
        _ => image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(scaled_width, scaled_height, pixels)?),
    };
    let orientation = decoder.exif_data().and_then(image::metadata::Orientation::from_exif_chunk);
    let mut image = image;
    image.apply_orientation(orientation.unwrap_or(image::metadata::Orientation::NoTransforms));
    Some(image.into_rgb8())
}

/// The scale, in eighths (1, 2 or 4), at which a JPEG whose shorter side is `shorter` pixels
/// still has at least `min_side` pixels on that side (the decoder rounds up); `None` when only
/// the full size (8/8) does.
fn reduced_eighths(shorter: u32, min_side: u32) -> Option<u32> {
    [1, 2, 4].into_iter().find(|eighths| (shorter * eighths).div_ceil(8) >= min_side.max(1))
}

/// The width and height an encoded image's header declares, read without decoding the pixels;
/// `None` where the bytes are no image graft reads or the header is damaged. A server checks an
/// upload's size with it before queueing its decode.
pub fn declared_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().ok()?.into_dimensions().ok()
}

/// [`load_rgb`] on a file's bytes; `path` names it in errors.
pub fn decode_rgb(path: &Path, bytes: &[u8]) -> Result<RgbImage> {
    refuse_truncated_jpeg(path, bytes)?;
    decode_whole(path, bytes)
}

/// [`decode_rgb`] once a JPEG is known whole.
fn decode_whole(path: &Path, bytes: &[u8]) -> Result<RgbImage> {
    let bad = |reason: String| GraftError::Image { path: path.to_owned(), reason };
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    reader = reader.with_guessed_format().map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    if reader.format().is_none() {
        return Err(bad("not an image in a format graft reads (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM)".into()));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|error| bad(error.to_string()))?;
    // Not every decoder applies the limits itself, and `from_decoder` allocates what the header
    // claims (found by fuzzing: a 71-byte GIF claiming 29,800 x 28,788 pixels, 3.4 GB).
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    let claimed = image::ImageDecoder::total_bytes(&decoder);
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || claimed > MAX_DECODED_BYTES {
        return Err(bad(format!(
            "its header claims {width} x {height} pixels ({claimed} bytes decoded), past the limit of {MAX_IMAGE_SIDE} a side and {MAX_DECODED_BYTES} bytes"
        )));
    }
    // Phones store portrait photos sideways and say so in EXIF; an unreadable tag is ignored,
    // as photo viewers do.
    let orientation =
        image::ImageDecoder::orientation(&mut decoder).unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = image::DynamicImage::from_decoder(decoder).map_err(|error| bad(error.to_string()))?;
    image.apply_orientation(orientation);
    Ok(image.to_rgb8())
}

/// Longer sides beyond this many times the shorter are cropped (centred) before resizing: the
/// centre crop never reaches them, and resizing a 1x100000 strip whole would need gigabytes.
const MAX_ASPECT: u32 = 4;

/// Resizes the shorter side to `resize` (bilinear, antialiased when shrinking), centre-crops
/// `input_size` square, and normalises: returns `[3, input_size, input_size]` values, channel-major.
pub fn preprocess(image: &RgbImage, preprocessing: &Preprocessing) -> Vec<f32> {
    let mut values = pixels(image, preprocessing);
    let plane = preprocessing.input_size * preprocessing.input_size;
    for (channel, values) in values.chunks_mut(plane).enumerate() {
        for value in values {
            *value = (*value / 255.0 - preprocessing.mean[channel]) / preprocessing.std[channel];
        }
    }
    values
}

/// What [`preprocess`] normalises: the resized, centre-cropped pixels, `[3, input_size,
/// input_size]` values in 0–255, channel-major (the space the audit perturbs images in).
pub fn pixels(image: &RgbImage, preprocessing: &Preprocessing) -> Vec<f32> {
    let (width, height) = image.dimensions();
    let limit = width.min(height).max(1).saturating_mul(MAX_ASPECT);
    if width > limit || height > limit {
        let (crop_width, crop_height) = (width.min(limit), height.min(limit));
        let strip = image::imageops::crop_imm(
            image,
            (width - crop_width) / 2,
            (height - crop_height) / 2,
            crop_width,
            crop_height,
        )
        .to_image();
        return pixels(&strip, preprocessing);
    }
    let shorter = width.min(height).max(1) as f64;
    let scale = preprocessing.resize as f64 / shorter;
    let new_width = ((width as f64 * scale).round() as u32).max(preprocessing.input_size as u32);
    let new_height = ((height as f64 * scale).round() as u32).max(preprocessing.input_size as u32);
    let resized = image::imageops::resize(image, new_width, new_height, RESIZE_FILTER);
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
                out[channel * plane + at] = pixel[channel] as f32;
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
    use image::{ImageEncoder, Rgb};

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

    fn png(image: &image::DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        bytes
    }

    /// A JPEG of `image` carrying an EXIF orientation tag (APP1 right after SOI).
    fn jpeg_with_orientation(image: &RgbImage, orientation: u16) -> Vec<u8> {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
            .unwrap();
        let mut exif = b"Exif\0\0II*\0\x08\0\0\0\x01\0".to_vec();
        exif.extend([0x12, 0x01, 3, 0, 1, 0, 0, 0]);
        exif.extend(orientation.to_le_bytes());
        exif.extend([0, 0, 0, 0, 0, 0]);
        let mut out = jpeg[..2].to_vec();
        out.extend([0xff, 0xe1]);
        out.extend(((exif.len() + 2) as u16).to_be_bytes());
        out.extend(exif);
        out.extend(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_turns_a_phone_photo_upright() {
        // 32x16, left half red, right half blue; orientation 6 = rotate 90 degrees clockwise.
        let image = RgbImage::from_fn(32, 16, |x, _| if x < 16 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
        let upright = decode_rgb(Path::new("portrait.jpg"), &jpeg_with_orientation(&image, 6)).unwrap();
        assert_eq!(upright.dimensions(), (16, 32));
        let (top, bottom) = (upright.get_pixel(8, 4), upright.get_pixel(8, 28));
        assert!(top[0] > 200 && top[2] < 60, "top is red: {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom is blue: {bottom:?}");
        // Without the tag (orientation 1) nothing turns.
        assert_eq!(
            decode_rgb(Path::new("landscape.jpg"), &jpeg_with_orientation(&image, 1)).unwrap().dimensions(),
            (32, 16)
        );
    }

    #[test]
    fn every_colour_mode_comes_out_rgb() {
        let grey16 =
            image::DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(3, 2, |x, _| image::Luma([x as u16 * 30000])));
        let rgba =
            image::DynamicImage::ImageRgba8(image::ImageBuffer::from_fn(2, 2, |_, _| image::Rgba([10, 20, 30, 0])));
        let one = image::DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([1, 2, 3])));
        let grey = decode_rgb(Path::new("grey16.png"), &png(&grey16)).unwrap();
        assert_eq!((grey.dimensions(), grey.get_pixel(2, 0).0), ((3, 2), [233, 233, 233]));
        assert_eq!(
            decode_rgb(Path::new("rgba.png"), &png(&rgba)).unwrap().get_pixel(0, 0).0,
            [10, 20, 30],
            "alpha is dropped, as PIL's convert('RGB') does"
        );
        // CMYK JPEG and palette PNG (written by Pillow: 12x8, left half red, right half blue).
        for (name, bytes) in [
            ("cmyk.jpg", include_bytes!("../../tests/fixtures/cmyk.jpg").as_slice()),
            ("palette.png", include_bytes!("../../tests/fixtures/palette.png")),
        ] {
            let image = decode_rgb(Path::new(name), bytes).unwrap();
            let (left, right) = (image.get_pixel(1, 4), image.get_pixel(10, 4));
            assert_eq!(image.dimensions(), (12, 8), "{name}");
            assert!(left[0] > 150 && left[2] < 90 && right[2] > 150 && right[0] < 90, "{name}: {left:?} {right:?}");
        }
        let pixel = decode_rgb(Path::new("one.png"), &png(&one)).unwrap();
        let preprocessing = Preprocessing { input_size: 8, resize: 9, mean: [0.0; 3], std: [1.0; 3] };
        assert_eq!(preprocess(&pixel, &preprocessing).len(), 3 * 64);
    }

    #[test]
    fn broken_and_enormous_images_are_errors_naming_the_file() {
        for (name, bytes) in [("empty.png", Vec::new()), ("text.jpg", b"not an image at all".to_vec())] {
            let error = decode_rgb(Path::new(name), &bytes).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
        let whole = png(&image::DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([9, 9, 9]))));
        let error = decode_rgb(Path::new("cut.png"), &whole[..whole.len() / 2]).unwrap_err().to_string();
        assert!(error.contains("cut.png"), "{error}");
        // A 1x1 PNG whose header claims 100000 x 100000 pixels (30 GB): refused before decoding.
        let mut huge = png(&image::DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([0, 0, 0]))));
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&huge[12..29]);
        huge[29..33].copy_from_slice(&crc.sum().to_be_bytes());
        let error = decode_rgb(Path::new("huge.png"), &huge).unwrap_err().to_string();
        assert!(error.contains("huge.png") && error.to_lowercase().contains("limit"), "{error}");
        // Found by fuzzing: a 71-byte GIF whose header claims 3.4 GB, which its decoder allocated.
        let gif = include_bytes!("../../tests/fixtures/fuzz-gif-claims-3gb.gif");
        let error = decode_rgb(Path::new("claims.gif"), gif).unwrap_err().to_string();
        assert!(error.contains("claims.gif") && error.contains("limit"), "{error}");
    }

    fn jpeg(image: &RgbImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 92)
            .write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8)
            .unwrap();
        bytes
    }

    #[test]
    fn the_reduction_keeps_the_shorter_side_at_or_above_what_is_asked() {
        assert_eq!(reduced_eighths(3000, 256), Some(1), "4000 x 3000 for a resize to 256: 500 x 375");
        assert_eq!(reduced_eighths(3000, 440), Some(2));
        assert_eq!(reduced_eighths(1200, 256), Some(2));
        assert_eq!(
            reduced_eighths(1024, 256),
            Some(2),
            "exactly a quarter would do, a half is the next that is not below"
        );
        assert_eq!(reduced_eighths(1025, 256), Some(2));
        assert_eq!(reduced_eighths(2048, 256), Some(1));
        assert_eq!(reduced_eighths(500, 256), None, "less than twice: decoded whole");
        assert_eq!(reduced_eighths(300, u32::MAX), None);
        for shorter in 1..2000 {
            for min_side in [1, 17, 224, 256, 440] {
                if let Some(eighths) = reduced_eighths(shorter, min_side) {
                    assert!((shorter * eighths).div_ceil(8) >= min_side && eighths < 8);
                }
            }
        }
    }

    #[test]
    fn a_large_photo_decoded_reduced_gives_the_teachers_input_the_full_decode_gives() {
        // Chelsea (451 x 300) scaled up 4x: 1804 x 1200, about a 2-megapixel photo.
        let photo = image::open(graft_assets::images().join("chelsea.png")).unwrap().to_rgb8();
        let large = image::imageops::resize(&photo, 1804, 1200, FilterType::CatmullRom);
        let bytes = jpeg(&large);
        let path = Path::new("chelsea-large.jpg");
        let full = decode_rgb(path, &bytes).unwrap();
        let reduced = decode_rgb_at_least(path, &bytes, 256).unwrap();
        assert_eq!(full.dimensions(), (1804, 1200));
        assert_eq!(
            reduced.dimensions(),
            (451, 300),
            "a quarter: the shorter side 300 >= 256, an eighth (150) would not do"
        );
        let preprocessing = Preprocessing { input_size: 224, resize: 256, mean: [0.0; 3], std: [1.0 / 255.0; 3] };
        let (a, b) = (preprocess(&full, &preprocessing), preprocess(&reduced, &preprocessing));
        let mean = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
        assert!(mean < 2.0, "mean absolute difference {mean} (of 255)");
        // Not much larger than asked for: decoded whole, the same pixels as before.
        assert_eq!(decode_rgb_at_least(path, &bytes, 700).unwrap(), full);
        assert_eq!(decode_rgb_at_least(path, &bytes, u32::MAX).unwrap(), full);
    }

    #[test]
    fn a_reduced_decode_turns_upright_and_keeps_greyscale_grey() {
        let image = RgbImage::from_fn(640, 320, |x, _| if x < 320 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
        let upright = decode_rgb_at_least(Path::new("portrait.jpg"), &jpeg_with_orientation(&image, 6), 16).unwrap();
        assert_eq!(upright.dimensions(), (40, 80), "an eighth, then turned");
        let (top, bottom) = (upright.get_pixel(20, 10), upright.get_pixel(20, 70));
        assert!(top[0] > 200 && top[2] < 60, "top is red: {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom is blue: {bottom:?}");
        let grey = image::GrayImage::from_fn(400, 300, |x, _| image::Luma([(x / 2) as u8]));
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 92)
            .write_image(grey.as_raw(), 400, 300, image::ExtendedColorType::L8)
            .unwrap();
        let decoded = decode_rgb_at_least(Path::new("grey.jpg"), &bytes, 64).unwrap();
        assert_eq!(decoded.dimensions(), (100, 75));
        let pixel = decoded.get_pixel(50, 30);
        assert!(pixel[0] == pixel[1] && pixel[1] == pixel[2] && (pixel[0] as i32 - 100).abs() < 6, "{pixel:?}");
        // A broken large JPEG is still an error naming the file.
        let mut broken = jpeg(&image);
        broken.truncate(600);
        broken.extend_from_slice(&[0xFF, 0xD9]);
        match decode_rgb_at_least(Path::new("broken.jpg"), &broken, 16) {
            Err(error) => assert!(error.to_string().contains("broken.jpg"), "{error}"),
            Ok(decoded) => assert_eq!(decoded.dimensions(), (80, 40), "decoded as far as it goes, reduced"),
        }
    }

    /// A JPEG cut short is refused by both decoders (they would fill the rest with grey); the
    /// whole file, and one with bytes after its end marker, decode.
    #[test]
    fn a_truncated_jpeg_is_refused() {
        let image = RgbImage::from_fn(64, 48, |x, y| Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
        let whole = jpeg(&image);
        let path = Path::new("cut.jpg");
        assert!(decode_rgb(path, &whole).is_ok() && decode_rgb_at_least(path, &whole, 16).is_ok());
        let mut trailing = whole.clone();
        trailing.extend_from_slice(b"camera maker's trailer");
        assert!(decode_rgb(path, &trailing).is_ok());
        let cut = &whole[..whole.len() * 2 / 3];
        for result in [decode_rgb(path, cut), decode_rgb_at_least(path, cut, 16)] {
            let message = result.unwrap_err().to_string();
            assert!(message.contains("cut.jpg") && message.contains("truncated JPEG"), "{message}");
        }
    }

    #[test]
    fn a_long_strip_is_cropped_before_it_is_resized() {
        // 2 x 5000: resized whole to a shorter side of 9, it would be 9 x 22500.
        let strip = RgbImage::from_fn(2, 5000, |_, y| Rgb([(y / 20) as u8, 0, 0]));
        let preprocessing = Preprocessing { input_size: 8, resize: 9, mean: [0.0; 3], std: [1.0; 3] };
        let values = preprocess(&strip, &preprocessing);
        assert_eq!(values.len(), 3 * 64);
        // The centre of the strip (y around 2500, red about 125) is what the crop shows.
        let red = values[4 * 8 + 4] * 255.0;
        assert!((red - 125.0).abs() < 3.0, "{red}");
    }
}
