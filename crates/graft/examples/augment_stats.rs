//! Statistics of graft's augmented views, to compare with torchvision's
//! (scripts/bench/augment_stats.py runs both on the same images).
//!
//! Usage: augment_stats SIZE VIEWS IMAGE... — prints one JSON object: over every view of every
//! image, the mean and spread of the per-view pixel mean and standard deviation (normalised
//! values, channel 0) and of the mean absolute difference from the image's evaluation view.

use std::path::PathBuf;

use graft::data::augment::{Augmentation, augmented_view};
use graft::data::image::{load_rgb, preprocess};
use graft::models::zoo::Preprocessing;
use graft::rng::SplitMix64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [size, views, images @ ..] = args.as_slice() else {
        return Err("usage: augment_stats SIZE VIEWS IMAGE...".into());
    };
    let size: usize = size.parse()?;
    let views: u64 = views.parse()?;
    // As the benchmark: the Fashion-MNIST normalisation of graft's Lite0 card, resize 256/224.
    let preprocessing = Preprocessing {
        input_size: size,
        resize: (size as f64 * 256.0 / 224.0).round() as usize,
        mean: [127.0 / 255.0; 3],
        std: [128.0 / 255.0; 3],
    };
    let plane = size * size;
    let (mut means, mut stds, mut differences) = (Vec::new(), Vec::new(), Vec::new());
    for (index, path) in images.iter().enumerate() {
        let image = load_rgb(&PathBuf::from(path))?;
        let eval = preprocess(&image, &preprocessing);
        for view in 0..views {
            let mut rng = SplitMix64::derive(7, &[index as u64, view]);
            let values = augmented_view(&image, &preprocessing, &Augmentation::standard(), &mut rng);
            let channel = &values[..plane];
            let mean = channel.iter().map(|v| *v as f64).sum::<f64>() / plane as f64;
            let variance = channel.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / plane as f64;
            means.push(mean);
            stds.push(variance.sqrt());
            differences.push(
                channel.iter().zip(&eval[..plane]).map(|(a, b)| (a - b).abs() as f64).sum::<f64>() / plane as f64,
            );
        }
    }
    let summary = |values: &[f64]| {
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let spread = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
        format!("{{\"mean\": {mean:.4}, \"sd\": {spread:.4}}}")
    };
    println!(
        "{{\"implementation\": \"graft\", \"views\": {}, \"pixel_mean\": {}, \"pixel_std\": {}, \"distance_from_eval_view\": {}}}",
        means.len(),
        summary(&means),
        summary(&stds),
        summary(&differences)
    );
    Ok(())
}
