//! Which public teacher a black-box student was built on (Wang et al., USENIX Security 2018,
//! §5): craft an input whose representation at a candidate teacher's layer K carries no
//! information, ask the student, and see whether it answers near-uniformly. A student built on
//! that teacher then sees nothing in the input; one built on another teacher sees an image.
//!
//! The reference drives the representation to zero, where a head answers with its bias, near
//! uniform for heads trained from a small random start. graft's linear-probe heads fit on
//! centred features and keep the centre in their bias, so at zero they answer like an image at
//! minus the mean (docs/AUDIT.md); at the mean of the features over ordinary images (which an
//! attacker can estimate from any images) both kinds of head answer with their intercept, near
//! the class priors. [`Aim`] chooses.

use burn::tensor::{Device, Tensor, TensorData};

use super::mimicry::TeacherFront;
use crate::backend::host_values;
use crate::error::{GraftError, Result};
use crate::rng::SplitMix64;
use crate::train::Reporter;

/// The representation the fingerprint input is driven to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aim {
    /// Zero, as the reference.
    Zero,
    /// The mean representation of the images given.
    Mean,
}

crate::choice::choice!(Aim, "fingerprint aim", [(Aim::Zero, "zero"), (Aim::Mean, "mean")]);

/// How the fingerprint input is crafted (Adam in tanh space, from seeded uniform noise).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FingerprintOptions {
    pub aim: Aim,
    pub iterations: usize,
    pub learning_rate: f64,
    pub seed: u64,
}

/// The Gini coefficient of a distribution: 0 when uniform, `1 − 1/n` when all mass is on one
/// value (the reference's statistic for "the student saw nothing").
pub fn gini(probabilities: &[f64]) -> f64 {
    let n = probabilities.len();
    let total: f64 = probabilities.iter().sum();
    if n == 0 || total <= 0.0 {
        return 0.0;
    }
    let mut sorted = probabilities.to_vec();
    sorted.sort_by(f64::total_cmp);
    let weighted: f64 = sorted.iter().enumerate().map(|(i, p)| (i + 1) as f64 * p).sum();
    2.0 * weighted / (n as f64 * total) - (n as f64 + 1.0) / n as f64
}

/// The fingerprint input of `front`: pixels `[3, size, size]` in 0–255 whose representation at
/// the front's cut is as close as Adam gets to the aim (`reference` pixels give the mean).
/// Returns the pixels and the distance left, relative to the aim's distance from the starting
/// noise.
///
/// # Errors
/// `Aim::Mean` without reference images; a tensor that cannot be read back.
pub fn fingerprint_input(
    front: &TeacherFront,
    reference: &[Vec<f32>],
    size: usize,
    options: &FingerprintOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(Vec<f32>, f64)> {
    let aim = match options.aim {
        Aim::Zero => None,
        Aim::Mean => {
            if reference.is_empty() {
                return Err(GraftError::Invalid("a fingerprint aimed at the mean representation needs images to take the mean of".into()));
            }
            let mut sum: Option<Tensor<2>> = None;
            for chunk in reference.chunks(16) {
                let pixels = Tensor::<4>::from_data(TensorData::new(chunk.iter().flatten().copied().collect::<Vec<f32>>(), [chunk.len(), 3, size, size]), device);
                let part = front.representation(pixels)?.sum_dim(0);
                sum = Some(match sum {
                    Some(sum) => sum + part,
                    None => part,
                });
            }
            sum.map(|sum| sum / reference.len() as f64)
        }
    };
    let mut random = SplitMix64::derive(options.seed, &[0xF1A6]);
    // Uniform noise kept off 0 and 255, where tanh space has no gradient.
    let noise: Vec<f32> = (0..3 * size * size).map(|_| random.uniform(-0.45, 0.45) as f32).collect();
    let mut modifier = Tensor::<4>::from_data(TensorData::new(noise, [1, 3, size, size]), device).mul_scalar(2.0).atanh();
    let (mut first, mut second) = (modifier.zeros_like(), modifier.zeros_like());
    let to_pixels = |modifier: Tensor<4>| (modifier.tanh() / 2.0 + 0.5) * 255.0;
    let distance = |pixels: Tensor<4>| -> Result<Tensor<1>> {
        let representation = front.representation(pixels)?;
        let gap = match &aim {
            Some(aim) => representation - aim.clone().autodiff(),
            None => representation,
        };
        Ok(gap.powi_scalar(2).sum().sqrt())
    };
    let start = host_values::<f32>(distance(to_pixels(modifier.clone()))?.into_data())?[0] as f64;
    let mut left = start;
    reporter.start("crafting the fingerprint", options.iterations);
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    for step in 1..=options.iterations {
        let variable = modifier.clone().autodiff().require_grad();
        let loss = distance(to_pixels(variable.clone()))?;
        left = host_values::<f32>(loss.clone().inner().into_data())?[0] as f64;
        let gradients = loss.backward();
        let gradient = variable.grad(&gradients).ok_or_else(|| GraftError::Tensor("no gradient reached the fingerprint".into()))?.inner();
        first = first * BETA1 + gradient.clone() * (1.0 - BETA1);
        second = second * BETA2 + gradient.powi_scalar(2) * (1.0 - BETA2);
        let first_unbiased = first.clone() / (1.0 - BETA1.powi(step as i32));
        let second_unbiased = second.clone() / (1.0 - BETA2.powi(step as i32));
        modifier = modifier - first_unbiased / (second_unbiased.sqrt() + 1e-8) * options.learning_rate;
        reporter.advance(1, &format!("distance {:.3} of {:.3}", left, start));
    }
    reporter.finish();
    let pixels = host_values::<f32>(to_pixels(modifier).into_data())?.into_iter().map(|v| v.round().clamp(0.0, 255.0)).collect();
    Ok((pixels, left / start.max(f64::MIN_POSITIVE)))
}

#[cfg(test)]
mod tests {
    use super::gini;

    #[test]
    fn gini_is_zero_for_uniform_and_near_one_for_a_point_mass() {
        assert!(gini(&[0.25; 4]).abs() < 1e-12);
        assert!((gini(&[0.0, 0.0, 0.0, 1.0]) - 0.75).abs() < 1e-12);
        // Order does not matter; scale does not either.
        assert!((gini(&[3.0, 1.0]) - gini(&[0.25, 0.75])).abs() < 1e-12);
        assert!((gini(&[0.25, 0.75]) - 0.25).abs() < 1e-12);
    }
}
