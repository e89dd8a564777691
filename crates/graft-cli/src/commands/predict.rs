//! `graft predict`: top-k classes from a teacher (ImageNet) or from a trained student.

use graft::data::dataset::ItemSource;
use graft::models::zoo::imagenet_labels;
use graft::predict::{Prediction, predict_images, top_k};
use graft::train::evaluate::predict_sources;
use graft::train::load_run;

use crate::cli::PredictArgs;
use crate::progress::CliReporter;
use crate::settings::Settings;

pub fn run(args: &PredictArgs, settings: &Settings) -> anyhow::Result<()> {
    if let Some(run) = args.student.as_deref().filter(|run| graft::text::is_text_run(run)) {
        return super::text::predict(args, run, settings);
    }
    if args.file.is_some() {
        anyhow::bail!("--file reads texts, for a text student; give images as arguments");
    }
    let images = super::expand_images(&args.images)?;
    let predictions = match &args.student {
        Some(run) => {
            let loaded = load_run(run, &settings.device)?;
            let sources: Vec<ItemSource> = images.iter().cloned().map(ItemSource::File).collect();
            let reporter = CliReporter::new(settings.quiet);
            let (probabilities, skipped) =
                predict_sources(&loaded, &sources, &settings.inference(args.batch_size), &settings.device, &reporter)?;
            super::report_skipped(&skipped, images.len())?;
            images
                .iter()
                .zip(probabilities)
                .filter_map(|(path, row)| {
                    row.map(|row| Prediction { path: path.clone(), top: top_k(&row, args.top, &loaded.config.classes) })
                })
                .collect()
        }
        None => {
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
            predictions
        }
    };
    print_predictions(&predictions, args.json, args.csv)
}

fn print_predictions(predictions: &[Prediction], json: bool, csv: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(predictions)?);
    } else if csv {
        let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
        writer.write_record(["path", "rank", "class_index", "label", "probability"])?;
        for prediction in predictions {
            let path = prediction.path.display().to_string();
            for (rank, class) in prediction.top.iter().enumerate() {
                let (rank, index, probability) =
                    ((rank + 1).to_string(), class.class_index.to_string(), class.probability.to_string());
                writer.write_record([path.as_str(), &rank, &index, &class.label, &probability])?;
            }
        }
        writer.flush()?;
    } else {
        for prediction in predictions {
            println!("{}", prediction.path.display());
            for (rank, class) in prediction.top.iter().enumerate() {
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
