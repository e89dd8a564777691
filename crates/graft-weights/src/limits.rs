//! How much memory reading one weight file may take: a budget proportional to the file's size.
//!
//! Every allocation a reader makes on a file's say-so (a zip entry's declared size, a pickle's
//! containers and strings, a tensor's elements) is charged here first. A real checkpoint needs a
//! few times its own size (the file, its storages, the tensors widened to `f32`); a file that
//! asks for more is damaged or hostile, and reading it stops with [`WeightsError::TooLarge`]
//! before the allocation, instead of exhausting the machine.
//!
//! Time is bounded the same way: every step of work a file makes the reader do (a pickle opcode,
//! an item a container copies or a walk visits, a dimension of a tensor) is counted against a
//! step budget proportional to the file's size, so a small file cannot ask for hours of work
//! with structures that cost little memory (shared containers reached by many paths, a memoised
//! list handed to every opcode). Past it reading stops with [`WeightsError::TooMuchWork`].

use std::cell::Cell;
use std::path::Path;

use crate::error::{Result, WeightsError};

/// Bytes of memory a file may claim per byte of its own size.
pub const BYTES_PER_FILE_BYTE: u64 = 8;
/// Bytes any file may claim regardless of its size (small files with legitimate overheads).
pub const BASE_BYTES: u64 = 256 << 20;
/// Dicts nested deeper than this are refused: state dicts nest a handful of levels.
pub const MAX_DICT_DEPTH: usize = 256;
/// Steps of work a file may ask for per byte of its own size. A real checkpoint needs about one
/// (an opcode or an item per byte, at most); this leaves room for any honest writer.
pub const STEPS_PER_FILE_BYTE: u64 = 16;
/// Steps any file may take regardless of its size.
pub const BASE_STEPS: u64 = 4 << 20;
/// Tensors of more dimensions than this are refused (PyTorch's own kernels stop at 64).
pub const MAX_TENSOR_RANK: usize = 64;

/// The memory budget of reading one file.
pub(crate) struct Budget<'a> {
    path: &'a Path,
    file_bytes: u64,
    limit: u64,
    used: Cell<u64>,
    step_limit: u64,
    steps: Cell<u64>,
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
            step_limit: file_bytes.saturating_mul(STEPS_PER_FILE_BYTE).saturating_add(BASE_STEPS),
            steps: Cell::new(0),
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

    /// Records `steps` more steps of work for `what`, or refuses when that passes the step limit.
    pub(crate) fn work(&self, steps: u64, what: impl FnOnce() -> String) -> Result<()> {
        let done = self.steps.get().saturating_add(steps);
        if done > self.step_limit {
            return Err(WeightsError::TooMuchWork {
                path: self.path.to_owned(),
                what: what(),
                limit: self.step_limit,
                file_bytes: self.file_bytes,
            });
        }
        self.steps.set(done);
        Ok(())
    }
}
