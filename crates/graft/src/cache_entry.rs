//! The file format of a computed-features cache entry (image features and activations, text
//! sentence vectors): what it is for, its shape and its values, sealed with a digest, so that a
//! damaged, truncated, misplaced or hand-made entry is found out when it is read and recomputed
//! instead of trained on.
//!
//! Layout, little-endian: the magic `GRFE`, the SHA-256 of the entry's key (what the values are
//! of: the cache's identity and the input's), the rank (u32) and each dimension (u32), the
//! values (f32), then the SHA-256 of every byte before it.

use std::path::Path;

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 4] = b"GRFE";
/// Entries hold at most this many dimensions (activations are `[channels, height, width]`).
const MAX_RANK: usize = 4;

/// An entry's bytes for `values` of `shape`, made for `key`.
pub fn encode(key: &str, shape: &[usize], values: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(4 + 32 + 4 + 4 * shape.len() + 4 * values.len() + 32);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&Sha256::digest(key.as_bytes()));
    bytes.extend((shape.len() as u32).to_le_bytes());
    for dim in shape {
        bytes.extend((*dim as u32).to_le_bytes());
    }
    for value in values {
        bytes.extend(value.to_le_bytes());
    }
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    bytes
}

/// Where an entry's values start, and its shape, from its header; the whole length checked.
fn header(bytes: &[u8], key: &str) -> Result<(usize, Vec<usize>), String> {
    if bytes.len() < 4 + 32 + 4 + 32 || &bytes[..4] != MAGIC {
        return Err("not a graft cache entry of this version".into());
    }
    if bytes[4..36] != Sha256::digest(key.as_bytes())[..] {
        return Err("made for another input or another cache".into());
    }
    let rank = u32::from_le_bytes(bytes[36..40].try_into().expect("4 bytes")) as usize;
    if rank > MAX_RANK {
        return Err(format!("a rank of {rank}"));
    }
    let start = 40 + 4 * rank;
    let dims = bytes.get(40..start).ok_or("truncated in its header")?;
    let shape: Vec<usize> =
        dims.chunks(4).map(|d| u32::from_le_bytes(d.try_into().expect("4 bytes")) as usize).collect();
    let count = shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d)).ok_or("a shape that overflows")?;
    let expected = count.checked_mul(4).and_then(|n| n.checked_add(start + 32)).ok_or("a shape that overflows")?;
    if bytes.len() != expected {
        return Err(format!("{} bytes where its shape {shape:?} needs {expected}", bytes.len()));
    }
    Ok((start, shape))
}

/// The shape and values of an entry's bytes, checked: made for `key`, of `expected` shape when
/// one is given, and whole (its digest). The error says what is wrong with it.
pub fn decode(bytes: &[u8], key: &str, expected: Option<&[usize]>) -> Result<(Vec<usize>, Vec<f32>), String> {
    let (start, shape) = header(bytes, key)?;
    if let Some(expected) = expected
        && shape != expected
    {
        return Err(format!("shape {shape:?} where {expected:?} was expected"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body)[..] != *digest {
        return Err("its digest does not match its contents (damaged or edited)".into());
    }
    let values = body[start..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
    Ok((shape, values))
}

/// What the entry file at `path` is of: `kind`, its cache folder's name (which holds the
/// cache's identity: teacher, cut or tokenizer, preprocessing, compute path, format) and its
/// file's name (the input's content and view). A copied or renamed entry fails its check.
pub fn key(kind: &str, path: &Path) -> String {
    let name = |path: Option<&Path>| path.and_then(Path::file_name).map(|name| name.to_string_lossy().into_owned());
    format!(
        "{kind} {}/{}",
        name(path.parent().and_then(Path::parent)).unwrap_or_default(),
        name(Some(path)).unwrap_or_default()
    )
}

/// Writes the `kind` entry at `path` atomically.
pub fn write(kind: &str, path: &Path, shape: &[usize], values: &[f32]) -> std::io::Result<()> {
    let bytes = encode(&key(kind, path), shape, values);
    graft_weights::write_atomic(path, |temporary| std::fs::write(temporary, &bytes))
}

/// The values of the `kind` entry at `path`, read (never more than its shape needs) and checked
/// ([`decode`]); the error says what is wrong with it.
pub fn read(kind: &str, path: &Path, shape: &[usize]) -> Result<Vec<f32>, String> {
    let limit = 128 + 4 * (shape.len() as u64 + shape.iter().product::<usize>() as u64);
    let bytes = crate::fsutil::read_limited(path, limit, "a cache entry").map_err(|error| error.to_string())?;
    decode(&bytes, &key(kind, path), Some(shape)).map(|(_, values)| values)
}

/// The note that names entries which failed their check (`damaged`: "`path` (reason)"), the
/// first three and how many more.
pub fn damaged_note(what: &str, damaged: &[String]) -> String {
    let more = if damaged.len() > 3 { format!(" and {} more", damaged.len() - 3) } else { String::new() };
    format!(
        "{} {what} cache entries failed their check and are computed again: {}{more}",
        damaged.len(),
        damaged[..damaged.len().min(3)].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_every_kind_of_damage_is_named() {
        let bytes = encode("key", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(decode(&bytes, "key", Some(&[2, 3])).unwrap(), (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert!(decode(&bytes, "other", None).unwrap_err().contains("another input"));
        assert!(decode(&bytes, "key", Some(&[6])).unwrap_err().contains("shape [2, 3] where [6]"));
        assert!(decode(&bytes[..bytes.len() - 1], "key", None).unwrap_err().contains("bytes where"));
        let mut edited = bytes.clone();
        edited[50] ^= 1;
        assert!(decode(&edited, "key", None).unwrap_err().contains("digest"));
        assert!(decode(&[0; 16], "key", None).unwrap_err().contains("not a graft cache entry"));
        let mut huge = encode("key", &[], &[1.0]);
        huge[36..40].copy_from_slice(&3u32.to_le_bytes());
        assert!(decode(&huge, "key", None).is_err());
    }
}
