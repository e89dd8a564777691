//! The feature cache: what is frozen is computed once per image, not once per epoch.
//!
//! An entry is the teacher's output at the cut (pooled features when the whole teacher is
//! frozen, block activations otherwise) for one image and one view of it (the evaluation crop,
//! or the k-th augmented view). It is keyed by everything that changes its numbers: the
//! teacher's weights hash, the preprocessing and its resize filter, the cut, the compute path
//! (backend, fused CPU plan or not), the cache's format version, the view and the image's
//! content hash. A second run on the same data with another head or learning rate reuses it; a
//! changed file, teacher, backend or graft version that decodes differently misses it.
//!
//! An entry is checked whenever it is read ([`crate::cache_entry`]): made for this key, of the
//! shape the teacher gives at the cut, whole by its digest. One that fails is a miss, computed
//! again and overwritten, and the run's notes name it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::reporter::Reporter;
use crate::backend::fused::FusedBackbone;
use crate::backend::host_values;
use crate::data::augment::{Augmentation, augmented_view, min_decoded_side};
use crate::data::dataset::ItemSource;
use crate::data::image::{RESIZE_FILTER, batch_tensor, preprocess};
use crate::error::{GraftError, Result};
use crate::models::Teacher;
use crate::models::zoo::Preprocessing;
use crate::rng::{SplitMix64, hash_str};

/// The version of the entries' layout and of the image pipeline that makes them: bumped whenever
/// either changes the numbers (2: EXIF orientation applied, long strips cropped before resizing;
/// 3: large JPEGs decoded at a reduced scale; 4: entries sealed with their key, shape and a
/// digest, [`crate::cache_entry`]).
pub const CACHE_FORMAT: u32 = 4;

/// Which version of an image an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// Resize and centre crop, no randomness.
    Eval,
    /// The `k`-th cached view of `augmented_views` (1 and up: view 0 is the plain one).
    Augmented(usize),
}

/// How inputs are made for one teacher at one cut.
#[derive(Debug, Clone)]
pub struct CacheSpec {
    pub preprocessing: Preprocessing,
    pub augmentation: Augmentation,
    pub cut: usize,
    pub seed: u64,
    /// Whether frozen blocks may run through the fused CPU plan (see [`FusedBackbone::for_device`]).
    pub fused_plan: bool,
}

impl CacheSpec {
    /// The whole teacher frozen (pooled features), no augmentation.
    pub fn pooled(teacher: &Teacher, preprocessing: &Preprocessing, seed: u64, fused_plan: bool) -> CacheSpec {
        CacheSpec {
            preprocessing: preprocessing.clone(),
            augmentation: Augmentation::none(),
            cut: teacher.block_names().len(),
            seed,
            fused_plan,
        }
    }
}

/// Counts of what the cache did, for reports and tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicUsize,
    pub misses: AtomicUsize,
    /// Entries that were there but failed their check (counted among the misses too).
    pub damaged: AtomicUsize,
    /// Images the teacher's frozen part was run on.
    pub teacher_forwards: AtomicUsize,
}

pub struct FeatureCache {
    dir: PathBuf,
    pub stats: CacheStats,
    /// The teacher's fused CPU plan, built at the first batch that misses (not at all when
    /// everything hits) and shared by every `prepare` call on this cache.
    plan: std::sync::OnceLock<Option<FusedBackbone>>,
}

/// A prepared entry: where it is, its shape, and the SHA-256 of the image it was made from.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub shape: Vec<usize>,
    pub content: [u8; 32],
}

/// An item that could not be prepared, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

