//! The teacher-mimicry attack (Wang, Yao, Viswanath, Zheng and Zhao, "With Great Training Comes
//! Great Vulnerability: Practical Attacks against Transfer Learning", USENIX Security 2018):
//! knowing only the public teacher, perturb a source image, within a DSSIM budget, until the
//! teacher's representation at layer K (the last layer the student copied) matches a target
//! image's. A student that copied the teacher up to K then sees the target.
//!
//! Minimises `‖T_K(x′) − T_K(x_t)‖₂ + c·max(DSSIM(x′, x_s) − P, 0)²` over a modifier in tanh
//! space (pixels stay within 0–255), keeps each pair's best iterate within the budget, and rounds
//! it to 8-bit pixels, as the reference code does.

use burn::tensor::{Device, Tensor};

use super::dssim::MsSsim;
use crate::error::{GraftError, Result};
use crate::models::Teacher;
use crate::models::zoo::Preprocessing;
use crate::train::Reporter;

/// The teacher in front of layer K, differentiable to its input pixels.
pub struct TeacherFront {
    backbone: crate::models::Backbone,
    /// Blocks `[0, cut)` make the representation.
    cut: usize,
    blocks: usize,
    mean: [f32; 3],
    std: [f32; 3],
}

impl TeacherFront {
    /// The front of `teacher` up to `cut` blocks (all of them: the pooled features a `deep`
    /// student's head reads), its batch norms on their stored statistics, taking pixels at
    /// `preprocessing`'s size.
    ///
    /// # Errors
    /// A cut of 0 or past the last block.
    pub fn new(teacher: &Teacher, cut: usize, preprocessing: &Preprocessing) -> Result<TeacherFront> {
        let blocks = teacher.block_names().len();
        if cut == 0 || cut > blocks {
            return Err(GraftError::BlockRange { start: 0, end: cut, count: blocks });
        }
        Ok(TeacherFront {
            backbone: teacher.backbone.clone().freeze_batch_norm_statistics(),
            cut,
            blocks,
            mean: preprocessing.mean,
            std: preprocessing.std,
        })
    }

    /// The representation at the cut of pixels `[N, 3, S, S]` in 0–255: `[N, D]`, the activation
    /// map flattened, or the pooled features when the cut is after the last block.
    ///
    /// # Errors
    /// None in practice (the cut was checked); kept for the block-range check underneath.
    pub fn representation(&self, pixels: Tensor<4>) -> Result<Tensor<2>> {
        let input = super::pixels::normalise(pixels, self.mean, self.std);
        let activations = self.backbone.forward_blocks(input, 0..self.cut)?;
        Ok(if self.cut == self.blocks { self.backbone.features(activations) } else { activations.flatten(1, 3) })
    }

    /// The representation's channels (of its activation map, or the pooled features' count) at
    /// input size `size`: [`TeacherFront::representation`]'s rows hold each channel's positions
    /// one after another.
    ///
    /// # Errors
    /// As [`TeacherFront::representation`].
    pub fn channels(&self, size: usize, device: &Device) -> Result<usize> {
        let activations = self.backbone.forward_blocks(Tensor::<4>::zeros([1, 3, size, size], device), 0..self.cut)?;
        Ok(if self.cut == self.blocks { self.backbone.features(activations).dims()[1] } else { activations.dims()[1] })
    }
}

/// How the modifier descends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackOptimizer {
    /// The reference's (TensorFlow's defaults: ρ 0.95, ε 1e-8).
    Adadelta,
    /// β 0.9 / 0.999, ε 1e-8.
    Adam,
}

crate::choice::choice!(
    AttackOptimizer,
    "attack optimizer",
    [(AttackOptimizer::Adadelta, "adadelta"), (AttackOptimizer::Adam, "adam")]
);

/// The attack's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MimicryOptions {
    /// The DSSIM budget P.
    pub budget: f64,
    pub iterations: usize,
    pub optimizer: AttackOptimizer,
    pub learning_rate: f64,
    /// c, the weight of the squared budget overshoot.
    pub penalty: f64,
}

