//! `graft predict`: top-k ImageNet classes from a teacher.

use graft::models::zoo::imagenet_labels;
use graft::predict::predict_images;

use crate::cli::PredictArgs;
use crate::settings::Settings;

pub fn run(args: &PredictArgs, settings: &Settings) -> anyhow::Result<()> {
    let images = super::expand_images(&args.images)?;
    let teacher = super::teacher(&args.teacher, settings)?;
    let predictions = predict_images(&teacher, &images, args.top, imagenet_labels(), args.batch_size, &settings.device)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&predictions)?);
        return Ok(());
    }
    for prediction in &predictions {
        println!("{}", prediction.path.display());
        for (rank, class) in prediction.top.iter().enumerate() {
            println!("  {:>2}. {:<32} {:>6.2}%  (class {})", rank + 1, class.label, class.probability * 100.0, class.class_index);
        }
    }
    Ok(())
}