impl FeatureCache {
    /// The cache for `teacher` at `spec` computed on `device`, under `<cache_dir>/features/`.
    pub fn new(cache_dir: &Path, teacher: &Teacher, spec: &CacheSpec, device: &Device) -> Result<FeatureCache> {
        let preprocessing = serde_json::to_string(&spec.preprocessing)
            .map_err(|error| GraftError::Invalid(format!("cannot describe the preprocessing: {error}")))?;
        let compute = format!("{device:?}{}", if spec.fused_plan && *device == Device::flex() { "+fused" } else { "" });
        let numbers =
            format!("format {CACHE_FORMAT}; {preprocessing}; resize filter {RESIZE_FILTER:?}; compute {compute}");
        let dir = cache_dir.join("features").join(format!(
            "{}-{}-cut{}-{}",
            teacher.card.name,
            &teacher.weights_sha256[..16.min(teacher.weights_sha256.len())],
            spec.cut,
            hash_str(&numbers)
        ));
        std::fs::create_dir_all(&dir).map_err(|source| GraftError::Io { path: dir.clone(), source })?;
        Ok(FeatureCache { dir, stats: CacheStats::default(), plan: std::sync::OnceLock::new() })
    }

    fn entry_path(&self, content_hash: ContentHash, view: View, spec: &CacheSpec) -> Result<PathBuf> {
        let content_hash = content_hash.hex();
        let view = match view {
            View::Eval => "eval".to_owned(),
            View::Augmented(k) => {
                let augmentation = serde_json::to_string(&spec.augmentation)
                    .map_err(|error| GraftError::Invalid(format!("cannot describe the augmentation: {error}")))?;
                format!("aug{k}-{}", hash_str(&format!("{augmentation}:{}", spec.seed)))
            }
        };
        Ok(self.dir.join(&content_hash[..2]).join(format!("{content_hash}-{view}.f32")))
    }

    /// Makes sure every (item, view) has an entry, running the teacher's frozen part in batches
    /// for the missing ones. Returns one entry per request, `None` where the image was unreadable.
    #[allow(clippy::too_many_arguments)] // each is a different kind of input; none group naturally.
    pub fn prepare(
        &self,
        teacher: &Teacher,
        spec: &CacheSpec,
        requests: &[(ItemSource, View)],
        batch_size: usize,
        device: &Device,
        reporter: &dyn Reporter,
        stage: &str,
    ) -> Result<(Vec<Option<Entry>>, Vec<Skipped>)> {
        let mut entries: Vec<Option<Entry>> = vec![None; requests.len()];
        let mut skipped = Vec::new();
        reporter.start(stage, requests.len());
        // Content hashes, one per distinct image (its augmented views share it), read in parallel.
        let mut names: Vec<(String, &ItemSource)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (source, _) in requests {
            let name = source.name();
            if seen.insert(name.clone()) {
                names.push((name, source));
            }
        }
        let hashes: std::collections::HashMap<String, std::result::Result<ContentHash, String>> = names
            .into_par_iter()
            .map(|(name, source)| (name, source.content_hash().map(ContentHash).map_err(|error| error.to_string())))
            .collect();
        let mut misses: Vec<(usize, PathBuf, ContentHash)> = Vec::new();
        // The shape every entry must have, found (by one image through the teacher, for a cut
        // inside it) only when some entry is there to check.
        let mut expected: Option<Vec<usize>> = None;
        let mut damaged: Vec<String> = Vec::new();
        for (index, (source, view)) in requests.iter().enumerate() {
            let name = source.name();
            let hash = match &hashes[&name] {
                Ok(hash) => *hash,
                Err(reason) => {
                    skipped.push(Skipped { name, reason: reason.clone() });
                    reporter.advance(1, "");
                    continue;
                }
            };
            let path = self.entry_path(hash, *view, spec)?;
            if path.exists() {
                let expected = match &expected {
                    Some(shape) => shape,
                    None => expected.insert(expected_shape(teacher, spec, device)?),
                };
                match read_entry(&path, expected) {
                    Ok(_) => {
                        self.stats.hits.fetch_add(1, Ordering::Relaxed);
                        entries[index] = Some(Entry { path, shape: expected.clone(), content: hash.0 });
                        reporter.advance(1, "cached");
                        continue;
                    }
                    Err(reason) => damaged.push(format!("`{}` ({reason})", path.display())),
                }
            }
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            misses.push((index, path, hash));
        }
        if !damaged.is_empty() {
            reporter.note(&crate::cache_entry::damaged_note("feature", &damaged));
            self.stats.damaged.fetch_add(damaged.len(), Ordering::Relaxed);
        }
        // The missing ones a batch at a time: decoded and preprocessed in parallel (at the reduced
        // size their views need), then through the teacher.
        let eval_side = spec.preprocessing.resize as u32;
        let augmented_side = min_decoded_side(&spec.preprocessing, &spec.augmentation);
        for batch in misses.chunks(batch_size.max(1)) {
            let inputs: Vec<Result<Vec<f32>>> = batch
                .par_iter()
                .map(|(index, _, hash)| {
                    let (source, view) = &requests[*index];
                    Ok(match view {
                        View::Eval => preprocess(&source.load_at_least(eval_side)?, &spec.preprocessing),
                        View::Augmented(k) => {
                            let image = source.load_at_least(augmented_side)?;
                            let mut rng = SplitMix64::derive(spec.seed, &[hash.seed(), *k as u64]);
                            augmented_view(&image, &spec.preprocessing, &spec.augmentation, &mut rng)
                        }
                    })
                })
                .collect();
            let mut pending = Vec::with_capacity(batch.len());
            for ((index, path, hash), input) in batch.iter().zip(inputs) {
                match input {
                    Ok(input) => pending.push(Pending { index: *index, path: path.clone(), content: *hash, input }),
                    Err(error) => {
                        skipped.push(Skipped { name: requests[*index].0.name(), reason: error.to_string() });
                        reporter.advance(1, "");
                    }
                }
            }
            let computed = pending.len();
            self.run_batch(teacher, spec, &mut pending, &mut entries, device)?;
            reporter.advance(computed, "computing");
        }
        reporter.finish();
        Ok((entries, skipped))
    }

