//! Reading neural-network weight files as data, never as code.
//!
//! Three formats, told apart by their first bytes rather than their extension:
//! - safetensors;
//! - PyTorch's zip checkpoint (`torch.save` since 1.6);
//! - PyTorch's legacy checkpoint (a bare run of pickles, as older `.pth` files are).
//!
//! PyTorch files are read by an allow-listed unpickler ([`pickle`]) that accepts tensor rebuilds,
//! storages, `OrderedDict` and plain containers, and refuses any other global by name before
//! anything is executed. Tensors come out dense and row-major whatever their strides in the file;
//! floats are widened to `f32`.

mod error;
pub mod limits;
mod pickle;
mod pytorch;
pub mod safetensors;
mod tensor;

use std::path::Path;

pub use error::{Result, WeightsError};
pub use tensor::{DType, Tensor, TensorMap, Values};

/// The container formats graft reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    PytorchZip,
    PytorchLegacy,
}

impl Format {
    /// Recognizes a format from a file's first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            Some(Format::PytorchZip)
        } else if bytes.first() == Some(&0x80) {
            Some(Format::PytorchLegacy)
        } else if bytes.len() >= 9 && bytes[8] == b'{' {
            Some(Format::Safetensors)
        } else {
            None
        }
    }
}

/// Reads every tensor of a weight file.
pub fn read(path: &Path) -> Result<TensorMap> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.to_owned(), source })?;
    read_bytes(path, &bytes)
}

/// Reads every tensor from a weight file's bytes; `path` names it in errors.
///
/// Reading is bounded: the memory it may take is proportional to `bytes.len()` (see [`limits`]),
/// nothing recurses as deep as the file says, and every offset and size is checked before use.
pub fn read_bytes(path: &Path, bytes: &[u8]) -> Result<TensorMap> {
    let budget = limits::Budget::for_file(path, bytes.len());
    match Format::sniff(bytes) {
        Some(Format::Safetensors) => safetensors::parse_with(path, bytes, &budget),
        Some(Format::PytorchZip) => pytorch::parse_zip(path, bytes, &budget),
        Some(Format::PytorchLegacy) => pytorch::parse_legacy(path, bytes, &budget),
        None if bytes.is_empty() => {
            Err(WeightsError::Truncated { path: path.to_owned(), what: "the file is empty".into() })
        }
        None => Err(WeightsError::NotWeights {
            path: path.to_owned(),
            reason: "it is neither safetensors nor a PyTorch checkpoint (zip or legacy pickle)".into(),
        }),
    }
}

/// Writes tensors as a safetensors file (floats as F32, integers as I64), atomically: the file
/// appears whole or not at all.
pub fn write_safetensors(path: &Path, tensors: &TensorMap) -> Result<()> {
    let bytes = safetensors::serialize(tensors);
    write_atomic(path, |temporary| std::fs::write(temporary, &bytes))
        .map_err(|source| WeightsError::Write { path: path.to_owned(), source })
}

/// Writes `path` so that a reader never sees half of it, even after a crash or a power cut:
/// `write` fills a temporary file with a unique name beside `path`, which is flushed to disk and
/// then replaces `path` in one rename, and the folder is flushed so that the rename lasts. On an
/// error the temporary file is removed and whatever was at `path` stays as it was. The file gets
/// the permissions any new file gets (0666 less the umask), as other tools' outputs do.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".graft-").suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The mode a file is created with passes through the umask, as `open(2)` applies it.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let temporary = builder.tempfile_in(parent)?;
    write(temporary.path())?;
    std::fs::File::open(temporary.path())?.sync_all()?;
    temporary.persist(path).map_err(|error| error.error)?;
    sync_folder(parent);
    Ok(())
}

/// Flushes a folder's entries (a rename in it) to disk, where the platform can.
pub fn sync_folder(folder: &Path) {
    // Windows cannot open a folder as a file; there the rename's own durability is the system's.
    if let Ok(handle) = std::fs::File::open(folder) {
        let _ = handle.sync_all();
    }
}

/// Converts any supported weight file into safetensors; returns the tensors written.
pub fn convert(input: &Path, output: &Path) -> Result<TensorMap> {
    let tensors = read(input)?;
    write_safetensors(output, &tensors)?;
    Ok(tensors)
}
