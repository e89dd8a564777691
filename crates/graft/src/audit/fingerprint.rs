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

use super::mimicry::{AttackOptimizer, MimicryOptions, State, TeacherFront};
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
    /// The block whose output the fingerprint aims at; `None`: each candidate's last.
    #[serde(default)]
    pub layer: Option<String>,
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
                return Err(GraftError::Invalid(
                    "a fingerprint aimed at the mean representation needs images to take the mean of".into(),
                ));
            }
            let mut sum: Option<Tensor<2>> = None;
            for chunk in reference.chunks(16) {
                let part = front.representation(super::pixels::batch(chunk, size, device))?.sum_dim(0);
                sum = Some(match sum {
                    Some(sum) => sum + part,
                    None => part,
                });
            }
            sum.map(|sum| sum / reference.len() as f64)
        }
    };
    let noise: Vec<f32> = starting_noise(options.seed, size).into_iter().map(|u| u as f32).collect();
    let mut modifier =
        Tensor::<4>::from_data(TensorData::new(noise, [1, 3, size, size]), device).mul_scalar(2.0).atanh();
    let adam = MimicryOptions {
        optimizer: AttackOptimizer::Adam,
        learning_rate: options.learning_rate,
        ..MimicryOptions::reference()
    };
    let mut optimizer = State::new(&adam, modifier.clone());
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
    for _ in 0..options.iterations {
        let variable = modifier.clone().autodiff().require_grad();
        let loss = distance(to_pixels(variable.clone()))?;
        left = host_values::<f32>(loss.clone().inner().into_data())?[0] as f64;
        let gradients = loss.backward();
        let gradient = variable
            .grad(&gradients)
            .ok_or_else(|| GraftError::Tensor("no gradient reached the fingerprint".into()))?
            .inner();
        modifier = optimizer.step(modifier, gradient);
        reporter.advance(1, &format!("distance {:.3} of {:.3}", left, start));
    }
    reporter.finish();
    let pixels =
        host_values::<f32>(to_pixels(modifier).into_data())?.into_iter().map(|v| v.round().clamp(0.0, 255.0)).collect();
    Ok((pixels, left / start.max(f64::MIN_POSITIVE)))
}

/// The seeded uniform values in ±0.45 every fingerprint starts from, one per pixel value: pixels
/// `(u + 0.5)·255`, kept off 0 and 255, where tanh space has no gradient.
fn starting_noise(seed: u64, size: usize) -> Vec<f64> {
    let mut random = SplitMix64::derive(seed, &[0xF1A6]);
    (0..3 * size * size).map(|_| random.uniform(-0.45, 0.45)).collect()
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

/// One candidate teacher's score.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CandidateScore {
    pub teacher: String,
    pub weights_sha256: String,
    /// The block whose output the fingerprint aimed at (by default the candidate's last).
    pub layer: String,
    /// Gini coefficient of the student's answer to the fingerprint (0: uniform).
    pub gini: f64,
    /// The student's top class and its probability for the fingerprint.
    pub top_class: String,
    pub top_probability: f64,
    /// Distance to the aim left after crafting, relative to where the noise started.
    pub distance_left: f64,
}

/// A fingerprint audit (`fingerprint.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FingerprintReport {
    /// Best first (lowest Gini).
    pub candidates: Vec<CandidateScore>,
    /// Gini of the student's answer to the noise every fingerprint starts from: what an input
    /// that means nothing in particular gets.
    pub noise_gini: f64,
    /// The best candidate, when its Gini is below half of both the next candidate's and the
    /// noise's; `None` when the gap is not that clear.
    pub verdict: Option<String>,
    pub options: FingerprintOptions,
}

/// Scores each candidate teacher, reported under the name it comes with (a zoo name, or a zoo
/// name and the weight file given), by the student's answer to that candidate's fingerprint;
/// only the student's predictions are used. `reference` (pixels at the student's input size)
/// give the mean for [`Aim::Mean`].
///
/// # Errors
/// No candidate; what [`fingerprint_input`] returns.
pub fn fingerprint_teachers(
    student: &crate::train::student::LoadedStudent,
    candidates: &[(String, crate::models::Teacher)],
    reference: &[Vec<f32>],
    options: &FingerprintOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<FingerprintReport> {
    use burn::module::Module;
    if candidates.is_empty() {
        return Err(GraftError::Invalid(
            "no candidate teacher to fingerprint (none of the zoo's weights is at hand)".into(),
        ));
    }
    let config = &student.config;
    let size = config.preprocessing.input_size;
    let model = student.student.valid();
    // The student's answer, as a black box: class probabilities for pixels in its own format.
    let answer = |pixels: &[f32]| -> Result<Vec<f64>> {
        let probabilities =
            super::pixels::student_probabilities(&model, &[pixels.to_vec()], &config.preprocessing, device)?;
        Ok(probabilities.into_iter().map(f64::from).collect())
    };
    let noise: Vec<f32> = starting_noise(options.seed, size).into_iter().map(|u| ((u + 0.5) * 255.0) as f32).collect();
    let noise_gini = gini(&answer(&noise)?);
    let mut scores = Vec::new();
    for (name, candidate) in candidates {
        reporter.note(&format!("fingerprinting {name}"));
        let blocks = candidate.block_names();
        // The candidate's own normalisation, at the student's input size.
        let preprocessing =
            crate::models::zoo::Preprocessing { input_size: size, ..candidate.card.preprocessing.clone() };
        let cut = match &options.layer {
            Some(layer) => candidate.cut_after(layer)?,
            None => blocks.len(),
        };
        let front = TeacherFront::new(candidate, cut, &preprocessing)?;
        let (pixels, distance_left) = fingerprint_input(&front, reference, size, options, device, reporter)?;
        let probabilities = answer(&pixels)?;
        let top = crate::train::probe::argmax(&probabilities);
        scores.push(CandidateScore {
            teacher: name.clone(),
            weights_sha256: candidate.weights_sha256.clone(),
            layer: blocks[cut - 1].clone(),
            gini: gini(&probabilities),
            top_class: config.header.classes.get(top).cloned().unwrap_or_default(),
            top_probability: probabilities[top],
            distance_left,
        });
    }
    scores.sort_by(|a, b| a.gini.total_cmp(&b.gini));
    let runner_up = scores.get(1).map_or(noise_gini, |next| next.gini.min(noise_gini));
    let verdict = (scores[0].gini < 0.5 * runner_up).then(|| scores[0].teacher.clone());
    Ok(FingerprintReport { candidates: scores, noise_gini, verdict, options: options.clone() })
}
