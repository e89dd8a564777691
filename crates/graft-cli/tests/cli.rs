//! The `graft` binary end to end: exit code, stdout and stderr together.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn graft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .env("GRAFT_CACHE_DIR", std::env::temp_dir().join("graft-cli-test-cache"))
        .env("GRAFT_OFFLINE", "1")
        .output()
        .expect("run graft")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A whole run of graft as one text: the exit code, stdout and stderr, with the repository's
/// path written `[REPO]` and the tests' cache `[CACHE]` (the parts that differ between machines).
/// Tests compare it whole, so a changed message, a stray line or a wrong stream shows.
fn snapshot(out: &Output) -> String {
    let filter = |bytes: &[u8]| {
        text(bytes)
            .replace(&repo("").display().to_string(), "[REPO]/")
            .replace(&std::env::temp_dir().join("graft-cli-test-cache").display().to_string(), "[CACHE]")
    };
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().map_or("by a signal".to_owned(), |code| code.to_string()),
        filter(&out.stdout),
        filter(&out.stderr)
    )
}

#[test]
fn predict_json_puts_a_cat_first_for_chelsea_and_espresso_for_coffee() {
    let chelsea = repo("crates/graft-assets/images/chelsea.png");
    let coffee = repo("crates/graft-assets/images/coffee.png");
    let out = graft(&[
        "predict",
        "--teacher",
        "efficientnet_lite0",
        "--json",
        "--top",
        "3",
        chelsea.to_str().unwrap(),
        coffee.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["path"].as_str().unwrap().ends_with("chelsea.png"));
    let top: Vec<&str> = rows[0]["top"].as_array().unwrap().iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert_eq!(top.len(), 3);
    assert!(["tabby", "tiger cat", "Egyptian cat"].contains(&top[0]), "{top:?}");
    assert_eq!(rows[1]["top"][0]["label"], "espresso");
    assert_eq!(rows[1]["top"][0]["class_index"], 967);
    assert!(rows[1]["top"][0]["probability"].as_f64().unwrap() > 0.5);
    // The log line goes to stderr, never into the JSON.
    assert!(text(&out.stderr).contains("247 applied"), "{}", text(&out.stderr));
}

#[test]
fn predict_quiet_prints_a_table_and_nothing_on_stderr() {
    let coffee = repo("crates/graft-assets/images/coffee.png");
    let chelsea = repo("crates/graft-assets/images/chelsea.png");
    let out = graft(&["predict", "--quiet", "--top", "2", coffee.to_str().unwrap(), chelsea.to_str().unwrap()]);
    assert_eq!(
        snapshot(&out),
        "exit 0
--- stdout
[REPO]/crates/graft-assets/images/coffee.png
   1. espresso                          95.36%  (class 967)
   2. cup                                1.44%  (class 968)
[REPO]/crates/graft-assets/images/chelsea.png
   1. tiger cat                         38.88%  (class 282)
   2. Egyptian cat                      36.41%  (class 285)
--- stderr
"
    );
}

#[test]
fn predict_csv_quotes_paths_with_commas_and_quotes() {
    let dir = std::env::temp_dir().join(format!("graft-cli-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("cup, \"espresso\".png");
    std::fs::copy(repo("crates/graft-assets/images/coffee.png"), &image).unwrap();
    let out = graft(&["predict", "--quiet", "--csv", "--top", "2", image.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    assert_eq!(reader.headers().unwrap(), vec!["path", "rank", "class_index", "label", "probability"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], image.to_str().unwrap());
    assert_eq!((&rows[0][1], &rows[0][3]), ("1", "espresso"));
    assert!(rows[0][4].parse::<f64>().unwrap() > 0.5);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn embed_json_gives_one_1280_vector_per_image() {
    let out = graft(&["embed", "--json", "--quiet", repo("crates/graft-assets/images").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "a folder expands to its images");
    for row in rows {
        let features = row["features"].as_array().unwrap();
        assert_eq!(features.len(), 1280);
        // ReLU6 then average pooling: every feature lies in [0, 6].
        assert!(features.iter().all(|v| (0.0..=6.0).contains(&v.as_f64().unwrap())));
    }
}

#[test]
fn hostile_weights_fail_with_exit_code_1_and_a_clear_message() {
    let hostile = repo("crates/graft-weights/tests/fixtures/hostile_zip.pth");
    let out = graft(&[
        "predict",
        "--weights",
        hostile.to_str().unwrap(),
        repo("crates/graft-assets/images/coffee.png").to_str().unwrap(),
    ]);
    assert_eq!(
        snapshot(&out),
        "exit 1
--- stdout
--- stderr
error: refusing to load `[REPO]/crates/graft-weights/tests/fixtures/hostile_zip.pth`: its pickle calls `posix.system`, which is not a tensor or a plain container (graft never executes code from a weight file)
hint: if this is a whole pickled model, save `model.state_dict()` instead, or convert the file to safetensors
"
    );
}

#[test]
fn unknown_teacher_and_offline_download_explain_themselves() {
    let coffee = repo("crates/graft-assets/images/coffee.png");
    let out = graft(&["predict", "--teacher", "vgg16", coffee.to_str().unwrap()]);
    assert_eq!(
        snapshot(&out),
        "exit 1
--- stdout
--- stderr
error: unknown teacher `vgg16`; known teachers: efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, efficientnet_lite3, efficientnet_lite4, resnet18, resnet50, mobilenet_v2, alexnet, inception_v3
"
    );

    let out = graft(&["predict", "--teacher", "alexnet", coffee.to_str().unwrap()]);
    assert_eq!(
        snapshot(&out),
        "exit 1
--- stdout
--- stderr
error: cannot download the weights of `alexnet` from https://download.pytorch.org/models/alexnet-owt-7be5be79.pth: offline mode is on and `[CACHE]/weights/alexnet-owt-7be5be79.pth` is not in the cache
hint: fetch that file on a machine with internet access and give its path as the weights file
hint: pass the downloaded file with `--weights PATH`
"
    );
}

/// Output piped into a reader that stops early (`| head`) ends graft quietly, not with a panic.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_graft_without_a_panic() {
    let coffee = repo("crates/graft-assets/images/coffee.png");
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["predict", "--top", "5", coffee.to_str().unwrap(), coffee.to_str().unwrap()])
        .env("GRAFT_CACHE_DIR", std::env::temp_dir().join("graft-cli-test-cache"))
        .env("GRAFT_OFFLINE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{stderr}");
}

#[test]
fn convert_legacy_pth_to_safetensors() {
    let dir = std::env::temp_dir().join(format!("graft-cli-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("lite0.safetensors");
    let out = graft(&[
        "convert",
        repo("crates/graft-assets/weights/efficientnet-lite0-57934424.pth").to_str().unwrap(),
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("wrote 296 tensors"), "{}", text(&out.stdout));
    // The converted file works as the teacher's weights.
    let out = graft(&[
        "predict",
        "--json",
        "--weights",
        output.to_str().unwrap(),
        repo("crates/graft-assets/images/coffee.png").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["top"][0]["label"], "espresso");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_image_is_named() {
    let out = graft(&["predict", "/nonexistent/cat.jpg"]);
    assert_eq!(
        snapshot(&out),
        "exit 1
--- stdout
--- stderr
teacher efficientnet_lite0: 247 applied, 0 missing, 0 unused, 0 shape-mismatched (weights sha256 579344248a93)
skipped /nonexistent/cat.jpg: cannot read or write `/nonexistent/cat.jpg`
error: none of the 1 images could be read
"
    );
}

/// `graft serve` as a process: it prints where it listens, answers a prediction as `predict`
/// does, and on SIGTERM answers the request in flight and exits 0.
fn serve_answers_then_drains_on_sigterm(run: &Path, cache: &Path, images: &Path) {
    use graft_serve::client::{multipart, request};
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["serve", run.to_str().unwrap(), "--port", "0", "--quiet"])
        .env("GRAFT_CACHE_DIR", cache)
        .env("GRAFT_OFFLINE", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address: std::net::SocketAddr = line
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(images).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    let bag = std::fs::read(&files[0]).unwrap();
    let answer = request(address, "POST", "/v1/predict?top_k=1", &[("content-type", "image/png")], &bag).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let out = graft(&[
        "predict",
        "--student",
        run.to_str().unwrap(),
        files[0].to_str().unwrap(),
        "--json",
        "--top",
        "1",
        "--quiet",
    ]);
    let local: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let served = answer.json();
    assert_eq!(served["predictions"][0]["top"][0]["label"], local[0]["top"][0]["label"]);
    let (served, local) = (&served["predictions"][0]["top"][0]["probability"], &local[0]["top"][0]["probability"]);
    assert!((served.as_f64().unwrap() - local.as_f64().unwrap()).abs() < 1e-5, "{served} vs {local}");

    // A large request in flight when SIGTERM comes: answered, then the process exits 0.
    let parts: Vec<(&str, &[u8])> = (0..64).map(|_| ("bag.png", bag.as_slice())).collect();
    let (content_type, body) = multipart(&parts);
    let in_flight = std::thread::spawn(move || {
        request(address, "POST", "/v1/predict", &[("content-type", content_type.as_str())], &body).unwrap()
    });
    while !request(address, "GET", "/metrics", &[], &[]).unwrap().text().contains("graft_batch_size_count 2") {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let answer = in_flight.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["predictions"].as_array().unwrap().len(), 64);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A small labelled folder: `per_class` images of three classes of the bundled sample.
fn small_data(dir: &Path, split: &str, per_class: usize) -> PathBuf {
    let root = dir.join(split);
    for class in ["Bag", "Sandal", "Trouser"] {
        let from = repo(&format!("crates/graft-assets/data/fashion-mnist-sample/{split}/{class}"));
        std::fs::create_dir_all(root.join(class)).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&from).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files.into_iter().take(per_class) {
            std::fs::copy(&file, root.join(class).join(file.file_name().unwrap())).unwrap();
        }
    }
    root
}

#[test]
fn train_then_eval_then_predict_with_the_student() {
    let dir = std::env::temp_dir().join(format!("graft-cli-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let train = small_data(&dir, "train", 8);
    let test = small_data(&dir, "test", 4);
    let run = dir.join("run");
    let cache = dir.join("cache");
    let with_cache = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_graft"))
            .args(args)
            .env("GRAFT_CACHE_DIR", &cache)
            .env("GRAFT_OFFLINE", "1")
            .output()
            .unwrap()
    };

    // Dropout is a text encoder's setting: an image student's is its architecture's.
    let out = with_cache(&[
        "train",
        "--data",
        train.to_str().unwrap(),
        "--dropout",
        "0.1",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(
        snapshot(&out),
        "exit 1
--- stdout
--- stderr
error: dropout is set for a text encoder's fine-tune; an image student's dropout is its architecture's (AlexNet's dense layers, the MLP head)
"
    );
    let out = with_cache(&[
        "train",
        "--teacher",
        "efficientnet_lite0",
        "--data",
        train.to_str().unwrap(),
        "--strategy",
        "deep",
        "--out",
        run.to_str().unwrap(),
        "--image-size",
        "64",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "--quiet prints nothing on stderr");
    // A deep head is a linear probe fitted on every image, scored by cross-validation.
    assert!(
        text(&out.stdout).contains("cross-validated accuracy") && text(&out.stdout).contains("over all 24 images"),
        "{}",
        text(&out.stdout)
    );
    for file in ["student.safetensors", "graft.json", "metrics.jsonl", "report.html", "curves.png", "confusion.png"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("graft.json")).unwrap()).unwrap();
    assert_eq!(config["teacher"], "efficientnet_lite0");
    assert_eq!(config["teacher_weights_sha256"], "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db");
    assert_eq!(config["strategy"], "deep");
    assert_eq!(config["classes"], serde_json::json!(["Bag", "Sandal", "Trouser"]));
    assert_eq!(config["frozen_blocks"].as_array().unwrap().len(), 18);
    assert_eq!(config["seed"], 42);
    assert_eq!(config["hyperparameters"]["head_fit"], "probe");
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count(), 1);
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert_one_report(&report, "image", &["Bag", "Sandal", "Trouser"]);
    assert!(report.contains("curves.png") && report.contains("<th>img/s</th>"), "{report}");

    let out = with_cache(&["eval", run.to_str().unwrap(), "--data", test.to_str().unwrap(), "--json", "--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let evaluation: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let report_accuracy = |evaluation: &serde_json::Value| evaluation["accuracy"].clone();
    let accuracy = evaluation["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    assert_eq!(evaluation["images"], 12);
    assert_eq!(evaluation["per_class"].as_array().unwrap().len(), 3);
    assert_eq!(evaluation["confusion"].as_array().unwrap().len(), 3);
    // Bags, sandals and trousers are easy: a student that learned anything beats chance (1/3)
    // clearly.
    assert!(accuracy > 0.5, "accuracy {accuracy}");

    // The student as one ONNX file, beside the run (tract checks its numbers: tests/export).
    let out = with_cache(&["export", run.to_str().unwrap(), "--format", "onnx"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let onnx = run.join("student.onnx");
    assert!(
        text(&out.stdout).starts_with(&format!("wrote {} (", onnx.display()))
            && text(&out.stdout).contains("input `input`, output `probabilities`"),
        "{}",
        text(&out.stdout)
    );
    assert!(std::fs::metadata(&onnx).unwrap().len() > 1_000_000, "the network's weights are in the file");

    let out = with_cache(&[
        "predict",
        "--student",
        run.to_str().unwrap(),
        test.join("Bag").to_str().unwrap(),
        "--json",
        "--top",
        "2",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "one row per image of the folder");
    for row in rows {
        let label = row["top"][0]["label"].as_str().unwrap();
        assert!(["Bag", "Sandal", "Trouser"].contains(&label), "{label}");
        assert_eq!(row["top"].as_array().unwrap().len(), 2);
    }

    let out = with_cache(&[
        "predict",
        "--student",
        run.to_str().unwrap(),
        test.join("Trouser").to_str().unwrap(),
        "--csv",
        "--top",
        "1",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "path,rank,class_index,label,probability");
    assert_eq!(lines.len(), 5);

    serve_answers_then_drains_on_sigterm(&run, &cache, &test.join("Bag"));

    let out = with_cache(&["eval", dir.join("no-such-run").to_str().unwrap(), "--data", test.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("graft.json"), "{}", text(&out.stderr));

    // The audit: a few iterations on two pairs, to see every part run and report (the rates it
    // measures are docs/AUDIT.md's).
    let audit = [
        "audit",
        run.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--pairs",
        "2",
        "--iterations",
        "5",
        "--json",
        "--quiet",
    ];
    let out = with_cache(&audit);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["layer"], "_conv_head", "a deep student is attacked at the teacher's last block");
    assert_eq!((report["pairs"].as_u64(), report["budget"].as_f64()), (Some(2), Some(0.003)));
    for rate in ["attack_success_rate", "noise_success_rate", "pgd_success_rate"] {
        assert!((0.0..=1.0).contains(&report[rate].as_f64().unwrap()), "{rate}: {report}");
    }
    for example in report["examples"].as_array().unwrap() {
        assert_ne!(example["source_class"], example["target_class"], "{example}");
        assert!(example["dssim"].as_f64().unwrap() < 0.0035, "the budget, give or take the rounding: {example}");
    }
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(run.join("audit.json")).unwrap()).unwrap(),
        report
    );
    let html = std::fs::read_to_string(run.join("audit.html")).unwrap();
    for kind in ["source", "crafted", "difference", "target"] {
        let picture = format!("audit/pair-1-{kind}.png");
        assert!(html.contains(&picture) && run.join(&picture).is_file(), "{picture}");
    }
    // An earlier layer: the activation map itself is mimicked.
    let out = with_cache(&[
        "audit",
        run.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--pairs",
        "1",
        "--iterations",
        "3",
        "--layer",
        "_blocks.15",
        "--json",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["layer"].as_str(), report["cut"].as_u64()), (Some("_blocks.15"), Some(17)));
    // Fingerprinting, offline: the bundled teacher is the one candidate at hand.
    let out = with_cache(&[
        "audit",
        run.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--fingerprint",
        "--iterations",
        "10",
        "--json",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let candidates = report["candidates"].as_array().unwrap();
    assert_eq!(candidates[0]["teacher"], "efficientnet_lite0", "{report}");
    assert_eq!(candidates[0]["layer"], "_conv_head", "{report}");
    for value in [&candidates[0]["gini"], &report["noise_gini"]] {
        assert!((0.0..1.0).contains(&value.as_f64().unwrap()), "{report}");
    }
    assert!(run.join("fingerprint.json").is_file());
    // Hardening: a new run that `eval` and `audit` take, the attack measured before and after on
    // the same crafted images (the figures are docs/AUDIT.md's).
    let hardened = dir.join("hardened");
    let harden = [
        "harden",
        run.to_str().unwrap(),
        "--data",
        train.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
        "--out",
        hardened.to_str().unwrap(),
    ];
    let out = with_cache(
        &[
            &harden[..],
            &[
                "--epochs",
                "2",
                "--pairs",
                "2",
                "--iterations",
                "5",
                "--mimicry-examples",
                "3",
                "--mimicry-example-iterations",
                "2",
                "--json",
                "--quiet",
            ],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["harden"]["layer"], "_conv_head");
    assert_eq!(outcome["harden"]["history"].as_array().unwrap().len(), 2);
    assert_eq!(outcome["harden"]["mimicry_examples"]["crafted"], 3, "{}", outcome["harden"]);
    assert_eq!(outcome["before"]["attack"]["pairs"], 2);
    assert_eq!(outcome["before"]["accuracy"], report_accuracy(&evaluation), "before: the student's accuracy on --test");
    for side in ["before", "after"] {
        assert!((0.0..=1.0).contains(&outcome[side]["attack"]["attack_success_rate"].as_f64().unwrap()), "{outcome}");
    }
    let crafted = |side: &str| {
        outcome[side]["attack"]["examples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|example| example["dssim"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(crafted("before"), crafted("after"), "the same crafted images score both students");
    assert!(hardened.join("harden.json").is_file() && hardened.join("audit.html").is_file());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hardened.join("graft.json")).unwrap()).unwrap();
    assert_eq!((config["strategy"].as_str(), config["frozen_blocks"].as_array().unwrap().len()), (Some("full"), 0));
    let out = with_cache(&["eval", hardened.to_str().unwrap(), "--data", test.to_str().unwrap(), "--json", "--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let evaluation: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        evaluation["accuracy"], outcome["after"]["accuracy"],
        "after: the hardened run's accuracy, as `eval` scores it"
    );
    let out = with_cache(&[
        "audit",
        hardened.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--pairs",
        "1",
        "--iterations",
        "2",
        "--json",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["layer"], "_conv_head", "a hardened student is audited at the layer it was hardened at");
    // `graft export`: the hardened student's network as a teacher weight file. The fingerprint
    // takes it as a second candidate, named by its file, and a new student trains from it.
    let exported = dir.join("hardened-teacher.safetensors");
    let out = with_cache(&[
        "export",
        hardened.to_str().unwrap(),
        "--format",
        "teacher-weights",
        "--out",
        exported.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("--teacher efficientnet_lite0 --weights"), "{}", text(&out.stdout));
    let out = with_cache(&[
        "audit",
        run.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--fingerprint",
        "--iterations",
        "5",
        "--weights",
        exported.to_str().unwrap(),
        "--layer",
        "_blocks.15",
        "--json",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let candidates = report["candidates"].as_array().unwrap();
    let names: Vec<&str> = candidates.iter().map(|candidate| candidate["teacher"].as_str().unwrap()).collect();
    assert!(
        names.len() == 2
            && names.contains(&"efficientnet_lite0")
            && names.iter().any(|name| name.ends_with("hardened-teacher.safetensors)")),
        "{names:?}"
    );
    assert_ne!(candidates[0]["weights_sha256"], candidates[1]["weights_sha256"]);
    assert!(
        candidates.iter().all(|candidate| candidate["layer"] == "_blocks.15"),
        "--layer aims every fingerprint at that block: {report}"
    );
    let exported_sha =
        candidates.iter().find(|candidate| candidate["teacher"] != "efficientnet_lite0").unwrap()["weights_sha256"]
            .clone();
    let from_export = dir.join("from-export");
    let out = with_cache(&[
        "train",
        "--weights",
        exported.to_str().unwrap(),
        "--data",
        train.to_str().unwrap(),
        "--out",
        from_export.to_str().unwrap(),
        "--image-size",
        "64",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from_export.join("graft.json")).unwrap()).unwrap();
    assert_eq!(config["teacher_weights_sha256"], exported_sha, "the new student's teacher is the exported network");
    let out = with_cache(&[
        "export",
        dir.join("no-such-run").to_str().unwrap(),
        "--format",
        "teacher-weights",
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("graft.json"), "{}", text(&out.stderr));
    let out = with_cache(&[&harden[..], &["--epochs", "0", "--quiet"]].concat());
    assert_eq!(out.status.code(), Some(2), "refused by the flag's own check, before any work");
    assert!(text(&out.stderr).contains("'--epochs <EPOCHS>': must be at least 1"), "{}", text(&out.stderr));
    let out =
        with_cache(&["audit", run.to_str().unwrap(), "--data", test.to_str().unwrap(), "--layer", "layer9", "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no block `layer9`") && text(&out.stderr).contains("_blocks.0"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_on_a_single_class_stops_with_a_hint() {
    let dir = std::env::temp_dir().join(format!("graft-cli-one-class-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data/Bag")).unwrap();
    std::fs::copy(
        repo("crates/graft-assets/data/fashion-mnist-sample/train/Bag/00035.png"),
        dir.join("data/Bag/a.png"),
    )
    .unwrap();
    let out =
        graft(&["train", "--data", dir.join("data").to_str().unwrap(), "--out", dir.join("run").to_str().unwrap()]);
    assert_eq!(
        snapshot(&out).replace(&dir.display().to_string(), "[DIR]"),
        "exit 1
--- stdout
--- stderr
teacher efficientnet_lite0: 247 applied, 0 missing, 0 unused, 0 shape-mismatched (weights sha256 579344248a93)
error: `[DIR]/data` has images of only one class (Bag); a classifier needs at least two
"
    );
    assert!(!dir.join("run").exists(), "a run that cannot train writes nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_misspelt_setting_fails_before_any_work_with_the_accepted_names() {
    let data = repo("crates/graft-assets/data/fashion-mnist-sample/train");
    let out_dir = std::env::temp_dir().join(format!("graft-cli-typo-{}", std::process::id()));
    for (flag, value, names) in [
        ("--optimizer", "adamm", "adamw, sgd"),
        ("--strategy", "dep", "deep, mid, full"),
        ("--augment", "yes", "auto, on, off"),
        ("--batch-norm", "running", "auto, batch, stored"),
        ("--head-init", "zeros", "random, probe"),
        ("--refit", "always", "auto, on, off"),
    ] {
        let started = std::time::Instant::now();
        let out = graft(&["train", "--data", data.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(value) && stderr.contains(names), "{flag}: {stderr}");
        assert!(!out_dir.exists(), "{flag}: nothing was written");
        // Not a timing claim: the check happens while the arguments are read, long before a cache fill.
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{flag}");
    }
}

#[test]
fn numeric_flags_out_of_bounds_are_refused_before_any_work() {
    for (flag, value, says) in [
        ("--image-size", "0", "from 16 to 2048 pixels"),
        ("--image-size", "70000", "from 16 to 2048 pixels"),
        ("--batch-size", "0", "at least 1"),
        ("--epochs", "0", "at least 1"),
        ("--learning-rate", "nan", "finite"),
        ("--learning-rate", "-1", "above 0"),
        ("--dropout", "1.5", "below 1"),
        ("--weight-decay", "-0.1", "0 or more"),
    ] {
        let setting = format!("{flag}={value}");
        let out = graft(&["train", "--data", "no-such-data", "--out", "no-such-run", &setting]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains(says), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = graft(&["serve", "no-such-run", "--max-batch", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("at least 1"), "{}", text(&out.stderr));
}

#[test]
fn show_settings_lists_the_fused_plan_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["--show-settings", "teachers"])
        .env("GRAFT_FUSED", "0")
        .output()
        .expect("run graft");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("fused_plan = false"), "{}", text(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["--show-settings", "teachers"])
        .env_remove("GRAFT_FUSED")
        .output()
        .expect("run graft");
    assert!(text(&out.stderr).contains("fused_plan = true"), "{}", text(&out.stderr));
}

#[test]
fn teacher_predict_skips_an_unreadable_image_as_a_student_does() {
    let coffee = repo("crates/graft-assets/images/coffee.png");
    let out = graft(&["predict", "--json", coffee.to_str().unwrap(), "/nonexistent/cat.jpg"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("skipped /nonexistent/cat.jpg"), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
    assert_eq!(rows[0]["top"][0]["label"], "espresso");
}

/// The metrics of every epoch without the timings, which differ run to run.
fn metrics_without_timings(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let mut metrics: serde_json::Value = serde_json::from_str(line).unwrap();
            for timing in ["seconds", "images_per_second"] {
                metrics.as_object_mut().unwrap().remove(timing);
            }
            metrics
        })
        .collect()
}

/// Ctrl-C stops training at a batch boundary with its last checkpoint whole (exit 130); a
/// checkpoint write that fails midway (a full disk, here a file-size limit) leaves that
/// checkpoint as it was; `--resume` then reaches exactly the metrics of a run never interrupted.
#[cfg(unix)]
#[test]
fn interrupted_and_failed_checkpoints_resume_to_the_same_result() {
    let dir = std::env::temp_dir().join(format!("graft-cli-interrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let train = small_data(&dir, "train", 8);
    let cache = dir.join("cache");
    let args = |run: &Path| -> Vec<String> {
        [
            "train",
            "--teacher",
            "efficientnet_lite0",
            "--data",
            train.to_str().unwrap(),
            "--strategy",
            "full",
            "--image-size",
            "32",
            "--epochs",
            "6",
            "--quiet",
            "--out",
            run.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let command = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_graft"));
        command.env("GRAFT_CACHE_DIR", &cache).env("GRAFT_OFFLINE", "1");
        command
    };
    let whole = dir.join("whole");
    let out = command().args(args(&whole)).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = metrics_without_timings(&whole);
    assert_eq!(expected.len(), 6);

    // Ctrl-C once the first epoch's checkpoint exists.
    let run = dir.join("run");
    let latest = run.join("checkpoint/LATEST");
    let mut child = command().args(args(&run)).stderr(std::process::Stdio::piped()).spawn().unwrap();
    while !latest.is_file() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped when asked to") && stderr.contains("--resume"), "{stderr}");
    let pointed = std::fs::read_to_string(&latest).unwrap();
    assert!(run.join("checkpoint").join(&pointed).join("state.json").is_file());
    assert!(!run.join("student.safetensors").exists(), "an interrupted run writes no student");

    // A resume whose checkpoint write fails (files capped at 1 MiB; the student is larger).
    let mut resume = args(&run);
    resume.push("--resume".into());
    let limited = "trap '' XFSZ; ulimit -f 1024; exec \"$0\" \"$@\"";
    let out = Command::new("bash")
        .arg("-c")
        .arg(limited)
        .arg(env!("CARGO_BIN_EXE_graft"))
        .args(&resume)
        .env("GRAFT_CACHE_DIR", &cache)
        .env("GRAFT_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("student.bpk") || stderr.contains("checkpoint"), "the failed write is named: {stderr}");
    assert_eq!(std::fs::read_to_string(&latest).unwrap(), pointed, "LATEST still names the last whole checkpoint");
    assert!(run.join("checkpoint").join(&pointed).join("student.bpk").is_file());

    let out = command().args(&resume).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(metrics_without_timings(&run), expected, "resumed twice, the same epochs as the uninterrupted run");
    assert_eq!(
        std::fs::read(run.join("student.safetensors")).unwrap(),
        std::fs::read(whole.join("student.safetensors")).unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

const SPORTS: &[&str] = &[
    "The striker scored twice in the second half.",
    "Our goalkeeper saved a penalty in extra time.",
    "The marathon runners crossed the finish line at noon.",
    "She served an ace to win the tennis match.",
    "The coach benched two players after the defeat.",
    "He hit a home run in the bottom of the ninth inning.",
    "The cyclists climbed the mountain stage in heavy rain.",
    "The referee showed a red card after the foul.",
    "They won the championship on the final lap.",
    "The quarterback threw a touchdown pass.",
    "The swimmer broke the world record in the relay.",
    "Fans cheered as the team lifted the trophy.",
    "The boxer was knocked down in the third round.",
    "A late goal sent the club into the cup final.",
    "The sprinter false-started and was disqualified.",
    "The skier crashed on the downhill course.",
];

const COOKING: &[&str] = &[
    "Simmer the tomato sauce for twenty minutes.",
    "Knead the dough until it is smooth and elastic.",
    "Whisk the eggs with sugar until pale.",
    "Roast the vegetables with olive oil and garlic.",
    "Season the soup with salt and black pepper.",
    "Bake the bread at two hundred degrees for forty minutes.",
    "Chop the onions finely and fry them in butter.",
    "Let the cake cool before adding the icing.",
    "Marinate the chicken overnight in yoghurt and spices.",
    "Stir the risotto while adding the stock slowly.",
    "Grate the cheese over the pasta before serving.",
    "Melt the chocolate gently over a pan of hot water.",
    "Boil the potatoes until a knife slides in easily.",
    "Fold the flour into the batter without overmixing.",
    "Slice the lemons thinly for the tart.",
    "Fry the garlic until golden, then add the spinach.",
];

/// A CSV of `text,label` rows (texts with commas and quotes, so quoting is exercised).
fn texts_csv(path: &Path, rows: &[(&str, &str)]) {
    let mut writer = csv::Writer::from_path(path).unwrap();
    writer.write_record(["id", "sentence", "topic"]).unwrap();
    for (index, (text, label)) in rows.iter().enumerate() {
        writer.write_record([index.to_string().as_str(), text, label]).unwrap();
    }
    writer.flush().unwrap();
}

/// all-MiniLM-L6-v2 where the tests have it (`GRAFT_TEST_MINILM`, or `target/test-assets/`,
/// as scripts/fetch-test-assets.sh puts it), else the tiny random BERT fixture: the verbs work
/// the same on both; only the real teacher is asked to be accurate.
fn text_teacher_directory() -> (PathBuf, bool) {
    let real = std::env::var_os("GRAFT_TEST_MINILM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo("target/test-assets/all-minilm-l6-v2"));
    if real.join("model.safetensors").is_file() {
        (real, true)
    } else {
        (repo("crates/graft/tests/fixtures/tiny-bert"), false)
    }
}

#[test]
fn text_students_train_eval_predict_and_embed() {
    let dir = std::env::temp_dir().join(format!("graft-cli-text-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (teacher, real) = text_teacher_directory();
    let teacher = teacher.to_str().unwrap();
    let rows = |range: std::ops::Range<usize>| -> Vec<(&str, &str)> {
        range.clone().map(|i| (SPORTS[i], "sports")).chain(range.map(|i| (COOKING[i], "cooking"))).collect()
    };
    let (train, test) = (dir.join("train.csv"), dir.join("test.csv"));
    texts_csv(&train, &rows(0..12));
    texts_csv(&test, &rows(12..16));
    let run = dir.join("run");
    // `train` of the text teacher on `train` into `run`, with `settings` besides.
    let train_with = |settings: &[&str]| {
        let mut args = vec!["train", "--teacher", "all-minilm-l6-v2", "--weights", teacher];
        args.extend(["--data", train.to_str().unwrap(), "--out", run.to_str().unwrap()]);
        args.extend(settings);
        graft(&args)
    };

    // Without naming the columns: neither `sentence` nor `topic`... `sentence` is a default
    // text column, `topic` is no default label column.
    let out = train_with(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no label column") && text(&out.stderr).contains("--label-column"),
        "{}",
        text(&out.stderr)
    );
    // Image-only strategies are refused with what works instead.
    let out = train_with(&["--label-column", "topic", "--strategy", "scratch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`deep`, `mid`, `full` or `auto`"), "{}", text(&out.stderr));
    // A dropout probability outside [0, 1) is refused before any training, by the flag's check.
    let out = train_with(&["--label-column", "topic", "--strategy", "full", "--dropout", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("'--dropout <DROPOUT>': must be below 1"), "{}", text(&out.stderr));

    let out = train_with(&["--label-column", "topic", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(
        (summary["modality"].as_str(), summary["strategy"].as_str(), summary["texts"].as_u64()),
        (Some("text"), Some("deep"), Some(24))
    );
    for file in ["graft.json", "student.safetensors", "report.html", "confusion.png"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert_one_report(&report, "text", &["cooking", "sports"]);

    let out =
        graft(&["eval", run.to_str().unwrap(), "--data", test.to_str().unwrap(), "--label-column", "topic", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let evaluation: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(evaluation["texts"], 8);
    assert_eq!(evaluation["classes"], serde_json::json!(["cooking", "sports"]));

    let out = graft(&[
        "predict",
        "--student",
        run.to_str().unwrap(),
        "--json",
        "--top",
        "1",
        "The goalkeeper dived and caught the ball.",
        "Add a pinch of salt to the boiling water.",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let predictions: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(predictions.as_array().map(Vec::len), Some(2));
    assert_eq!(predictions[1]["text"], "Add a pinch of salt to the boiling water.");

    // The student as ONNX with its tokenizer beside it (tract and onnxruntime check the numbers:
    // graft's tests/export); no pixel form for a text student.
    let onnx = dir.join("onnx").join("student.onnx");
    let out = graft(&["export", run.to_str().unwrap(), "--format", "onnx", "--out", onnx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("inputs `input_ids`, `attention_mask`, `token_type_ids`, output `probabilities`")
            && text(&out.stdout).contains("tokenizer.json beside it"),
        "{}",
        text(&out.stdout)
    );
    assert!(onnx.is_file() && dir.join("onnx").join("tokenizer.json").is_file());
    let out = graft(&["export", run.to_str().unwrap(), "--format", "onnx", "--with-preprocessing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`--with-preprocessing` is for image students"), "{}", text(&out.stderr));

    // Texts from a file, one per line; embed gives one unit vector per text.
    let lines = dir.join("lines.txt");
    std::fs::write(&lines, "first text\n\n   \nsecond, with ünïcödé\n").unwrap();
    let out = graft(&[
        "embed",
        "--teacher",
        "all-minilm-l6-v2",
        "--weights",
        teacher,
        "--file",
        lines.to_str().unwrap(),
        "",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let embedded: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let embedded = embedded.as_array().unwrap();
    assert_eq!(
        embedded.iter().map(|row| row["text"].as_str().unwrap()).collect::<Vec<_>>(),
        ["", "first text", "second, with ünïcödé"]
    );
    let width = if real { 384 } else { 16 };
    for row in embedded {
        let features: Vec<f64> = row["features"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(features.len(), width);
        assert!((features.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-4);
    }

    // A fine-tuned student (the last layer, one epoch) is saved with its encoder, and eval and
    // predict run that encoder, not the teacher's.
    let tuned = dir.join("tuned");
    let out = graft(&[
        "train",
        "--teacher",
        "all-minilm-l6-v2",
        "--weights",
        teacher,
        "--data",
        train.to_str().unwrap(),
        "--label-column",
        "topic",
        "--strategy",
        "mid",
        "--unfreeze",
        "1",
        "--epochs",
        "1",
        "--out",
        tuned.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tuned_summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(tuned_summary["strategy"], "mid");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tuned.join("graft.json")).unwrap()).unwrap();
    assert_eq!(saved["metrics"]["history"].as_array().map(Vec::len), Some(1), "{saved}");
    let out = graft(&[
        "eval",
        tuned.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--label-column",
        "topic",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = graft(&["predict", "--student", tuned.to_str().unwrap(), "--json", "Add a pinch of salt."]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // `auto` with 12 texts a class keeps the probe and says why.
    let out = graft(&[
        "train",
        "--teacher",
        "all-minilm-l6-v2",
        "--weights",
        teacher,
        "--data",
        train.to_str().unwrap(),
        "--label-column",
        "topic",
        "--strategy",
        "auto",
        "--out",
        dir.join("auto").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let auto: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(auto["strategy"], "deep");
    assert!(
        auto["strategy_reason"].as_str().is_some_and(|reason| reason.contains("12 texts in the smallest class")),
        "{auto}"
    );

    // The image audit says so instead of failing on the run's contents.
    let out = graft(&["audit", run.to_str().unwrap(), "--data", test.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is a text student"), "{}", text(&out.stderr));

    // compare: the strategies side by side on the same held-out texts, scored on the test texts.
    let compared = dir.join("compare");
    let out = graft(&[
        "compare",
        "--teacher",
        "all-minilm-l6-v2",
        "--weights",
        teacher,
        "--data",
        train.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
        "--label-column",
        "topic",
        "--strategies",
        "deep,mid,scratch",
        "--epochs",
        "1",
        "--unfreeze",
        "1",
        "--out",
        compared.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let strategies: Vec<&str> = rows.as_array().unwrap().iter().map(|row| row["strategy"].as_str().unwrap()).collect();
    assert_eq!(strategies, ["deep", "mid"], "scratch is for image teachers");
    assert!(rows.as_array().unwrap().iter().all(|row| row["test_accuracy"].as_f64().is_some()), "{rows}");
    assert!(compared.join("compare.md").is_file());

    if real {
        // Sports against cooking is easy for a sentence encoder: the student must get it.
        assert!(summary["validation_accuracy"].as_f64().unwrap() >= 0.9, "{summary}");
        assert!(evaluation["accuracy"].as_f64().unwrap() >= 0.85, "{evaluation}");
        assert_eq!(predictions[0]["top"][0]["label"], "sports", "{predictions}");
        assert_eq!(predictions[1]["top"][0]["label"], "cooking", "{predictions}");
    } else {
        eprintln!("all-MiniLM-L6-v2 is not at hand: the text verbs ran on the tiny random BERT, accuracy not checked");
    }
    // The runs hold the encoder's weights (about 170 MB): leave nothing behind.
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs graft with `args` and sends it SIGINT as soon as a line of its stderr contains `marker`
/// (the work that follows checks the request at its next batch); kills it after two minutes
/// (a broken interrupt fails the test rather than hanging it).
#[cfg(unix)]
fn interrupted_at(args: &[&str], cache: &Path, marker: &str) -> Output {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .env("GRAFT_CACHE_DIR", cache)
        .env("GRAFT_OFFLINE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let stderr = child.stderr.take().unwrap();
    let marker = marker.to_owned();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut sent = false;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains(&marker) {
                sent = Command::new("kill").args(["-INT", &pid]).status().unwrap().success();
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(120) {
            child.kill().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut output = child.wait_with_output().unwrap();
    output.stderr = reader.join().unwrap().into_bytes();
    output
}

/// Ctrl-C stops every long verb at its next batch, as it stops image training: exit 130,
/// stderr says what stopped (and that nothing was written where there are no checkpoints), and
/// no student is left in `--out`.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_every_long_verb_at_the_next_batch() {
    let dir = std::env::temp_dir().join(format!("graft-cli-ctrl-c-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = dir.join("cache");
    let train = small_data(&dir, "train", 6);
    let run = dir.join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["train", "--data", train.to_str().unwrap(), "--strategy", "deep", "--image-size", "32", "--quiet"])
        .args(["--out", run.to_str().unwrap()])
        .env("GRAFT_CACHE_DIR", &cache)
        .env("GRAFT_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (run, train) = (run.to_str().unwrap(), train.to_str().unwrap());
    let stopped = |args: &[&str], marker: &str, what: &str| {
        let out = interrupted_at(args, &cache, marker);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{args:?}: {stderr}");
        assert!(stderr.contains(what), "{args:?}: {stderr}");
        assert_eq!(text(&out.stdout), "", "{args:?}: a stopped verb prints no result");
    };
    let lite0 = "teacher efficientnet_lite0";
    let nothing = "stopped when asked to, before it finished; nothing was written";

    let hardened = dir.join("hardened");
    let harden = ["harden", run, "--data", train, "--out", hardened.to_str().unwrap(), "--epochs", "200"];
    stopped(
        &[&harden[..], &["--pairs", "0", "--mimicry-examples", "0"]].concat(),
        lite0,
        &format!("hardening {nothing}"),
    );
    assert!(!hardened.join("student.safetensors").exists());
    stopped(
        &["audit", run, "--data", train, "--pairs", "64", "--batch-size", "1"],
        lite0,
        &format!("the audit {nothing}"),
    );
    let bag = repo("crates/graft-assets/data/fashion-mnist-sample/test/Bag");
    stopped(&["embed", "--batch-size", "1", bag.to_str().unwrap()], lite0, &format!("embedding {nothing}"));
    stopped(
        &["bench", "--teachers", "efficientnet_lite0", "--batch-size", "1", "--iterations", "100000"],
        "benchmarking efficientnet_lite0",
        &format!("the benchmark {nothing}"),
    );
    let compared = dir.join("compare");
    stopped(
        &[
            "compare",
            "--data",
            train,
            "--strategies",
            "mid",
            "--image-size",
            "32",
            "--epochs",
            "500",
            "--out",
            compared.to_str().unwrap(),
        ],
        lite0,
        "training stopped when asked to",
    );
    assert!(!compared.join("compare.md").exists());

    let (teacher, _) = text_teacher_directory();
    let texts = dir.join("texts.csv");
    let rows: Vec<(&str, &str)> =
        (0..12).map(|i| (SPORTS[i], "sports")).chain((0..12).map(|i| (COOKING[i], "cooking"))).collect();
    texts_csv(&texts, &rows);
    let text_run = dir.join("text-run");
    let text_train = [
        "train",
        "--teacher",
        "all-minilm-l6-v2",
        "--weights",
        teacher.to_str().unwrap(),
        "--data",
        texts.to_str().unwrap(),
        "--label-column",
        "topic",
        "--strategy",
        "full",
        "--epochs",
        "5000",
        "--batch-size",
        "4",
        "--out",
        text_run.to_str().unwrap(),
    ];
    // A text fine-tune keeps a checkpoint each epoch, as image training does: stopped after an
    // epoch (the first, unless the signal lands late), it resumes from there.
    let out = interrupted_at(&text_train, &cache, "epoch 1/5000");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(text(&out.stdout), "");
    let done: usize = stderr
        .split("training stopped when asked to, after epoch ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no interruption after an epoch: {stderr}"));
    assert!(done >= 1 && stderr.contains("that epoch's checkpoint"), "{stderr}");
    assert!(!text_run.join("student.safetensors").exists());
    assert!(text_run.join(format!("checkpoint/epoch-{done:04}/student.bpk")).is_file());
    let total = (done + 1).to_string();
    let mut resumed = text_train.to_vec();
    let epochs = resumed.iter().position(|arg| *arg == "5000").unwrap();
    resumed[epochs] = &total;
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(&resumed)
        .arg("--resume")
        .env("GRAFT_CACHE_DIR", &cache)
        .env("GRAFT_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("resuming after epoch {done}")), "{stderr}");
    assert!(stderr.contains(&format!("epoch {total}/{total}")), "{stderr}");
    assert!(!stderr.contains(&format!("epoch {done}/{total}")), "the checkpoint's epoch ran again: {stderr}");
    assert!(text_run.join("student.safetensors").is_file());
    std::fs::remove_dir_all(dir).unwrap();
}

/// The one report every run writes, whichever the modality: the title, the per-class table with
/// every class, the confusion matrix and the whole record.
fn assert_one_report(report: &str, modality: &str, classes: &[&str]) {
    assert!(report.contains(&format!("<h1>graft {modality} student: deep on ")), "{report}");
    for section in ["<h2>Per class</h2>", "<img src=\"confusion.png\"", "<h2>Settings (graft.json)</h2>"] {
        assert!(report.contains(section), "{section} missing from {report}");
    }
    for class in classes {
        assert!(report.contains(&format!("<tr><td>{class}</td>")), "{class} missing from {report}");
    }
    assert!(report.contains(&format!("&quot;modality&quot;: &quot;{modality}&quot;")), "{report}");
}
