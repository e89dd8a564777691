//! Labelled texts: a CSV or TSV with a header, JSON Lines, or a folder of `.txt` files per class.

use std::path::{Path, PathBuf};

use crate::data::dataset::{stratified_split, subsample};
use crate::error::{GraftError, Result};

/// Column (or JSON key) names tried, in order, when none is given.
pub const TEXT_COLUMNS: &[&str] = &["text", "sentence", "review", "content", "message", "body", "document"];
pub const LABEL_COLUMNS: &[&str] = &["label", "category", "class", "target", "sentiment", "y"];

/// One labelled text and where it came from (`file:line`, or the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextItem {
    pub text: String,
    pub label: usize,
    pub location: String,
}

/// A row that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    pub location: String,
    pub reason: String,
}

/// Labelled texts and the class names their labels index (sorted).
#[derive(Debug, Clone, Default)]
pub struct TextDataset {
    pub classes: Vec<String>,
    pub items: Vec<TextItem>,
    /// Rows left out (no label, unreadable file): reported, not fatal.
    pub skipped: Vec<SkippedRow>,
}

/// Which columns hold the text and the label; `None` tries [`TEXT_COLUMNS`] / [`LABEL_COLUMNS`].
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub text: Option<String>,
    pub label: Option<String>,
}

impl TextDataset {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn texts(&self) -> Vec<&str> {
        self.items.iter().map(|item| item.text.as_str()).collect()
    }

    pub fn labels(&self) -> Vec<usize> {
        self.items.iter().map(|item| item.label).collect()
    }

    /// Texts per class, in class order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for item in &self.items {
            counts[item.label] += 1;
        }
        counts
    }

    /// Stops with a message on data no classifier can learn from.
    ///
    /// # Errors
    /// No texts, or texts of one class only.
    pub fn check_trainable(&self, what: &str) -> Result<()> {
        if self.items.is_empty() {
            return Err(GraftError::Invalid(format!(
                "{what} holds no labelled texts\nhint: expected a CSV or JSONL with text and label columns, or DIR/<class>/<.txt files>"
            )));
        }
        if self.class_counts().iter().filter(|count| **count > 0).count() < 2 {
            return Err(GraftError::Invalid(format!(
                "{what} has texts of only one class; a classifier needs at least two"
            )));
        }
        Ok(())
    }

    /// Splits off a stratified, seeded fraction of each class, as images are split.
    pub fn stratified_split(self, fraction: f64, seed: u64) -> (TextDataset, TextDataset) {
        let (train, validation) = stratified_split(self.items, |item| item.label, fraction, seed);
        (
            TextDataset { classes: self.classes.clone(), items: train, skipped: self.skipped },
            TextDataset { classes: self.classes, items: validation, skipped: Vec::new() },
        )
    }

    /// Keeps at most `per_class` texts of each class (the first ones in a seeded shuffle).
    pub fn subsample(self, per_class: usize, seed: u64) -> TextDataset {
        let items = subsample(self.items, |item| item.label, self.classes.len(), per_class, seed);
        TextDataset { items, ..self }
    }

    /// Re-labels this set's texts with `classes` (the training set's), by class name.
    ///
    /// # Errors
    /// A class the training set does not have.
    pub fn align_classes(self, classes: &[String]) -> Result<TextDataset> {
        let mut items = Vec::with_capacity(self.items.len());
        for item in self.items {
            let name = &self.classes[item.label];
            let label = classes.iter().position(|class| class == name).ok_or_else(|| {
                GraftError::Invalid(format!(
                    "class `{name}` ({}) is not one of the training classes ({})",
                    item.location,
                    classes.join(", ")
                ))
            })?;
            items.push(TextItem { label, ..item });
        }
        Ok(TextDataset { classes: classes.to_vec(), items, skipped: self.skipped })
    }

    fn from_rows(rows: Vec<(String, String, String)>, skipped: Vec<SkippedRow>) -> TextDataset {
        let mut classes: Vec<String> = rows.iter().map(|(_, label, _)| label.clone()).collect();
        classes.sort();
        classes.dedup();
        let items = rows
            .into_iter()
            .map(|(text, label, location)| {
                let label = classes.binary_search(&label).unwrap_or_default();
                TextItem { text, label, location }
            })
            .collect();
        TextDataset { classes, items, skipped }
    }
}

/// Opens labelled texts: a `.csv`/`.tsv` file with a header, a `.jsonl`/`.ndjson` file of
/// objects, or a folder of class folders of `.txt` files (one text per file).
///
/// # Errors
/// A path that is none of these, a file that cannot be read or parsed, or no text or label
/// column.
pub fn open(path: &Path, columns: &Columns) -> Result<TextDataset> {
    if path.is_dir() {
        return open_folder(path);
    }
    let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "csv" => open_delimited(path, b',', columns),
        "tsv" => open_delimited(path, b'\t', columns),
        "jsonl" | "ndjson" => open_jsonl(path, columns),
        _ if !path.exists() => Err(GraftError::Invalid(format!("data `{}` does not exist", path.display()))),
        _ => Err(GraftError::Invalid(format!(
            "`{}` is neither a CSV/TSV, a JSON Lines file nor a folder of class folders of .txt files",
            path.display()
        ))),
    }
}

