//! The linear probe: a `deep` student's head fitted to convergence on the cached features, the
//! protocol self-supervised-learning papers evaluate features with (and scikit-learn's
//! `LogisticRegressionCV`): multinomial logistic regression with an L2 penalty, minimised by
//! L-BFGS, the penalty's strength chosen by stratified k-fold cross-validation (held-out
//! log-loss, one-standard-error rule). With features cached a fit takes about a second, so graft can afford to fit the
//! head properly instead of for a fixed number of epochs.
//!
//! The features are centred but not scaled: measured on the quality sets (docs/QUALITY.md),
//! scaling every dimension to unit variance lifts the many near-silent dimensions of a pooled
//! ReLU feature to the informative ones' weight and loses accuracy on small sets; choosing the
//! penalty by held-out log-loss picks the same strength across seeds, where accuracy on a few
//! images per fold ties and wobbles; and the lowest log-loss itself fell a half-decade short of
//! the best penalty on `fm100`, which the one-standard-error rule corrects.

use rayon::prelude::*;

use crate::rng::SplitMix64;

/// The penalty strengths tried, half a decade apart, strongest first (each fit starts from the
/// previous one's solution). The loss is the mean cross-entropy plus `l2 / 2 * |W|^2`.
pub const L2_GRID: [f64; 13] = [10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4, 3e-5, 1e-5];

/// The penalty used when there are too few images per class to cross-validate.
pub const DEFAULT_L2: f64 = 0.01;

/// The most training images `auto` fits a probe to; above it the head trains by epochs (with
/// that much data the hold-out is no waste, and a cross-validated fit would take minutes).
pub const MAX_PROBE_IMAGES: usize = 20_000;

/// At most this many folds; fewer when a class has fewer images.
pub const MAX_FOLDS: usize = 5;

const MAX_ITERATIONS: usize = 500;
const GRADIENT_TOLERANCE: f64 = 1e-5;
const MEMORY: usize = 10;

/// Labelled feature vectors: `features` is `count x dim`, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Samples<'a> {
    pub features: &'a [f32],
    pub dim: usize,
    pub labels: &'a [usize],
    pub classes: usize,
}

impl Samples<'_> {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn subset(&self, rows: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let mut features = Vec::with_capacity(rows.len() * self.dim);
        for &row in rows {
            features.extend_from_slice(&self.features[row * self.dim..(row + 1) * self.dim]);
        }
        (features, rows.iter().map(|&row| self.labels[row]).collect())
    }
}

/// One penalty strength's cross-validated score.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GridPoint {
    pub l2: f64,
    pub accuracy: f64,
    /// The standard error of the mean over folds.
    pub standard_error: f64,
    pub log_loss: f64,
    /// The standard error of the log-loss's mean over folds.
    pub log_loss_standard_error: f64,
}

/// What cross-validation measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CrossValidation {
    pub folds: usize,
    /// The chosen penalty strength.
    pub l2: f64,
    /// The penalty strengths tried, strongest first: [`L2_GRID`] up to where the held-out loss
    /// had clearly risen again.
    pub grid: Vec<GridPoint>,
    /// The chosen point's accuracy and its standard error over folds.
    pub accuracy: f64,
    pub standard_error: f64,
    /// The chosen point's log-loss (mean over folds).
    pub log_loss: f64,
    /// At the chosen point, each sample's class probabilities from the fold that held it out
    /// (`count x classes`, row-major): scores of images the model was not fitted to.
    #[serde(skip)]
    pub out_of_fold: Vec<f32>,
}

/// A fitted head, in burn's `Linear` layout (weight `[dim, classes]`, row-major) on the raw
/// (not standardised) features.
#[derive(Debug, Clone)]
pub struct Probe {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub l2: f64,
    pub iterations: usize,
    pub cross_validation: Option<CrossValidation>,
}

/// Chooses the penalty by stratified k-fold cross-validation (when every class has at least two
/// images), then fits on all of `samples` with it.
pub fn fit(samples: Samples<'_>, seed: u64) -> Probe {
    let cross_validation = cross_validate(samples, seed);
    let l2 = cross_validation.as_ref().map_or(DEFAULT_L2, |cv| cv.l2);
    let (weight, bias, iterations) = fit_with(samples, l2);
    Probe { weight, bias, l2, iterations, cross_validation }
}

