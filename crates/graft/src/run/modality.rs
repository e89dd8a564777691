//! Images and texts as two modalities of one thing: what a teacher or student reads decides how
//! labelled data is opened, what its inputs are (file paths or the texts themselves) and what
//! their rows are called. Everything that differs between the two is decided here, once, so
//! that callers (the CLI, a server, Python) hold a `LabelledData` or a list of inputs and never
//! ask which kind they hold.

use std::path::{Path, PathBuf};

use crate::data::dataset::{self, Dataset};
use crate::error::{GraftError, Result};
use crate::predict::ClassScore;
use crate::text::{Columns, TextDataset};

pub use crate::modality::Modality;

/// How labelled data is opened: where image decodes are cached (IDX files are unpacked there)
/// and which columns hold a text set's texts and labels.
#[derive(Debug, Clone)]
pub struct DataOptions {
    pub cache_dir: PathBuf,
    pub columns: Columns,
}

impl Default for DataOptions {
    fn default() -> DataOptions {
        DataOptions { cache_dir: crate::fsutil::default_cache_dir(), columns: Columns::default() }
    }
}

/// One labelled set of either modality.
#[derive(Debug, Clone)]
pub enum LabelledSet {
    Images(Dataset),
    Texts(TextDataset),
}

impl LabelledSet {
    pub fn modality(&self) -> Modality {
        match self {
            LabelledSet::Images(_) => Modality::Image,
            LabelledSet::Texts(_) => Modality::Text,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            LabelledSet::Images(set) => set.len(),
            LabelledSet::Texts(set) => set.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn classes(&self) -> &[String] {
        match self {
            LabelledSet::Images(set) => &set.classes,
            LabelledSet::Texts(set) => &set.classes,
        }
    }

    /// Examples per class, in class order.
    pub fn class_counts(&self) -> Vec<usize> {
        match self {
            LabelledSet::Images(set) => set.class_counts(),
            LabelledSet::Texts(set) => set.class_counts(),
        }
    }

    /// Rows of the data that could not be used (a text row without a label, an unreadable text
    /// file), as `location: reason`. Unreadable images are found when they are decoded and
    /// reported by the verb that decodes them.
    pub fn skipped_rows(&self) -> Vec<String> {
        match self {
            LabelledSet::Images(_) => Vec::new(),
            LabelledSet::Texts(set) => {
                set.skipped.iter().map(|row| format!("{}: {}", row.location, row.reason)).collect()
            }
        }
    }

    /// At most `per_class` examples of each class, drawn with `seed`.
    #[must_use]
    pub fn subsample(self, per_class: usize, seed: u64) -> LabelledSet {
        match self {
            LabelledSet::Images(set) => LabelledSet::Images(set.subsample(per_class, seed)),
            LabelledSet::Texts(set) => LabelledSet::Texts(set.subsample(per_class, seed)),
        }
    }

    /// `fraction` of each class held out, drawn with `seed`: (the rest, the held-out part).
    pub fn stratified_split(self, fraction: f64, seed: u64) -> (LabelledSet, LabelledSet) {
        match self {
            LabelledSet::Images(set) => {
                let (train, held) = set.stratified_split(fraction, seed);
                (LabelledSet::Images(train), LabelledSet::Images(held))
            }
            LabelledSet::Texts(set) => {
                let (train, held) = set.stratified_split(fraction, seed);
                (LabelledSet::Texts(train), LabelledSet::Texts(held))
            }
        }
    }

    /// Fails, naming `what`, when the set cannot train a classifier (fewer than two classes, an
    /// empty class).
    pub fn check_trainable(&self, what: &str) -> Result<()> {
        match self {
            LabelledSet::Images(set) => set.check_trainable(what),
            LabelledSet::Texts(set) => set.check_trainable(what),
        }
    }
}

/// Labelled data as it came: a training set, and the validation and test sets it came with.
#[derive(Debug, Clone)]
pub struct LabelledData {
    /// Where it was opened from, as recorded in a run's `graft.json`.
    pub path: PathBuf,
    pub train: LabelledSet,
    pub validation: Option<LabelledSet>,
    pub test: Option<LabelledSet>,
}

impl LabelledData {
    /// Opens labelled data for a model of `modality`: for images a class-per-folder tree
    /// (optionally split into `train/`, `val/`, `test/`), a CSV `path,label` or IDX files; for
    /// texts a CSV/TSV, JSON Lines or `.txt` files per class folder (optionally split likewise).
    ///
    /// # Errors
    /// Data that cannot be read, or that holds no labelled example.
    pub fn open(path: &Path, modality: Modality, options: &DataOptions) -> Result<LabelledData> {
        let (train, validation, test) = match modality {
            Modality::Image => {
                let splits = dataset::open(path, &options.cache_dir)?;
                (
                    LabelledSet::Images(splits.train),
                    splits.validation.map(LabelledSet::Images),
                    splits.test.map(LabelledSet::Images),
                )
            }
            Modality::Text => {
                let splits = crate::text::data::open_splits(path, &options.columns)?;
                (
                    LabelledSet::Texts(splits.train),
                    splits.validation.map(LabelledSet::Texts),
                    splits.test.map(LabelledSet::Texts),
                )
            }
        };
        Ok(LabelledData { path: path.to_owned(), train, validation, test })
    }

    pub fn modality(&self) -> Modality {
        self.train.modality()
    }

    /// The set a trained student is scored on: the test part when the data has one, else
    /// everything it holds for training.
    pub fn scoring_set(self) -> LabelledSet {
        self.test.unwrap_or(self.train)
    }
}

/// The inputs of `predict` and `embed`: `arguments`, then the lines of `file` (`-`: standard
/// input; blank lines left out). For images each is a file path, and a folder stands for the
/// image files in it (sorted); for texts each is a text.
///
/// # Errors
/// A file that cannot be read, a folder that cannot be listed or holds no image, no input at all.
pub fn read_inputs(modality: Modality, arguments: &[String], file: Option<&Path>) -> Result<Vec<String>> {
    let mut given = arguments.to_vec();
    if let Some(file) = file {
        given.extend(crate::text::data::read_lines(file)?);
    }
    let inputs = match modality {
        Modality::Text => given,
        Modality::Image => expand_image_folders(&given)?,
    };
    if inputs.is_empty() {
        return Err(GraftError::Invalid(format!("no {} given", modality.noun())));
    }
    Ok(inputs)
}

/// Folders replaced by the image files inside them (sorted); anything else kept as given.
fn expand_image_folders(inputs: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        let path = Path::new(input);
        if !path.is_dir() {
            out.push(input.clone());
            continue;
        }
        let listing = std::fs::read_dir(path).map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
        let mut files: Vec<PathBuf> = listing
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|file| file.is_file() && crate::data::image::is_image_path(file))
            .collect();
        if files.is_empty() {
            return Err(GraftError::Invalid(format!("`{}` holds no image files", path.display())));
        }
        files.sort();
        out.extend(files.iter().map(|file| file.display().to_string()));
    }
    Ok(out)
}

