//! `graft teachers`: the zoo.

use graft::models::zoo::cards;

use crate::cli::TeachersArgs;
use crate::settings::Settings;

pub fn run(args: &TeachersArgs, settings: &Settings) -> anyhow::Result<()> {
    println!("{:<20} {:>5}  {:<10} description", "name", "input", "weights");
    for card in cards() {
        let cached = settings.cache_dir.join("weights").join(card.source.file_name).is_file();
        let status = if card.bundled {
            "bundled"
        } else if matches!(card.source.fetch, graft::models::zoo::Fetch::Manual { .. }) {
            "--weights"
        } else if cached {
            "cached"
        } else {
            "download"
        };
        println!("{:<20} {:>5}  {:<10} {}", card.name, card.preprocessing.input_size, status, card.description);
        if args.blocks {
            let backbone = graft::models::Backbone::new(card.architecture, 1000, &settings.device);
            println!("{:<20} blocks: {}", "", backbone.block_names().join(" "));
        }
    }
    println!("\n{:<20} {:>5}  {:<10} description", "text teacher", "tokens", "weights");
    for card in graft::text::text_cards() {
        let cached = settings.cache_dir.join("text-teachers").join(card.name).join("model.safetensors").is_file();
        let status = match card.source {
            graft::text::zoo::TextSource::Local { .. } => "--weights",
            _ if cached => "cached",
            _ => "download",
        };
        println!("{:<20} {:>5}  {:<10} {}", card.name, card.max_tokens, status, card.description);
    }
    Ok(())
}
