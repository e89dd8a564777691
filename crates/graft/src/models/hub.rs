//! Resolving a teacher's weights: a local file, the bundled default, the cache, or a download.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use graft_weights::TensorMap;

use super::teacher::Teacher;
use super::zoo::{self, Architecture, CheckpointLayout, TeacherCard};
use crate::error::{GraftError, Result};
use crate::weights::{LoadReport, sha256_file};

/// Where `load_teacher` may look for weights.
#[derive(Debug, Clone)]
pub struct WeightOptions {
    /// A local weight file; when set, nothing else is consulted.
    pub weights: Option<PathBuf>,
    /// Downloaded files live in `<cache_dir>/weights/`.
    pub cache_dir: PathBuf,
    /// Never touch the network.
    pub offline: bool,
    /// Keep the model's own values for tensors the file lacks or shapes differently.
    pub allow_partial: bool,
}

/// The bundled EfficientNet-Lite0 checkpoint (legacy PyTorch format), when compiled in.
#[cfg(feature = "bundled-weights")]
pub const BUNDLED_LITE0: Option<&[u8]> = Some(graft_assets::LITE0);
#[cfg(not(feature = "bundled-weights"))]
pub const BUNDLED_LITE0: Option<&[u8]> = None;

/// Finds the teacher `name`, resolves its weights and loads them.
pub fn load_teacher(name: &str, options: &WeightOptions, device: &Device) -> Result<(Teacher, LoadReport)> {
    let card = zoo::find(name)?;
    let (file, tensors, sha256) = match &options.weights {
        Some(path) => (path.clone(), graft_weights::read(path)?, sha256_file(path)?),
        None => match (card.bundled, BUNDLED_LITE0) {
            (true, Some(bytes)) => {
                let file = PathBuf::from(format!("<bundled>/{}", card.source.file_name));
                (file.clone(), graft_weights::read_bytes(&file, bytes)?, zoo::LITE0_SHA256.to_owned())
            }
            _ => {
                let path = cached_or_download(card, options)?;
                (path.clone(), graft_weights::read(&path)?, sha256_file(&path)?)
            }
        },
    };
    let layout = detect_layout(card, &tensors);
    Teacher::from_tensors(card, &tensors, layout, sha256, &file, device, options.allow_partial)
}

/// The layout of a file given by the user: EfficientNet-Lite files come in two namings.
fn detect_layout(card: &TeacherCard, tensors: &TensorMap) -> CheckpointLayout {
    match card.architecture {
        Architecture::EfficientNetLite(_) if tensors.contains_key("conv_stem.weight") => CheckpointLayout::Timm,
        Architecture::EfficientNetLite(_) if tensors.contains_key("_conv_stem.weight") => CheckpointLayout::EfficientNetPytorch,
        _ => card.source.layout,
    }
}

fn cached_or_download(card: &TeacherCard, options: &WeightOptions) -> Result<PathBuf> {
    let path = options.cache_dir.join("weights").join(card.source.file_name);
    if path.is_file() {
        return Ok(path);
    }
    let fail = |reason: String| GraftError::Download { teacher: card.name.to_owned(), url: card.source.url.to_owned(), reason };
    if options.offline {
        return Err(fail(format!("offline mode is on and `{}` is not in the cache", path.display())));
    }
    download(card, &path).map_err(fail)?;
    Ok(path)
}

#[cfg(feature = "download")]
fn download(card: &TeacherCard, path: &Path) -> std::result::Result<(), String> {
    use sha2::Digest;
    use std::io::Read;
    let parent = path.parent().ok_or("the cache path has no folder")?;
    std::fs::create_dir_all(parent).map_err(|error| format!("cannot create `{}`: {error}", parent.display()))?;
    let response = ureq::get(card.source.url).call().map_err(|error| error.to_string())?;
    let mut bytes = Vec::new();
    response.into_reader().read_to_end(&mut bytes).map_err(|error| format!("the download broke off: {error}"))?;
    let digest = crate::fsutil::hex(&sha2::Sha256::digest(&bytes));
    if !digest.starts_with(card.source.sha256) {
        return Err(format!("checksum mismatch: expected {}, got {digest}", card.source.sha256));
    }
    graft_weights::write_atomic(path, |temporary| std::fs::write(temporary, &bytes)).map_err(|error| format!("cannot write `{}`: {error}", path.display()))
}

#[cfg(not(feature = "download"))]
fn download(_card: &TeacherCard, _path: &Path) -> std::result::Result<(), String> {
    Err("this build of graft has no download support (cargo feature `download`)".into())
}