/// Fits at one penalty strength on all of `samples`: weight (raw-feature layout), bias, iterations.
pub fn fit_with(samples: Samples<'_>, l2: f64) -> (Vec<f32>, Vec<f32>, usize) {
    let standard = Standardised::new(samples);
    let problem = Problem { z: &standard.z, dim: samples.dim, labels: samples.labels, classes: samples.classes, l2 };
    let (theta, iterations) = lbfgs(&problem, vec![0.0; problem.parameters()]);
    let (weight, bias) = standard.unstandardise(&theta, samples.classes);
    (weight, bias, iterations)
}

/// The per-penalty cross-validated accuracy; `None` when a class has fewer than two images.
pub fn cross_validate(samples: Samples<'_>, seed: u64) -> Option<CrossValidation> {
    let folds = fold_of_each(samples.labels, samples.classes, seed)?;
    let fold_count = folds.iter().max().map_or(0, |f| f + 1);
    struct Fold {
        z: Vec<f64>,
        labels: Vec<usize>,
        test_z: Vec<f64>,
        test_labels: Vec<usize>,
        theta: Vec<f64>,
        /// Per grid point: accuracy, log-loss, class probabilities of the held-out rows.
        path: Vec<(f64, f64, Vec<f32>)>,
    }
    let mut fold_states: Vec<Fold> = (0..fold_count)
        .into_par_iter()
        .map(|fold| {
            let (train_rows, test_rows) = fold_rows(&folds, fold);
            let (train_features, labels) = samples.subset(&train_rows);
            let (test_features, test_labels) = samples.subset(&test_rows);
            let standard = Standardised::new(Samples { features: &train_features, labels: &labels, ..samples });
            let test_z = standard.apply(&test_features);
            Fold {
                z: standard.z,
                labels,
                test_z,
                test_labels,
                theta: vec![0.0; (samples.dim + 1) * samples.classes],
                path: Vec::new(),
            }
        })
        .collect();
    // The grid, strongest penalty first, each fold warm-started from its previous solution. The
    // held-out loss falls, bottoms out and rises again as the penalty weakens; once it has stood
    // more than a standard error above its lowest for two points in a row, the weaker (and
    // slowest to fit) points are skipped.
    let mut grid: Vec<GridPoint> = Vec::with_capacity(L2_GRID.len());
    let mut above = 0;
    for &l2 in &L2_GRID {
        fold_states.par_iter_mut().for_each(|fold| {
            let problem = Problem { z: &fold.z, dim: samples.dim, labels: &fold.labels, classes: samples.classes, l2 };
            fold.theta = lbfgs(&problem, std::mem::take(&mut fold.theta)).0;
            fold.path.push(score_with_probabilities(
                &fold.theta,
                &fold.test_z,
                &fold.test_labels,
                samples.dim,
                samples.classes,
            ));
        });
        let index = grid.len();
        let accuracies: Vec<f64> = fold_states.iter().map(|fold| fold.path[index].0).collect();
        let (accuracy, standard_error) = mean_and_standard_error(&accuracies);
        let losses: Vec<f64> = fold_states.iter().map(|fold| fold.path[index].1).collect();
        let (log_loss, log_loss_standard_error) = mean_and_standard_error(&losses);
        grid.push(GridPoint { l2, accuracy, standard_error, log_loss, log_loss_standard_error });
        let lowest =
            grid.iter().filter(|point| point.log_loss.is_finite()).min_by(|a, b| a.log_loss.total_cmp(&b.log_loss));
        above = match lowest {
            Some(lowest) if log_loss > lowest.log_loss + lowest.log_loss_standard_error => above + 1,
            _ => 0,
        };
        if above == 2 {
            break;
        }
    }
    let per_fold: Vec<Vec<(f64, f64, Vec<f32>)>> = fold_states.into_iter().map(|fold| fold.path).collect();
    // The one-standard-error rule (Breiman et al. 1984; glmnet's `lambda.1se`): the strongest
    // penalty whose held-out log-loss is within one standard error of the lowest. The lowest
    // itself is a noisy pick on a few images per fold; the rule leans to the simpler model.
    let chosen = one_standard_error_choice(&grid)?;
    let best = &grid[chosen];
    // Put each fold's probabilities back in sample order.
    let mut out_of_fold = vec![0.0f32; samples.len() * samples.classes];
    for (fold, path) in per_fold.iter().enumerate() {
        let rows = (0..samples.len()).filter(|&row| folds[row] == fold);
        for (row, probabilities) in rows.zip(path[chosen].2.chunks_exact(samples.classes)) {
            out_of_fold[row * samples.classes..(row + 1) * samples.classes].copy_from_slice(probabilities);
        }
    }
    Some(CrossValidation {
        folds: fold_count,
        l2: best.l2,
        accuracy: best.accuracy,
        standard_error: best.standard_error,
        log_loss: best.log_loss,
        out_of_fold,
        grid: grid.clone(),
    })
}

