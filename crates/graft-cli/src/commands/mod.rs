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
pub mod teachers;
pub mod text;
pub mod train;

use std::path::PathBuf;

use graft::models::{Teacher, WeightOptions, load_teacher};

use crate::cli::TeacherArgs;
use crate::settings::Settings;

/// Loads the teacher the arguments name, logging what was loaded.
pub fn teacher(args: &TeacherArgs, settings: &Settings) -> anyhow::Result<Teacher> {
    let options = WeightOptions {
        weights: args.weights.clone(),
        cache_dir: settings.cache_dir.clone(),
        offline: settings.offline,
        allow_partial: args.allow_partial,
        progress: !settings.quiet,
    };
    let (teacher, report) = load_teacher(&args.teacher, &options, &settings.device)?;
    settings.log(format!(
        "teacher {}: {report} (weights sha256 {})",
        teacher.card.name,
        &teacher.weights_sha256[..12.min(teacher.weights_sha256.len())]
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

/// Expands folders into the image files inside them (sorted), keeping files as given.
pub fn expand_images(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|error| anyhow::anyhow!("cannot list `{}`: {error}", input.display()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.is_file() && graft::data::image::is_image_path(path))
                .collect();
            files.sort();
            if files.is_empty() {
                anyhow::bail!("`{}` holds no image files", input.display());
            }
            out.extend(files);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

/// Names each image that could not be read (on stderr, even with `--quiet`: it is a result), and
/// fails when none of the `total` could be.
pub fn report_skipped(skipped: &[graft::train::cache::Skipped], total: usize) -> anyhow::Result<()> {
    for bad in skipped {
        eprintln!("skipped {}: {}", bad.name, bad.reason);
    }
    if total > 0 && skipped.len() == total {
        anyhow::bail!("none of the {total} images could be read");
    }
    Ok(())
}

/// Writes `compare.md` (the header and the table) and `compare.json` (the rows) into `--out`, and
/// prints the table, or the rows with `--json`.
pub fn write_compare_report(
    args: &crate::cli::CompareArgs,
    header: &str,
    table: &str,
    rows: &impl serde::Serialize,
    settings: &Settings,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    graft::fsutil::write_atomic(&args.out.join("compare.md"), format!("{header}{table}").as_bytes())?;
    graft::fsutil::write_atomic(&args.out.join("compare.json"), &serde_json::to_vec_pretty(rows)?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(rows)?);
    } else {
        print!("{table}");
        settings.log(format!("written to {}", args.out.join("compare.md").display()));
    }
    Ok(())
}
