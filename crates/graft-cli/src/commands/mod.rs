//! One file per command.

pub mod audit;
pub mod bench;
pub mod compare;
pub mod convert;
pub mod demo;
pub mod embed;
pub mod eval;
pub mod export;
pub mod harden;
pub mod predict;
pub mod serve;
pub mod teachers;
pub mod train;

use std::path::PathBuf;

use graft::models::{Teacher, WeightOptions, load_teacher};
use graft::run::AnyTeacher;

use crate::cli::TeacherArgs;
use crate::settings::Settings;

/// Loads the teacher the arguments name, image or text, logging what was loaded.
pub fn any_teacher(args: &TeacherArgs, settings: &Settings) -> anyhow::Result<AnyTeacher> {
    let (teacher, line) = AnyTeacher::load(&args.teacher, &weight_options(args, settings), &settings.device)?;
    settings.log(line);
    Ok(teacher)
}

fn weight_options(args: &TeacherArgs, settings: &Settings) -> WeightOptions {
    WeightOptions {
        weights: args.weights.clone(),
        cache_dir: settings.cache_dir.clone(),
        offline: settings.offline,
        allow_partial: args.allow_partial,
        progress: !settings.quiet,
    }
}

/// Loads the image teacher the arguments name (for the verbs that take image teachers only),
/// logging what was loaded.
pub fn teacher(args: &TeacherArgs, settings: &Settings) -> anyhow::Result<Teacher> {
    let (teacher, report) = load_teacher(&args.teacher, &weight_options(args, settings), &settings.device)?;
    settings.log(format!(
        "teacher {}: {report} (weights sha256 {})",
        teacher.card.name,
        graft::fsutil::short_digest(&teacher.weights_sha256)
    ));
    Ok(teacher)
}

/// Loads the student in `run` for a verb that takes image students only; `why` says why a text
/// student is refused.
pub fn image_student(
    run: &std::path::Path,
    why: &str,
    settings: &Settings,
) -> anyhow::Result<graft::train::student::LoadedStudent> {
    // The network is handed on without the Student's own CPU plan: these verbs make their own.
    let options = graft::run::StudentOptions { fused_plan: false, ..settings.student_options(32) };
    let student = graft::run::Student::load(run, &options)?;
    let modality = student.modality();
    student.into_image().ok_or_else(|| anyhow::anyhow!("`{}` is a {modality} student: {why}", run.display()))
}

/// Names each input that could not be read (on stderr, even with `--quiet`: it is a result),
/// and fails when none of the `total` could be.
pub fn report_skipped(skipped: &[graft::run::SkippedInput], total: usize, noun: &str) -> anyhow::Result<()> {
    for bad in skipped {
        eprintln!("skipped {}: {}", bad.input, bad.reason);
    }
    if total > 0 && skipped.len() == total {
        anyhow::bail!("none of the {total} {noun} could be read");
    }
    Ok(())
}

/// The inputs given as arguments (paths, or texts), as the library takes them.
pub fn arguments(inputs: &[PathBuf]) -> Vec<String> {
    inputs.iter().map(|input| input.to_string_lossy().into_owned()).collect()
}