fn pick(header: &[String], wanted: Option<&str>, defaults: &[&str], what: &'static str, path: &Path) -> Result<usize> {
    let position = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let found = match wanted {
        Some(name) => position(name),
        None => defaults.iter().find_map(|name| position(name)),
    };
    found.ok_or_else(|| GraftError::MissingColumn {
        path: path.to_owned(),
        what,
        tried: match wanted {
            Some(name) => vec![name.to_owned()],
            None => defaults.iter().map(|name| (*name).to_owned()).collect(),
        },
        columns: header.to_vec(),
    })
}

fn open_delimited(path: &Path, delimiter: u8, columns: &Columns) -> Result<TextDataset> {
    crate::fsutil::check_regular(path, crate::fsutil::MAX_DATA_FILE_BYTES, "a table of texts")?;
    let file = std::fs::File::open(path).map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    let mut reader =
        csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(std::io::BufReader::new(file));
    let bad = |location: String, reason: String| GraftError::TextData { path: path.to_owned(), location, reason };
    let header: Vec<String> = reader
        .headers()
        .map_err(|error| bad("header".to_owned(), error.to_string()))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let text_column = pick(&header, columns.text.as_deref(), TEXT_COLUMNS, "text", path)?;
    let label_column = pick(&header, columns.label.as_deref(), LABEL_COLUMNS, "label", path)?;
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(|error| {
            bad(error.position().map_or_else(String::new, |p| format!("line {}", p.line())), error.to_string())
        })?;
        let location = format!("{}:{}", path.display(), record.position().map_or(0, csv::Position::line));
        let label = record.get(label_column).unwrap_or("").trim();
        match record.get(text_column) {
            _ if label.is_empty() => skipped.push(SkippedRow { location, reason: "no label".to_owned() }),
            None => skipped.push(SkippedRow { location, reason: format!("{} fields, no text column", record.len()) }),
            Some(text) => rows.push((text.to_owned(), label.to_owned(), location)),
        }
    }
    Ok(TextDataset::from_rows(rows, skipped))
}

fn open_jsonl(path: &Path, columns: &Columns) -> Result<TextDataset> {
    let content = crate::fsutil::read_text_limited(path, crate::fsutil::MAX_DATA_FILE_BYTES, "a JSONL of texts")?;
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    let key = |object: &serde_json::Map<String, serde_json::Value>,
               wanted: Option<&str>,
               defaults: &[&str]|
     -> Option<serde_json::Value> {
        match wanted {
            Some(name) => object.get(name).cloned(),
            None => defaults.iter().find_map(|name| object.get(*name).cloned()),
        }
    };
    for (index, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let location = format!("{}:{}", path.display(), index + 1);
        let value: serde_json::Value = serde_json::from_str(line).map_err(|error| GraftError::TextData {
            path: path.to_owned(),
            location: format!("line {}", index + 1),
            reason: error.to_string(),
        })?;
        let Some(object) = value.as_object() else {
            skipped.push(SkippedRow { location, reason: "not a JSON object".to_owned() });
            continue;
        };
        let text = key(object, columns.text.as_deref(), TEXT_COLUMNS);
        let label = key(object, columns.label.as_deref(), LABEL_COLUMNS);
        let label = match label {
            Some(serde_json::Value::String(label)) if !label.trim().is_empty() => label.trim().to_owned(),
            Some(serde_json::Value::Number(number)) => number.to_string(),
            Some(serde_json::Value::Bool(flag)) => flag.to_string(),
            _ => {
                skipped.push(SkippedRow { location, reason: "no label".to_owned() });
                continue;
            }
        };
        match text {
            Some(serde_json::Value::String(text)) => rows.push((text, label, location)),
            _ => skipped.push(SkippedRow { location, reason: "no text".to_owned() }),
        }
    }
    Ok(TextDataset::from_rows(rows, skipped))
}

/// `DIR/<class>/<files>.txt`: each file one text (read as UTF-8; other bytes replaced).
fn open_folder(dir: &Path) -> Result<TextDataset> {
    let list = |dir: &Path| -> Result<Vec<PathBuf>> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| GraftError::Io { path: dir.to_owned(), source })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        Ok(entries)
    };
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for class_dir in list(dir)?.into_iter().filter(|path| path.is_dir()) {
        let class = class_dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        for file in list(&class_dir)? {
            if !file.is_file() || !file.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt")) {
                continue;
            }
            match crate::fsutil::read_limited(&file, crate::fsutil::MAX_DATA_FILE_BYTES, "a text") {
                Ok(bytes) => {
                    rows.push((String::from_utf8_lossy(&bytes).into_owned(), class.clone(), file.display().to_string()))
                }
                Err(error) => {
                    skipped.push(SkippedRow { location: file.display().to_string(), reason: error.to_string() })
                }
            }
        }
    }
    Ok(TextDataset::from_rows(rows, skipped))
}

