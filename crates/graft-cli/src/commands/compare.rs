//! `graft compare`: every strategy under the same budget, side by side.

use graft::run::compare_run;

use crate::cli::CompareArgs;
use crate::progress::CliReporter;
use crate::settings::Settings;

pub fn run(args: &CompareArgs, settings: &Settings) -> anyhow::Result<()> {
    let teacher = super::any_teacher(&args.teacher, settings)?;
    let data_options = settings.data_options(&args.columns);
    let data = teacher.open_data(&args.data, &data_options)?;
    let test = match &args.test {
        Some(path) => Some(teacher.open_data(path, &data_options)?.scoring_set()),
        None => None,
    };
    let train_settings = args.training.settings(&args.out, false, settings);
    let reporter = CliReporter::new(settings.quiet);
    let comparison =
        compare_run(&teacher, &data, test, &args.strategies, &train_settings, &settings.device, &reporter)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&comparison.rows)?);
    } else {
        print!("{}", comparison.table);
        settings.log(format!("written to {}", args.out.join("compare.md").display()));
    }
    Ok(())
}
