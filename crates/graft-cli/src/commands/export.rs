//! `graft export`: a student as an ONNX file, or its network as a weight file of its teacher.

use graft::export::{ExportOptions, export_run};
use graft::train::student::export_teacher_weights;

use crate::cli::ExportArgs;
use crate::settings::Settings;

pub fn run(args: &ExportArgs, settings: &Settings) -> anyhow::Result<()> {
    if args.format == "onnx" {
        let out = args.out.clone().unwrap_or_else(|| args.run.join("student.onnx"));
        let options = ExportOptions { out, with_preprocessing: args.with_preprocessing };
        let exported = export_run(&args.run, &settings.student_options(32), &options)?;
        let inputs: Vec<String> = exported.inputs.iter().map(|input| format!("`{input}`")).collect();
        println!(
            "wrote {} ({:.1} MB, {} nodes, {} parameters): input{} {}, output `{}`; {} in its metadata",
            exported.path.display(),
            exported.bytes as f64 / 1e6,
            exported.nodes,
            exported.parameters,
            if inputs.len() > 1 { "s" } else { "" },
            inputs.join(", "),
            exported.output,
            if exported.tokenizer.is_some() { "classes, pooling and token limit" } else { "classes and preprocessing" }
        );
        if let Some(tokenizer) = &exported.tokenizer {
            println!("wrote {} beside it: the tokenizer that makes its token ids", tokenizer.display());
        }
        return Ok(());
    }
    if args.with_preprocessing {
        anyhow::bail!("`--with-preprocessing` is for `--format onnx`");
    }
    let Some(out) = &args.out else {
        anyhow::bail!("`--format teacher-weights` writes a safetensors file: give its path with `--out FILE`");
    };
    let loaded =
        super::image_student(&args.run, "`--format teacher-weights` writes image students' networks", settings)?;
    let tensors = export_teacher_weights(&loaded, out)?;
    let (teacher, out) = (&loaded.config.header.teacher, out.display());
    println!(
        "wrote {out}: the {} student's network as weights of {teacher} ({tensors} tensors, the teacher's ImageNet classifier among them; the student's head stays in the run); `--teacher {teacher} --weights {out}` takes it",
        loaded.config.header.strategy
    );
    Ok(())
}
