//! Labelled image data sets: a folder of class folders, a CSV manifest, or IDX files
//! (MNIST / Fashion-MNIST), with stratified seeded splits.
//!
//! A data set is a list of items (where the image lives, its label); images are decoded one by
//! one when asked for, so a large data set is never held in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use super::image::{is_image_path, load_rgb_at_least};
use crate::error::{GraftError, Result};

/// IDX image file (uncompressed, on disk) read item by item.
#[derive(Debug)]
pub struct IdxImages {
    pub path: PathBuf,
    file: File,
    /// How many images of what size, as the (checked) header declares.
    pub layout: IdxLayout,
}

impl IdxImages {
    fn pixels(&self, index: usize) -> Result<Vec<u8>> {
        let range = self
            .layout
            .pixel_range(index)
            .ok_or_else(|| GraftError::Invalid(format!("`{}` has no image {index}", self.path.display())))?;
        let mut buffer = vec![0u8; range.len()];
        read_exact_at(&self.file, &mut buffer, range.start as u64)
            .map_err(|source| GraftError::Io { path: self.path.clone(), source })?;
        Ok(buffer)
    }
}

/// The largest IDX image graft reads, in pixels (rows x columns).
pub const MAX_IDX_PIXELS: usize = 1 << 24;

/// What an IDX image file's 16-byte header declares (magic `0x0803`, then count, rows and
/// columns, big-endian), checked against the file's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdxLayout {
    pub count: usize,
    pub rows: usize,
    pub columns: usize,
}

impl IdxLayout {
    pub const HEADER_BYTES: usize = 16;

    /// Parses and checks a header; `file_bytes` is the (decompressed) file's length.
    pub fn parse(path: &Path, header: &[u8], file_bytes: u64) -> Result<IdxLayout> {
        let invalid = |reason: String| GraftError::Invalid(format!("`{}`: {reason}", path.display()));
        if header.len() < Self::HEADER_BYTES {
            return Err(invalid(format!("{} bytes is too short for an IDX header", header.len())));
        }
        let field = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes")) as usize;
        if field(0) != 0x0803 {
            return Err(invalid(format!("not an IDX image file (magic {:#x}, expected 0x803)", field(0))));
        }
        let layout = IdxLayout { count: field(4), rows: field(8), columns: field(12) };
        let pixels = layout.rows.checked_mul(layout.columns).filter(|pixels| (1..=MAX_IDX_PIXELS).contains(pixels));
        let Some(pixels) = pixels else {
            return Err(invalid(format!("images of {}x{} pixels are not plausible", layout.rows, layout.columns)));
        };
        let needed = pixels.checked_mul(layout.count).and_then(|bytes| bytes.checked_add(Self::HEADER_BYTES));
        match needed {
            Some(needed) if needed as u64 <= file_bytes => Ok(layout),
            _ => Err(invalid(format!(
                "the header declares {} images of {}x{}, more than the file's {file_bytes} bytes hold (truncated?)",
                layout.count, layout.rows, layout.columns
            ))),
        }
    }

    /// The file bytes the header accounts for.
    pub fn file_bytes(&self) -> usize {
        Self::HEADER_BYTES + self.count * self.rows * self.columns
    }

    /// Where image `index`'s pixels lie in the file; `None` past the last image.
    pub fn pixel_range(&self, index: usize) -> Option<std::ops::Range<usize>> {
        let size = self.rows * self.columns;
        (index < self.count).then(|| {
            let start = Self::HEADER_BYTES + index * size;
            start..start + size
        })
    }
}

/// The labels of an IDX label file (magic `0x0801`, count, then one byte per label), checked
/// against its length.
pub fn parse_idx_labels<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let invalid = |reason: String| GraftError::Invalid(format!("`{}`: {reason}", path.display()));
    if bytes.len() < 8 || u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) != 0x0801 {
        return Err(invalid("not an IDX label file".into()));
    }
    let count = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    bytes[8..]
        .get(..count)
        .ok_or_else(|| invalid(format!("the header declares {count} labels, the file holds {}", bytes.len() - 8)))
}