/// Inputs that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedInput {
    pub input: String,
    pub reason: String,
}

/// Top classes for each input that could be read, in input order.
#[derive(Debug, Clone)]
pub struct Predictions {
    pub modality: Modality,
    /// (the input, its most probable classes).
    pub rows: Vec<(String, Vec<ClassScore>)>,
    pub skipped: Vec<SkippedInput>,
    /// Texts longer than the teacher reads, cut to fit.
    pub truncated: usize,
}

/// Feature vectors for each input that could be read, in input order.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub modality: Modality,
    /// (the input, its features).
    pub rows: Vec<(String, Vec<f32>)>,
    pub skipped: Vec<SkippedInput>,
    pub truncated: usize,
}

/// `skipped` as [`SkippedInput`]s.
pub(crate) fn skipped_inputs(skipped: Vec<crate::train::cache::Skipped>) -> Vec<SkippedInput> {
    skipped.into_iter().map(|bad| SkippedInput { input: bad.name, reason: bad.reason }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_texts_or_paths_with_folders_expanded() {
        let dir = std::env::temp_dir().join(format!("graft-inputs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("photos")).unwrap();
        for name in ["b.png", "a.jpg", "notes.txt"] {
            std::fs::write(dir.join("photos").join(name), b"").unwrap();
        }
        let lines = dir.join("lines.txt");
        std::fs::write(&lines, "one\n\n  \ntwo\n").unwrap();
        let folder = dir.join("photos").display().to_string();

        let texts = read_inputs(Modality::Text, std::slice::from_ref(&folder), Some(&lines)).unwrap();
        assert_eq!(texts, [folder.as_str(), "one", "two"]);
        let images = read_inputs(Modality::Image, &[folder, "x.png".to_owned()], None).unwrap();
        let names: Vec<&str> = images.iter().map(|path| path.rsplit('/').next().unwrap()).collect();
        assert_eq!(names, ["a.jpg", "b.png", "x.png"]);

        let error = read_inputs(Modality::Text, &[], None).unwrap_err().to_string();
        assert!(error.contains("no texts given"), "{error}");
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        let error =
            read_inputs(Modality::Image, &[dir.join("empty").display().to_string()], None).unwrap_err().to_string();
        assert!(error.contains("holds no image files"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
