//! Writing files so that a reader never sees half of one.

use std::path::Path;

use crate::error::{GraftError, Result};

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| GraftError::Io { path: parent.to_owned(), source })?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.partial", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    std::fs::write(&temporary, bytes).map_err(|source| GraftError::Io { path: temporary.clone(), source })?;
    std::fs::rename(&temporary, path).map_err(|source| GraftError::Io { path: path.to_owned(), source })
}