/// Where one item's image comes from.
#[derive(Debug, Clone)]
pub enum ItemSource {
    File(PathBuf),
    Idx { images: Arc<IdxImages>, index: usize },
}

impl ItemSource {
    /// A name for messages and predictions: the file path, or `file#index` for IDX items.
    pub fn name(&self) -> String {
        match self {
            ItemSource::File(path) => path.display().to_string(),
            ItemSource::Idx { images, index } => format!("{}#{index}", images.path.display()),
        }
    }

    /// The raw bytes that identify the image's content (the file, or the IDX pixels).
    pub fn content(&self) -> Result<Vec<u8>> {
        match self {
            ItemSource::File(path) => {
                crate::fsutil::read_limited(path, crate::fsutil::MAX_IMAGE_FILE_BYTES, "an image")
            }
            ItemSource::Idx { images, index } => images.pixels(*index),
        }
    }

    /// The SHA-256 of [`content`](Self::content): what the feature cache and the duplicate check
    /// know an image by.
    pub fn content_hash(&self) -> Result<[u8; 32]> {
        use sha2::Digest;
        Ok(sha2::Sha256::digest(self.content()?).into())
    }

    /// Decodes the image to RGB (greyscale replicated).
    pub fn load(&self) -> Result<RgbImage> {
        self.load_at_least(u32::MAX)
    }

    /// [`load`](Self::load) for a use that needs a shorter side of only `min_side` pixels: large
    /// JPEGs decode at a reduced scale ([`load_rgb_at_least`]).
    pub fn load_at_least(&self, min_side: u32) -> Result<RgbImage> {
        match self {
            ItemSource::File(path) => load_rgb_at_least(path, min_side),
            ItemSource::Idx { images, index } => {
                let pixels = images.pixels(*index)?;
                let grey = image::GrayImage::from_raw(images.layout.columns as u32, images.layout.rows as u32, pixels)
                    .ok_or_else(|| GraftError::Invalid(format!("bad IDX image size in `{}`", images.path.display())))?;
                Ok(image::DynamicImage::ImageLuma8(grey).to_rgb8())
            }
        }
    }
}

/// One labelled example.
#[derive(Debug, Clone)]
pub struct Item {
    pub source: ItemSource,
    pub label: usize,
}

/// Labelled items and the class names their labels index.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub items: Vec<Item>,
}

/// A training set, and the held-out sets the data came with.
#[derive(Debug, Clone)]
pub struct DataSplits {
    pub train: Dataset,
    /// `DIR/val` (or `valid`, `validation`) when present.
    pub validation: Option<Dataset>,
    /// `DIR/test` when present.
    pub test: Option<Dataset>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items per class, in class order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for item in &self.items {
            counts[item.label] += 1;
        }
        counts
    }

    /// Classes with no items (an empty class folder): the student has an output for each that
    /// it can never learn.
    pub fn empty_classes(&self) -> Vec<&str> {
        self.class_counts()
            .iter()
            .zip(&self.classes)
            .filter(|(count, _)| **count == 0)
            .map(|(_, class)| class.as_str())
            .collect()
    }

    /// Stops with a message on data no classifier can learn from.
    pub fn check_trainable(&self, what: &str) -> Result<()> {
        if self.items.is_empty() {
            return Err(GraftError::Invalid(format!(
                "{what} holds no images\nhint: expected DIR/<class>/<image files>, a CSV manifest `path,label`, or IDX files"
            )));
        }
        let present = self.class_counts().iter().filter(|count| **count > 0).count();
        if present < 2 {
            return Err(GraftError::Invalid(format!(
                "{what} has images of only one class ({}); a classifier needs at least two",
                self.classes.first().map(String::as_str).unwrap_or("?")
            )));
        }
        Ok(())
    }

    /// Splits off a stratified, seeded fraction of each class as a validation set.
    pub fn stratified_split(self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let (train, validation) = stratified_split(self.items, |item| item.label, fraction, seed);
        (Dataset { classes: self.classes.clone(), items: train }, Dataset { classes: self.classes, items: validation })
    }

    /// Keeps at most `per_class` items of each class (the first ones in a seeded shuffle).
    pub fn subsample(self, per_class: usize, seed: u64) -> Dataset {
        let items = subsample(self.items, |item| item.label, self.classes.len(), per_class, seed);
        Dataset { classes: self.classes, items }
    }

    /// Re-labels this set's items with `classes` (from the training set), by class name.
    pub fn align_classes(self, classes: &[String]) -> Result<Dataset> {
        let mut items = Vec::with_capacity(self.items.len());
        for item in self.items {
            let name = &self.classes[item.label];
            let label = classes.iter().position(|class| class == name).ok_or_else(|| {
                GraftError::Invalid(format!(
                    "class `{name}` is not one of the training classes ({})",
                    classes.join(", ")
                ))
            })?;
            items.push(Item { source: item.source, label });
        }
        Ok(Dataset { classes: classes.to_vec(), items })
    }
}

