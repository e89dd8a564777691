//! `graft convert` without the rest of graft: reads any weight file graft reads and writes it as
//! safetensors, so that the reader alone can be timed on hostile files in a release build that
//! takes seconds to compile (scripts/reliability/hostile_files.py --graft).
//!
//!     cargo run --release -p graft-weights --example convert -- convert IN OUT.safetensors

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, input, output] = args.as_slice() else {
        eprintln!("usage: convert convert IN OUT.safetensors");
        std::process::exit(2);
    };
    assert_eq!(command, "convert", "the only command is `convert`");
    match graft_weights::convert(input.as_ref(), output.as_ref()) {
        Ok(tensors) => println!("{} tensors written to {output}", tensors.len()),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
    }
}
