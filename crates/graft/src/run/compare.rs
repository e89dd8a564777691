//! `compare_run`: every strategy trained on the same examples, scored on the same held-out
//! ones (and on test data when there is some), side by side in one directory.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Device;

use crate::error::{GraftError, Result};
use crate::train::reporter::Reporter;
use crate::train::strategy::Strategy;

use super::modality::{LabelledData, LabelledSet, Modality};
use super::settings::TrainSettings;
use super::student::{Student, StudentOptions};
use super::teacher::AnyTeacher;
use super::train::{Prepared, RunSummary, prepare, train_prepared};

/// One strategy's row of a comparison.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompareRow {
    pub strategy: Strategy,
    pub validation_accuracy: f64,
    pub test_accuracy: Option<f64>,
    /// Wall time of the whole run (the advisor's measurements included for `auto`).
    pub seconds: f64,
    pub trained_parameters: Option<usize>,
    pub run: PathBuf,
    #[serde(skip)]
    pub summary: Option<RunSummary>,
}

/// What [`compare_run`] wrote: its rows and the Markdown report (`compare.md`).
#[derive(Debug, Clone)]
pub struct Comparison {
    pub rows: Vec<CompareRow>,
    /// The Markdown table alone.
    pub table: String,
    /// `compare.md`: a header saying what was compared, then the table.
    pub markdown: String,
}

/// Trains a student of `teacher` with each of `strategies` (into `settings.out/<strategy>`) on
/// the same training examples, scores all on the same held-out ones (the data's validation set,
/// or one split made once for all) and on `test` (default: the data's test set), and writes
/// `compare.md` and `compare.json` into `settings.out`. Strategies the teacher's modality does
/// not train (`scratch` for text teachers) are left out with a note.
///
/// # Errors
/// No strategy to compare, and whatever [`super::train_any`] meets.
pub fn compare_run(
    teacher: &AnyTeacher,
    data: &LabelledData,
    test: Option<LabelledSet>,
    strategies: &[Strategy],
    settings: &TrainSettings,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Comparison> {
    let trains = |strategy: &Strategy| teacher.modality() == Modality::Image || *strategy != Strategy::Scratch;
    for strategy in strategies.iter().filter(|strategy| !trains(strategy)) {
        reporter.note(&format!("{strategy}: not for {} teachers, left out", teacher.modality()));
    }
    let strategies: Vec<Strategy> = strategies.iter().copied().filter(trains).collect();
    if strategies.is_empty() {
        return Err(GraftError::Invalid("no strategy to compare".to_owned()));
    }
    let base = TrainSettings { resume: false, strategy: strategies[0], ..settings.clone() };
    // One split for every strategy: a `deep` probe is scored on the held-out examples too, not
    // cross-validated over all, so that its figure compares with the others'.
    let prepared = prepare(teacher, data, &base, false)?;
    let test = test.or_else(|| data.test.clone());
    let (train_count, validation_count) =
        (prepared.train.len(), prepared.validation.as_ref().map_or(0, LabelledSet::len));
    let mut rows = Vec::new();
    for strategy in strategies {
        reporter.note(&format!("== {strategy}"));
        let out = settings.out.join(strategy.to_string());
        let settings = TrainSettings { strategy, out: out.clone(), ..base.clone() };
        let started = Instant::now();
        let this =
            Prepared { train: prepared.train.clone(), validation: prepared.validation.clone(), split_here: false };
        let summary = train_prepared(teacher, &data.path, this, &settings, device, reporter)?;
        let seconds = started.elapsed().as_secs_f64();
        let test_accuracy = match &test {
            Some(test) => {
                let options = StudentOptions {
                    device: device.clone(),
                    fused_plan: settings.fused_plan,
                    cache_dir: settings.cache_dir.clone(),
                    offline: true,
                    ..StudentOptions::default()
                };
                let student = Student::load(&out, &options)?;
                Some(student.evaluate(test.clone(), &settings.cache_dir, reporter)?.evaluation.accuracy)
            }
            None => None,
        };
        rows.push(CompareRow {
            strategy: summary.strategy,
            validation_accuracy: summary.validation_accuracy,
            test_accuracy,
            seconds,
            trained_parameters: summary.trained_parameters,
            run: out,
            summary: Some(summary),
        });
    }
    let mut table = String::from(
        "| strategy | validation accuracy | test accuracy | wall time (s) | trained parameters |\n|---|---|---|---|---|\n",
    );
    for row in &rows {
        let test = row.test_accuracy.map_or("–".to_owned(), |accuracy| format!("{:.2}%", accuracy * 100.0));
        let parameters = row.trained_parameters.map_or("–".to_owned(), |count| count.to_string());
        let _ = writeln!(
            table,
            "| {} | {:.2}% | {test} | {:.1} | {parameters} |",
            row.strategy,
            row.validation_accuracy * 100.0,
            row.seconds,
        );
    }
    let epochs = settings.epochs.map(|epochs| format!("{epochs} epochs each, ")).unwrap_or_default();
    let noun = teacher.modality().noun();
    let markdown = format!(
        "# graft compare\n\n{} teacher `{}`, data `{}`, {train_count} training / {validation_count} validation {noun}, {epochs}seed {}.\n\n{table}",
        match teacher.modality() {
            Modality::Image => "Image",
            Modality::Text => "Text",
        },
        teacher.name(),
        data.path.display(),
        settings.seed
    );
    std::fs::create_dir_all(&settings.out).map_err(|source| GraftError::Io { path: settings.out.clone(), source })?;
    crate::fsutil::write_atomic(&settings.out.join("compare.md"), markdown.as_bytes())?;
    let json = serde_json::to_vec_pretty(&rows).map_err(|error| GraftError::Invalid(error.to_string()))?;
    crate::fsutil::write_atomic(&settings.out.join("compare.json"), &json)?;
    Ok(Comparison { rows, table, markdown })
}