/// Splits labelled items into (kept, held out): a seeded, stratified `fraction` of each class
/// held out, at least one of every class with two or more items. Images and texts split alike.
pub fn stratified_split<T>(items: Vec<T>, label: impl Fn(&T) -> usize, fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    let mut by_class: BTreeMap<usize, Vec<T>> = BTreeMap::new();
    for item in items {
        by_class.entry(label(&item)).or_default().push(item);
    }
    let mut rng = crate::rng::SplitMix64::new(seed ^ 0x5EED_5EED);
    let (mut kept, mut held_out) = (Vec::new(), Vec::new());
    for (_, mut items) in by_class {
        rng.shuffle(&mut items);
        let held = ((items.len() as f64 * fraction).round() as usize)
            .clamp(usize::from(items.len() >= 2), items.len().saturating_sub(1));
        held_out.extend(items.drain(..held));
        kept.extend(items);
    }
    (kept, held_out)
}

/// At most `per_class` items of each of `classes` classes: the first ones in a seeded shuffle.
pub fn subsample<T>(
    mut items: Vec<T>,
    label: impl Fn(&T) -> usize,
    classes: usize,
    per_class: usize,
    seed: u64,
) -> Vec<T> {
    crate::rng::SplitMix64::new(seed).shuffle(&mut items);
    let mut taken = vec![0usize; classes];
    items.retain(|item| {
        taken[label(item)] += 1;
        taken[label(item)] <= per_class
    });
    items
}

/// Validation items whose bytes are identical to a training item's, as (validation, training)
/// names: a model is then scored on images it trained on, and its validation accuracy reads
/// higher than it will be on new data. Unreadable items are left out (they are reported where
/// they are decoded).
pub fn duplicates_across(train: &Dataset, validation: &Dataset) -> Vec<(String, String)> {
    let hashed = |dataset: &Dataset| -> Vec<(String, [u8; 32])> {
        dataset
            .items
            .iter()
            .filter_map(|item| item.source.content_hash().ok().map(|hash| (item.source.name(), hash)))
            .collect()
    };
    duplicates_among(hashed(train), hashed(validation))
}

/// [`duplicates_across`] on (name, content hash) pairs already computed (the feature cache has
/// them): the validation names whose hash a training name has too, with that training name.
pub fn duplicates_among(
    train: impl IntoIterator<Item = (String, [u8; 32])>,
    validation: impl IntoIterator<Item = (String, [u8; 32])>,
) -> Vec<(String, String)> {
    let seen: std::collections::HashMap<[u8; 32], String> =
        train.into_iter().map(|(name, hash)| (hash, name)).collect();
    validation.into_iter().filter_map(|(name, hash)| seen.get(&hash).map(|original| (name, original.clone()))).collect()
}

