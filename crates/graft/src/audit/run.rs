//! Auditing a trained student: the mimicry attack crafted on its public teacher alone and scored
//! on the student, beside two baselines: random noise at the same DSSIM, and white-box PGD on the
//! student itself.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::dssim::MsSsim;
use super::mimicry::{Crafted, MimicryOptions, TeacherFront, mimic};
use super::pixels::{batch as pixel_tensor, normalise, student_probabilities as probabilities};
use crate::backend::host_values;
use crate::data::dataset::{Dataset, ItemSource};
use crate::error::{GraftError, Result};
use crate::models::Teacher;
use crate::models::zoo::Preprocessing;
use crate::rng::SplitMix64;
use crate::train::Reporter;
use crate::train::evaluate::{InferenceOptions, predict_sources};
use crate::train::probe::argmax;
use crate::train::student::{LoadedStudent, RunConfig, Student};

/// What an audit does.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditOptions {
    /// (source, target class) pairs attacked.
    pub pairs: usize,
    /// The attacked layer: a block name (its output); `None` is the student's cut (its last
    /// frozen block), or the teacher's deepest layer for a student with no frozen block.
    pub layer: Option<String>,
    pub mimicry: MimicryOptions,
    /// Pairs attacked at once.
    pub batch_size: usize,
    pub seed: u64,
    /// Set (by a Ctrl-C handler, say) to stop between batches of pairs, with
    /// [`GraftError::Stopped`]; nothing is written.
    #[serde(skip)]
    pub interrupt: Option<crate::interrupt::Interrupt>,
}

/// `graft audit`'s defaults: 20 pairs, 8 at a time, at the student's cut, seed 1.
impl Default for AuditOptions {
    fn default() -> AuditOptions {
        AuditOptions {
            pairs: 20,
            layer: None,
            mimicry: MimicryOptions::default(),
            batch_size: 8,
            seed: 1,
            interrupt: None,
        }
    }
}

/// An audit's figures (`audit.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuditReport {
    pub layer: String,
    /// Blocks in front of the attacked layer's output.
    pub cut: usize,
    pub budget: f64,
    pub pairs: usize,
    /// The student's accuracy on the audit's images (sources are drawn from those it gets right).
    pub clean_accuracy: f64,
    pub attack_success_rate: f64,
    pub mean_dssim: f64,
    pub within_budget: usize,
    pub noise_success_rate: f64,
    pub pgd_success_rate: f64,
    pub mimicry: MimicryOptions,
    pub seed: u64,
    pub seconds: f64,
    pub examples: Vec<PairResult>,
}

/// The pixels of one attacked pair, for the report's pictures: `[3, size, size]` 8-bit,
/// channel-major.
#[derive(Debug, Clone)]
pub struct PairImages {
    pub size: usize,
    pub source: Vec<u8>,
    pub adversarial: Vec<u8>,
    pub target: Vec<u8>,
}

/// Pairs whose pictures an audit keeps (the first ones; `audit.json` has every pair's figures).
pub const PICTURED_PAIRS: usize = 6;

/// One attacked pair.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PairResult {
    pub source: String,
    pub source_class: String,
    pub target: String,
    pub target_class: String,
    pub dssim: f64,
    pub distance: f64,
    pub start_distance: f64,
    /// The student's class for the crafted image, and its probability for the target class.
    pub predicted: String,
    pub target_probability: f64,
    pub success: bool,
    pub noise_success: bool,
    pub pgd_success: bool,
}

/// The crafted images of an audit: made on the teacher alone, so any student of that teacher
/// can be scored on them (as `graft harden` scores the student before and after).
pub struct Attack {
    /// The audit's images, their classes aligned with the student's.
    pub data: Dataset,
    pub options: AuditOptions,
    /// The attacked layer's name, and the blocks in front of its output.
    pub layer: String,
    pub cut: usize,
    /// `(source, target)` indices into `data`.
    pub pairs: Vec<(usize, usize)>,
    /// Pixels of the images in pairs, by index.
    pub pixels: std::collections::HashMap<usize, Vec<f32>>,
    pub crafted: Vec<Crafted>,
    /// The accuracy on `data` of the student whose correctly classified images are the sources.
    pub clean_accuracy: f64,
    pub preprocessing: Preprocessing,
    pub started: std::time::Instant,
}