/// `graft audit`'s attack: budget 0.003, Adam at rate 0.01 in tanh space for 200 iterations,
/// c = 1e10 (against the reference's Adadelta for 2,000: docs/AUDIT.md).
impl Default for MimicryOptions {
    fn default() -> MimicryOptions {
        MimicryOptions {
            budget: 0.003,
            iterations: 200,
            optimizer: AttackOptimizer::Adam,
            learning_rate: 0.01,
            penalty: 1e10,
        }
    }
}

impl MimicryOptions {
    /// The reference's settings: budget 0.003, Adadelta at rate 1 for 2,000 iterations, c = 1e10.
    pub fn reference() -> MimicryOptions {
        MimicryOptions {
            budget: 0.003,
            iterations: 2000,
            optimizer: AttackOptimizer::Adadelta,
            learning_rate: 1.0,
            penalty: 1e10,
        }
    }
}

/// One crafted image.
#[derive(Debug, Clone)]
pub struct Crafted {
    /// `[3, S, S]` 8-bit pixels, channel-major: the best iterate within the budget, rounded (the
    /// source itself when no iterate stayed within it).
    pub pixels: Vec<u8>,
    /// DSSIM of the rounded image from the source.
    pub dssim: f64,
    /// `‖T_K(x′) − T_K(x_t)‖₂` at the kept iterate, and at the source.
    pub distance: f64,
    pub start_distance: f64,
    /// Whether any iterate stayed within the budget.
    pub within_budget: bool,
}

/// tanh's range scaled just inside ±1, so that 0 and 255 stay finite in tanh space.
const TANH_SCALE: f64 = 2.0 - 1e-6;

