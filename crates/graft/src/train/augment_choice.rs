//! `--augment auto` for fine-tuning: each augmentation kept only where it measurably helps.
//!
//! Flips, crops and colour jitter are not always harmless: a mirrored digit is another digit, a
//! crop can cut away what tells two classes apart. With the feature cache the question is cheap
//! to ask of the data itself: a linear probe on the frozen teacher's pooled features is
//! cross-validated once on the images' plain views, and once more per augmentation with an
//! augmented view of each training image added (each fold's held-out images stay plain, as
//! evaluation sees them). An augmentation is kept only when it clearly helps: the held-out
//! log-loss, compared image by image, falls by more than two standard errors of its change, and
//! the held-out accuracy does not fall. Within the noise it is left out: measured on small sets
//! (docs/QUALITY.md), augmentations kept on a score within the noise cost `mid` accuracy on
//! Fashion-MNIST. Each measured augmentation costs one teacher pass
//! over (a sample of) the training images.

use burn::tensor::Device;

use super::cache::{CacheSpec, View, pooled_features};
use super::probe;
use super::reporter::Reporter;
use crate::data::augment::Augmentation;
use crate::data::dataset::Dataset;
use crate::error::Result;
use crate::models::Teacher;
use crate::models::zoo::Preprocessing;

/// Images per class the measurement uses at most (a sample beyond: the answer does not need all).
pub const MEASURE_PER_CLASS: usize = 100;

/// The colour jitter strength `--augment on` uses and `auto` measures.
const JITTER: f32 = 0.2;

/// One augmentation's measurement.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Trial {
    pub augmentation: String,
    /// Held-out accuracy and mean log-loss.
    pub accuracy: f64,
    pub log_loss: f64,
    /// The mean change of each held-out image's log-loss against the plain views (negative:
    /// better), and its standard error over images.
    pub log_loss_change: f64,
    pub log_loss_change_standard_error: f64,
    pub kept: bool,
}

/// What `auto` chose and the measurements behind it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    pub augmentation: Augmentation,
    /// A sentence a user can check against the numbers.
    pub reason: String,
    /// The plain views' held-out accuracy and log-loss (the probe without augmentation).
    pub plain_accuracy: f64,
    pub plain_log_loss: f64,
    pub trials: Vec<Trial>,
}

/// Whether a measured augmentation clearly helps: a lower held-out log-loss by more than two
/// standard errors of the change, at no cost in accuracy.
pub fn clearly_helps(trial: &Trial, plain_accuracy: f64) -> bool {
    trial.accuracy >= plain_accuracy && trial.log_loss_change + 2.0 * trial.log_loss_change_standard_error < 0.0
}

/// Where the measurement's features come from.
pub struct MeasureContext<'a> {
    pub teacher: &'a Teacher,
    pub preprocessing: &'a Preprocessing,
    pub cache_dir: &'a std::path::Path,
    pub seed: u64,
    pub fused_plan: bool,
    pub batch_size: usize,
    pub device: &'a Device,
}

/// Measures each augmentation on `train` (see the module's documentation) and keeps those that
/// help. Too few images per class to cross-validate: no augmentation, and the reason says so.
pub fn choose(context: &MeasureContext<'_>, train: &Dataset, reporter: &dyn Reporter) -> Result<Choice> {
    let sample = train.clone().subsample(MEASURE_PER_CLASS, context.seed);
    let measured = |augmentation: &Augmentation, view: View, stage: &str| {
        let spec = CacheSpec {
            augmentation: augmentation.clone(),
            ..CacheSpec::pooled(context.teacher, context.preprocessing, context.seed, context.fused_plan)
        };
        pooled_features(
            context.teacher,
            &spec,
            context.cache_dir,
            &sample.items,
            view,
            context.batch_size,
            context.device,
            reporter,
            stage,
        )
    };
    let (plain, labels, dim) = measured(&Augmentation::none(), View::Eval, "measuring augmentation: plain views")?;
    let classes = train.classes.len();
    let samples = probe::Samples { features: &plain, dim, labels: &labels, classes };
    let cross_validation = probe::cross_validate(samples, context.seed);
    let (Some(cross_validation), Some(plain_outcomes)) = (
        cross_validation.as_ref(),
        cross_validation.as_ref().and_then(|cv| probe::held_out(samples, None, cv.l2, context.seed)),
    ) else {
        return Ok(Choice {
            augmentation: Augmentation::none(),
            reason: "fewer than two images in a class: augmentation cannot be measured, so none is used".into(),
            plain_accuracy: f64::NAN,
            plain_log_loss: f64::NAN,
            trials: Vec::new(),
        });
    };
    let l2 = cross_validation.l2;
    let (plain_accuracy, plain_log_loss) = probe::held_out_score(&plain_outcomes);
    let candidates = [
        ("random crops", Augmentation { random_resized_crop: true, ..Augmentation::none() }),
        ("horizontal flips", Augmentation { horizontal_flip: true, ..Augmentation::none() }),
        ("colour jitter", Augmentation { color_jitter: JITTER, ..Augmentation::none() }),
    ];
    let mut chosen = Augmentation::none();
    let mut trials = Vec::new();
    for (name, augmentation) in candidates {
        let (views, view_labels, _) =
            measured(&augmentation, View::Augmented(1), &format!("measuring augmentation: {name}"))?;
        // An image unreadable in one pass is unreadable in both; the rows line up.
        if view_labels != labels {
            continue;
        }
        let Some(outcomes) = probe::held_out(samples, Some(&views), l2, context.seed) else { continue };
        let (accuracy, log_loss) = probe::held_out_score(&outcomes);
        let changes: Vec<f64> =
            outcomes.iter().zip(&plain_outcomes).map(|(with, without)| with.loss - without.loss).collect();
        let (log_loss_change, log_loss_change_standard_error) = probe::mean_and_standard_error(&changes);
        let mut trial = Trial {
            augmentation: name.into(),
            accuracy,
            log_loss,
            log_loss_change,
            log_loss_change_standard_error,
            kept: false,
        };
        trial.kept = clearly_helps(&trial, plain_accuracy);
        if trial.kept {
            chosen.random_resized_crop |= augmentation.random_resized_crop;
            chosen.horizontal_flip |= augmentation.horizontal_flip;
            chosen.color_jitter = chosen.color_jitter.max(augmentation.color_jitter);
        }
        trials.push(trial);
    }
    let listed = trials
        .iter()
        .map(|trial| {
            format!(
                "{} {:.1}% (log-loss {:+.3} ± {:.3})",
                trial.augmentation,
                trial.accuracy * 100.0,
                trial.log_loss_change,
                trial.log_loss_change_standard_error
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let kept: Vec<&str> = trials.iter().filter(|trial| trial.kept).map(|trial| trial.augmentation.as_str()).collect();
    let verdict = if kept.is_empty() {
        "none clearly helps (a lower held-out log-loss by more than two standard errors, at no cost in accuracy), so none is used".to_owned()
    } else {
        format!("kept {} ({} clearly)", kept.join(" and "), if kept.len() == 1 { "it helps" } else { "they help" })
    };
    let reason = format!(
        "a linear probe on the frozen teacher's features, cross-validated on {} images: plain views {:.1}%; with {listed}: {verdict}",
        labels.len(),
        plain_accuracy * 100.0
    );
    Ok(Choice { augmentation: chosen, reason, plain_accuracy, plain_log_loss, trials })
}
