//! `graft train`: the teacher, the data and the settings from the arguments; the library trains
//! a student of either modality and writes its run directory.

use graft::run::{RunSummary, train_any};

use crate::cli::TrainArgs;
use crate::progress::CliReporter;
use crate::settings::Settings;

pub fn run(args: &TrainArgs, settings: &Settings) -> anyhow::Result<()> {
    let teacher = super::any_teacher(&args.teacher, settings)?;
    let data = teacher.open_data(&args.data, &settings.data_options(&args.columns))?;
    let train_settings = args.training.settings(&args.out, args.resume, settings);
    let summary = train_any(&teacher, &data, &train_settings, &settings.device, &CliReporter::new(settings.quiet))?;
    print_summary(&summary, args.json)
}

/// Prints what a run did: the examples that could not be read (stderr, even with `--quiet`),
/// then the summary, as text or JSON.
pub fn print_summary(summary: &RunSummary, json: bool) -> anyhow::Result<()> {
    if !summary.skipped.is_empty() {
        eprintln!("skipped {} unreadable {}:", summary.skipped.len(), summary.modality.noun());
        for skipped in &summary.skipped {
            eprintln!("  {}: {}", skipped.input, skipped.reason);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
    } else {
        println!("{summary}");
    }
    Ok(())
}