/// One sample's fate when held out: whether the probe got it right, and its cross-entropy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOut {
    pub correct: bool,
    pub loss: f64,
}

/// Each sample's held-out outcome for a probe at penalty `l2` over stratified k-fold
/// cross-validation (the folds [`cross_validate`] deals from `seed`), in sample order. Each fold
/// is fitted on its training rows' features and, when `extra_views` is given, on one more view of
/// each of those rows (`extra_views` holds a row of features per sample, in sample order: an
/// augmented view of the same image), then scores its held-out rows on their own features.
/// `None` when a class has fewer than two samples. Comparing the outcomes with and without
/// `extra_views`, sample by sample, measures whether training on those views helps a classifier
/// on these features.
pub fn held_out(samples: Samples<'_>, extra_views: Option<&[f32]>, l2: f64, seed: u64) -> Option<Vec<HeldOut>> {
    let folds = fold_of_each(samples.labels, samples.classes, seed)?;
    let fold_count = folds.iter().max().map_or(0, |f| f + 1);
    let (d, k) = (samples.dim, samples.classes);
    let per_fold: Vec<(Vec<usize>, Vec<HeldOut>)> = (0..fold_count)
        .into_par_iter()
        .map(|fold| {
            let (train_rows, test_rows) = fold_rows(&folds, fold);
            let (mut features, mut labels) = samples.subset(&train_rows);
            if let Some(extra) = extra_views {
                let (extra_features, extra_labels) = Samples { features: extra, ..samples }.subset(&train_rows);
                features.extend(extra_features);
                labels.extend(extra_labels);
            }
            let (weight, bias, _) = fit_with(Samples { features: &features, labels: &labels, ..samples }, l2);
            let (weight, bias): (Vec<f64>, Vec<f64>) =
                (weight.iter().map(|&w| w as f64).collect(), bias.iter().map(|&b| b as f64).collect());
            let (test_features, test_labels) = samples.subset(&test_rows);
            let z: Vec<f64> = test_features.iter().map(|&x| x as f64).collect();
            let mut out = logits(&z, &weight, &bias, test_rows.len(), d, k);
            let outcomes = out
                .chunks_exact_mut(k)
                .zip(&test_labels)
                .map(|(row, &label)| HeldOut { correct: argmax(row) == label, loss: softmax_in_place(row, label) })
                .collect();
            (test_rows, outcomes)
        })
        .collect();
    let mut outcomes = vec![HeldOut { correct: false, loss: f64::NAN }; samples.len()];
    for (rows, fold_outcomes) in per_fold {
        for (row, outcome) in rows.into_iter().zip(fold_outcomes) {
            outcomes[row] = outcome;
        }
    }
    Some(outcomes)
}

/// Accuracy and mean log-loss of held-out outcomes.
pub fn held_out_score(outcomes: &[HeldOut]) -> (f64, f64) {
    let n = outcomes.len().max(1) as f64;
    (outcomes.iter().filter(|o| o.correct).count() as f64 / n, outcomes.iter().map(|o| o.loss).sum::<f64>() / n)
}

