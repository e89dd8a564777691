//! `graft harden`: retrains a student away from the teacher-mimicry attack, and measures the
//! attack on it before and after.

use graft::audit::harden::HardenOptions;
use graft::audit::mimicry::MimicryOptions;
use graft::audit::run::AuditOptions;
use graft::run::{HardenData, harden_run};

use crate::cli::HardenArgs;
use crate::progress::CliReporter;
use crate::settings::Settings;

pub fn run(args: &HardenArgs, settings: &Settings) -> anyhow::Result<()> {
    let options = HardenOptions {
        layer: args.layer.clone(),
        epochs: args.epochs,
        learning_rate: args.learning_rate,
        batch_size: args.batch_size,
        threshold: args.threshold,
        penalty: args.penalty,
        distance: args.distance,
        mimicry_examples: args.mimicry_examples,
        mimicry: MimicryOptions {
            budget: args.budget,
            iterations: args.mimicry_example_iterations,
            ..graft::audit::harden::example_attack()
        },
        seed: args.seed,
        interrupt: Some(crate::INTERRUPT.clone()),
    };
    options.check()?;
    let audit = AuditOptions {
        pairs: args.pairs,
        layer: args.layer.clone(),
        mimicry: MimicryOptions { budget: args.budget, iterations: args.iterations, ..MimicryOptions::default() },
        seed: args.seed,
        interrupt: Some(crate::INTERRUPT.clone()),
        ..AuditOptions::default()
    };
    let loaded =
        super::image_student(&args.run, "`harden` defends image students against the mimicry attack", settings)?;
    let teacher = super::audit::teacher_of(&loaded.config, args.weights.as_ref(), settings)?;
    let data = HardenData::open(&args.data, args.test.as_deref(), &settings.cache_dir)?;
    if data.measures_training_images {
        settings.log("no --test images: accuracy and attack are measured on the training images");
    }
    let reporter = CliReporter::new(settings.quiet);
    let outcome = harden_run(
        &loaded,
        &teacher,
        &data,
        &args.data.display().to_string(),
        &options,
        &audit,
        &args.out,
        &settings.inference(32),
        &settings.device,
        &reporter,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    let harden = &outcome.harden;
    println!(
        "hardened at `{}` for {} epochs on {} images (τ {:.3}, {:.0}s): {}",
        harden.layer, harden.options.epochs, harden.images, harden.final_threshold, harden.seconds, outcome.out
    );
    if let Some(examples) = &harden.mimicry_examples {
        println!(
            "trained on {} mimicry examples as well ({} crafted, mean DSSIM {:.4}, {:.0}s)",
            examples.used, examples.crafted, examples.mean_dssim, examples.seconds
        );
    }
    println!("measured on {}", outcome.measured_on);
    println!("{:<8} {:>9} {:>15} {:>8} {:>8}", "", "accuracy", "mimicry attack", "noise", "PGD");
    for (name, measured) in [("before", &outcome.before), ("after", &outcome.after)] {
        match &measured.attack {
            Some(attack) => println!(
                "{name:<8} {:>8.1}% {:>14.1}% {:>7.1}% {:>7.1}%",
                measured.accuracy * 100.0,
                attack.attack_success_rate * 100.0,
                attack.noise_success_rate * 100.0,
                attack.pgd_success_rate * 100.0
            ),
            None => println!("{name:<8} {:>8.1}% {:>15} {:>8} {:>8}", measured.accuracy * 100.0, "-", "-", "-"),
        }
    }
    if let Some(attack) = &outcome.after.attack {
        println!(
            "{} pairs at `{}`, DSSIM budget {}; report: {} (and harden.json)",
            attack.pairs,
            attack.layer,
            attack.budget,
            args.out.join("audit.html").display()
        );
    }
    Ok(())
}
