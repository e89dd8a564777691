//! `graft export`: a student's network as a weight file of its teacher.

use graft::train::student::export_teacher_weights;

use crate::cli::ExportArgs;
use crate::settings::Settings;

pub fn run(args: &ExportArgs, settings: &Settings) -> anyhow::Result<()> {
    let loaded = super::image_student(&args.run, "`graft export` writes image students' networks", settings)?;
    let tensors = export_teacher_weights(&loaded, &args.out)?;
    let (teacher, out) = (&loaded.config.header.teacher, args.out.display());
    println!(
        "wrote {out}: the {} student's network as weights of {teacher} ({tensors} tensors, the teacher's ImageNet classifier among them; the student's head stays in the run); `--teacher {teacher} --weights {out}` takes it",
        loaded.config.header.strategy
    );
    Ok(())
}