/// Opens `path` as a data set: a folder (`<class>/` folders, or `train/` + `val/`/`test/`
/// folders of those, or IDX files), or a CSV manifest. IDX and CSV data hold no class names
/// unless given: a `classes.txt` beside them (one name per line) supplies them.
pub fn open(path: &Path, cache_dir: &Path) -> Result<DataSplits> {
    if path.is_file() {
        if path.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("csv")) {
            return Ok(DataSplits { train: open_csv(path)?, validation: None, test: None });
        }
        if is_idx_name(path) {
            return Ok(DataSplits { train: open_idx_images(path, cache_dir)?, validation: None, test: None });
        }
        return Err(GraftError::Invalid(format!(
            "`{}` is a file but neither a CSV manifest nor an IDX image file",
            path.display()
        )));
    }
    if !path.is_dir() {
        return Err(GraftError::Invalid(format!("data `{}` does not exist", path.display())));
    }
    // IDX pair(s) in the folder: train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz].
    if let Some(train) = find_file(path, "train-images-idx3-ubyte") {
        let test =
            find_file(path, "t10k-images-idx3-ubyte").map(|test| open_idx_images(&test, cache_dir)).transpose()?;
        return Ok(DataSplits { train: open_idx_images(&train, cache_dir)?, validation: None, test });
    }
    let sub = |names: &[&str]| names.iter().map(|name| path.join(name)).find(|dir| dir.is_dir());
    if let Some(train) = sub(&["train", "training"]) {
        let train = open_folder(&train)?;
        let validation = sub(&["val", "valid", "validation"])
            .map(|dir| open_folder(&dir)?.align_classes(&train.classes))
            .transpose()?;
        let test = sub(&["test", "testing"]).map(|dir| open_folder(&dir)?.align_classes(&train.classes)).transpose()?;
        return Ok(DataSplits { train, validation, test });
    }
    Ok(DataSplits { train: open_folder(path)?, validation: None, test: None })
}

/// `DIR/<class>/<images>`: classes are the sub-folder names, sorted.
pub fn open_folder(dir: &Path) -> Result<Dataset> {
    let list = |dir: &Path| -> Result<Vec<PathBuf>> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| GraftError::Io { path: dir.to_owned(), source })?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        entries.sort();
        Ok(entries)
    };
    let class_dirs: Vec<PathBuf> = list(dir)?.into_iter().filter(|path| path.is_dir()).collect();
    let classes: Vec<String> =
        class_dirs.iter().map(|dir| dir.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    let mut items = Vec::new();
    for (label, class_dir) in class_dirs.iter().enumerate() {
        for file in list(class_dir)? {
            if file.is_file() && is_image_path(&file) {
                items.push(Item { source: ItemSource::File(file), label });
            }
        }
    }
    Ok(Dataset { classes, items })
}

/// A CSV manifest with a header naming `path` and `label` columns; relative paths are relative
/// to the manifest's folder. Classes are the distinct labels, sorted.
pub fn open_csv(path: &Path) -> Result<Dataset> {
    let invalid = |what: String| GraftError::Invalid(format!("`{}`: {what}", path.display()));
    crate::fsutil::check_regular(path, crate::fsutil::MAX_DATA_FILE_BYTES, "a CSV manifest")?;
    let file = std::fs::File::open(path).map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    let mut reader =
        csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(std::io::BufReader::new(file));
    let header: Vec<String> =
        reader.headers().map_err(|error| invalid(error.to_string()))?.iter().map(str::to_ascii_lowercase).collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(path_column), Some(label_column)) = (column("path"), column("label")) else {
        return Err(invalid(format!("needs a header with `path` and `label` columns, found {header:?}")));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|error| invalid(error.to_string()))?;
        let line = record.position().map_or(0, csv::Position::line);
        let (Some(file), Some(label)) = (record.get(path_column), record.get(label_column)) else {
            return Err(invalid(format!("line {line}: expected {} columns, found {}", header.len(), record.len())));
        };
        if file.is_empty() || label.is_empty() {
            return Err(invalid(format!("line {line}: empty `path` or `label`")));
        }
        rows.push((base.join(file), label.to_owned()));
    }
    let mut classes: Vec<String> = rows.iter().map(|(_, label)| label.clone()).collect();
    classes.sort();
    classes.dedup();
    let items = rows
        .into_iter()
        .map(|(file, label)| {
            let label =
                classes.binary_search(&label).expect("every row's label is among the classes built from the rows");
            Item { source: ItemSource::File(file), label }
        })
        .collect();
    Ok(Dataset { classes, items })
}

