//! graft's server on loopback with real students (EfficientNet-Lite0 with its ImageNet weights,
//! trained on the bundled Fashion-MNIST sample; a text student of the tiny BERT fixture): the
//! API, batching, and hostile requests, each of which must end in a 4xx or 503 while the server
//! keeps answering.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use graft::modality::Modality;
use graft::run::{AnyTeacher, DataOptions, LabelledData, Student, StudentOptions, TrainSettings, train_any};
use graft_serve::client::{Connection, Response, multipart, request};
use graft_serve::{Named, ServeOptions, Server, Stopped};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// The trained students, made once per test binary: `(image, text)`.
fn students() -> &'static (Arc<Student>, Arc<Student>) {
    static STUDENTS: OnceLock<(Arc<Student>, Arc<Student>)> = OnceLock::new();
    STUDENTS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("graft-serve-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let device = StudentOptions::default().device;
        let weights = |weights: Option<PathBuf>| graft::models::WeightOptions {
            weights,
            cache_dir: dir.join("cache"),
            offline: true,
            allow_partial: false,
            progress: false,
        };
        let data_options = DataOptions { cache_dir: dir.join("cache"), ..DataOptions::default() };
        let settings = |out: &str| TrainSettings {
            strategy: graft::train::Strategy::Deep,
            image_size: Some(128),
            per_class: Some(8),
            out: dir.join(out),
            cache_dir: dir.join("cache"),
            ..TrainSettings::default()
        };
        let (teacher, _) = AnyTeacher::load("efficientnet_lite0", &weights(None), &device).unwrap();
        let data =
            LabelledData::open(&repo("crates/graft-assets/data/fashion-mnist-sample"), Modality::Image, &data_options)
                .unwrap();
        train_any(&teacher, &data, &settings("image"), &device, &graft::train::Silent).unwrap();

        let csv = dir.join("texts.csv");
        let mut rows = String::from("text,label\n");
        for i in 0..12 {
            rows.push_str(&format!(
                "the dog chased the fox across field {i},animals\nwe ate bread and soup at dinner {i},food\n"
            ));
        }
        std::fs::write(&csv, rows).unwrap();
        let tiny = repo("crates/graft/tests/fixtures/tiny-bert");
        let (teacher, _) = AnyTeacher::load("all-minilm-l6-v2", &weights(Some(tiny)), &device).unwrap();
        let data = LabelledData::open(&csv, Modality::Text, &data_options).unwrap();
        train_any(&teacher, &data, &settings("text"), &device, &graft::train::Silent).unwrap();

        let options = StudentOptions { offline: true, cache_dir: dir.join("cache"), ..StudentOptions::default() };
        let image = Student::load(&dir.join("image"), &options).unwrap();
        let text = Student::load(&dir.join("text"), &options).unwrap();
        (Arc::new(image), Arc::new(text))
    })
}

/// A server of both students (`image` the default, `text`) on a free loopback port, run on a
/// runtime of its own; stopped when the handle is dropped.
struct Running {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::thread::JoinHandle<Stopped>>,
}

