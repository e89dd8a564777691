//! PyTorch checkpoints (zip and legacy pickle) and anything else `read_bytes` sniffs: never a
//! panic, an abort, a stack overflow or an allocation past libFuzzer's limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = graft_weights::read_bytes(std::path::Path::new("fuzz.pth"), data);
});