fn is_idx_name(path: &Path) -> bool {
    path.file_name().is_some_and(|name| name.to_string_lossy().contains("-idx3-ubyte"))
}

fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [stem.to_owned(), format!("{stem}.gz")].into_iter().map(|name| dir.join(name)).find(|path| path.is_file())
}

/// Reads an IDX image file and its label file (`-images-idx3-` -> `-labels-idx1-`).
fn open_idx_images(images_path: &Path, cache_dir: &Path) -> Result<Dataset> {
    let name = images_path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let labels_path = images_path.with_file_name(name.replace("images-idx3", "labels-idx1"));
    let images = Arc::new(open_idx_file(images_path, cache_dir)?);
    // A label file holds a byte per image: reading more than that (a gzip bomb) is refused.
    let labels = read_maybe_gz(&labels_path, 8 + images.layout.count as u64)?;
    let labels = parse_idx_labels(&labels_path, &labels)?;
    if images.layout.count != labels.len() {
        return Err(GraftError::Invalid(format!(
            "`{}` has {} images but `{}` has {} labels",
            images_path.display(),
            images.layout.count,
            labels_path.display(),
            labels.len()
        )));
    }
    let class_count = labels.iter().copied().max().map_or(0, |max| max as usize + 1);
    let classes = match std::fs::read_to_string(images_path.with_file_name("classes.txt")) {
        Ok(text) => text.lines().map(str::trim).filter(|line| !line.is_empty()).map(str::to_owned).collect(),
        Err(_) => (0..class_count).map(|class| class.to_string()).collect::<Vec<_>>(),
    };
    if classes.len() < class_count {
        return Err(GraftError::Invalid(format!(
            "classes.txt names {} classes but the labels go up to {}",
            classes.len(),
            class_count - 1
        )));
    }
    let items = labels
        .iter()
        .enumerate()
        .map(|(index, label)| Item {
            source: ItemSource::Idx { images: images.clone(), index },
            label: *label as usize,
        })
        .collect();
    Ok(Dataset { classes, items })
}

/// A file's bytes, gunzipped when its name ends in `.gz`; more than `limit` bytes is an error.
fn read_maybe_gz(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|extension| extension == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    if bytes.len() as u64 > limit {
        return Err(GraftError::Invalid(format!("`{}` holds more than the {limit} bytes it should", path.display())));
    }
    Ok(bytes)
}

/// Opens an IDX image file for random access; a gzipped one is decompressed once into the
/// cache, under a name derived from the compressed file's content (SHA-256), so an edited file
/// never reuses a stale copy.
fn open_idx_file(path: &Path, cache_dir: &Path) -> Result<IdxImages> {
    let io = |source| GraftError::Io { path: path.to_owned(), source };
    let plain = if path.extension().is_some_and(|extension| extension == "gz") {
        let digest = crate::weights::sha256_file(path)?;
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let target = cache_dir.join("idx").join(format!("{stem}-{}.idx", &digest[..32]));
        if !target.is_file() {
            gunzip_idx(path, &target)?;
        }
        target
    } else {
        path.to_owned()
    };
    let file = File::open(&plain).map_err(|source| GraftError::Io { path: plain.clone(), source })?;
    let length = file.metadata().map_err(io)?.len();
    let mut header = [0u8; IdxLayout::HEADER_BYTES];
    read_exact_at(&file, &mut header, 0).map_err(|source| match source.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            GraftError::Invalid(format!("`{}` is too short for an IDX file", path.display()))
        }
        _ => GraftError::Io { path: plain.clone(), source },
    })?;
    let layout = IdxLayout::parse(path, &header, length)?;
    Ok(IdxImages { path: path.to_owned(), file, layout })
}