    fn run_batch(
        &self,
        teacher: &Teacher,
        spec: &CacheSpec,
        pending: &mut Vec<Pending>,
        entries: &mut [Option<Entry>],
        device: &Device,
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let blocks = teacher.block_names().len();
        if let Some(fused) =
            self.plan.get_or_init(|| FusedBackbone::for_device(&teacher.backbone, device, spec.fused_plan))
        {
            let size = spec.preprocessing.input_size;
            let mut images = Vec::with_capacity(pending.len() * 3 * size * size);
            for item in pending.iter() {
                images.extend_from_slice(&item.input);
            }
            let (values, shape) =
                fused.forward(&images, [pending.len(), 3, size, size], spec.cut, spec.cut == blocks)?;
            return self.store(pending, entries, &values, &shape);
        }
        let inputs: Vec<Vec<f32>> = pending.iter().map(|item| item.input.clone()).collect();
        let images = batch_tensor(&inputs, spec.preprocessing.input_size, device);
        let activations = teacher.forward_until(images, spec.cut)?;
        let (values, shape) = if spec.cut == blocks {
            let features = teacher.backbone.features(activations);
            let shape = features.dims().to_vec();
            (features.into_data(), shape)
        } else {
            let shape = activations.dims().to_vec();
            (activations.into_data(), shape)
        };
        let values = host_values::<f32>(values)?;
        self.store(pending, entries, &values, &shape)
    }

    /// Writes one entry per pending image from a batch's values at the cut.
    fn store(
        &self,
        pending: &mut Vec<Pending>,
        entries: &mut [Option<Entry>],
        values: &[f32],
        shape: &[usize],
    ) -> Result<()> {
        self.stats.teacher_forwards.fetch_add(pending.len(), Ordering::Relaxed);
        let item_shape = shape[1..].to_vec();
        let size: usize = item_shape.iter().product();
        for (item, chunk) in pending.drain(..).zip(values.chunks(size)) {
            write_entry(&item.path, &item_shape, chunk)?;
            entries[item.index] = Some(Entry { path: item.path, shape: item_shape.clone(), content: item.content.0 });
        }
        Ok(())
    }
}

