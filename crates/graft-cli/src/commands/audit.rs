//! `graft audit`: what a student inherits from its public teacher.

use graft::audit::fingerprint::{FingerprintOptions, fingerprint_teachers};
use graft::audit::mimicry::MimicryOptions;
use graft::audit::run::AuditOptions;
use graft::data::dataset;
use graft::models::{WeightOptions, load_teacher};
use graft::run::audit_run;
use graft::train::student::LoadedStudent;

use crate::cli::{AuditArgs, TeacherArgs};
use crate::progress::CliReporter;
use crate::settings::Settings;

pub fn run(args: &AuditArgs, settings: &Settings) -> anyhow::Result<()> {
    let loaded = &super::image_student(
        &args.run,
        "the mimicry attack and the fingerprint perturb images, so they audit image students only",
        settings,
    )?;
    if args.fingerprint {
        return fingerprint(loaded, args, settings);
    }
    let teacher = teacher_of(&loaded.config, args.weights.as_ref(), settings)?;
    let splits = dataset::open(&args.data, &settings.cache_dir)?;
    let data = splits.test.unwrap_or(splits.train);
    let options = AuditOptions {
        pairs: args.pairs,
        layer: args.layer.clone(),
        mimicry: MimicryOptions {
            budget: args.budget,
            iterations: args.iterations,
            optimizer: args.optimizer,
            learning_rate: args.learning_rate,
            ..MimicryOptions::default()
        },
        batch_size: args.batch_size,
        seed: args.seed,
        interrupt: Some(crate::INTERRUPT.clone()),
    };
    let reporter = CliReporter::new(settings.quiet);
    let report = audit_run(loaded, &teacher, data, &options, &settings.inference(32), &settings.device, &reporter)?;
    let path = args.run.join("audit.html");
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "mimicry attack at `{}` (DSSIM budget {}): {:.1}% of {} pairs reach the target class (mean DSSIM {:.4}; {} within budget)\n\
         baselines: noise at the same DSSIM {:.1}%, white-box PGD on the student (L∞ 8/255) {:.1}%\n\
         clean accuracy on these images {:.1}%; {:.0}s; report: {} (and audit.json)",
        report.layer,
        report.budget,
        report.attack_success_rate * 100.0,
        report.pairs,
        report.mean_dssim,
        report.within_budget,
        report.noise_success_rate * 100.0,
        report.pgd_success_rate * 100.0,
        report.clean_accuracy * 100.0,
        report.seconds,
        path.display()
    );
    Ok(())
}

/// The teacher a student was trained from, its weights checked against the run's.
pub fn teacher_of(
    config: &graft::train::RunConfig,
    weights: Option<&std::path::PathBuf>,
    settings: &Settings,
) -> anyhow::Result<graft::models::Teacher> {
    let teacher_args =
        TeacherArgs { teacher: config.header.teacher.clone(), weights: weights.cloned(), allow_partial: false };
    let teacher = super::teacher(&teacher_args, settings)?;
    if teacher.weights_sha256 != config.header.teacher_weights_sha256 {
        anyhow::bail!(
            "the student was trained from {} weights with sha256 {}, these are {}\nhint: pass the same weight file with --weights",
            config.header.teacher,
            config.header.teacher_weights_sha256,
            teacher.weights_sha256
        );
    }
    Ok(teacher)
}

/// `graft audit --fingerprint`: ranks the teachers at hand by the student's answers.
fn fingerprint(loaded: &LoadedStudent, args: &AuditArgs, settings: &Settings) -> anyhow::Result<()> {
    let mut candidates = Vec::new();
    for card in graft::models::zoo::cards() {
        // Only what is at hand: bundled or already in the cache, never a download.
        let options = WeightOptions {
            weights: None,
            cache_dir: settings.cache_dir.clone(),
            offline: true,
            allow_partial: false,
            progress: false,
        };
        match load_teacher(card.name, &options, &settings.device) {
            Ok((teacher, _)) => candidates.push((card.name.to_owned(), teacher)),
            Err(_) => settings.log(format!("{}: weights not at hand, not a candidate", card.name)),
        }
    }
    if let Some(weights) = &args.weights {
        // Another network of the student's teacher's architecture (another public model built on
        // it, or a student written out by `graft export`), named by its file.
        let teacher = super::teacher(
            &TeacherArgs {
                teacher: loaded.config.header.teacher.clone(),
                weights: Some(weights.clone()),
                allow_partial: false,
            },
            settings,
        )?;
        match candidates.iter().find(|(_, known)| known.weights_sha256 == teacher.weights_sha256) {
            Some((name, _)) => {
                settings.log(format!("`{}` holds the same weights as {name}: already a candidate", weights.display()))
            }
            None => candidates.push((format!("{} ({})", teacher.card.name, weights.display()), teacher)),
        }
    }
    let splits = dataset::open(&args.data, &settings.cache_dir)?;
    let data = splits.test.unwrap_or(splits.train);
    // Up to 32 of the images, seeded: the mean a `mean` fingerprint aims at.
    let mut items = data.items;
    graft::rng::SplitMix64::derive(args.seed, &[0x1EAF]).shuffle(&mut items);
    let preprocessing = &loaded.config.preprocessing;
    let reference: Vec<Vec<f32>> = items
        .iter()
        .filter_map(|item| item.source.load_at_least(preprocessing.resize as u32).ok())
        .take(32)
        .map(|image| graft::data::image::pixels(&image, preprocessing))
        .collect();
    let options = FingerprintOptions {
        aim: args.aim,
        layer: args.layer.clone(),
        iterations: args.iterations,
        learning_rate: args.learning_rate,
        seed: args.seed,
    };
    let reporter = CliReporter::new(settings.quiet);
    let report = fingerprint_teachers(loaded, &candidates, &reference, &options, &settings.device, &reporter)?;
    let json = serde_json::to_string_pretty(&report)?;
    let path = args.run.join("fingerprint.json");
    graft::fsutil::write_atomic(&path, json.as_bytes())?;
    if args.json {
        println!("{json}");
        return Ok(());
    }
    println!("{:<24} {:>8} {:>14} {:>10}  weights", "candidate teacher", "gini", "top class", "top prob");
    for candidate in &report.candidates {
        println!(
            "{:<24} {:>8.4} {:>14} {:>10.3}  {}",
            candidate.teacher,
            candidate.gini,
            candidate.top_class,
            candidate.top_probability,
            graft::fsutil::short_digest(&candidate.weights_sha256)
        );
    }
    println!("{:<24} {:>8.4}", "(the starting noise)", report.noise_gini);
    match &report.verdict {
        Some(teacher) => {
            println!("verdict: built on {teacher} (its fingerprint's answer is under half as unequal as any other's)")
        }
        None => {
            println!("no verdict: no candidate's answer is clearly nearer uniform than the others' and the noise's")
        }
    }
    Ok(())
}
