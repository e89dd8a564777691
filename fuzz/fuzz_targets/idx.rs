//! IDX data sets as graft opens them: an image file (plain, gzipped, or corrupt gzip, chosen by
//! the first byte) and a label file (the rest of the input after the image file's length, given
//! by the next two bytes), opened from disk, then a few images decoded.
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("graft-fuzz-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, high, low, rest @ ..] = data else { return };
    let split = (usize::from(*high) << 8 | usize::from(*low)).min(rest.len());
    let (images, labels) = rest.split_at(split);
    let dir = scratch();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let images_path = match mode % 3 {
        0 => {
            let path = dir.join("train-images-idx3-ubyte");
            std::fs::write(&path, images).unwrap();
            path
        }
        1 => {
            let path = dir.join("train-images-idx3-ubyte.gz");
            let mut encoder =
                flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
            encoder.write_all(images).unwrap();
            encoder.finish().unwrap();
            path
        }
        _ => {
            let path = dir.join("train-images-idx3-ubyte.gz");
            std::fs::write(&path, images).unwrap();
            path
        }
    };
    let labels_name = images_path.file_name().unwrap().to_string_lossy().replace("images-idx3", "labels-idx1");
    std::fs::write(dir.join(labels_name), labels).unwrap();
    if let Ok(splits) = graft::data::dataset::open(&images_path, &dir.join("cache")) {
        for item in splits.train.items.iter().take(4) {
            let _ = item.source.load();
        }
    }
});
