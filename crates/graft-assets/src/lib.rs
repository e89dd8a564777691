//! graft's bundled data, in a crate of its own so that `graft` itself carries none of it.
//!
//! Everything here ships inside public package-registry packages (see this crate's README for
//! sources and licences); it lets graft's default teacher, its demo and its tests work offline.

use std::path::PathBuf;

/// File name of the bundled EfficientNet-Lite0 checkpoint (`efficientnet_pytorch` layout, legacy
/// PyTorch pickle); the digits are the start of its SHA-256.
pub const LITE0_FILE_NAME: &str = "efficientnet-lite0-57934424.pth";

/// The EfficientNet-Lite0 ImageNet-1k checkpoint's bytes, where this copy of the crate has them
/// (a clone of the repository; a package from the registry leaves them out).
#[cfg(lite0_bundled)]
pub const LITE0: Option<&[u8]> = Some(include_bytes!("../weights/efficientnet-lite0-57934424.pth"));
#[cfg(not(lite0_bundled))]
pub const LITE0: Option<&[u8]> = None;

/// This crate's folder: `weights/`, `data/` and `images/` below it.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The demo's data: a 1,500-image Fashion-MNIST sample with `train/` and `test/` splits, one
/// folder per class.
pub fn demo_data() -> PathBuf {
    root().join("data").join("fashion-mnist-sample")
}

/// Two photos (`chelsea.png`, a cat; `coffee.png`, an espresso cup) for predictions.
pub fn images() -> PathBuf {
    root().join("images")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_files_are_where_the_functions_say() {
        assert!(demo_data().join("train").is_dir() && demo_data().join("test").is_dir());
        assert!(images().join("coffee.png").is_file());
        assert_eq!(std::fs::read(root().join("weights").join(LITE0_FILE_NAME)).ok().as_deref(), LITE0);
    }
}
