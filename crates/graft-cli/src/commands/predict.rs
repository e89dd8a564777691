//! `graft predict`: top-k classes from a teacher (ImageNet) or from a trained student.

use graft::predict::ClassScore;
use graft::run::{Student, read_inputs};

use crate::cli::PredictArgs;
use crate::progress::CliReporter;
use crate::settings::Settings;

/// One predicted input: its name (a path, or the text itself) and its top classes.
struct Row {
    name: String,
    top: Vec<ClassScore>,
}

pub fn run(args: &PredictArgs, settings: &Settings) -> anyhow::Result<()> {
    let given = super::arguments(&args.images);
    let (inputs, predictions) = match &args.student {
        Some(run) => {
            let student = Student::load(run, &settings.student_options(args.batch_size))?;
            let inputs = read_inputs(student.modality(), &given, args.file.as_deref())?;
            // Nothing is written to disk: no feature cache for predictions.
            let predictions = student.predict(&inputs, args.top, &CliReporter::new(settings.quiet))?;
            (inputs, predictions)
        }
        None => {
            let teacher = super::any_teacher(&args.teacher, settings)?;
            let inputs = read_inputs(teacher.modality(), &given, args.file.as_deref())?;
            let predictions = teacher.predict(&inputs, args.top, &settings.run_options(args.batch_size))?;
            (inputs, predictions)
        }
    };
    super::report_skipped(&predictions.skipped, inputs.len(), predictions.modality.noun())?;
    if predictions.truncated > 0 {
        settings.log(format!("{} texts were longer than the teacher reads and were cut", predictions.truncated));
    }
    let rows: Vec<Row> = predictions.rows.into_iter().map(|(name, top)| Row { name, top }).collect();
    print_rows(&rows, predictions.modality.input_key(), args.json, args.csv)
}

/// Prints the rows as JSON (`[{"path"|"text", "top": [...]}]`), CSV or text; `key` names what
/// a row's name is.
fn print_rows(rows: &[Row], key: &str, json: bool, csv: bool) -> anyhow::Result<()> {
    if json {
        let values: Vec<_> = rows.iter().map(|row| serde_json::json!({ key: row.name, "top": row.top })).collect();
        println!("{}", serde_json::to_string_pretty(&values)?);
    } else if csv {
        let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
        writer.write_record([key, "rank", "class_index", "label", "probability"])?;
        for row in rows {
            for (rank, class) in row.top.iter().enumerate() {
                let (rank, index, probability) =
                    ((rank + 1).to_string(), class.class_index.to_string(), class.probability.to_string());
                writer.write_record([row.name.as_str(), &rank, &index, &class.label, &probability])?;
            }
        }
        writer.flush()?;
    } else {
        for row in rows {
            println!("{}", row.name);
            for (rank, class) in row.top.iter().enumerate() {
                println!(
                    "  {:>2}. {:<32} {:>6.2}%  (class {})",
                    rank + 1,
                    class.label,
                    class.probability * 100.0,
                    class.class_index
                );
            }
        }
    }
    Ok(())
}
