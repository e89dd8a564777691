//! `auto`: recommending a strategy from measurements of the data against the teacher.
//!
//! Two measurements: how many examples each class has, and how well the teacher's features at
//! several depths separate the classes (a nearest-class-mean linear probe on pooled activations,
//! trained on a sample of the training set and scored on a sample of the validation set). When
//! the last block probes clearly best, the teacher's high-level features fit the domain and
//! freezing them loses little; when an earlier block probes as well, the last blocks are tuned to
//! ImageNet rather than to this data, and the network is fine-tuned whole ([`decide`]).

use burn::tensor::Device;

use super::reporter::Reporter;
use super::strategy::Strategy;
use crate::data::dataset::Dataset;
use crate::data::image::{batch_tensor, preprocess};
use crate::error::Result;
use crate::models::Teacher;
use crate::models::zoo::Preprocessing;
use crate::rng::SplitMix64;

/// Probe accuracy at one block.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    pub block: String,
    pub accuracy: f64,
}

/// The recommendation and the measurements behind it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Advice {
    pub strategy: Strategy,
    /// One or two sentences a user can check against the numbers.
    pub reason: String,
    pub examples_per_class: usize,
    pub probes: Vec<Probe>,
}

/// Images per class sampled for the probe (train and validation each).
const PROBE_PER_CLASS: usize = 20;

