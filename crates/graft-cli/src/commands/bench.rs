//! `graft bench`: kernel throughput, one JSON object per line on stdout.

use crate::cli::BenchArgs;
use crate::settings::Settings;

pub fn run(args: &BenchArgs, settings: &Settings) -> anyhow::Result<()> {
    for teacher in &args.teachers {
        settings.log(format!(
            "benchmarking {teacher} on {}: batches of {}, {} timed iterations after one warm-up",
            settings.device_name, args.batch_size, args.iterations
        ));
        for result in graft::bench::kernels(
            teacher,
            &settings.device,
            &settings.device_name,
            args.batch_size,
            args.iterations,
            1,
            settings.fused_plan,
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
