//! `graft eval`: scores of a trained student, image or text, on labelled data.

use graft::run::Student;

use crate::cli::EvalArgs;
use crate::progress::CliReporter;
use crate::settings::Settings;

pub fn run(args: &EvalArgs, settings: &Settings) -> anyhow::Result<()> {
    let student = Student::load(&args.run, &settings.student_options(args.batch_size))?;
    let data = graft::run::LabelledData::open(&args.data, student.modality(), &settings.data_options(&args.columns))?;
    // A data set with a test part is scored on it; otherwise on everything it holds.
    let reporter = CliReporter::new(settings.quiet);
    let scores = student.evaluate(data.scoring_set(), &settings.cache_dir, &reporter)?;
    for row in &scores.skipped_rows {
        eprintln!("skipped {row}");
    }
    let evaluation = &scores.evaluation;
    let noun = student.modality().noun();
    if args.json {
        let mut value = serde_json::to_value(evaluation)?;
        value[noun] = serde_json::json!(evaluation.images);
        value["truncated"] = serde_json::json!(scores.truncated);
        value["confidently_wrong"] = serde_json::to_value(&scores.confidently_wrong)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let cut = match scores.truncated {
        0 => String::new(),
        truncated => format!(" ({truncated} cut to the teacher's length)"),
    };
    println!(
        "{} {noun}, accuracy {:.2}%, macro F1 {:.3}{cut}",
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
    if !scores.confidently_wrong.is_empty() {
        println!("\nmost confidently wrong:");
        for example in scores.confidently_wrong.iter().take(5) {
            let shown: String = example.text.chars().take(100).collect::<String>().replace('\n', " ");
            println!("  {:>5.1}% {} (is {}): {shown}", example.confidence * 100.0, example.predicted, example.label);
        }
    }
    if !evaluation.skipped.is_empty() {
        eprintln!("skipped {} unreadable {noun}: {}", evaluation.skipped.len(), evaluation.skipped.join("; "));
    }
    Ok(())
}
