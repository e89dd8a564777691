//! `graft predict`: top-k classes from a teacher (ImageNet) or from a trained student.

use graft::data::dataset::ItemSource;
use graft::models::zoo::imagenet_labels;
use graft::predict::{ClassScore, predict_images};
use graft::run::{Modality, Student};

use crate::cli::PredictArgs;
use crate::progress::CliReporter;
use crate::settings::Settings;

/// One predicted input: its name (a path, or the text itself) and its top classes.
struct Row {
    name: String,
    top: Vec<ClassScore>,
}

pub fn run(args: &PredictArgs, settings: &Settings) -> anyhow::Result<()> {
    let (rows, key) = match &args.student {
        Some(run) => {
            let student = Student::load(run, &settings.student_options(args.batch_size))?;
            match student.modality() {
                Modality::Text => (predict_texts(&student, args, settings)?, "text"),
                Modality::Image => (predict_files(&student, args, settings)?, "path"),
            }
        }
        None => {
            if args.file.is_some() {
                anyhow::bail!("--file reads texts, for a text student; give images as arguments");
            }
            let images = super::expand_images(&args.images)?;
            let teacher = super::teacher(&args.teacher, settings)?;
            let (predictions, skipped) = predict_images(
                &teacher,
                &images,
                args.top,
                imagenet_labels(),
                args.batch_size,
                &settings.device,
                settings.fused_plan,
            )?;
            super::report_skipped(&skipped, images.len())?;
            let rows = predictions.into_iter().map(|p| Row { name: p.path.display().to_string(), top: p.top });
            (rows.collect(), "path")
        }
    };
    print_rows(&rows, key, args.json, args.csv)
}

fn predict_files(student: &Student, args: &PredictArgs, settings: &Settings) -> anyhow::Result<Vec<Row>> {
    if args.file.is_some() {
        anyhow::bail!("--file reads texts, for a text student; give images as arguments");
    }
    let images = super::expand_images(&args.images)?;
    let sources: Vec<ItemSource> = images.iter().cloned().map(ItemSource::File).collect();
    let reporter = CliReporter::new(settings.quiet);
    // No cache directory: predicting writes nothing to disk.
    let (probabilities, skipped) = student.predict_sources(&sources, None, &reporter)?;
    super::report_skipped(&skipped, images.len())?;
    Ok(images
        .iter()
        .zip(probabilities)
        .filter_map(|(path, row)| {
            row.map(|row| Row { name: path.display().to_string(), top: student.top_k(&row, args.top) })
        })
        .collect())
}

fn predict_texts(student: &Student, args: &PredictArgs, settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let texts = super::text::texts(&args.images, args.file.as_deref())?;
    let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (probabilities, truncated) = student.predict_texts(&borrowed)?;
    if truncated > 0 {
        settings.log(format!("{truncated} texts were longer than the teacher reads and were cut"));
    }
    Ok(texts
        .into_iter()
        .zip(probabilities)
        .map(|(name, row)| Row { top: student.top_k(&row, args.top), name })
        .collect())
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