/// Accuracy and mean cross-entropy of a head (raw-feature layout, as [`Probe`]'s) on `samples`.
pub fn evaluate(weight: &[f32], bias: &[f32], samples: Samples<'_>) -> (f64, f64) {
    let d = samples.dim;
    let k = samples.classes;
    let mut theta: Vec<f64> = weight.iter().map(|&w| w as f64).collect();
    theta.extend(bias.iter().map(|&b| b as f64));
    let z: Vec<f64> = samples.features.iter().map(|&x| x as f64).collect();
    score(&theta, &z, samples.labels, d, k)
}

/// The index of the first (strongest) point whose log-loss is within one standard error of the
/// lowest; `None` when no loss is finite.
fn one_standard_error_choice(grid: &[GridPoint]) -> Option<usize> {
    let lowest =
        grid.iter().filter(|point| point.log_loss.is_finite()).min_by(|a, b| a.log_loss.total_cmp(&b.log_loss))?;
    let threshold = lowest.log_loss + lowest.log_loss_standard_error;
    grid.iter().position(|point| point.log_loss <= threshold)
}

/// Mean and standard error of the mean.
pub fn mean_and_standard_error(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (variance / n).sqrt())
}

/// Each sample's fold: every class's samples shuffled (seeded) and dealt round-robin, so each
/// fold holds each class in proportion. `None` when a class has fewer than two samples.
fn fold_of_each(labels: &[usize], classes: usize, seed: u64) -> Option<Vec<usize>> {
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (row, &label) in labels.iter().enumerate() {
        members[label].push(row);
    }
    let smallest = members.iter().filter(|rows| !rows.is_empty()).map(Vec::len).min()?;
    if smallest < 2 {
        return None;
    }
    let folds = smallest.min(MAX_FOLDS);
    let mut rng = SplitMix64::derive(seed, &[0xF01D]);
    let mut assignment = vec![0; labels.len()];
    // Carry the dealing position over classes, so small classes do not all start at fold 0.
    let mut next = 0;
    for rows in &mut members {
        rng.shuffle(rows);
        for &row in rows.iter() {
            assignment[row] = next % folds;
            next += 1;
        }
    }
    Some(assignment)
}

/// Features centred per dimension (which changes the solution not at all, the bias being
/// unpenalised, and conditions the problem better), with the means to map a fitted head back to
/// raw features. `scale` stays 1: see the module's notes.
struct Standardised {
    z: Vec<f64>,
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Standardised {
    fn new(samples: Samples<'_>) -> Standardised {
        let (n, d) = (samples.len().max(1) as f64, samples.dim);
        let mut mean = vec![0.0; d];
        for row in samples.features.chunks_exact(d) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let scale = vec![1.0; d];
        let mut standard = Standardised { z: Vec::new(), mean, scale };
        standard.z = standard.apply(samples.features);
        standard
    }

    fn apply(&self, features: &[f32]) -> Vec<f64> {
        let d = self.mean.len();
        let mut z = Vec::with_capacity(features.len());
        for row in features.chunks_exact(d) {
            z.extend(row.iter().zip(&self.mean).zip(&self.scale).map(|((&x, m), s)| (x as f64 - m) / s));
        }
        z
    }

    /// `theta` (standardised weight `[d, k]` then bias `[k]`) as weight and bias on raw features.
    fn unstandardise(&self, theta: &[f64], classes: usize) -> (Vec<f32>, Vec<f32>) {
        let d = self.mean.len();
        let mut weight = vec![0.0f32; d * classes];
        let mut bias: Vec<f64> = theta[d * classes..].to_vec();
        for j in 0..d {
            for c in 0..classes {
                let w = theta[j * classes + c] / self.scale[j];
                weight[j * classes + c] = w as f32;
                bias[c] -= w * self.mean[j];
            }
        }
        (weight, bias.into_iter().map(|b| b as f32).collect())
    }
}

/// Mean cross-entropy of a linear softmax model plus the L2 penalty on its weight.
struct Problem<'a> {
    z: &'a [f64],
    dim: usize,
    labels: &'a [usize],
    classes: usize,
    l2: f64,
}

