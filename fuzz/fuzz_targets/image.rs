//! Image decoding (every format graft reads, with its limits and EXIF orientation) and the
//! preprocessing every image goes through.
#![no_main]

use graft::models::zoo::Preprocessing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = graft::data::image::decode_rgb(std::path::Path::new("fuzz.img"), data) {
        let preprocessing = Preprocessing { input_size: 16, resize: 18, mean: [0.5; 3], std: [0.25; 3] };
        let values = graft::data::image::preprocess(&image, &preprocessing);
        assert_eq!(values.len(), 3 * 16 * 16);
    }
});
