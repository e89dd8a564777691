//! `graft bench`: kernel throughput, one JSON object per line on stdout.

use crate::cli::BenchArgs;
use crate::settings::Settings;

pub fn run(args: &BenchArgs, settings: &Settings) -> anyhow::Result<()> {
    let inputs = match args.inputs.as_str() {
        "random" => graft::bench::Inputs::Random,
        _ => graft::bench::Inputs::Images(graft_assets::demo_data().join("test")),
    };
    for teacher in &args.teachers {
        settings.log(format!(
            "benchmarking {teacher} on {}: batches of {}, the median of {} timed iterations after {} warm-up",
            settings.device_name, args.batch_size, args.iterations, args.warmup
        ));
        for result in graft::bench::kernels(
            teacher,
            &settings.device,
            &settings.device_name,
            args.batch_size,
            args.iterations,
            args.warmup,
            settings.fused_plan,
            &inputs,
            &args.operations,
            Some(&crate::INTERRUPT),
        )? {
            settings.log(format!(
                "{:<20} {:<18} {:>8.2} images/s",
                result.teacher, result.operation, result.images_per_second
            ));
            println!("{}", serde_json::to_string(&result)?);
        }
    }
    Ok(())
}