impl Problem<'_> {
    fn parameters(&self) -> usize {
        (self.dim + 1) * self.classes
    }

    /// The objective at `theta`, its gradient written to `gradient`.
    fn evaluate(&self, theta: &[f64], gradient: &mut [f64]) -> f64 {
        let (n, d, k) = (self.labels.len(), self.dim, self.classes);
        let (weight, bias) = theta.split_at(d * k);
        let mut residual = logits(self.z, weight, bias, n, d, k);
        let mut loss = 0.0;
        for (row, &label) in residual.chunks_exact_mut(k).zip(self.labels) {
            loss += softmax_in_place(row, label);
            row[label] -= 1.0;
        }
        let scale = 1.0 / n.max(1) as f64;
        residual.iter_mut().for_each(|r| *r *= scale);
        let (weight_gradient, bias_gradient) = gradient.split_at_mut(d * k);
        // dW = Z^T R: Z is n x d row-major, so Z^T has row stride 1 and column stride d.
        matmul(weight_gradient, d, k, n, self.z, (d, 1), &residual);
        for (g, w) in weight_gradient.iter_mut().zip(weight) {
            *g += self.l2 * w;
        }
        bias_gradient.iter_mut().for_each(|g| *g = 0.0);
        for row in residual.chunks_exact(k) {
            for (g, r) in bias_gradient.iter_mut().zip(row) {
                *g += r;
            }
        }
        loss * scale + 0.5 * self.l2 * weight.iter().map(|w| w * w).sum::<f64>()
    }
}

/// `Z W + b` for `n` rows.
fn logits(z: &[f64], weight: &[f64], bias: &[f64], n: usize, d: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; n * k];
    matmul(&mut out, n, k, d, z, (1, d), weight);
    for row in out.chunks_exact_mut(k) {
        for (value, b) in row.iter_mut().zip(bias) {
            *value += b;
        }
    }
    out
}

