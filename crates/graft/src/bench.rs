//! Kernel benchmarks: teacher inference and single training steps, in images per second.
//!
//! Weights and inputs as a user's: the published weights where graft bundles them
//! (EfficientNet-Lite0; other teachers randomly initialised, their weights being a download away)
//! and real photos ([`Inputs::Images`], the bundled Fashion-MNIST sample) unless random inputs are
//! asked for, as the PyTorch reference runs (docs/BENCHMARKS.md).
//! A training step includes the forward pass of the frozen blocks in front of the cut, run the way
//! graft runs frozen blocks (on `flex`, the BN-folded plan of `backend::fused`).
//! A training step splits its batch into shards on their own threads as graft's trainer does on
//! that device (`train::shards`; the `shards` field says how many).
//! Each measurement runs `warmup` untimed iterations, then `iterations` timed ones, and reports
//! the median; each iteration reads its result back to the host so lazy backends finish their
//! work inside the timing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::backend::fused::FusedBackbone;
use crate::backend::host_values;
use crate::data::dataset::{ItemSource, open_folder};
use crate::error::Result;
use crate::interrupt::Interrupt;
use crate::models::{Backbone, zoo};
use crate::train::head::HeadKind;
use crate::train::shards;
use crate::train::strategy::FreezePlan;
use crate::train::student::{Student, StudentInput};

/// One measured operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelResult {
    pub teacher: String,
    pub device: String,
    /// `inference` (as graft runs a frozen teacher), `inference_burn` (the same through burn's
    /// modules, where graft uses its own CPU plan), `train_full` or `train_last_block`.
    pub operation: String,
    pub batch_size: usize,
    pub image_size: usize,
    pub iterations: usize,
    pub seconds_per_batch: f64,
    pub images_per_second: f64,
    /// Shards a training step's batch is split into (1 for inference).
    pub shards: usize,
    /// `published` (the teacher's real weights) or `random`.
    pub weights: String,
    /// `images` (real photos) or `random` (normal noise).
    pub inputs: String,
}

/// What a benchmark's batch holds.
#[derive(Debug, Clone)]
pub enum Inputs {
    /// Real photos: the first images of each class folder under this folder (`<class>/<file>`),
    /// taken in turn from each class, preprocessed as the teacher's card says.
    Images(PathBuf),
    /// Values drawn from a standard normal distribution.
    Random,
}

/// `count` images from the class folders under `folder` (read as [`open_folder`] reads a data
/// set), taken in turn from each class (the first of every class, then the second, ...),
/// preprocessed for `preprocessing`: `[count, 3, size, size]` values.
///
/// # Errors
/// A folder with fewer than `count` images, or an image that cannot be read or decoded (named).
pub fn sample_images(
    folder: &Path,
    preprocessing: &crate::models::zoo::Preprocessing,
    count: usize,
) -> Result<Vec<f32>> {
    let dataset = open_folder(folder)?;
    // Each image's place within its class; the items come class by class, files in name order.
    let mut seen = vec![0usize; dataset.classes.len()];
    let mut order: Vec<(usize, usize, &ItemSource)> = dataset
        .items
        .iter()
        .map(|item| {
            seen[item.label] += 1;
            (seen[item.label], item.label, &item.source)
        })
        .collect();
    if order.len() < count {
        return Err(crate::error::GraftError::Invalid(format!(
            "{}: {} images in its class folders, the benchmark's batch needs {count}",
            folder.display(),
            order.len()
        )));
    }
    order.sort_by_key(|&(place, label, _)| (place, label));
    let mut values = Vec::with_capacity(count * 3 * preprocessing.input_size * preprocessing.input_size);
    for (_, _, source) in order.into_iter().take(count) {
        values.extend(crate::data::image::preprocess(&source.load()?, preprocessing));
    }
    Ok(values)
}

