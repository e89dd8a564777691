//! The `graft` binary: parses arguments, resolves settings, calls the library.

mod cli;
mod commands;
mod progress;
mod settings;

use clap::Parser;

use cli::{Cli, Command};
use settings::Settings;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if let Some(hint) = flag_hint(&error) {
                eprintln!("hint: {hint}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command-line flag that answers a library error (the library speaks of values, not flags).
fn flag_hint(error: &anyhow::Error) -> Option<&'static str> {
    use graft::GraftError;
    match error.downcast_ref::<GraftError>()? {
        GraftError::Download { .. } => Some("pass the downloaded file with `--weights PATH`"),
        GraftError::IncompleteLoad { .. } => Some("`--allow-partial` keeps the model's own values for these"),
        GraftError::Checkpoint { .. } | GraftError::CheckpointMismatch { .. } => Some("use another `--out`, or drop `--resume` to start over"),
        _ => None,
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::resolve(&cli.global)?;
    if cli.global.show_settings {
        eprintln!("{}", settings.describe());
    }
    match &cli.command {
        Command::Train(args) => commands::train::run(args, &settings),
        Command::Eval(args) => commands::eval::run(args, &settings),
        Command::Demo(args) => commands::demo::run(args, &settings),
        Command::Compare(args) => commands::compare::run(args, &settings),
        Command::Predict(args) => commands::predict::run(args, &settings),
        Command::Embed(args) => commands::embed::run(args, &settings),
        Command::Convert(args) => commands::convert::run(args, &settings),
        Command::Bench(args) => commands::bench::run(args, &settings),
        Command::Teachers(args) => commands::teachers::run(args, &settings),
    }
}
