//! Sentence features computed once per text, as image features are per image: an entry is one
//! text's sentence vector (and whether the text was cut), keyed by everything that changes its
//! numbers: the weights', the tokenizer's and the model configuration's SHA-256, the limit, the
//! pooling, the compute path (the device), the cache format, and the text itself. A second run
//! on the same texts (another seed, `eval` on the same file, a CSV with rows added) encodes only
//! what is new. Entries are sealed and checked as image entries are ([`crate::cache_entry`]):
//! one that fails is computed again, and the run's notes name it.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use sha2::Digest;

use super::teacher::{Embedded, TextTeacher};
use crate::error::{GraftError, Result};
use crate::rng::hash_str;
use crate::train::reporter::Reporter;

/// The version of the entries' layout: bumped whenever the numbers they hold would change
/// (2: sealed entries, the configuration and the compute path in the key).
pub const TEXT_CACHE_FORMAT: u32 = 2;

/// Where `teacher`'s entries computed on `device` live under `cache_dir`.
pub fn cache_directory(teacher: &TextTeacher, cache_dir: &Path, device: &Device) -> PathBuf {
    let numbers = format!(
        "format {TEXT_CACHE_FORMAT}; tokenizer {}; config {:?}; limit {}; pooling {:?}; compute {device:?}",
        teacher.tokenizer_sha256,
        teacher.config,
        teacher.tokenizer.max_length(),
        teacher.pooling
    );
    cache_dir.join("text-features").join(format!(
        "{}-{}-{}",
        teacher.name,
        &teacher.weights_sha256[..16.min(teacher.weights_sha256.len())],
        hash_str(&numbers)
    ))
}

fn entry_path(directory: &Path, text: &str) -> PathBuf {
    let hash = crate::fsutil::hex(&sha2::Sha256::digest(text.as_bytes()));
    directory.join(&hash[..2]).join(format!("{hash}.f32"))
}

/// The kind of entry this cache holds ([`crate::cache_entry::key`]).
const KIND: &str = "text features";

/// An entry's values: a flag (1.0 when the text was cut), then the vector; `None` when there is
/// none, the reason when it fails its check.
fn read_entry(path: &Path, width: usize) -> Option<Result<(bool, Vec<f32>), String>> {
    if !path.exists() {
        return None;
    }
    let read = crate::cache_entry::read(KIND, path, &[width + 1]);
    Some(read.map(|values| (values[0] > 0.5, values[1..].to_vec())))
}

fn write_entry(path: &Path, truncated: bool, vector: &[f32]) -> std::io::Result<()> {
    let mut values = Vec::with_capacity(vector.len() + 1);
    values.push(if truncated { 1.0f32 } else { 0.0 });
    values.extend_from_slice(vector);
    crate::cache_entry::write(KIND, path, &[values.len()], &values)
}

/// `texts`' sentence features: each from the cache when it is there, the rest computed (with a
/// progress bar) and stored. Returns them and how many came from the cache. A damaged entry is
/// recomputed; a cache that cannot be written is not an error (the reporter hears why).
///
/// # Errors
/// The encoder's failure.
pub fn cached_features(
    teacher: &TextTeacher,
    texts: &[&str],
    cache_dir: &Path,
    batch_size: usize,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(Embedded, usize)> {
    let directory = cache_directory(teacher, cache_dir, device);
    let width = teacher.feature_dim();
    let paths: Vec<PathBuf> = texts.iter().map(|text| entry_path(&directory, text)).collect();
    let mut features = vec![0.0f32; texts.len() * width];
    let mut truncated = 0;
    let mut missing = Vec::new();
    let mut damaged = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        match read_entry(path, width) {
            Some(Ok((cut, vector))) => {
                features[index * width..(index + 1) * width].copy_from_slice(&vector);
                truncated += usize::from(cut);
            }
            Some(Err(reason)) => {
                damaged.push(format!("`{}` ({reason})", path.display()));
                missing.push(index);
            }
            None => missing.push(index),
        }
    }
    if !damaged.is_empty() {
        reporter.note(&crate::cache_entry::damaged_note("text", &damaged));
    }
    let hits = texts.len() - missing.len();
    if !missing.is_empty() {
        reporter.start("encoding texts", missing.len());
        let wanted: Vec<&str> = missing.iter().map(|&index| texts[index]).collect();
        let encoded = teacher.tokenizer.encode(&wanted)?;
        let computed =
            teacher.embed_encoded(&encoded, batch_size, device, &|count| reporter.advance(count, ""), None)?;
        reporter.finish();
        let mut unwritable: Option<GraftError> = None;
        for (row, &index) in missing.iter().enumerate() {
            let vector = computed.row(row);
            features[index * width..(index + 1) * width].copy_from_slice(vector);
            truncated += usize::from(encoded[row].truncated);
            if unwritable.is_none()
                && let Err(source) = write_entry(&paths[index], encoded[row].truncated, vector)
            {
                unwritable = Some(GraftError::Io { path: paths[index].clone(), source });
            }
        }
        if let Some(error) = unwritable {
            reporter.note(&format!("could not store the text features in the cache: {error}"));
        }
    }
    Ok((Embedded { features, width, truncated }, hits))
}