/// `out[m x n] = lhs[m x inner] * rhs[inner x n]`, `out` and `rhs` row-major, `lhs` read with
/// `(column stride, row stride)` (`(1, inner)` row-major, `(m, 1)` the transpose of a row-major
/// `inner x m`), on the calling thread.
fn matmul(
    out: &mut [f64],
    m: usize,
    n: usize,
    inner: usize,
    lhs: &[f64],
    (lhs_column_stride, lhs_row_stride): (usize, usize),
    rhs: &[f64],
) {
    assert!(out.len() >= m * n && rhs.len() >= inner * n && lhs.len() >= m * inner);
    assert!((lhs_column_stride, lhs_row_stride) == (1, inner) || (lhs_column_stride, lhs_row_stride) == (m, 1));
    // SAFETY: the buffers hold at least m*n, inner*n and m*inner values (checked above), the
    // strides describe a row-major matrix or its transpose inside each, and `out` is not aliased.
    unsafe {
        gemm::gemm(
            m,
            n,
            inner,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_column_stride as isize,
            lhs_row_stride as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0f64,
            1.0f64,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The index of the largest value (the first of equal ones).
/// The index of the first largest value.
pub(crate) fn argmax<T: PartialOrd>(row: &[T]) -> usize {
    row.iter().enumerate().fold(0, |best, (c, v)| if *v > row[best] { c } else { best })
}

/// The rows of each side of fold `fold`: (training rows, held-out rows), in sample order.
fn fold_rows(folds: &[usize], fold: usize) -> (Vec<usize>, Vec<usize>) {
    (0..folds.len()).partition(|&row| folds[row] != fold)
}

/// Replaces a row of logits by its softmax; returns the cross-entropy of `label` (from the
/// shifted logit, so finite even where the label's probability underflows to 0).
fn softmax_in_place(row: &mut [f64], label: usize) -> f64 {
    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let label_logit = row[label] - max;
    let mut sum = 0.0;
    for value in row.iter_mut() {
        *value = (*value - max).exp();
        sum += *value;
    }
    row.iter_mut().for_each(|value| *value /= sum);
    sum.ln() - label_logit
}

/// Accuracy and mean cross-entropy of `theta` (standardised layout) on standardised rows.
fn score(theta: &[f64], z: &[f64], labels: &[usize], d: usize, k: usize) -> (f64, f64) {
    let n = labels.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let (weight, bias) = theta.split_at(d * k);
    let mut out = logits(z, weight, bias, n, d, k);
    let (mut correct, mut loss) = (0usize, 0.0);
    for (row, &label) in out.chunks_exact_mut(k).zip(labels) {
        correct += usize::from(argmax(row) == label);
        loss += softmax_in_place(row, label);
    }
    (correct as f64 / n as f64, loss / n as f64)
}

/// [`score`], and the class probabilities of each row (`n x k`, row-major).
fn score_with_probabilities(theta: &[f64], z: &[f64], labels: &[usize], d: usize, k: usize) -> (f64, f64, Vec<f32>) {
    let n = labels.len();
    let (weight, bias) = theta.split_at(d * k);
    let mut out = logits(z, weight, bias, n, d, k);
    let (accuracy, loss) = score(theta, z, labels, d, k);
    for (row, &label) in out.chunks_exact_mut(k).zip(labels) {
        softmax_in_place(row, label);
    }
    (accuracy, loss, out.into_iter().map(|p| p as f32).collect())
}

/// Minimises the (strictly convex) problem by L-BFGS with a backtracking (Armijo) line search,
/// from `theta`. Returns the solution and the iterations taken.
fn lbfgs(problem: &Problem<'_>, mut theta: Vec<f64>) -> (Vec<f64>, usize) {
    let size = theta.len();
    let mut gradient = vec![0.0; size];
    let mut value = problem.evaluate(&theta, &mut gradient);
    let mut pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> = std::collections::VecDeque::new();
    let (mut candidate, mut candidate_gradient) = (vec![0.0; size], vec![0.0; size]);
    for iteration in 0..MAX_ITERATIONS {
        if gradient.iter().fold(0.0f64, |m, g| m.max(g.abs())) < GRADIENT_TOLERANCE {
            return (theta, iteration);
        }
        // The two-loop recursion: direction = -H gradient.
        let mut direction: Vec<f64> = gradient.iter().map(|g| -g).collect();
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let alpha = rho * dot(s, &direction);
            axpy(-alpha, y, &mut direction);
            alphas.push(alpha);
        }
        let gamma = pairs.back().map_or_else(|| 1.0 / norm(&gradient).max(1.0), |(s, y, _)| dot(s, y) / dot(y, y));
        direction.iter_mut().for_each(|d| *d *= gamma);
        for ((s, y, rho), alpha) in pairs.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &direction);
            axpy(alpha - beta, s, &mut direction);
        }
        let mut slope = dot(&gradient, &direction);
        if slope >= 0.0 {
            // Not a descent direction (rounding): restart from steepest descent.
            pairs.clear();
            direction = gradient.iter().map(|g| -g / norm(&gradient).max(1.0)).collect();
            slope = dot(&gradient, &direction);
        }
        let mut step = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            for ((c, t), d) in candidate.iter_mut().zip(&theta).zip(&direction) {
                *c = t + step * d;
            }
            let candidate_value = problem.evaluate(&candidate, &mut candidate_gradient);
            if candidate_value <= value + 1e-4 * step * slope {
                let s: Vec<f64> = candidate.iter().zip(&theta).map(|(c, t)| c - t).collect();
                let y: Vec<f64> = candidate_gradient.iter().zip(&gradient).map(|(c, g)| c - g).collect();
                let curvature = dot(&s, &y);
                if curvature > 1e-12 {
                    if pairs.len() == MEMORY {
                        pairs.pop_front();
                    }
                    pairs.push_back((s, y, 1.0 / curvature));
                }
                let improvement = value - candidate_value;
                std::mem::swap(&mut theta, &mut candidate);
                std::mem::swap(&mut gradient, &mut candidate_gradient);
                value = candidate_value;
                accepted = true;
                if improvement <= 1e-12 * value.abs().max(1.0) {
                    return (theta, iteration + 1);
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            return (theta, iteration + 1);
        }
    }
    (theta, MAX_ITERATIONS)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three Gaussian blobs in 6 dimensions, two of them informative.
    fn blobs(per_class: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = SplitMix64::derive(seed, &[1]);
        let centres = [[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]];
        let (mut features, mut labels) = (Vec::new(), Vec::new());
        for (class, centre) in centres.iter().enumerate() {
            for _ in 0..per_class {
                for j in 0..6 {
                    let noise = rng.uniform(-1.0, 1.0) + rng.uniform(-1.0, 1.0);
                    let centre = if j < 2 { centre[j] } else { 0.0 };
                    // Offset and scaled dimensions.
                    features.push(((centre + noise) * (1.0 + j as f64 * 10.0) + 5.0) as f32);
                }
                labels.push(class);
            }
        }
        (features, labels)
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let (features, labels) = blobs(5, 3);
        let samples = Samples { features: &features, dim: 6, labels: &labels, classes: 3 };
        let standard = Standardised::new(samples);
        let problem = Problem { z: &standard.z, dim: 6, labels: &labels, classes: 3, l2: 0.05 };
        let theta: Vec<f64> = (0..problem.parameters()).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.1).collect();
        let mut gradient = vec![0.0; theta.len()];
        problem.evaluate(&theta, &mut gradient);
        let mut scratch = vec![0.0; theta.len()];
        for i in 0..theta.len() {
            let (mut plus, mut minus) = (theta.clone(), theta.clone());
            plus[i] += 1e-6;
            minus[i] -= 1e-6;
            let numeric = (problem.evaluate(&plus, &mut scratch) - problem.evaluate(&minus, &mut scratch)) / 2e-6;
            assert!((numeric - gradient[i]).abs() < 1e-6, "parameter {i}: {numeric} vs {}", gradient[i]);
        }
    }

    #[test]
    fn the_fit_reaches_the_optimum_and_maps_back_to_raw_features() {
        let (features, labels) = blobs(40, 5);
        let samples = Samples { features: &features, dim: 6, labels: &labels, classes: 3 };
        let standard = Standardised::new(samples);
        let problem = Problem { z: &standard.z, dim: 6, labels: &labels, classes: 3, l2: 0.01 };
        let (theta, iterations) = lbfgs(&problem, vec![0.0; problem.parameters()]);
        let mut gradient = vec![0.0; theta.len()];
        problem.evaluate(&theta, &mut gradient);
        assert!(gradient.iter().all(|g| g.abs() < 1e-5), "converged in {iterations} iterations");
        // The raw-feature head gives the same logits as the standardised one.
        let (weight, bias) = standard.unstandardise(&theta, 3);
        let raw = logits(
            &features.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            &weight.iter().map(|&w| w as f64).collect::<Vec<_>>(),
            &bias.iter().map(|&b| b as f64).collect::<Vec<_>>(),
            120,
            6,
            3,
        );
        let standardised = logits(&standard.z, &theta[..18], &theta[18..], 120, 6, 3);
        for (a, b) in raw.iter().zip(&standardised) {
            assert!((a - b).abs() < 1e-3 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn cross_validation_picks_a_penalty_and_scores_separable_classes_well() {
        let (features, labels) = blobs(30, 9);
        let samples = Samples { features: &features, dim: 6, labels: &labels, classes: 3 };
        let probe = fit(samples, 1);
        let cv = probe.cross_validation.as_ref().expect("30 per class cross-validates");
        assert_eq!(cv.folds, 5);
        assert!((3..=L2_GRID.len()).contains(&cv.grid.len()), "{cv:?}");
        assert!(cv.grid.iter().any(|point| point.l2 == probe.l2));
        assert!(cv.accuracy > 0.8, "{cv:?}");
        assert!(L2_GRID.contains(&probe.l2));
        // New draws from the same blobs are classified as well as cross-validation said.
        let (test, test_labels) = blobs(100, 77);
        let w: Vec<f64> = probe.weight.iter().map(|&w| w as f64).collect();
        let b: Vec<f64> = probe.bias.iter().map(|&b| b as f64).collect();
        let mut out = logits(&test.iter().map(|&x| x as f64).collect::<Vec<_>>(), &w, &b, 300, 6, 3);
        let correct = out
            .chunks_exact_mut(3)
            .zip(&test_labels)
            .filter(|(row, label)| {
                row.iter().enumerate().fold(0, |best, (c, v)| if *v > row[best] { c } else { best }) == **label
            })
            .count();
        assert!(
            (correct as f64 / 300.0 - cv.accuracy).abs() < 0.1,
            "{correct}/300 against cross-validated {}",
            cv.accuracy
        );
    }

    #[test]
    fn the_strongest_penalty_within_one_standard_error_of_the_lowest_loss_is_chosen() {
        let point = |l2, log_loss, log_loss_standard_error| GridPoint {
            l2,
            accuracy: 0.5,
            standard_error: 0.0,
            log_loss,
            log_loss_standard_error,
        };
        let grid = [point(1.0, 2.0, 0.01), point(0.1, 0.58, 0.02), point(0.01, 0.5, 0.1), point(0.001, 0.7, 0.1)];
        assert_eq!(one_standard_error_choice(&grid), Some(1), "0.58 is within 0.5 + 0.1");
        let grid = [point(1.0, 2.0, 0.01), point(0.1, 0.61, 0.02), point(0.01, 0.5, 0.1)];
        assert_eq!(one_standard_error_choice(&grid), Some(2), "0.61 is not");
        assert_eq!(one_standard_error_choice(&[point(1.0, f64::NAN, 0.0)]), None);
    }

    /// Extra views that keep each sample's class (a little noise) leave the held-out score about
    /// where it was; views that look like another class (a mirrored digit) lower it.
    #[test]
    fn extra_views_that_change_the_class_score_worse_than_views_that_keep_it() {
        let (features, labels) = blobs(30, 11);
        let samples = Samples { features: &features, dim: 6, labels: &labels, classes: 3 };
        let cv = cross_validate(samples, 1).unwrap();
        let score = |extra: Option<&[f32]>| held_out_score(&held_out(samples, extra, cv.l2, 1).unwrap());
        let (plain, plain_loss) = score(None);
        // The outcomes agree with the cross-validation at the same penalty (the same folds).
        assert!(
            (plain - cv.accuracy).abs() < 0.05 && (plain_loss - cv.log_loss).abs() < 0.05,
            "{plain} {plain_loss} vs {cv:?}"
        );
        let mut rng = SplitMix64::derive(5, &[2]);
        let kept: Vec<f32> = features.iter().map(|&x| x + rng.uniform(-0.05, 0.05) as f32).collect();
        let (with_kept, _) = score(Some(&kept));
        // Each sample's extra view is a sample of the next class.
        let per_class = 30;
        let changed: Vec<f32> = (0..labels.len())
            .flat_map(|row| {
                let other = (row + per_class) % labels.len();
                features[other * 6..(other + 1) * 6].to_vec()
            })
            .collect();
        let (with_changed, changed_loss) = score(Some(&changed));
        assert!(plain > 0.9, "{plain}");
        assert!((with_kept - plain).abs() <= 0.03, "class-keeping views moved the score: {plain} -> {with_kept}");
        assert!(
            with_changed < plain - 0.1 && changed_loss > plain_loss,
            "class-changing views: {plain} -> {with_changed}"
        );
        assert!(
            held_out(Samples { labels: &[0, 1, 1], features: &features[..3 * 6], ..samples }, None, 1e-2, 1).is_none(),
            "a class of one"
        );
    }

    #[test]
    fn folds_are_stratified_and_need_two_per_class() {
        let labels = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        let folds = fold_of_each(&labels, 2, 3).unwrap();
        for fold in 0..5 {
            assert_eq!(labels.iter().zip(&folds).filter(|(l, f)| **l == 0 && **f == fold).count(), 1);
        }
        assert!(fold_of_each(&[0, 1, 1], 2, 3).is_none());
        assert_eq!(fold_of_each(&[0, 0, 1, 1, 1], 2, 3).unwrap().iter().max(), Some(&1));
    }
}
