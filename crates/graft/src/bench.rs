//! Kernel benchmarks: teacher inference and single training steps, in images per second.
//!
//! Weights do not change the work, so the networks are randomly initialised; inputs are random.
//! A training step includes the forward pass of the frozen blocks in front of the cut, run the way
//! graft runs frozen blocks (on `flex`, the BN-folded plan of `backend::fused`).
//! A training step splits its batch into shards on their own threads as graft's trainer does on
//! that device (`train::shards`; the `shards` field says how many).
//! Each measurement runs `warmup` untimed iterations, then `iterations` timed ones, and reads the
//! result back to the host so lazy backends finish their work inside the timing.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::backend::fused::FusedBackbone;
use crate::backend::host_values;
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
    interrupt: Option<&Interrupt>,
) -> Result<Vec<KernelResult>> {
    let card = zoo::find(teacher)?;
    let size = card.preprocessing.input_size;
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
    };
    let mut results = Vec::new();

    device.seed(1);
    let backbone = Backbone::new(card.architecture, 1000, device);
    let images = Tensor::<4>::random([batch_size, 3, size, size], Distribution::Normal(0.0, 1.0), device);
    // What graft runs for a frozen teacher: the BN-folded CPU plan on `flex`, burn elsewhere.
    let fused = FusedBackbone::for_device(&backbone, device, fused_plan);
    let blocks = backbone.block_names().len();
    let pixels = host_values::<f32>(images.clone().into_data())?;
    let shape = [batch_size, 3, size, size];
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
    if fused.is_some() {
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

/// Mean seconds per call of `work` over `iterations`, after `warmup` untimed calls.
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
    let started = Instant::now();
    for _ in 0..iterations.max(1) {
        crate::interrupt::check(interrupt, "the benchmark")?;
        work()?;
    }
    Ok(started.elapsed().as_secs_f64() / iterations.max(1) as f64)
}
