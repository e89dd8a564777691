//! The safetensors reader on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = graft_weights::safetensors::parse(std::path::Path::new("fuzz.safetensors"), data);
});
