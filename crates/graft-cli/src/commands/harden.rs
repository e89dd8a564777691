//! `graft harden`: retrains a student away from the teacher-mimicry attack, and measures the
//! attack on it before and after.

use graft::audit::harden::{HardenOptions, HardenReport, harden};
use graft::audit::mimicry::MimicryOptions;
use graft::audit::run::{AuditOptions, AuditReport, correctly_classified, craft, score};
use graft::data::dataset::{self, Dataset};
use graft::train::student::{LoadedStudent, save_run};
use serde::Serialize;

use crate::cli::HardenArgs;
use crate::progress::CliReporter;
use crate::settings::Settings;

/// One student's figures on the measuring images.
#[derive(Serialize)]
struct Measured {
    accuracy: f64,
    /// `None` with `--pairs 0`.
    attack: Option<AuditReport>,
}

#[derive(Serialize)]
struct Outcome {
    out: String,
    /// What the figures were measured on.
    measured_on: String,
    before: Measured,
    after: Measured,
    harden: HardenReport,
}

pub fn run(args: &HardenArgs, settings: &Settings) -> anyhow::Result<()> {
    if args.out == args.run {
        anyhow::bail!("--out must be a new run directory, not the student's own ({})", args.run.display());
    }
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
    let loaded =
        super::image_student(&args.run, "`harden` defends image students against the mimicry attack", settings)?;
    let teacher = super::audit::teacher_of(&loaded.config, args.weights.as_ref(), settings)?;
    let splits = dataset::open(&args.data, &settings.cache_dir)?;
    let mut train = splits.train;
    if let Some(validation) = splits.validation {
        let validation = validation.align_classes(&train.classes)?;
        train.items.extend(validation.items);
    }
    let (measuring, measured_on): (Dataset, String) = match &args.test {
        Some(test) => {
            let test_splits = dataset::open(test, &settings.cache_dir)?;
            (test_splits.test.unwrap_or(test_splits.train), test.display().to_string())
        }
        None => match splits.test {
            Some(test) => (test, format!("{} (its test part)", args.data.display())),
            None => {
                settings.log("no --test images: accuracy and attack are measured on the training images");
                (train.clone(), format!("{} (the training images)", args.data.display()))
            }
        },
    };
    let reporter = CliReporter::new(settings.quiet);
    let inference = settings.inference(32);
    let audit_options = AuditOptions {
        pairs: args.pairs,
        layer: args.layer.clone(),
        mimicry: MimicryOptions { budget: args.budget, iterations: args.iterations, ..MimicryOptions::default() },
        seed: args.seed,
        interrupt: Some(crate::INTERRUPT.clone()),
        ..AuditOptions::default()
    };

    // The attack is crafted on the teacher alone, once; both students are scored on its images.
    let attack = (args.pairs > 0)
        .then(|| craft(&loaded, &teacher, measuring.clone(), &audit_options, &inference, &settings.device, &reporter))
        .transpose()?;
    let accuracy = |student: &LoadedStudent| -> anyhow::Result<f64> {
        let aligned = measuring.clone().align_classes(&student.config.classes)?;
        Ok(correctly_classified(student, &aligned, &inference, &settings.device, &reporter)?.accuracy())
    };
    let before_accuracy = match &attack {
        Some(attack) => attack.clean_accuracy,
        None => accuracy(&loaded)?,
    };
    let before_attack = attack
        .as_ref()
        .map(|attack| score(attack, &loaded, before_accuracy, &settings.device, &reporter))
        .transpose()?;

    let (student, mut config, report) = harden(&loaded, &teacher, &train, &options, &settings.device, &reporter)?;
    config.data = format!("{} ({}; hardening)", args.data.display(), report.images_trained_on());
    save_run(&args.out, &student, &config)?;
    let hardened = LoadedStudent { student, config, run: args.out.clone() };
    let after_accuracy = accuracy(&hardened)?;
    let after_attack = attack
        .as_ref()
        .map(|attack| score(attack, &hardened, after_accuracy, &settings.device, &reporter))
        .transpose()?;
    if let Some((after, pictures)) = &after_attack {
        graft::report::write_audit(&args.out, after, pictures)?;
    }

    let outcome = Outcome {
        out: args.out.display().to_string(),
        measured_on,
        before: Measured { accuracy: before_accuracy, attack: before_attack.map(|(report, _)| report) },
        after: Measured { accuracy: after_accuracy, attack: after_attack.map(|(report, _)| report) },
        harden: report,
    };
    let json = serde_json::to_string_pretty(&outcome)?;
    let path = args.out.join("harden.json");
    graft::fsutil::write_atomic(&path, json.as_bytes())?;
    if args.json {
        println!("{json}");
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
