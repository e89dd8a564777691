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

#[test]
fn predict_json_puts_a_cat_first_for_chelsea_and_espresso_for_coffee() {
    let chelsea = repo("assets/images/chelsea.png");
    let coffee = repo("assets/images/coffee.png");
    let out = graft(&["predict", "--teacher", "efficientnet_lite0", "--json", "--top", "3", chelsea.to_str().unwrap(), coffee.to_str().unwrap()]);
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
    let out = graft(&["predict", "--quiet", "--top", "1", repo("assets/images/coffee.png").to_str().unwrap()]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("coffee.png") && stdout.contains("espresso"), "{stdout}");
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn embed_json_gives_one_1280_vector_per_image() {
    let out = graft(&["embed", "--json", "--quiet", repo("assets/images").to_str().unwrap()]);
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
    let out = graft(&["predict", "--weights", hostile.to_str().unwrap(), repo("assets/images/coffee.png").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: refusing to load") && stderr.contains("hostile_zip.pth") && stderr.contains("system"), "{stderr}");
}

#[test]
fn unknown_teacher_and_offline_download_explain_themselves() {
    let coffee = repo("assets/images/coffee.png");
    let out = graft(&["predict", "--teacher", "vgg16", coffee.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown teacher `vgg16`; known teachers: efficientnet_lite0"), "{}", text(&out.stderr));

    let out = graft(&["predict", "--teacher", "alexnet", coffee.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("alexnet-owt-7be5be79.pth") && stderr.contains("--weights PATH"), "{stderr}");
}

#[test]
fn convert_legacy_pth_to_safetensors() {
    let dir = std::env::temp_dir().join(format!("graft-cli-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = dir.join("lite0.safetensors");
    let out = graft(&["convert", repo("assets/weights/efficientnet-lite0-57934424.pth").to_str().unwrap(), output.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("wrote 296 tensors"), "{}", text(&out.stdout));
    // The converted file works as the teacher's weights.
    let out = graft(&["predict", "--json", "--weights", output.to_str().unwrap(), repo("assets/images/coffee.png").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["top"][0]["label"], "espresso");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_image_is_named() {
    let out = graft(&["predict", "/nonexistent/cat.jpg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/cat.jpg"), "{}", text(&out.stderr));
}
