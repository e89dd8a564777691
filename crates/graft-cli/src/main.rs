//! The `graft` binary: parses arguments, resolves settings, calls the library.

mod allocator;
mod cli;
mod commands;
mod progress;
mod settings;

use std::sync::LazyLock;

use clap::Parser;

use cli::{Cli, Command};
use settings::Settings;

/// Set by the first Ctrl-C: every long verb stops at its next batch (training with its last
/// checkpoint whole).
pub static INTERRUPT: LazyLock<graft::interrupt::Interrupt> = LazyLock::new(graft::interrupt::Interrupt::new);

/// The exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it).
const INTERRUPTED: u8 = 130;

fn main() -> std::process::ExitCode {
    allocator::keep_freed_memory();
    end_quietly_on_a_closed_pipe();
    let cli = Cli::parse();
    // A second Ctrl-C quits at once; the checkpoint on disk is whole either way. `serve` drains
    // its requests on Ctrl-C and SIGTERM itself.
    if !matches!(cli.command, Command::Serve(_)) {
        let handler = ctrlc::set_handler(|| {
            if INTERRUPT.request() {
                std::process::exit(INTERRUPTED.into());
            }
            eprintln!("\nstopping at the next batch (Ctrl-C again to quit at once)");
        });
        if let Err(error) = handler {
            eprintln!("warning: Ctrl-C will stop graft at once, not at the next batch: {error}");
        }
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if let Some(hint) = flag_hint(&error) {
                eprintln!("hint: {hint}");
            }
            match error.downcast_ref::<graft::GraftError>() {
                Some(graft::GraftError::Interrupted { .. } | graft::GraftError::Stopped { .. }) => {
                    std::process::ExitCode::from(INTERRUPTED)
                }
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// Writing to a closed pipe (`graft predict ... | head`) ends graft as it ends other command-line
/// tools, by SIGPIPE, instead of a panic in `println!`: Rust's runtime ignores the signal, so
/// the default is put back before any thread starts.
fn end_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: `signal` with SIG_DFL only restores the signal's default disposition; no handler
    // runs, and no other thread exists yet.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The command-line flag that answers a library error (the library speaks of values, not flags).
fn flag_hint(error: &anyhow::Error) -> Option<&'static str> {
    use graft::GraftError;
    match error.downcast_ref::<GraftError>()? {
        GraftError::Download { .. } => Some("pass the downloaded file with `--weights PATH`"),
        GraftError::IncompleteLoad { .. } => Some("`--allow-partial` keeps the model's own values for these"),
        GraftError::Checkpoint { .. } | GraftError::CheckpointMismatch { .. } => {
            Some("use another `--out`, or drop `--resume` to start over")
        }
        GraftError::Interrupted { epochs_done, .. } if *epochs_done > 0 => {
            Some("run the same command with `--resume` to continue from there")
        }
        GraftError::Diverged { .. } => Some("`--learning-rate` sets the learning rate"),
        GraftError::MissingColumn { what: "text", .. } => Some("name the column of the texts with `--text-column`"),
        GraftError::MissingColumn { what: "label", .. } => Some("name the column of the labels with `--label-column`"),
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
        Command::Export(args) => commands::export::run(args, &settings),
        Command::Serve(args) => commands::serve::run(args, &settings),
        Command::Bench(args) => commands::bench::run(args, &settings),
        Command::Teachers(args) => commands::teachers::run(args, &settings),
        Command::Audit(args) => commands::audit::run(args, &settings),
        Command::Harden(args) => commands::harden::run(args, &settings),
    }
}