/// A training set and the validation and test sets the data came with.
#[derive(Debug, Clone)]
pub struct TextSplits {
    pub train: TextDataset,
    pub validation: Option<TextDataset>,
    pub test: Option<TextDataset>,
}

/// Opens data that may come split: a folder holding `train.csv` (or `.tsv`, `.jsonl`) with
/// `val`/`validation` and `test` files beside it, or `train/`, `val/`, `test/` class folders;
/// anything else is one training set ([`open`]). Validation and test sets take the training
/// set's classes.
///
/// # Errors
/// As [`open`], or a validation or test class the training set lacks.
pub fn open_splits(path: &Path, columns: &Columns) -> Result<TextSplits> {
    let find = |stems: &[&str]| -> Option<PathBuf> {
        if !path.is_dir() {
            return None;
        }
        stems
            .iter()
            .flat_map(|stem| {
                ["csv", "tsv", "jsonl", "ndjson"].iter().map(move |extension| path.join(format!("{stem}.{extension}")))
            })
            .find(|file| file.is_file())
            .or_else(|| stems.iter().map(|stem| path.join(stem)).find(|dir| dir.is_dir()))
    };
    let Some(train_path) = find(&["train", "training"]) else {
        return Ok(TextSplits { train: open(path, columns)?, validation: None, test: None });
    };
    let train = open(&train_path, columns)?;
    let aligned =
        |stems: &[&str]| find(stems).map(|other| open(&other, columns)?.align_classes(&train.classes)).transpose();
    let validation = aligned(&["val", "valid", "validation"])?;
    let test = aligned(&["test", "testing"])?;
    Ok(TextSplits { train, validation, test })
}

/// Texts to predict: one per line of a file (or of standard input, `-`), blank lines left out.
///
/// # Errors
/// A file that cannot be read.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let content = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|source| GraftError::Io { path: path.to_owned(), source })?
    } else {
        crate::fsutil::read_text_limited(path, crate::fsutil::MAX_DATA_FILE_BYTES, "a list of texts")?
    };
    Ok(content.lines().filter(|line| !line.trim().is_empty()).map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("graft-text-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn csv_with_default_columns_quotes_and_a_row_without_label() {
        let path = write(
            "a.csv",
            "id,Text,label\n1,\"great, truly great\",pos\n2,awful,neg\n3,no label here,\n4,\"multi\nline\",pos\n",
        );
        let data = open(&path, &Columns::default()).unwrap();
        assert_eq!(data.classes, ["neg", "pos"]);
        assert_eq!(data.texts(), ["great, truly great", "awful", "multi\nline"]);
        assert_eq!(data.labels(), [1, 0, 1]);
        assert_eq!(data.skipped.len(), 1);
        assert!(
            data.skipped[0].location.ends_with("a.csv:4") && data.skipped[0].reason == "no label",
            "{:?}",
            data.skipped
        );
    }

    #[test]
    fn named_columns_and_a_missing_one() {
        let path = write("b.tsv", "snippet\tverdict\nfine\tfresh\nbad\trotten\n");
        let columns = Columns { text: Some("snippet".to_owned()), label: Some("verdict".to_owned()) };
        assert_eq!(open(&path, &columns).unwrap().texts(), ["fine", "bad"]);
        let message = open(&path, &Columns::default()).unwrap_err().to_string();
        assert!(
            message.contains("b.tsv") && message.contains("no text column") && message.contains("snippet"),
            "{message}"
        );
    }

    #[test]
    fn jsonl_with_numeric_labels_and_bad_rows() {
        let path = write(
            "c.jsonl",
            "{\"text\": \"héllo\", \"label\": 1}\n\n{\"text\": \"bye\", \"label\": 0}\n[1, 2]\n{\"text\": \"x\"}\n",
        );
        let data = open(&path, &Columns::default()).unwrap();
        assert_eq!(data.texts(), ["héllo", "bye"]);
        assert_eq!(data.classes, ["0", "1"]);
        assert_eq!(
            data.skipped.iter().map(|s| s.reason.as_str()).collect::<Vec<_>>(),
            ["not a JSON object", "no label"]
        );
        let broken = write("d.jsonl", "{\"text\": \"ok\", \"label\": \"a\"}\n{not json\n");
        let message = open(&broken, &Columns::default()).unwrap_err().to_string();
        assert!(message.contains("d.jsonl") && message.contains("line 2"), "{message}");
    }

    #[test]
    fn the_split_is_stratified_and_seeded() {
        let rows =
            (0..40).map(|i| (format!("t{i}"), if i % 4 == 0 { "a" } else { "b" }.to_owned(), i.to_string())).collect();
        let data = TextDataset::from_rows(rows, Vec::new());
        let (train, validation) = data.clone().stratified_split(0.2, 3);
        assert_eq!((train.class_counts(), validation.class_counts()), (vec![8, 24], vec![2, 6]));
        assert_eq!(data.stratified_split(0.2, 3).1.texts(), validation.texts());
    }
}