/// An image waiting for the teacher: which request, where its entry goes, its content hash and
/// its preprocessed values.
struct Pending {
    index: usize,
    path: PathBuf,
    content: ContentHash,
    input: Vec<f32>,
}

/// The SHA-256 of an image file's bytes.
#[derive(Debug, Clone, Copy)]
struct ContentHash([u8; 32]);

impl ContentHash {
    fn hex(&self) -> String {
        crate::fsutil::hex(&self.0)
    }

    /// The first eight bytes, to seed an image's augmented views.
    fn seed(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(first)
    }
}

/// The kind of entry this cache holds ([`crate::cache_entry::key`]).
const KIND: &str = "image features";

fn write_entry(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    crate::cache_entry::write(KIND, path, shape, values)
        .map_err(|source| GraftError::Io { path: path.to_owned(), source })
}

fn read_entry(path: &Path, shape: &[usize]) -> std::result::Result<Vec<f32>, String> {
    crate::cache_entry::read(KIND, path, shape)
}

/// The shape of one image's entry: one blank image through the frozen blocks, pooled when the
/// whole teacher is frozen (the network's own answer, whatever its architecture).
fn expected_shape(teacher: &Teacher, spec: &CacheSpec, device: &Device) -> Result<Vec<usize>> {
    let size = spec.preprocessing.input_size;
    let blank = batch_tensor(&[vec![0.0; 3 * size * size]], size, device);
    let activations = teacher.forward_until(blank, spec.cut)?;
    Ok(if spec.cut == teacher.block_names().len() {
        teacher.backbone.features(activations).dims()[1..].to_vec()
    } else {
        activations.dims()[1..].to_vec()
    })
}

/// Pooled features of the whole frozen teacher (`spec.cut` at the last block) for one view of
/// each item, through the cache under `cache_dir`: the features of the items that could be read
/// (row-major, `dim` each), their labels, and `dim`.
#[allow(clippy::too_many_arguments)]
pub fn pooled_features(
    teacher: &Teacher,
    spec: &CacheSpec,
    cache_dir: &Path,
    items: &[crate::data::dataset::Item],
    view: View,
    batch_size: usize,
    device: &Device,
    reporter: &dyn Reporter,
    stage: &str,
) -> Result<(Vec<f32>, Vec<usize>, usize)> {
    let cache = FeatureCache::new(cache_dir, teacher, spec, device)?;
    let requests: Vec<_> = items.iter().map(|item| (item.source.clone(), view)).collect();
    let (entries, _) = cache.prepare(teacher, spec, &requests, batch_size, device, reporter, stage)?;
    let (entries, labels): (Vec<&Entry>, Vec<usize>) =
        entries.iter().zip(items).filter_map(|(entry, item)| entry.as_ref().map(|entry| (entry, item.label))).unzip();
    let dim = entries.first().map_or(0, |entry| entry.shape.iter().product());
    Ok((read_values(&entries)?, labels, dim))
}

/// The values of entries, one after another.
pub(crate) fn read_values(entries: &[&Entry]) -> Result<Vec<f32>> {
    let mut values = Vec::new();
    for entry in entries {
        let read = read_entry(&entry.path, &entry.shape).map_err(|reason| {
            GraftError::Invalid(format!(
                "feature cache entry `{}` changed while it was in use: {reason}\nhint: run again; it will be computed anew",
                entry.path.display()
            ))
        })?;
        values.extend(read);
    }
    Ok(values)
}

/// Stacks entries into a tensor of rank `D` (`D` = 1 + the entries' rank).
pub fn batch_from_entries<const D: usize>(entries: &[&Entry], device: &Device) -> Result<Tensor<D>> {
    let values = read_values(entries)?;
    let mut shape = vec![entries.len()];
    shape.extend(entries.first().map(|entry| entry.shape.clone()).unwrap_or_default());
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}
