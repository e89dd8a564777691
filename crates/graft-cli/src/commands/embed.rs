//! `graft embed`: a teacher's pooled feature vectors, of images or texts.

use graft::run::read_inputs;

use crate::cli::EmbedArgs;
use crate::settings::Settings;

pub fn run(args: &EmbedArgs, settings: &Settings) -> anyhow::Result<()> {
    let teacher = super::any_teacher(&args.teacher, settings)?;
    let inputs = read_inputs(teacher.modality(), &super::arguments(&args.images), args.file.as_deref())?;
    let embedded = teacher.embed(&inputs, &settings.run_options(args.batch_size))?;
    super::report_skipped(&embedded.skipped, inputs.len(), embedded.modality.noun())?;
    if embedded.truncated > 0 {
        settings.log(format!("{} texts were longer than the teacher reads and were cut", embedded.truncated));
    }
    let key = embedded.modality.input_key();
    if args.json {
        let rows: Vec<_> = embedded
            .rows
            .iter()
            .map(|(input, features)| serde_json::json!({ key: input, "features": features }))
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
        for (input, features) in &embedded.rows {
            let mut record = vec![input.clone()];
            record.extend(features.iter().map(f32::to_string));
            writer.write_record(&record)?;
        }
        writer.flush()?;
    }
    Ok(())
}
