//! `graft convert`: any supported weight file to safetensors.

use crate::cli::ConvertArgs;
use crate::settings::Settings;

pub fn run(args: &ConvertArgs, _settings: &Settings) -> anyhow::Result<()> {
    let tensors = graft_weights::convert(&args.input, &args.output)?;
    let parameters: usize = tensors.values().map(graft_weights::Tensor::numel).sum();
    println!("wrote {} tensors ({parameters} values) to {}", tensors.len(), args.output.display());
    Ok(())
}