/// Draws the audit's pairs (sources among the images `student` classifies correctly) and crafts
/// each pair's image on `teacher` alone.
///
/// # Errors
/// Data whose classes are not the student's, no image the student classifies correctly, a
/// layer name the teacher does not have, a teacher other than the student's.
pub fn craft(
    student: &LoadedStudent,
    teacher: &Teacher,
    data: Dataset,
    options: &AuditOptions,
    inference: &InferenceOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Attack> {
    let started = std::time::Instant::now();
    let config = &student.config;
    if teacher.card.name != config.header.teacher {
        return Err(GraftError::Invalid(format!(
            "the student was trained from `{}`, not `{}`",
            config.header.teacher, teacher.card.name
        )));
    }
    let names = teacher.block_names();
    let cut = attacked_cut(config, teacher, options.layer.as_deref())?;
    let preprocessing = config.preprocessing.clone();
    let size = preprocessing.input_size;
    let data = data.align_classes(&config.header.classes)?;

    // The student's predictions on every image (batched, through the feature cache where the
    // student's front is frozen); sources are drawn from those it gets right.
    let classified = correctly_classified(student, &data, inference, device, reporter)?;
    let clean_accuracy = classified.accuracy();
    let Classified { readable, correct } = classified;
    if correct.is_empty() {
        return Err(GraftError::Invalid(
            "the student classifies none of these images correctly: there is no source to attack".into(),
        ));
    }
    let classes = config.header.classes.len();
    let label = |index: usize| data.items[index].label;
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for index in &readable {
        by_class[label(*index)].push(*index);
    }
    let present: Vec<usize> = (0..classes).filter(|class| !by_class[*class].is_empty()).collect();
    if present.len() < 2 {
        return Err(GraftError::Invalid(
            "the audit needs images of at least two classes (a target class other than the source's)".into(),
        ));
    }
    // Seeded pairs: a correctly classified source, another class, one image of it as the target.
    let mut random = SplitMix64::derive(options.seed, &[0xA0D1]);
    let pairs: Vec<(usize, usize)> = (0..options.pairs)
        .map(|_| {
            let source = correct[random.below(correct.len())];
            let others: Vec<usize> = present.iter().copied().filter(|class| *class != label(source)).collect();
            let class = others[random.below(others.len())];
            (source, by_class[class][random.below(by_class[class].len())])
        })
        .collect();
    // Pixels of the images in pairs only (a test set's worth at 224 px would be gigabytes).
    let mut pixels: std::collections::HashMap<usize, Vec<f32>> = std::collections::HashMap::new();
    for index in pairs.iter().flat_map(|(source, target)| [*source, *target]) {
        if let std::collections::hash_map::Entry::Vacant(entry) = pixels.entry(index) {
            entry.insert(crate::data::image::pixels(
                &data.items[index].source.load_at_least(preprocessing.resize as u32)?,
                &preprocessing,
            ));
        }
    }

    let front = TeacherFront::new(teacher, cut, &preprocessing)?;
    let mut crafted: Vec<Crafted> = Vec::new();
    for (batch, chunk) in pairs.chunks(options.batch_size.max(1)).enumerate() {
        crate::interrupt::check(options.interrupt.as_ref(), "the audit")?;
        reporter.note(&format!(
            "mimicry attack at `{}`: pairs {}-{} of {}",
            names[cut - 1],
            batch * options.batch_size + 1,
            batch * options.batch_size + chunk.len(),
            pairs.len()
        ));
        let sources: Vec<Vec<f32>> = chunk.iter().map(|(source, _)| pixels[source].clone()).collect();
        let targets: Vec<Vec<f32>> = chunk.iter().map(|(_, target)| pixels[target].clone()).collect();
        crafted.extend(mimic(&front, &sources, &targets, size, &options.mimicry, device, reporter)?);
    }
    Ok(Attack {
        data,
        options: options.clone(),
        layer: names[cut - 1].clone(),
        cut,
        pairs,
        pixels,
        crafted,
        clean_accuracy,
        preprocessing,
        started,
    })
}

/// The blocks in front of the attacked layer's output: `layer`'s, or by default the layer a
/// hardened student was hardened at (`graft harden`), else the student's cut (its last frozen
/// block), the teacher's last block for a student with no frozen block.
///
/// # Errors
/// A layer name the teacher does not have.
pub fn attacked_cut(config: &RunConfig, teacher: &Teacher, layer: Option<&str>) -> Result<usize> {
    match layer.or(config.header.metrics["harden"]["layer"].as_str()) {
        Some(layer) => teacher.cut_after(layer),
        None if config.plan().cut == 0 => Ok(teacher.block_names().len()),
        None => Ok(config.plan().cut),
    }
}

/// Which of a data set's images a student classifies correctly.
pub struct Classified {
    /// Indices of the readable images.
    pub readable: Vec<usize>,
    /// Indices of those the student classifies correctly.
    pub correct: Vec<usize>,
}

impl Classified {
    /// The student's accuracy over the readable images.
    pub fn accuracy(&self) -> f64 {
        self.correct.len() as f64 / self.readable.len().max(1) as f64
    }
}

/// The indices of `data`'s readable images, and of those `student` classifies correctly
/// (unreadable images are noted).
///
/// # Errors
/// Images that cannot be scored at all.
pub fn correctly_classified(
    student: &LoadedStudent,
    data: &Dataset,
    inference: &InferenceOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Classified> {
    let sources: Vec<ItemSource> = data.items.iter().map(|item| item.source.clone()).collect();
    let (predictions, skipped) = predict_sources(student, &sources, inference, device, reporter)?;
    for bad in &skipped {
        reporter.note(&format!("skipped {}: {}", bad.name, bad.reason));
    }
    let readable: Vec<usize> = (0..data.len()).filter(|index| predictions[*index].is_some()).collect();
    let correct: Vec<usize> = readable
        .iter()
        .copied()
        .filter(|index| predictions[*index].as_deref().map(argmax) == Some(data.items[*index].label))
        .collect();
    Ok(Classified { readable, correct })
}

/// Scores `attack`'s crafted images on `student` (a student of the attack's teacher with the
/// same classes), with the two baselines made on that student: noise at each crafted image's
/// DSSIM, and white-box PGD. `clean_accuracy` is the student's on the attack's images.
///
/// # Errors
/// A tensor that cannot be read back.
pub fn score(
    attack: &Attack,
    student: &LoadedStudent,
    clean_accuracy: f64,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(AuditReport, Vec<PairImages>)> {
    let config = &student.config;
    let preprocessing = &attack.preprocessing;
    let size = preprocessing.input_size;
    let options = &attack.options;
    let valid = student.student.valid();
    let model = Student { backbone: valid.backbone.freeze_batch_norm_statistics(), head: valid.head };
    let label = |index: usize| attack.data.items[index].label;
    let name = |index: usize| attack.data.items[index].source.name();
    let pixels = &attack.pixels;

    reporter.start("baselines: noise at the same DSSIM, PGD on the student", attack.pairs.len());
    let measure = MsSsim::default();
    let mut examples = Vec::with_capacity(attack.pairs.len());
    let mut pictures = Vec::new();
    let bytes = |pixels: &[f32]| pixels.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect::<Vec<u8>>();
    for (index, ((source, target), crafted)) in attack.pairs.iter().zip(&attack.crafted).enumerate() {
        let target_class = label(*target);
        let adversarial: Vec<f32> = crafted.pixels.iter().map(|v| *v as f32).collect();
        let scores = probabilities(&model, std::slice::from_ref(&adversarial), preprocessing, device)?;
        let predicted = argmax(&scores);
        let noisy = noise_at(
            &pixels[source],
            crafted.dssim,
            size,
            &measure,
            SplitMix64::derive(options.seed, &[0x0015E, index as u64]),
            device,
        )?;
        let noise_predicted = argmax(&probabilities(&model, std::slice::from_ref(&noisy), preprocessing, device)?);
        let pgd = pgd_targeted(
            &model,
            &pixels[source],
            target_class,
            size,
            preprocessing,
            SplitMix64::derive(options.seed, &[0x96D, index as u64]),
            device,
        )?;
        let pgd_predicted = argmax(&probabilities(&model, std::slice::from_ref(&pgd), preprocessing, device)?);
        examples.push(PairResult {
            source: name(*source),
            source_class: config.header.classes[label(*source)].clone(),
            target: name(*target),
            target_class: config.header.classes[target_class].clone(),
            dssim: crafted.dssim,
            distance: crafted.distance,
            start_distance: crafted.start_distance,
            predicted: config.header.classes[predicted].clone(),
            target_probability: scores[target_class] as f64,
            success: predicted == target_class,
            noise_success: noise_predicted == target_class,
            pgd_success: pgd_predicted == target_class,
        });
        if pictures.len() < PICTURED_PAIRS {
            pictures.push(PairImages {
                size,
                source: bytes(&pixels[source]),
                adversarial: crafted.pixels.clone(),
                target: bytes(&pixels[target]),
            });
        }
        reporter.advance(1, "");
    }
    reporter.finish();
    let rate = |hit: fn(&PairResult) -> bool| {
        examples.iter().filter(|example| hit(example)).count() as f64 / examples.len().max(1) as f64
    };
    let report = AuditReport {
        layer: attack.layer.clone(),
        cut: attack.cut,
        budget: options.mimicry.budget,
        pairs: examples.len(),
        clean_accuracy,
        attack_success_rate: rate(|example| example.success),
        mean_dssim: examples.iter().map(|example| example.dssim).sum::<f64>() / examples.len().max(1) as f64,
        within_budget: attack.crafted.iter().filter(|crafted| crafted.within_budget).count(),
        noise_success_rate: rate(|example| example.noise_success),
        pgd_success_rate: rate(|example| example.pgd_success),
        mimicry: options.mimicry.clone(),
        seed: options.seed,
        seconds: attack.started.elapsed().as_secs_f64(),
        examples,
    };
    Ok((report, pictures))
}

/// The source plus Gaussian noise, rounded to 8-bit pixels, scaled (by bisection on its
/// standard deviation) to the DSSIM `dssim` from the source.
fn noise_at(
    source: &[f32],
    dssim: f64,
    size: usize,
    measure: &MsSsim,
    mut random: SplitMix64,
    device: &Device,
) -> Result<Vec<f32>> {
    let normal: Vec<f32> = (0..source.len()).map(|_| random.normal() as f32).collect();
    let reference = pixel_tensor(&[source.to_vec()], size, device);
    let at = |sigma: f64| -> Vec<f32> {
        source.iter().zip(&normal).map(|(v, n)| (v + n * sigma as f32).round().clamp(0.0, 255.0)).collect()
    };
    let distance = |image: &Vec<f32>| -> Result<f64> {
        Ok(host_values::<f32>(
            measure.dssim(pixel_tensor(std::slice::from_ref(image), size, device), reference.clone()).into_data(),
        )?[0] as f64)
    };
    let (mut low, mut high) = (0.0f64, 64.0f64);
    for _ in 0..20 {
        let middle = (low + high) / 2.0;
        if distance(&at(middle))? < dssim {
            low = middle;
        } else {
            high = middle;
        }
    }
    Ok(at(low))
}

/// Targeted white-box PGD on the student (L∞ ε 8/255, step 2/255, 10 steps, random start):
/// the common defaults, in pixels 0–255. Returns the rounded adversarial image.
fn pgd_targeted(
    model: &Student,
    source: &[f32],
    target: usize,
    size: usize,
    preprocessing: &Preprocessing,
    mut random: SplitMix64,
    device: &Device,
) -> Result<Vec<f32>> {
    const EPSILON: f32 = 8.0;
    const STEP: f32 = 2.0;
    const STEPS: usize = 10;
    let training = device.clone().autodiff();
    let original = pixel_tensor(&[source.to_vec()], size, device);
    let start: Vec<f32> =
        source.iter().map(|v| (v + random.uniform(-1.0, 1.0) as f32 * EPSILON).clamp(0.0, 255.0)).collect();
    let mut adversarial = pixel_tensor(&[start], size, device);
    let loss_function = CrossEntropyLossConfig::new().init(&training);
    let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![target as i64], [1]), &training);
    for _ in 0..STEPS {
        let variable = adversarial.clone().autodiff().require_grad();
        let logits = model.logits(normalise(variable.clone(), preprocessing.mean, preprocessing.std))?;
        let gradients = loss_function.forward(logits, targets.clone()).backward();
        let gradient = variable
            .grad(&gradients)
            .ok_or_else(|| GraftError::Tensor("no gradient reached the PGD input".into()))?
            .inner();
        // Descend the target's cross-entropy, then project back into the ε-ball and the pixel range.
        let stepped = adversarial - gradient.sign() * STEP;
        let low = (original.clone() - EPSILON).clamp_min(0.0);
        let high = (original.clone() + EPSILON).clamp_max(255.0);
        adversarial = stepped.max_pair(low).min_pair(high);
    }
    Ok(host_values::<f32>(adversarial.into_data())?.into_iter().map(|v| v.round().clamp(0.0, 255.0)).collect())
}
