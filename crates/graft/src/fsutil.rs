//! Writing files so that a reader never sees half of one ([`graft_weights::write_atomic`]), and
//! the hexadecimal form of checksums.

use std::io::Read;
use std::path::Path;

use crate::error::{GraftError, Result};

/// The largest image file graft reads (a 16-bit TIFF scan of a large sheet fits).
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;
/// The largest data file (a CSV or JSONL of texts, one text file, a list of texts) graft reads.
pub const MAX_DATA_FILE_BYTES: u64 = 1 << 30;

/// Checks that `path` is a regular file of at most `limit` bytes, before anything opens it: a
/// device (`/dev/zero`), a FIFO (whose open would wait for a writer) or a folder is refused.
pub fn check_regular(path: &Path, limit: u64, what: &str) -> Result<()> {
    let metadata = std::fs::metadata(path).map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    if !metadata.is_file() {
        let kind = if metadata.is_dir() { "a folder" } else { "not a regular file (a device, FIFO or socket)" };
        return Err(GraftError::Invalid(format!(
            "`{}` is {kind}: graft reads {what} only from regular files",
            path.display()
        )));
    }
    if metadata.len() > limit {
        return Err(too_big(path, metadata.len(), limit, what));
    }
    Ok(())
}

fn too_big(path: &Path, bytes: u64, limit: u64, what: &str) -> GraftError {
    GraftError::Invalid(format!(
        "`{}` is {bytes} bytes, more than the {limit} bytes graft reads as {what}",
        path.display()
    ))
}

/// A regular file's bytes, at most `limit` of them ([`check_regular`]); a file that grows past
/// the limit while it is read is refused too, never read whole.
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    check_regular(path, limit, what)?;
    let io = |source| GraftError::Io { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(path, bytes.len() as u64, limit, what));
    }
    Ok(bytes)
}

/// [`read_limited`] as UTF-8 text.
pub fn read_text_limited(path: &Path, limit: u64, what: &str) -> Result<String> {
    String::from_utf8(read_limited(path, limit, what)?).map_err(|_| GraftError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"),
    })
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |temporary| {
        std::fs::write(temporary, bytes).map_err(|source| GraftError::Io { path: path.to_owned(), source })
    })
}

/// Lets `write` fill a temporary file beside `path` (by its path), then puts it in place.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut failure = None;
    let outcome = graft_weights::write_atomic(path, |temporary| {
        write(temporary).map_err(|error| {
            failure = Some(error);
            std::io::Error::other("the writer failed")
        })
    });
    match (failure, outcome) {
        (Some(error), _) => Err(error),
        (None, Err(source)) => Err(GraftError::Io { path: path.to_owned(), source }),
        (None, Ok(())) => Ok(()),
    }
}

/// Lowercase hexadecimal, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// The first 12 digits of a hexadecimal digest, as graft shows digests to people (all of it
/// when shorter).
pub fn short_digest(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// Where graft keeps downloaded weights and computed features when nobody says otherwise:
/// `$XDG_CACHE_HOME/graft`, else `~/.cache/graft`, else a folder in the temporary directory.
pub fn default_cache_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir).join("graft");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("graft"),
        None => std::env::temp_dir().join("graft-cache"),
    }
}

/// An exclusive lock on a file beside the thing it guards (`<path>.lock`), held until dropped.
/// Advisory: every graft process takes it before writing what it guards, so two of them never
/// write one run folder or one download at once. The lock file stays (it is empty); the lock
/// goes with the process, however it ends.
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn open(path: &Path) -> std::io::Result<std::fs::File> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)
    }

    /// Takes the lock `path`, or `None` when another process holds it.
    ///
    /// # Errors
    /// A lock file that cannot be created.
    pub fn try_take(path: &Path) -> Result<Option<Lock>> {
        let file = Lock::open(path).map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(GraftError::Io { path: path.to_owned(), source }),
        }
    }

    /// Takes the lock `path`, waiting for another process to let it go.
    ///
    /// # Errors
    /// A lock file that cannot be created or locked.
    pub fn wait(path: &Path) -> std::io::Result<Lock> {
        let file = Lock::open(path)?;
        file.lock()?;
        Ok(Lock { _file: file })
    }
}

/// `<path>.lock`.
pub fn lock_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}
