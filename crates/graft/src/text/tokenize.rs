//! Texts to token ids, through the model's own `tokenizer.json` (the Hugging Face `tokenizers`
//! crate: the same Rust code Python's `tokenizers` runs), truncated to the model's limit and
//! padded per batch.

use std::path::{Path, PathBuf};

use tokenizers::{PostProcessor, Tokenizer, TruncationParams};

use super::bert::TokenBatch;
use crate::error::{GraftError, Result};

/// A model's tokenizer with padding off and truncation at the model's limit.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
    file: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("file", &self.file).field("max_length", &self.max_length).finish()
    }
}

/// One text's token ids, special tokens included, after truncation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<i64>,
    /// Segment ids (all 0 for a single sentence).
    pub type_ids: Vec<i64>,
    /// Whether the text was longer than the model's limit and lost its end.
    pub truncated: bool,
}

impl TokenBatch {
    /// Pads `sequences` with id 0 to the longest of them, mask 0 on the padding.
    pub fn pad(sequences: &[&Encoded]) -> TokenBatch {
        let length = sequences.iter().map(|sequence| sequence.ids.len()).max().unwrap_or(0).max(1);
        let rows = sequences.len();
        let mut batch = TokenBatch {
            ids: vec![0; rows * length],
            type_ids: vec![0; rows * length],
            mask: vec![0.0; rows * length],
            rows,
            length,
        };
        for (row, sequence) in sequences.iter().enumerate() {
            let start = row * length;
            batch.ids[start..start + sequence.ids.len()].copy_from_slice(&sequence.ids);
            batch.type_ids[start..start + sequence.type_ids.len()].copy_from_slice(&sequence.type_ids);
            batch.mask[start..start + sequence.ids.len()].fill(1.0);
        }
        batch
    }
}

impl TextTokenizer {
    /// Reads `tokenizer.json`. Whatever padding it carries is turned off (a batch is padded to
    /// its own longest text); truncation is set to `max_length` tokens, special tokens included.
    ///
    /// # Errors
    /// A file that cannot be read or is not a tokenizer, or a limit too small for the special
    /// tokens.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let bad = |reason: String| GraftError::Tokenizer { path: path.to_owned(), reason };
        if !path.is_file() {
            return Err(GraftError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let mut inner = Tokenizer::from_file(path).map_err(|error| bad(error.to_string()))?;
        inner.with_padding(None);
        let special = inner.get_post_processor().map_or(0, |processor| processor.added_tokens(false));
        if max_length <= special {
            return Err(bad(format!("a limit of {max_length} tokens leaves no room beside {special} special tokens")));
        }
        inner
            .with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() }))
            .map_err(|error| bad(error.to_string()))?;
        Ok(TextTokenizer { inner, max_length, file: path.to_owned() })
    }

    /// Writes the tokenizer as graft runs it (padding off, truncation at [`Self::max_length`]) as
    /// a `tokenizer.json` that Hugging Face's `tokenizers` reads.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self
            .inner
            .to_string(true)
            .map_err(|error| GraftError::Tokenizer { path: self.file.clone(), reason: error.to_string() })?;
        crate::fsutil::write_atomic(path, json.as_bytes())
    }

    /// The longest sequence the model takes, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Tokenizes `texts` in parallel, one [`Encoded`] per text, in order.
    ///
    /// # Errors
    /// The tokenizer's own failure, naming its file.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|error| GraftError::Tokenizer { path: self.file.clone(), reason: error.to_string() })?;
        Ok(encodings
            .iter()
            .map(|encoding| Encoded {
                ids: encoding.get_ids().iter().map(|&id| i64::from(id)).collect(),
                type_ids: encoding.get_type_ids().iter().map(|&id| i64::from(id)).collect(),
                truncated: !encoding.get_overflowing().is_empty(),
            })
            .collect())
    }
}