pub fn advise(
    teacher: &Teacher,
    train: &Dataset,
    validation: &Dataset,
    image_size: Option<usize>,
    seed: u64,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Advice> {
    let counts = train.class_counts();
    let mut sorted = counts.clone();
    sorted.sort();
    let examples_per_class = sorted[sorted.len() / 2];
    let preprocessing = super::trainer::preprocessing_at(&teacher.card.preprocessing, image_size)?;
    let blocks = teacher.block_names();
    let depths: Vec<usize> =
        [0.4, 0.7, 1.0].iter().map(|f| ((blocks.len() as f64 * f).ceil() as usize).clamp(1, blocks.len())).collect();
    let (train_features, train_labels) =
        pooled_at(teacher, &train.clone().subsample(PROBE_PER_CLASS, seed), &depths, &preprocessing, device, reporter)?;
    let (val_features, val_labels) = pooled_at(
        teacher,
        &validation.clone().subsample(PROBE_PER_CLASS, seed ^ 1),
        &depths,
        &preprocessing,
        device,
        reporter,
    )?;
    let probes: Vec<Probe> = depths
        .iter()
        .enumerate()
        .map(|(slot, depth)| Probe {
            block: blocks[depth - 1].clone(),
            accuracy: nearest_mean_accuracy(
                &train_features[slot],
                &train_labels,
                &val_features[slot],
                &val_labels,
                train.classes.len(),
            ),
        })
        .collect();
    let last = probes.last().map_or(0.0, |p| p.accuracy);
    let best_early = probes[..probes.len() - 1].iter().map(|p| p.accuracy).fold(0.0, f64::max);
    let far = best_early + 0.02 >= last;
    let probe_text =
        probes.iter().map(|p| format!("{} {:.0}%", p.block, p.accuracy * 100.0)).collect::<Vec<_>>().join(", ");
    let (strategy, why) = decide(far, examples_per_class);
    let reason = format!("Linear probes on the teacher's features: {probe_text}; {why}.");
    Ok(Advice { strategy, reason, examples_per_class, probes })
}

/// Below this many training examples per class, a domain near the teacher's gets the `deep`
/// probe; from it on, `mid`.
pub const MID_FROM_PER_CLASS: usize = 16;

/// From this many training examples per class on, a domain near the teacher's is fine-tuned
/// whole (`full`) rather than in its last blocks (`mid`).
pub const FULL_FROM_PER_CLASS: usize = 60;

/// The strategy for a domain far from the teacher's or not (earlier blocks probing as well as the
/// last) and the median training examples per class (after the hold-out), and why. Measured on
/// small sets (docs/QUALITY.md, `auto`): near ImageNet's domain (Fashion-MNIST) the `deep` probe
/// is best with the fewest images per class; `mid` (refitted on every image) from a few dozen,
/// within the noise of `full` at a tenth of its time or less; `full` best with more, by a margin
/// that grows with the data. Far from it (8x8 digits) `full` is best at every size measured,
/// with batch norms on their stored statistics. The thresholds below are where those rows cross.
pub fn decide(far: bool, examples_per_class: usize) -> (Strategy, String) {
    match (far, examples_per_class) {
        (false, n) if n < MID_FROM_PER_CLASS => (
            Strategy::Deep,
            format!(
                "the last block's features separate the classes best and {n} examples per class are too few to retrain blocks safely"
            ),
        ),
        (false, n) if n < FULL_FROM_PER_CLASS => (
            Strategy::Mid,
            format!(
                "the teacher's features fit the data and {n} examples per class are enough to adapt the last blocks (below {FULL_FROM_PER_CLASS} per class, retraining every block measured less than a point above that, at 8 to 20 times the time)"
            ),
        ),
        (false, n) => (
            Strategy::Full,
            format!(
                "the teacher's features fit the data, and with {n} examples per class retraining every block pays: from {FULL_FROM_PER_CLASS} per class on it measured about a point above adapting the last blocks (strategy `mid`, 8 times faster)"
            ),
        ),
        (true, n) => (
            Strategy::Full,
            format!(
                "earlier blocks probe as well as the last, so the domain is far from ImageNet and features of every depth need adapting: every block is retrained ({n} examples per class)"
            ),
        ),
    }
}

/// Per depth, per image, the pooled activations; and each image's label.
type PooledFeatures = (Vec<Vec<Vec<f32>>>, Vec<usize>);

/// Pooled activations after each block in `depths` (1-based counts of blocks run), per image.
fn pooled_at(
    teacher: &Teacher,
    data: &Dataset,
    depths: &[usize],
    preprocessing: &Preprocessing,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<PooledFeatures> {
    let mut features: Vec<Vec<Vec<f32>>> = vec![Vec::new(); depths.len()];
    let mut labels = Vec::new();
    let mut items = data.items.clone();
    SplitMix64::new(7).shuffle(&mut items);
    reporter.start("probing the teacher", items.len());
    for chunk in items.chunks(16) {
        let mut images = Vec::new();
        for item in chunk {
            if let Ok(image) = item.source.load_at_least(preprocessing.resize as u32) {
                images.push(preprocess(&image, preprocessing));
                labels.push(item.label);
            }
        }
        if images.is_empty() {
            continue;
        }
        let mut x = batch_tensor(&images, preprocessing.input_size, device);
        let mut done = 0;
        for (slot, depth) in depths.iter().enumerate() {
            x = teacher.backbone.forward_blocks(x, done..*depth)?;
            done = *depth;
            let values =
                crate::backend::host_values::<f32>(crate::backend::ops::global_average(x.clone()).into_data())?;
            let width = values.len() / images.len();
            features[slot].extend(values.chunks(width).map(<[f32]>::to_vec));
        }
        reporter.advance(chunk.len(), "");
    }
    reporter.finish();
    Ok((features, labels))
}

/// Nearest class mean on L2-normalised features: a linear probe with nothing to tune.
fn nearest_mean_accuracy(
    train: &[Vec<f32>],
    train_labels: &[usize],
    test: &[Vec<f32>],
    test_labels: &[usize],
    classes: usize,
) -> f64 {
    let normalise = |v: &[f32]| {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter().map(|x| x / norm).collect::<Vec<f32>>()
    };
    let width = train.first().map_or(0, Vec::len);
    let mut means = vec![vec![0.0f32; width]; classes];
    let mut counts = vec![0usize; classes];
    for (features, label) in train.iter().zip(train_labels) {
        for (mean, value) in means[*label].iter_mut().zip(normalise(features)) {
            *mean += value;
        }
        counts[*label] += 1;
    }
    let means: Vec<Option<Vec<f32>>> =
        means.iter().zip(&counts).map(|(mean, count)| (*count > 0).then(|| normalise(mean))).collect();
    let correct = test
        .iter()
        .zip(test_labels)
        .filter(|(features, label)| {
            let features = normalise(features);
            let best = means
                .iter()
                .enumerate()
                .filter_map(|(class, mean)| {
                    mean.as_ref().map(|mean| (class, mean.iter().zip(&features).map(|(a, b)| a * b).sum::<f32>()))
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(class, _)| class);
            best == Some(**label)
        })
        .count();
    correct as f64 / test.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_domains_are_fine_tuned_whole_and_near_ones_probed_only_when_data_is_scarce() {
        assert_eq!(decide(true, 24).0, Strategy::Full);
        assert_eq!(decide(true, 300).0, Strategy::Full);
        assert_eq!(decide(false, 8).0, Strategy::Deep);
        assert_eq!(decide(false, 15).0, Strategy::Deep);
        assert_eq!(decide(false, 24).0, Strategy::Mid);
        assert_eq!(decide(false, 40).0, Strategy::Mid);
        assert_eq!(decide(false, FULL_FROM_PER_CLASS - 1).0, Strategy::Mid);
        assert_eq!(decide(false, FULL_FROM_PER_CLASS).0, Strategy::Full);
        assert_eq!(decide(false, 80).0, Strategy::Full);
        assert_eq!(decide(false, 1000).0, Strategy::Full);
        assert!(decide(true, 24).1.contains("24 examples per class"));
    }

    #[test]
    fn nearest_mean_probe_separates_separable_clusters() {
        let train = vec![vec![1.0, 0.1], vec![0.9, 0.0], vec![0.0, 1.0], vec![0.1, 0.8]];
        let test = vec![vec![0.8, 0.2], vec![0.2, 0.9], vec![0.7, 0.1]];
        assert_eq!(nearest_mean_accuracy(&train, &[0, 0, 1, 1], &test, &[0, 1, 0], 2), 1.0);
        // Labels that ignore the features probe at chance or worse.
        assert!(nearest_mean_accuracy(&train, &[0, 1, 0, 1], &test, &[0, 1, 0], 2) < 1.0);
    }
}
