//! The `graft` binary: parses arguments, resolves settings, calls the library.

mod cli;
mod commands;
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
        Command::Predict(args) => commands::predict::run(args, &settings),
        Command::Embed(args) => commands::embed::run(args, &settings),
        Command::Convert(args) => commands::convert::run(args, &settings),
        Command::Teachers => commands::teachers::run(&settings),
    }
}