impl Running {
    fn start(options: ServeOptions) -> Running {
        let (image, text) = students().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, address) = std::sync::mpsc::channel();
        let done = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let named = vec![
                    Named { name: "image".to_owned(), student: image },
                    Named { name: "text".to_owned(), student: text },
                ];
                let options = ServeOptions { address: SocketAddr::from(([127, 0, 0, 1], 0)), ..options };
                let server = Server::bind(named, options).await.unwrap();
                bound.send(server.local_addr()).unwrap();
                server
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap()
            })
        });
        Running { address: address.recv().unwrap(), stop: Some(stop), done: Some(done) }
    }

    fn get(&self, path: &str) -> Response {
        request(self.address, "GET", path, &[], &[]).unwrap()
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Response {
        request(self.address, "POST", path, &[("content-type", content_type)], body).unwrap()
    }

    /// Stops the server and waits for it.
    fn stop(mut self) -> Stopped {
        let _ = self.stop.take().unwrap().send(());
        self.done.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn test_image(class: &str, index: usize) -> (String, Vec<u8>) {
    let folder = repo(&format!("crates/graft-assets/data/fashion-mnist-sample/test/{class}"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    let path = &files[index];
    (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(path).unwrap())
}

/// A photo as a JPEG, as phones upload them.
fn photo_jpeg() -> Vec<u8> {
    let photo = image::open(repo("crates/graft-assets/images/chelsea.png")).unwrap().to_rgb8();
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(&photo).unwrap();
    bytes
}

/// The probabilities of each prediction's classes, by class index.
fn probabilities(prediction: &serde_json::Value, classes: usize) -> Vec<f32> {
    let mut row = vec![0.0; classes];
    for class in prediction["top"].as_array().unwrap() {
        row[class["class_index"].as_u64().unwrap() as usize] = class["probability"].as_f64().unwrap() as f32;
    }
    row
}

fn close(got: &[f32], want: &[f32]) -> bool {
    got.len() == want.len() && got.iter().zip(want).all(|(a, b)| (a - b).abs() <= 1e-5)
}

#[test]
fn serves_the_api_for_image_and_text_students() {
    let (image, text) = students();
    let server = Running::start(ServeOptions::default());
    let classes = image.classes().len();

    // Two files in one multipart request: graft's own probabilities, file names kept, every
    // class when top_k asks for all of them.
    let files = [test_image("Bag", 0), test_image("Trouser", 0)];
    let parts: Vec<(&str, &[u8])> = files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())).collect();
    let (content_type, body) = multipart(&parts);
    let answer = server.post(&format!("/v1/predict?top_k={classes}"), &content_type, &body);
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = answer.json();
    assert_eq!(answer["student"], "image");
    let predictions = answer["predictions"].as_array().unwrap();
    let want = image.predict_encoded(&[files[0].1.as_slice(), files[1].1.as_slice()]).unwrap();
    for (index, (prediction, want)) in predictions.iter().zip(want).enumerate() {
        assert_eq!(prediction["index"], index);
        assert_eq!(prediction["name"], files[index].0.as_str());
        assert!(close(&probabilities(prediction, classes), &want.unwrap()), "{prediction}");
    }
    assert_eq!(predictions[0]["top"][0]["label"], "Bag");
    assert_eq!(predictions[1]["top"][0]["label"], "Trouser");

    // One image as the body; top 2; a JPEG photo, by name of its student.
    let answer = server.post("/v1/predict?top_k=2", "image/png", &files[0].1);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["predictions"][0]["top"].as_array().unwrap().len(), 2);
    let answer = server.post("/v1/students/image/predict", "image/jpeg", &photo_jpeg());
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["predictions"][0]["top"].as_array().unwrap().len(), 5);

    // Texts, as JSON, to the text student: its own probabilities.
    let texts = ["the fox ran into the field", "soup for dinner"];
    let body = serde_json::json!({ "texts": texts, "top_k": 2 }).to_string();
    let answer = server.post("/v1/students/text/predict", "application/json", body.as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.text());
    let (want, _) = text.predict_texts(&texts).unwrap();
    for (prediction, want) in answer.json()["predictions"].as_array().unwrap().iter().zip(want) {
        assert!(close(&probabilities(prediction, 2), &want), "{prediction}");
    }

    // Wrong content types: 415 with what to send.
    let answer = server.post("/v1/predict", "application/json", body.as_bytes());
    assert_eq!(answer.status, 415);
    assert!(answer.json()["error"].as_str().unwrap().contains("an image student takes multipart/form-data"));
    let answer = server.post("/v1/students/text/predict", "image/png", &files[0].1);
    assert_eq!(answer.status, 415);
    assert!(answer.json()["error"].as_str().unwrap().contains("{\"texts\""));
    let answer = request(server.address, "POST", "/v1/predict", &[], &files[0].1).unwrap();
    assert_eq!(answer.status, 415);
    // Bad arguments: 400 with the reason.
    let answer = server.post("/v1/predict?top_k=0", "image/png", &files[0].1);
    assert_eq!(
        (answer.status, answer.json()["error"].as_str().unwrap()),
        (400, "top_k is a whole number above 0, not `0`")
    );
    let answer = server.post("/v1/students/text/predict", "application/json", br#"{"text": "one"}"#);
    assert_eq!(answer.status, 400);
    assert!(answer.json()["error"].as_str().unwrap().contains("unknown field `text`"), "{}", answer.text());
    let answer = server.post("/v1/students/text/predict", "application/json", br#"{"texts": []}"#);
    assert_eq!((answer.status, answer.json()["error"].as_str().unwrap()), (400, "the request holds no inputs"));

    // What is served.
    let model = server.get("/v1/model").json();
    assert_eq!(model["teacher"], "efficientnet_lite0");
    assert_eq!(model["strategy"], "deep");
    assert_eq!(model["modality"], "image");
    assert_eq!(model["classes"].as_array().unwrap().len(), classes);
    assert!(model["metrics"]["validation_accuracy"].as_f64().is_some(), "{model}");
    assert_eq!(server.get("/v1/students/text").json()["classes"], serde_json::json!(["animals", "food"]));
    assert_eq!(server.get("/v1/students").json()["students"].as_array().unwrap().len(), 2);
    let missing = server.get("/v1/students/nobody");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().unwrap().contains("students: image, text"));
    assert_eq!(server.get("/nowhere").status, 404);
    assert_eq!(server.get("/v1/predict").status, 405);
    let health = server.get("/healthz");
    assert_eq!((health.status, health.json()["status"].as_str()), (200, Some("ok")));

    // Everything above, counted.
    let metrics = server.get("/metrics");
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4"));
    let metrics = metrics.text();
    for line in [
        "graft_requests_total{route=\"predict\",status=\"200\"} 4",
        "graft_requests_total{route=\"predict\",status=\"415\"} 3",
        "graft_requests_total{route=\"predict\",status=\"400\"} 3",
        "graft_request_duration_seconds_count 10",
        "graft_inputs_total 6",
        "graft_rejected_total{reason=\"media_type\"} 3",
        "graft_queue_depth{student=\"image\"} 0",
    ] {
        assert!(metrics.lines().any(|got| got == line), "no `{line}` in\n{metrics}");
    }
    assert!(server.stop().drained);
}

/// Requests that arrive together share a forward pass, and each gets its own answer.
#[test]
fn requests_that_arrive_together_are_batched() {
    let (image, _) = students();
    let server = Running::start(ServeOptions { batch_window: Duration::from_millis(200), ..ServeOptions::default() });
    let files: Vec<(String, Vec<u8>)> =
        (0..12).map(|index| test_image(["Bag", "Sandal", "Trouser"][index % 3], index / 3)).collect();
    let address = server.address;
    let answers: Vec<(usize, Response)> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(index, (_, bytes))| {
                scope.spawn(move || {
                    (
                        index,
                        request(address, "POST", "/v1/predict?top_k=10", &[("content-type", "image/png")], bytes)
                            .unwrap(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    let classes = image.classes().len();
    for (index, answer) in answers {
        assert_eq!(answer.status, 200, "{}", answer.text());
        let want = image.predict_encoded(&[files[index].1.as_slice()]).unwrap().remove(0).unwrap();
        assert!(close(&probabilities(&answer.json()["predictions"][0], classes), &want), "request {index}");
    }
    let metrics = server.get("/metrics").text();
    let passes: u64 =
        metrics.lines().find_map(|line| line.strip_prefix("graft_batch_size_count ")).unwrap().parse().unwrap();
    assert!(passes < 12, "12 requests sent together took {passes} forward passes:\n{metrics}");
    assert!(metrics.contains("graft_inputs_total 12"), "{metrics}");
}

/// A PNG of `side` x `side` black pixels: a few hundred kilobytes that decode to `side`² bytes.
fn png_bomb(side: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().unwrap();
        let mut stream = writer.stream_writer().unwrap();
        let row = vec![0u8; side as usize];
        for _ in 0..side {
            stream.write_all(&row).unwrap();
        }
        stream.finish().unwrap();
        writer.finish().unwrap();
    }
    bytes
}

#[test]
fn hostile_requests_end_in_4xx_or_503_and_the_server_keeps_answering() {
    let options = ServeOptions {
        max_body_bytes: 4 << 20,
        max_connections: 64,
        read_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    };
    let server = Running::start(options);
    let address = server.address;
    let (_, bag) = test_image("Bag", 0);
    let still_answers = || {
        let answer = server.post("/v1/predict", "image/png", &bag);
        assert_eq!(answer.status, 200, "{}", answer.text());
    };

    // A truncated JPEG: 400 with the decoder's reason.
    let jpeg = photo_jpeg();
    let answer = server.post("/v1/predict", "image/jpeg", &jpeg[..jpeg.len() / 2]);
    assert_eq!(answer.status, 400, "{}", answer.text());
    let reason = answer.json()["inputs"][0]["error"].as_str().unwrap().to_owned();
    assert!(!reason.is_empty(), "{}", answer.text());
    still_answers();

    // Garbage and an empty body.
    let answer = server.post("/v1/predict", "application/octet-stream", b"not an image at all");
    assert_eq!(answer.status, 400);
    assert!(answer.text().contains("not an image in a format graft reads"), "{}", answer.text());
    assert_eq!(server.post("/v1/predict", "image/png", b"").status, 400);

    // A decompression bomb: 400 MB of pixels in a small PNG, refused from its header.
    let bomb = png_bomb(20_000);
    assert!(bomb.len() < 4 << 20, "{} bytes", bomb.len());
    let (content_type, body) = multipart(&[("bag.png", &bag), ("bomb.png", &bomb)]);
    let answer = server.post("/v1/predict", &content_type, &body);
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(answer.json()["inputs"][0]["name"], "bomb.png");
    assert!(answer.text().contains("declares 20000 x 20000 pixels"), "{}", answer.text());
    still_answers();

    // A declared length of 10 GB: 413 before a byte of the body is read.
    let mut connection = Connection::open(address, Duration::from_secs(10)).unwrap();
    connection
        .stream()
        .write_all(b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: 10737418240\r\n\r\n0123")
        .unwrap();
    let answer = connection.read_response().unwrap();
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(answer.text().contains("10737418240 bytes"), "{}", answer.text());
    // A chunked body that grows past the limit: 413 once it does.
    let mut connection = Connection::open(address, Duration::from_secs(10)).unwrap();
    let stream = connection.stream();
    stream
        .write_all(
            b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..5 {
        if stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).is_err()
            || stream.write_all(&chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    assert_eq!(connection.read_response().unwrap().status, 413);
    // Too many inputs in one request.
    let many: Vec<(&str, &[u8])> = (0..65).map(|_| ("bag.png", bag.as_slice())).collect();
    let (content_type, body) = multipart(&many);
    let answer = server.post("/v1/predict", &content_type, &body);
    assert_eq!(answer.status, 413, "{}", answer.text());
    still_answers();

    // A slow client: its body stalls, it gets 408 after the read timeout; one that never
    // finishes its headers is closed; others are answered meanwhile.
    let mut slow_body = Connection::open(address, Duration::from_secs(10)).unwrap();
    slow_body
        .stream()
        .write_all(b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: 1000\r\n\r\n0123456789")
        .unwrap();
    let mut slow_headers = TcpStream::connect(address).unwrap();
    slow_headers.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    slow_headers.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").unwrap();
    assert_eq!(server.get("/healthz").status, 200);
    let started = Instant::now();
    let answer = slow_body.read_response().unwrap();
    assert_eq!(answer.status, 408, "{}", answer.text());
    let mut rest = Vec::new();
    // Closed by the server (hyper answers 408 or just closes): the read ends, well before the
    // client's own 10 s timeout.
    let _ = slow_headers.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(5), "slow clients held for {:?}", started.elapsed());
    assert!(
        rest.is_empty() || String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    still_answers();

    // 1,000 connections at once against a limit of 64: each is answered, 200 or 503, and the
    // server answers afterwards.
    let mut streams: Vec<TcpStream> = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        streams.push(stream);
    }
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for stream in &mut streams {
        let mut head = [0u8; 12];
        let status = match stream.read_exact(&mut head) {
            Ok(()) => String::from_utf8_lossy(&head[9..12]).into_owned(),
            Err(error) => format!("{:?}", error.kind()),
        };
        *statuses.entry(status).or_default() += 1;
    }
    drop(streams);
    assert_eq!(
        statuses.get("200").copied().unwrap_or(0) + statuses.get("503").copied().unwrap_or(0),
        1000,
        "{statuses:?}"
    );
    // Past the limit, most are turned away (an idle keep-alive connection is closed after the
    // read timeout, so a few more than 64 get in while the 1,000 are opened).
    assert!(statuses.get("503").copied().unwrap_or(0) >= 500, "{statuses:?}");
    still_answers();
    let metrics = server.get("/metrics").text();
    assert!(metrics.lines().any(|line| line.starts_with("graft_rejected_total{reason=\"connections\"} ")), "{metrics}");
    assert!(server.stop().drained);
}

/// A full queue answers 503 with Retry-After; the requests it took are answered.
#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let server = Running::start(ServeOptions {
        queue_capacity: 1,
        max_batch: 1,
        batch_window: Duration::ZERO,
        ..ServeOptions::default()
    });
    let (_, bag) = test_image("Bag", 0);
    let parts: Vec<(&str, &[u8])> = (0..16).map(|_| ("bag.png", bag.as_slice())).collect();
    let (content_type, body) = multipart(&parts);
    let address = server.address;
    let answers: Vec<Response> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (content_type, body) = (&content_type, &body);
                scope.spawn(move || {
                    request(address, "POST", "/v1/predict", &[("content-type", content_type)], body).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    let busy: Vec<&Response> = answers.iter().filter(|answer| answer.status == 503).collect();
    assert!(!busy.is_empty(), "8 requests at once, a queue of 1: none turned away");
    for answer in &busy {
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert!(answer.json()["error"].as_str().unwrap().contains("queue is full"));
    }
    assert!(answers.iter().all(|answer| matches!(answer.status, 200 | 503)));
    assert!(answers.iter().any(|answer| answer.status == 200));
    assert_eq!(server.post("/v1/predict", "image/png", &bag).status, 200);
}

/// Shutdown answers the requests in flight, then stops accepting.
#[test]
fn shutdown_answers_the_requests_in_flight() {
    let server = Running::start(ServeOptions::default());
    let (_, bag) = test_image("Bag", 0);
    let parts: Vec<(&str, &[u8])> = (0..48).map(|_| ("bag.png", bag.as_slice())).collect();
    let (content_type, body) = multipart(&parts);
    let address = server.address;
    let in_flight = std::thread::spawn(move || {
        request(address, "POST", "/v1/predict", &[("content-type", content_type.as_str())], &body).unwrap()
    });
    // Until its forward pass is under way.
    while !server.get("/metrics").text().lines().any(|line| line == "graft_batch_size_count 1") {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped = server.stop();
    let answer = in_flight.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["predictions"].as_array().unwrap().len(), 48);
    assert!(stopped.drained);
    assert!(TcpStream::connect(address).is_err(), "still accepting after shutdown");
}
