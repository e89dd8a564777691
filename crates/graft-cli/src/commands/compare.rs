//! `graft compare`: every strategy under the same budget, side by side.

use std::fmt::Write as _;
use std::time::Instant;

use graft::data::dataset;
use graft::train::evaluate::evaluate_run;
use graft::train::load_run;

use crate::cli::CompareArgs;
use crate::progress::CliReporter;
use crate::settings::Settings;

#[derive(serde::Serialize)]
struct Row {
    strategy: String,
    validation_accuracy: f64,
    test_accuracy: Option<f64>,
    seconds: f64,
    trained_parameters: usize,
    run: String,
}

pub fn run(args: &CompareArgs, settings: &Settings) -> anyhow::Result<()> {
    if super::text::is_text(&args.teacher) {
        return super::text::compare(args, settings);
    }
    let teacher = super::teacher(&args.teacher, settings)?;
    let (train_set, validation, _) = super::train::open_training_data(&args.data, &args.training, settings)?;
    let test = match &args.test {
        Some(path) => Some(dataset::open(path, &settings.cache_dir)?.train),
        None => dataset::open(&args.data, &settings.cache_dir)?.test,
    };
    let mut rows = Vec::new();
    for strategy in &args.strategies {
        settings.log(format!("== {strategy}"));
        let mut training = args.training.clone();
        training.strategy = *strategy;
        let out = args.out.join(strategy.to_string());
        let started = Instant::now();
        // Every strategy is scored on the same held-out images (a `deep` probe does not pool them
        // here, so its validation accuracy is comparable with the others').
        let outcome = super::train::train_student(
            &teacher,
            &train_set,
            &validation,
            false,
            &training,
            &out,
            false,
            &args.data.display().to_string(),
            settings,
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let test_accuracy = match &test {
            Some(test) => {
                let loaded = load_run(&out, &settings.device)?;
                Some(
                    evaluate_run(
                        &loaded,
                        test.clone(),
                        &settings.inference(32),
                        &settings.device,
                        &CliReporter::new(settings.quiet),
                    )?
                    .accuracy,
                )
            }
            None => None,
        };
        rows.push(Row {
            strategy: outcome.config.strategy.to_string(),
            validation_accuracy: outcome.config.metrics["validation_accuracy"].as_f64().unwrap_or(0.0),
            test_accuracy,
            seconds,
            trained_parameters: outcome.config.trained_parameters,
            run: out.display().to_string(),
        });
    }
    let mut table = String::from(
        "| strategy | validation accuracy | test accuracy | wall time (s) | trained parameters |\n|---|---|---|---|---|\n",
    );
    for row in &rows {
        let test = row.test_accuracy.map_or("–".to_owned(), |a| format!("{:.2}%", a * 100.0));
        let _ = writeln!(
            table,
            "| {} | {:.2}% | {} | {:.1} | {} |",
            row.strategy,
            row.validation_accuracy * 100.0,
            test,
            row.seconds,
            row.trained_parameters
        );
    }
    let header = format!(
        "# graft compare\n\nTeacher `{}`, data `{}`, {} training / {} validation images, {} epochs each, seed {}.\n\n",
        teacher.card.name,
        args.data.display(),
        train_set.len(),
        validation.len(),
        args.training.epochs.unwrap_or(graft::train::Hyperparameters::default().epochs),
        args.training.seed
    );
    super::write_compare_report(args, &header, &table, &rows, settings)
}
