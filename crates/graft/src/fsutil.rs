//! Writing files so that a reader never sees half of one ([`graft_weights::write_atomic`]), and
//! the hexadecimal form of checksums.

use std::path::Path;

use crate::error::{GraftError, Result};

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
