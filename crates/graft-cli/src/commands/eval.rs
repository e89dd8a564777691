//! `graft eval`: scores of a trained student on labelled data.

use graft::data::dataset;
use graft::run::Student;

use crate::cli::EvalArgs;
use crate::progress::CliReporter;
use crate::settings::Settings;

pub fn run(args: &EvalArgs, settings: &Settings) -> anyhow::Result<()> {
    let student = Student::load(&args.run, &settings.student_options(args.batch_size))?;
    if let Some(text_student) = student.text() {
        return super::text::eval(&student, &text_student.config, args, settings);
    }
    let splits = dataset::open(&args.data, &settings.cache_dir)?;
    // A data set with a test part is scored on it; otherwise on everything it holds.
    let data = splits.test.unwrap_or(splits.train);
    let reporter = CliReporter::new(settings.quiet);
    // The feature cache serves a student whose front is the frozen teacher.
    let evaluation = student.evaluate_images(data, &settings.cache_dir, &reporter)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
        return Ok(());
    }
    println!(
        "{} images, accuracy {:.2}%, macro F1 {:.3}",
        evaluation.images,
        evaluation.accuracy * 100.0,
        evaluation.macro_f1
    );
    for (k, accuracy) in evaluation.top_k.iter().skip(1) {
        println!("top-{k} accuracy {:.2}%", accuracy * 100.0);
    }
    println!("\n{:<24} {:>9} {:>9} {:>9} {:>8}", "class", "precision", "recall", "f1", "support");
    for class in &evaluation.per_class {
        println!(
            "{:<24} {:>9.3} {:>9.3} {:>9.3} {:>8}",
            class.class, class.precision, class.recall, class.f1, class.support
        );
    }
    println!("\nconfusion (rows: true class, columns: predicted)");
    for (class, row) in evaluation.classes.iter().zip(&evaluation.confusion) {
        let cells: Vec<String> = row.iter().map(|count| format!("{count:>5}")).collect();
        println!("{:<24} {}", class, cells.join(""));
    }
    if !evaluation.skipped.is_empty() {
        eprintln!("skipped {} unreadable images: {}", evaluation.skipped.len(), evaluation.skipped.join("; "));
    }
    Ok(())
}