/// Crafts one image per (source, target) pair, all pairs at once: pixels `[3, size, size]` in
/// 0–255 (see [`crate::data::image::pixels`]). `reporter` sees one step per iteration.
///
/// # Errors
/// Sources and targets of different counts or sizes; a tensor that cannot be read back.
pub fn mimic(
    front: &TeacherFront,
    sources: &[Vec<f32>],
    targets: &[Vec<f32>],
    size: usize,
    options: &MimicryOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Vec<Crafted>> {
    let count = sources.len();
    if count != targets.len() || sources.iter().chain(targets).any(|image| image.len() != 3 * size * size) {
        return Err(GraftError::Invalid(format!(
            "the attack needs as many targets as sources ({count} and {}), each 3×{size}×{size} pixels",
            targets.len()
        )));
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let measure = MsSsim::default();
    let source = super::pixels::batch(sources, size, device);
    let target = front.representation(super::pixels::batch(targets, size, device))?;
    let source_tanh = ((source.clone() / 255.0 - 0.5) * TANH_SCALE).atanh();
    let to_pixels =
        |modifier: Tensor<4>, source_tanh: Tensor<4>| ((modifier + source_tanh).tanh() / TANH_SCALE + 0.5) * 255.0;
    let distance_of = |pixels: Tensor<4>| -> Result<Tensor<1>> {
        Ok((front.representation(pixels)? - target.clone().autodiff())
            .powi_scalar(2)
            .sum_dim(1)
            .sqrt()
            .reshape([count]))
    };
    let start_distance = crate::backend::host_values::<f32>(distance_of(source.clone())?.into_data())?;

    // The reference starts the modifier at 1e-6, not 0.
    let mut modifier = Tensor::<4>::full([count, 3, size, size], 1e-6, device);
    let mut optimizer = State::new(options, modifier.clone());
    let mut best: Vec<Option<(f64, Vec<f32>)>> = vec![None; count];
    reporter.start("mimicry attack", options.iterations);
    for _ in 0..options.iterations {
        let variable = modifier.clone().autodiff().require_grad();
        let pixels = to_pixels(variable.clone(), source_tanh.clone().autodiff());
        let distance = distance_of(pixels.clone())?;
        let dssim = measure.dssim(pixels.clone(), source.clone().autodiff());
        let overshoot = (dssim.clone() - options.budget).clamp_min(0.0);
        let loss = (overshoot.powi_scalar(2) * options.penalty + distance.clone()).sum();
        let gradients = loss.backward();
        let gradient = variable
            .grad(&gradients)
            .ok_or_else(|| GraftError::Tensor("no gradient reached the attack's modifier".into()))?;
        // Each pair's best iterate within the budget, before this step moves it.
        let (dssim, distance) = (
            crate::backend::host_values::<f32>(dssim.inner().into_data())?,
            crate::backend::host_values::<f32>(distance.inner().into_data())?,
        );
        let improved: Vec<usize> = (0..count)
            .filter(|&pair| {
                (dssim[pair] as f64) < options.budget
                    && best[pair].as_ref().is_none_or(|(kept, _)| (distance[pair] as f64) < *kept)
            })
            .collect();
        if !improved.is_empty() {
            let values = crate::backend::host_values::<f32>(pixels.inner().into_data())?;
            let plane = 3 * size * size;
            for pair in improved {
                best[pair] = Some((distance[pair] as f64, values[pair * plane..(pair + 1) * plane].to_vec()));
            }
        }
        modifier = optimizer.step(modifier, gradient.inner());
        let kept = best.iter().flatten().count();
        reporter.advance(
            1,
            &format!(
                "{kept}/{count} within budget, mean distance {:.2}",
                distance.iter().map(|d| *d as f64).sum::<f64>() / count as f64
            ),
        );
    }
    reporter.finish();

    let mut crafted = Vec::with_capacity(count);
    for (pair, kept) in best.into_iter().enumerate() {
        let within_budget = kept.is_some();
        let (distance, values) = kept.unwrap_or_else(|| (start_distance[pair] as f64, sources[pair].clone()));
        let pixels: Vec<u8> = values.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect();
        crafted.push(Crafted {
            pixels,
            dssim: 0.0,
            distance,
            start_distance: start_distance[pair] as f64,
            within_budget,
        });
    }
    // DSSIM of what is handed out: the rounded pixels.
    let rounded = super::pixels::floats(crafted.iter().map(|c| &c.pixels));
    let dssim = crate::backend::host_values::<f32>(
        measure.dssim(super::pixels::batch(&rounded, size, device), source).into_data(),
    )?;
    for (crafted, dssim) in crafted.iter_mut().zip(dssim) {
        crafted.dssim = dssim as f64;
    }
    Ok(crafted)
}

/// The optimizer's state for one modifier tensor (elementwise, no autodiff); the fingerprint's
/// Adam too.
pub(super) enum State {
    Adadelta { rate: f64, squared_gradients: Tensor<4>, squared_updates: Tensor<4> },
    Adam { rate: f64, first: Tensor<4>, second: Tensor<4>, step: i32 },
}

impl State {
    pub(super) fn new(options: &MimicryOptions, like: Tensor<4>) -> State {
        let zeros = like.zeros_like();
        match options.optimizer {
            AttackOptimizer::Adadelta => State::Adadelta {
                rate: options.learning_rate,
                squared_gradients: zeros.clone(),
                squared_updates: zeros,
            },
            AttackOptimizer::Adam => {
                State::Adam { rate: options.learning_rate, first: zeros.clone(), second: zeros, step: 0 }
            }
        }
    }

    pub(super) fn step(&mut self, value: Tensor<4>, gradient: Tensor<4>) -> Tensor<4> {
        const EPSILON: f64 = 1e-8;
        match self {
            State::Adadelta { rate, squared_gradients, squared_updates } => {
                const RHO: f64 = 0.95;
                *squared_gradients = squared_gradients.clone() * RHO + gradient.clone().powi_scalar(2) * (1.0 - RHO);
                let update = (squared_updates.clone() + EPSILON).sqrt() / (squared_gradients.clone() + EPSILON).sqrt()
                    * gradient;
                *squared_updates = squared_updates.clone() * RHO + update.clone().powi_scalar(2) * (1.0 - RHO);
                value - update * *rate
            }
            State::Adam { rate, first, second, step } => {
                const BETA1: f64 = 0.9;
                const BETA2: f64 = 0.999;
                *step += 1;
                *first = first.clone() * BETA1 + gradient.clone() * (1.0 - BETA1);
                *second = second.clone() * BETA2 + gradient.powi_scalar(2) * (1.0 - BETA2);
                let first_unbiased = first.clone() / (1.0 - BETA1.powi(*step));
                let second_unbiased = second.clone() / (1.0 - BETA2.powi(*step));
                value - first_unbiased / (second_unbiased.sqrt() + EPSILON) * *rate
            }
        }
    }
}