/// Measures inference and both training steps for a teacher architecture; frozen blocks run
/// through the fused CPU plan where `fused_plan` allows it (see [`FusedBackbone::for_device`]).
#[allow(clippy::too_many_arguments)]
pub fn kernels(
    teacher: &str,
    device: &Device,
    device_name: &str,
    batch_size: usize,
    iterations: usize,
    warmup: usize,
    fused_plan: bool,
    inputs: &Inputs,
    operations: &[String],
    interrupt: Option<&Interrupt>,
) -> Result<Vec<KernelResult>> {
    // Every operation when none is named (profiling one at a time names one).
    let wanted = |operation: &str| operations.is_empty() || operations.iter().any(|name| name == operation);
    let card = zoo::find(teacher)?;
    let size = card.preprocessing.input_size;
    device.seed(1);
    // The published weights where graft has them without a download.
    let published = card.bundled && crate::models::hub::BUNDLED_LITE0.is_some();
    let backbone = if published {
        let options = crate::models::hub::WeightOptions {
            weights: None,
            cache_dir: std::env::temp_dir(),
            offline: true,
            allow_partial: false,
            progress: false,
        };
        crate::models::hub::load_teacher(card.name, &options, device)?.0.backbone
    } else {
        Backbone::new(card.architecture, 1000, device)
    };
    let shape = [batch_size, 3, size, size];
    let images = match inputs {
        Inputs::Images(folder) => {
            let values = sample_images(folder, &card.preprocessing, batch_size)?;
            Tensor::<4>::from_data(TensorData::new(values, shape), device)
        }
        Inputs::Random => Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device),
    };
    let result = |operation: &str, seconds: f64| KernelResult {
        teacher: card.name.to_owned(),
        device: device_name.to_owned(),
        operation: operation.to_owned(),
        batch_size,
        image_size: size,
        iterations,
        seconds_per_batch: seconds,
        images_per_second: batch_size as f64 / seconds,
        shards: 1,
        weights: if published { "published" } else { "random" }.to_owned(),
        inputs: match inputs {
            Inputs::Images(_) => "images",
            Inputs::Random => "random",
        }
        .to_owned(),
    };
    let mut results = Vec::new();

    // What graft runs for a frozen teacher: the BN-folded CPU plan on `flex`, burn elsewhere.
    let fused = FusedBackbone::for_device(&backbone, device, fused_plan);
    let blocks = backbone.block_names().len();
    let pixels = host_values::<f32>(images.clone().into_data())?;
    // The frozen blocks `[0, cut)` as graft runs them, back on `device` as a tensor.
    let frozen = |cut: usize| -> Result<Tensor<4>> {
        match &fused {
            Some(fused) if cut > 0 => {
                let (values, shape) = fused.forward(&pixels, shape, cut, false)?;
                Ok(Tensor::from_data(TensorData::new(values, shape), device))
            }
            _ => backbone.forward_blocks(images.clone(), 0..cut),
        }
    };
    if wanted("inference") {
        let inference = time(warmup, iterations, interrupt, || {
            let features = match &fused {
                Some(fused) => {
                    let (values, shape) = fused.forward(&pixels, shape, blocks, true)?;
                    Tensor::from_data(TensorData::new(values, shape), device)
                }
                None => backbone.features(frozen(blocks)?),
            };
            let _ = backbone.classify(features).into_data();
            Ok(())
        })?;
        results.push(result("inference", inference));
    }
    if fused.is_some() && wanted("inference_burn") {
        // The same network through burn's modules, for comparison.
        let inference = time(warmup, iterations, interrupt, || {
            let x = backbone.forward_blocks(images.clone(), 0..blocks)?;
            let _ = backbone.classify(backbone.features(x)).into_data();
            Ok(())
        })?;
        results.push(result("inference_burn", inference));
    }

    let training = device.clone().autodiff();
    let blocks = backbone.block_names();
    // graft's default split of a training batch on this device (`train::shards`).
    let shard_count = crate::device::default_shards(device).min(batch_size);
    for (operation, cut) in [("train_full", 0), ("train_last_block", blocks.len() - 1)] {
        if !wanted(operation) {
            continue;
        }
        let plan = FreezePlan { blocks: blocks.clone(), cut };
        let mut student = Student::new(backbone.clone(), &plan, HeadKind::Linear, 10, 1, &training)?;
        let mut optimizer: burn::optim::ModuleOptimizer = crate::train::trainer::adamw(1e-4).init();
        let labels: Vec<i64> = (0..batch_size as i64).map(|i| i % 10).collect();
        let loss_function = burn::nn::loss::CrossEntropyLossConfig::new().init(&training);
        let seconds = time(warmup, iterations, interrupt, || {
            // The frozen prefix (inference mode) is part of the step, as it is in a training loop
            // without a feature cache.
            let prefix = frozen(cut)?;
            let input = if cut == 0 {
                Tensor::<4>::from_data(images.clone().into_data(), &training)
            } else {
                Tensor::from_data(prefix.into_data(), &training)
            };
            // The batch in shards on their own threads, as graft's trainer runs it.
            let parts = shards::split(&labels, shard_count)
                .into_iter()
                .scan(0, |start, part| {
                    let end = *start + part.len();
                    let slice = StudentInput::Activations(input.clone().slice(*start..end));
                    *start = end;
                    Some((slice, part))
                })
                .collect();
            let gradients = shards::step(&student, parts, cut, &loss_function, None, false, &training)?.gradients;
            student = optimizer.step(1e-4, student.clone(), gradients);
            Ok(())
        })?;
        results.push(KernelResult { shards: shard_count, ..result(operation, seconds) });
    }
    Ok(results)
}

/// Median seconds per call of `work` over `iterations`, after `warmup` untimed calls (the
/// PyTorch reference times the same way: `scripts/bench/pytorch_reference.py`).
fn time(
    warmup: usize,
    iterations: usize,
    interrupt: Option<&Interrupt>,
    mut work: impl FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..warmup {
        crate::interrupt::check(interrupt, "the benchmark")?;
        work()?;
    }
    let mut seconds = Vec::with_capacity(iterations.max(1));
    for _ in 0..iterations.max(1) {
        crate::interrupt::check(interrupt, "the benchmark")?;
        let started = Instant::now();
        work()?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    Ok(median(&mut seconds))
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch takes each class's first image, then each class's second, ...; too few images
    /// is an error that names the folder.
    #[test]
    fn sample_images_take_classes_in_turn() {
        let dir = std::env::temp_dir().join(format!("graft-bench-sample-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (class, shades) in [("a", [10u8, 20]), ("b", [30, 40])] {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            for (index, shade) in shades.into_iter().enumerate() {
                let path = dir.join(class).join(format!("{index}.png"));
                image::RgbImage::from_pixel(4, 4, image::Rgb([shade; 3])).save(path).unwrap();
            }
        }
        let preprocessing = zoo::find("efficientnet_lite0").unwrap().preprocessing.clone();
        let values = sample_images(&dir, &preprocessing, 3).unwrap();
        let per_image = 3 * preprocessing.input_size * preprocessing.input_size;
        let shade = |image: usize| {
            let normalised = values[image * per_image];
            ((normalised * preprocessing.std[0] + preprocessing.mean[0]) * 255.0).round() as u8
        };
        assert_eq!(values.len(), 3 * per_image);
        assert_eq!([shade(0), shade(1), shade(2)], [10, 30, 20]);
        let error = sample_images(&dir, &preprocessing, 5).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(error.contains("4 images") && error.contains("needs 5"), "{error}");
    }
}
