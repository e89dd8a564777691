//! How much memory reading one weight file may take: a budget proportional to the file's size.
//!
//! Every allocation a reader makes on a file's say-so (a zip entry's declared size, a pickle's
//! containers and strings, a tensor's elements) is charged here first. A real checkpoint needs a
//! few times its own size (the file, its storages, the tensors widened to `f32`); a file that
//! asks for more is damaged or hostile, and reading it stops with [`WeightsError::TooLarge`]
//! before the allocation, instead of exhausting the machine.

use std::cell::Cell;
use std::path::Path;

use crate::error::{Result, WeightsError};

/// Bytes of memory a file may claim per byte of its own size.
pub const BYTES_PER_FILE_BYTE: u64 = 8;
/// Bytes any file may claim regardless of its size (small files with legitimate overheads).
pub const BASE_BYTES: u64 = 256 << 20;
/// Dicts nested deeper than this are refused: state dicts nest a handful of levels.
pub const MAX_DICT_DEPTH: usize = 256;

/// The memory budget of reading one file.
pub(crate) struct Budget<'a> {
    path: &'a Path,
    file_bytes: u64,
    limit: u64,
    used: Cell<u64>,
}

impl<'a> Budget<'a> {
    /// The budget for a file of `file_bytes` bytes.
    pub(crate) fn for_file(path: &'a Path, file_bytes: usize) -> Budget<'a> {
        let file_bytes = file_bytes as u64;
        Budget {
            path,
            file_bytes,
            limit: file_bytes.saturating_mul(BYTES_PER_FILE_BYTE).saturating_add(BASE_BYTES),
            used: Cell::new(0),
        }
    }

    /// Records `bytes` more memory for `what`, or refuses when that passes the limit.
    pub(crate) fn charge(&self, bytes: u64, what: impl FnOnce() -> String) -> Result<()> {
        let used = self.used.get().saturating_add(bytes);
        if used > self.limit {
            return Err(WeightsError::TooLarge {
                path: self.path.to_owned(),
                what: what(),
                limit: self.limit,
                file_bytes: self.file_bytes,
            });
        }
        self.used.set(used);
        Ok(())
    }
}