/// How many times its compressed size a gzipped IDX file may declare. Real image sets compress
/// 3-10x (MNIST 4.8x, Fashion-MNIST 2.5x); deflate's own limit is about 1,030x, which is what a
/// crafted header of zeros reaches (1 MB declaring 1 GiB).
pub const MAX_IDX_GZIP_RATIO: u64 = 100;

/// Decompresses a gzipped IDX image file into `target`, streaming, and stops at the size its
/// header declares: a file that holds less is truncated, and one that would inflate to more
/// (a gzip bomb) is never written past that. A header that declares more than
/// [`MAX_IDX_GZIP_RATIO`] times the compressed size is refused before anything is written.
fn gunzip_idx(path: &Path, target: &Path) -> Result<()> {
    let io = |source| GraftError::Io { path: path.to_owned(), source };
    crate::fsutil::check_regular(path, u64::MAX, "an IDX file")?;
    let compressed = std::fs::metadata(path).map_err(io)?.len();
    let mut reader = flate2::read::GzDecoder::new(std::io::BufReader::new(File::open(path).map_err(io)?));
    let mut header = [0u8; IdxLayout::HEADER_BYTES];
    reader
        .read_exact(&mut header)
        .map_err(|_| GraftError::Invalid(format!("`{}` is too short (or not gzip) for an IDX file", path.display())))?;
    let layout = IdxLayout::parse(path, &header, u64::MAX)?;
    let declared = layout.file_bytes() as u64;
    if declared > compressed.saturating_mul(MAX_IDX_GZIP_RATIO) {
        return Err(GraftError::Invalid(format!(
            "`{}` declares {} images of {}x{} ({declared} bytes) in {compressed} bytes of gzip, more than {MAX_IDX_GZIP_RATIO} \
             times its size: real images do not compress that far (damaged, or made to fill the disk)\n\
             hint: if it is real, decompress it yourself (`gunzip -k`) and give graft the plain file",
            path.display(),
            layout.count,
            layout.rows,
            layout.columns
        )));
    }
    let body = declared - IdxLayout::HEADER_BYTES as u64;
    crate::fsutil::write_atomic_with(target, |temporary| {
        let mut out = std::io::BufWriter::new(
            File::create(temporary).map_err(|source| GraftError::Io { path: temporary.to_owned(), source })?,
        );
        std::io::Write::write_all(&mut out, &header)
            .map_err(|source| GraftError::Io { path: temporary.to_owned(), source })?;
        let copied = std::io::copy(&mut (&mut reader).take(body), &mut out).map_err(io)?;
        if copied < body {
            return Err(GraftError::Invalid(format!(
                "`{}` is truncated: its header declares {} images of {}x{}, it holds {copied} of their {body} bytes",
                path.display(),
                layout.count,
                layout.rows,
                layout.columns
            )));
        }
        std::io::Write::flush(&mut out).map_err(|source| GraftError::Io { path: temporary.to_owned(), source })
    })
}

/// Fills `buffer` from `file` at `offset` without moving a shared cursor, so threads can read one
/// open file at once.
#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buffer: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buffer.is_empty() {
        match file.seek_read(buffer, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(read) => {
                buffer = &mut buffer[read..];
                offset += read as u64;
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Elsewhere through a handle of its own (`try_clone` shares the cursor), under a lock.
#[cfg(not(any(unix, windows)))]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut handle = file;
    handle.seek(SeekFrom::Start(offset))?;
    handle.read_exact(buffer)
}
