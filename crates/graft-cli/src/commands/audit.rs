//! `graft audit`: what a student inherits from its public teacher.

use graft::audit::mimicry::MimicryOptions;
use graft::audit::run::{AuditOptions, audit_run};
use graft::data::dataset;
use graft::train::load_run;

use crate::cli::{AuditArgs, TeacherArgs};
use crate::progress::CliReporter;
use crate::settings::Settings;

pub fn run(args: &AuditArgs, settings: &Settings) -> anyhow::Result<()> {
    let loaded = load_run(&args.run, &settings.device)?;
    let teacher_args = TeacherArgs { teacher: loaded.config.teacher.clone(), weights: args.weights.clone(), allow_partial: false };
    let teacher = super::teacher(&teacher_args, settings)?;
    if teacher.weights_sha256 != loaded.config.teacher_weights_sha256 {
        anyhow::bail!(
            "the student was trained from {} weights with sha256 {}, these are {}\nhint: pass the same weight file with --weights",
            loaded.config.teacher,
            loaded.config.teacher_weights_sha256,
            teacher.weights_sha256
        );
    }
    let splits = dataset::open(&args.data, &settings.cache_dir)?;
    let data = splits.test.unwrap_or(splits.train);
    let options = AuditOptions {
        pairs: args.pairs,
        layer: args.layer.clone(),
        mimicry: MimicryOptions { budget: args.budget, iterations: args.iterations, optimizer: args.optimizer, learning_rate: args.learning_rate, penalty: 1e10 },
        batch_size: args.batch_size,
        seed: args.seed,
    };
    let reporter = CliReporter::new(settings.quiet);
    let (report, pictures) = audit_run(&loaded, &teacher, data, &options, &settings.inference(32), &settings.device, &reporter)?;
    graft::report::write_audit(&args.run, &report, &pictures)?;
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
