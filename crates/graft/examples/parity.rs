//! Runs a teacher on inputs from a safetensors file and writes its logits, for the parity check
//! against torchvision (scripts/reference/parity_torchvision.py drives it).
//!
//! Usage: parity TEACHER WEIGHTS INPUT.safetensors OUTPUT.safetensors

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use graft::models::{WeightOptions, load_teacher};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [teacher, weights, input, output] = args.as_slice() else {
        return Err("usage: parity TEACHER WEIGHTS INPUT.safetensors OUTPUT.safetensors".into());
    };
    let device = Device::flex();
    let options = WeightOptions {
        weights: Some(PathBuf::from(weights)),
        cache_dir: std::env::temp_dir(),
        offline: true,
        allow_partial: false,
        progress: false,
    };
    let (teacher, report) = load_teacher(teacher, &options, &device)?;
    eprintln!("{}: {report}", teacher.card.name);
    let inputs = graft_weights::read(&PathBuf::from(input))?;
    let input = &inputs["input"];
    let values = input.as_f32().ok_or("input is not a float tensor")?.to_vec();
    let images: Tensor<4> = Tensor::from_data(TensorData::new(values, input.shape.clone()), &device);
    let logits = teacher.logits(images);
    let shape = logits.dims().to_vec();
    let data = logits.into_data().convert::<f32>();
    let mut out = graft_weights::TensorMap::new();
    out.insert(
        "logits".into(),
        graft_weights::Tensor::from_f32(shape, data.as_slice::<f32>().map_err(|e| format!("{e:?}"))?.to_vec()),
    );
    graft_weights::write_safetensors(&PathBuf::from(output), &out)?;
    Ok(())
}
