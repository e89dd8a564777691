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
            std::process::ExitCode::FAILURE
        }
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
