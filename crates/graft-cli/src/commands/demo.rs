//! `graft demo`: the whole job on a bundled sample of Fashion-MNIST, offline.

use std::path::PathBuf;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::settings::Settings;

/// The bundled sample: 100 training and 50 test images per class (see crates/graft-assets/README.md).
pub fn demo_data() -> PathBuf {
    match std::env::var_os("GRAFT_DEMO_DATA") {
        Some(path) => PathBuf::from(path),
        None => graft_assets::demo_data(),
    }
}

pub fn run(args: &crate::cli::DemoArgs, settings: &Settings) -> anyhow::Result<()> {
    let data = demo_data();
    if !data.join("train").is_dir() {
        anyhow::bail!(
            "the demo data is not at `{}`\nhint: run the demo from a clone of graft, or point GRAFT_DEMO_DATA at the sample folder",
            data.display()
        );
    }
    settings.log(format!(
        "demo: a {} student of EfficientNet-Lite0 (ImageNet) on {} (100 images per class, 10 classes), then scored on its 500 test images",
        args.strategy,
        data.display()
    ));
    // The demo is `graft train` then `graft eval` with settings that suit 28x28 greyscale images.
    let out = args.out.display().to_string();
    let train = data.display().to_string();
    let strategy = args.strategy.to_string();
    let train_args = [
        "graft",
        "train",
        "--data",
        &train,
        "--out",
        &out,
        "--strategy",
        &strategy,
        "--image-size",
        "112",
        "--epochs",
        "15",
    ];
    let Cli { command: Command::Train(train_args), .. } = Cli::parse_from(train_args) else {
        unreachable!("parsed a train command")
    };
    super::train::run(&train_args, settings)?;
    let test = data.join("test").display().to_string();
    let eval_args = ["graft", "eval", &out, "--data", &test];
    let Cli { command: Command::Eval(eval_args), .. } = Cli::parse_from(eval_args) else {
        unreachable!("parsed an eval command")
    };
    println!();
    super::eval::run(&eval_args, settings)?;
    println!("\nopen {}/report.html to see the learning curves and the confusion matrix", out);
    Ok(())
}
