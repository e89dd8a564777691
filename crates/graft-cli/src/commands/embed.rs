//! `graft embed`: a teacher's pooled feature vectors.

use graft::predict::embed_images;

use crate::cli::EmbedArgs;
use crate::settings::Settings;

pub fn run(args: &EmbedArgs, settings: &Settings) -> anyhow::Result<()> {
    if super::text::is_text(&args.teacher) {
        return super::text::embed(args, settings);
    }
    if args.file.is_some() {
        anyhow::bail!("--file reads texts, for a text teacher; give images as arguments");
    }
    let images = super::expand_images(&args.images)?;
    let teacher = super::teacher(&args.teacher, settings)?;
    let (features, skipped) = embed_images(
        &teacher,
        &images,
        args.batch_size,
        &settings.device,
        settings.fused_plan,
        Some(&crate::INTERRUPT),
    )?;
    super::report_skipped(&skipped, images.len())?;
    if args.json {
        let rows: Vec<_> =
            features.iter().map(|(path, features)| serde_json::json!({ "path": path, "features": features })).collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        for (path, features) in &features {
            let values: Vec<String> = features.iter().map(f32::to_string).collect();
            println!("{},{}", path.display(), values.join(","));
        }
    }
    Ok(())
}
