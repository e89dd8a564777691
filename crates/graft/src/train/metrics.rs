//! Classification metrics: accuracy, top-k, per-class precision / recall / F1, confusion matrix.

/// Per-class scores.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// Everything `graft eval` reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    pub images: usize,
    pub accuracy: f64,
    /// Top-k accuracy for k = 1..=5 (or fewer classes).
    pub top_k: Vec<(usize, f64)>,
    pub macro_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    pub classes: Vec<String>,
    /// Images that could not be read, by name.
    pub skipped: Vec<String>,
}

/// Scores of `probabilities` (one row of `classes.len()` per item) against `labels`.
pub fn evaluate(probabilities: &[f32], labels: &[usize], classes: &[String]) -> Evaluation {
    let count = classes.len();
    let mut confusion = vec![vec![0usize; count]; count];
    let ks: Vec<usize> = (1..=count.min(5)).collect();
    let mut top_hits = vec![0usize; ks.len()];
    for (row, label) in probabilities.chunks(count).zip(labels) {
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by(|a, b| row[*b].total_cmp(&row[*a]));
        confusion[*label][order[0]] += 1;
        for (slot, k) in ks.iter().enumerate() {
            if order[..*k].contains(label) {
                top_hits[slot] += 1;
            }
        }
    }
    let images = labels.len();
    let fraction = |hits: usize| if images == 0 { 0.0 } else { hits as f64 / images as f64 };
    let per_class: Vec<ClassMetrics> = (0..count)
        .map(|class| {
            let true_positive = confusion[class][class] as f64;
            let predicted: usize = confusion.iter().map(|row| row[class]).sum();
            let support: usize = confusion[class].iter().sum();
            let precision = if predicted == 0 { 0.0 } else { true_positive / predicted as f64 };
            let recall = if support == 0 { 0.0 } else { true_positive / support as f64 };
            let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
            ClassMetrics { class: classes[class].clone(), precision, recall, f1, support }
        })
        .collect();
    let present: Vec<&ClassMetrics> = per_class.iter().filter(|c| c.support > 0).collect();
    let macro_f1 =
        if present.is_empty() { 0.0 } else { present.iter().map(|c| c.f1).sum::<f64>() / present.len() as f64 };
    Evaluation {
        images,
        accuracy: fraction(top_hits.first().copied().unwrap_or(0)),
        top_k: ks.iter().zip(&top_hits).map(|(k, hits)| (*k, fraction(*hits))).collect(),
        macro_f1,
        per_class,
        confusion,
        classes: classes.to_vec(),
        skipped: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_scores() {
        let classes: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        // Rows: predicted a, a, b, c; labels a, b, b, c.
        let probabilities = [0.8, 0.1, 0.1, 0.5, 0.4, 0.1, 0.2, 0.7, 0.1, 0.1, 0.2, 0.7];
        let evaluation = evaluate(&probabilities, &[0, 1, 1, 2], &classes);
        assert_eq!(evaluation.accuracy, 0.75);
        assert_eq!(evaluation.top_k[1], (2, 1.0));
        assert_eq!(evaluation.confusion, vec![vec![1, 0, 0], vec![1, 1, 0], vec![0, 0, 1]]);
        assert_eq!(evaluation.per_class[0].precision, 0.5);
        assert_eq!(evaluation.per_class[1].recall, 0.5);
        assert_eq!(evaluation.per_class[1].precision, 1.0);
    }
}
