//! Sentence features computed once: a set of texts' features are stored under a key made of the
//! teacher (weights and tokenizer), its limit and pooling, and every text, so a second run on the
//! same data (another seed, `eval` on the same file) skips the encoder.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use sha2::Digest;

use super::teacher::{Embedded, TextTeacher};
use crate::error::Result;
use crate::train::reporter::Reporter;

/// The cache file of `texts`' features under `cache_dir`.
pub fn cache_path(teacher: &TextTeacher, texts: &[&str], cache_dir: &Path) -> PathBuf {
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"graft text features v1\0");
    hasher.update(teacher.weights_sha256.as_bytes());
    hasher.update(teacher.tokenizer_sha256.as_bytes());
    hasher.update((teacher.tokenizer.max_length() as u64).to_le_bytes());
    hasher.update(format!("{:?}", teacher.pooling).as_bytes());
    for text in texts {
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    cache_dir.join("text-features").join(format!("{}.safetensors", crate::fsutil::hex(&hasher.finalize())))
}

/// `texts`' sentence features, from the cache when they are there (the flag says so), else
/// computed with a progress bar and stored. A damaged cache file is recomputed.
///
/// # Errors
/// The encoder's failure. A cache that cannot be written is not an error (the features are
/// returned all the same; the reporter hears why).
pub fn cached_features(
    teacher: &TextTeacher,
    texts: &[&str],
    cache_dir: &Path,
    batch_size: usize,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<(Embedded, bool)> {
    let path = cache_path(teacher, texts, cache_dir);
    let width = teacher.feature_dim();
    if let Ok(tensors) = graft_weights::read(&path)
        && let (Some(features), Some(truncated)) = (tensors.get("features"), tensors.get("truncated"))
        && features.shape == [texts.len(), width]
        && let (Some(values), Some(truncated)) = (features.as_f32(), truncated.as_f32().and_then(|t| t.first()))
    {
        return Ok((Embedded { features: values.to_vec(), width, truncated: *truncated as usize }, true));
    }
    reporter.start("encoding texts", texts.len());
    let embedded = teacher.embed(texts, batch_size, device, &|count| reporter.advance(count, ""))?;
    reporter.finish();
    let mut tensors = graft_weights::TensorMap::new();
    tensors.insert("features".to_owned(), graft_weights::Tensor::from_f32(vec![texts.len(), width], embedded.features.clone()));
    tensors.insert("truncated".to_owned(), graft_weights::Tensor::from_f32(vec![1], vec![embedded.truncated as f32]));
    if let Err(error) = graft_weights::write_safetensors(&path, &tensors) {
        reporter.note(&format!("could not store the text features in the cache: {error}"));
    }
    Ok((embedded, false))
}
