//! Training students of every strategy on the bundled sample: frozen blocks stay bit-identical,
//! the probe, the refit, resume after an interruption, the cache, data sets and their errors.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use graft::data::augment::Augmentation;
use graft::data::dataset::{self, Dataset};
use graft::models::{Teacher, WeightOptions, load_teacher};
use graft::train::{HeadKind, Hyperparameters, Silent, Strategy, TrainOptions, train};

use crate::common::{offline_options, repo, temp_dir, values};
use crate::teachers::lite0_tensors;

pub fn teacher() -> Teacher {
    load_teacher("efficientnet_lite0", &offline_options(), &Device::flex()).unwrap().0
}

/// `per_class` training images of each class of the bundled sample, split 75/25.
pub fn sample(per_class: usize) -> (Dataset, Dataset) {
    let data = dataset::open(&repo("crates/graft-assets/data/fashion-mnist-sample/train"), &std::env::temp_dir())
        .unwrap()
        .train;
    data.subsample(per_class, 1).stratified_split(0.25, 1)
}

pub fn options(strategy: Strategy, out: &Path, cache: &Path) -> TrainOptions {
    TrainOptions {
        strategy,
        strategy_reason: None,
        augmentation_choice: None,
        unfreeze: (strategy == Strategy::Mid).then_some(2),
        unfreeze_from: None,
        head: HeadKind::Linear,
        hyperparameters: Hyperparameters {
            optimizer: graft::train::Optimizer::AdamW,
            learning_rate: 1e-3,
            backbone_learning_rate_factor: 0.1,
            weight_decay: 1e-4,
            momentum: 0.9,
            epochs: 3,
            batch_size: 16,
            warmup_epochs: 1,
            label_smoothing: 0.1,
            class_weights: false,
            patience: None,
            gradual_unfreeze_epochs: 0,
            augmentation: Augmentation::none(),
            augmented_views: 1,
            validation_fraction: 0.25,
            shards: 1,
            // The epoch trainer, for every strategy: the probe has its own test.
            head_fit: graft::train::HeadFit::Epochs,
            // Where the recipe is not the subject, the settings runs had before these existed.
            head_init: graft::train::HeadInit::Random,
            batch_norm: graft::train::BatchNormMode::Batch,
            refit: graft::train::Refit::Off,
        },
        seed: 7,
        image_size: Some(64),
        cache_dir: cache.to_owned(),
        out: out.to_owned(),
        resume: false,
        stop_after: None,
        cache_batch_size: 32,
        fused_plan: true,
        data: "test sample".into(),
        pooled_validation: false,
        interrupt: None,
    }
}

#[test]
fn frozen_parameters_are_bit_identical_after_training() {
    let dir = temp_dir("frozen");
    let teacher = teacher();
    let (train_set, validation) = sample(8);
    // Sharded: the shards' batch norms in front of the cut must stay untouched too.
    let mut sharded = options(Strategy::Mid, &dir.join("run"), &dir.join("cache"));
    sharded.hyperparameters.shards = 2;
    let outcome = train(&teacher, &train_set, &validation, &sharded, &Device::flex(), &Silent).unwrap();
    assert_eq!(outcome.config.trainable_blocks, ["_blocks.15", "_conv_head"]);
    let trained = graft_weights::read(&dir.join("run/student.safetensors")).unwrap();
    let original = lite0_tensors();
    let (mut same, mut changed) = (0, 0);
    for (key, tensor) in &original {
        if key.ends_with("num_batches_tracked") {
            continue;
        }
        let student = &trained[&format!("backbone.{key}")];
        let frozen = !key.starts_with("_blocks.15.") && !key.starts_with("_conv_head.") && !key.starts_with("_bn1.");
        if frozen {
            // Weights and batch-norm running statistics alike.
            assert_eq!(student.values, tensor.values, "frozen `{key}` changed");
            same += 1;
        } else if student.values != tensor.values {
            changed += 1;
        }
    }
    assert!(same > 200, "{same}");
    assert!(changed > 5, "the unfrozen blocks did not train ({changed} tensors changed)");

    // `graft export`: the student's network as a teacher weight file, under the published
    // checkpoint's names and shapes with the student's values; it loads back as the teacher.
    let loaded = graft::train::load_run(&dir.join("run"), &Device::flex()).unwrap();
    let file = dir.join("exported.safetensors");
    let written = graft::train::student::export_teacher_weights(&loaded, &file).unwrap();
    let exported = graft_weights::read(&file).unwrap();
    assert_eq!(written, exported.len());
    let published: std::collections::BTreeSet<&String> =
        original.keys().filter(|key| !key.ends_with("num_batches_tracked")).collect();
    assert_eq!(
        exported.keys().collect::<std::collections::BTreeSet<_>>(),
        published,
        "the published checkpoint's tensors, no more, no fewer"
    );
    for (key, tensor) in &exported {
        let student = &trained[&format!("backbone.{key}")];
        assert_eq!((&tensor.shape, &tensor.values), (&student.shape, &student.values), "`{key}`");
    }
    let (exported_teacher, report) = load_teacher(
        "efficientnet_lite0",
        &WeightOptions { weights: Some(file.clone()), ..offline_options() },
        &Device::flex(),
    )
    .unwrap();
    assert!(report.is_complete(), "{report}");
    assert_eq!(exported_teacher.weights_sha256, graft::weights::sha256_file(&file).unwrap());
    let image = Tensor::<4>::from_data(
        TensorData::new((0..3 * 64 * 64).map(|i| ((i % 97) as f32 / 48.0) - 1.0).collect::<Vec<f32>>(), [1, 3, 64, 64]),
        &Device::flex(),
    );
    use burn::module::Module;
    let student = loaded.student.valid();
    let blocks = student.backbone.blocks();
    let want = values(student.backbone.features(graft::backend::forward::blocks(&blocks, image.clone())));
    assert_eq!(values(exported_teacher.features(image)), want, "the exported teacher computes the student's features");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_deep_head_fitted_as_a_linear_probe_is_saved_and_scores_as_it_reported() {
    let dir = temp_dir("probe");
    let teacher = teacher();
    let (train_set, validation) = sample(12);
    let mut probe = options(Strategy::Deep, &dir.join("run"), &dir.join("cache"));
    probe.hyperparameters.head_fit = graft::train::HeadFit::Auto;
    let outcome = train(&teacher, &train_set, &validation, &probe, &Device::flex(), &Silent).unwrap();
    let config = &outcome.config;
    assert_eq!(
        config.hyperparameters.head_fit,
        graft::train::HeadFit::Probe,
        "auto picks the probe for a linear head on a frozen teacher"
    );
    let fit = &config.header.metrics["probe"];
    let cv = &fit["cross_validation"];
    assert_eq!(cv["folds"], 5, "{fit}");
    assert!(graft::train::probe::L2_GRID.contains(&fit["l2"].as_f64().unwrap()), "{fit}");
    assert!(cv["accuracy"].as_f64().unwrap() > 0.5, "ten classes of Fashion-MNIST, far above chance: {fit}");
    assert_eq!(outcome.history.len(), 1);
    // The saved student scores the validation set exactly as the fit reported.
    let loaded = graft::train::load_run(&dir.join("run"), &Device::flex()).unwrap();
    let inference =
        graft::train::evaluate::InferenceOptions { batch_size: 16, cache_dir: dir.join("cache"), fused_plan: true };
    let evaluation =
        graft::train::evaluate::evaluate_run(&loaded, validation.clone(), &inference, &Device::flex(), &Silent)
            .unwrap();
    let reported = config.header.metrics["validation_accuracy"].as_f64().unwrap();
    assert!(
        (evaluation.accuracy - reported).abs() < 1e-9,
        "saved student {} vs reported {reported}",
        evaluation.accuracy
    );
    // A probe cannot fit blocks that train.
    let mut mid = options(Strategy::Mid, &dir.join("mid"), &dir.join("cache"));
    mid.hyperparameters.head_fit = graft::train::HeadFit::Probe;
    let error = train(&teacher, &train_set, &validation, &mid, &Device::flex(), &Silent).unwrap_err().to_string();
    assert!(error.contains("linear probe") && error.contains("trains teacher blocks"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The fine-tuning recipe's two pieces, seen where they must be exact: at learning rate 0 a
/// `mid` student started from the probe, its batch norms on stored statistics, is the `deep`
/// probe (same head, same features: the running statistics never move); at a real rate its
/// trained blocks' weights change while their running statistics stay the teacher's.
#[test]
fn a_probe_started_mid_run_on_stored_statistics_begins_as_the_deep_probe() {
    let dir = temp_dir("lp-ft");
    let teacher = teacher();
    let (train_set, validation) = sample(10);
    let mut deep = options(Strategy::Deep, &dir.join("deep"), &dir.join("cache"));
    deep.hyperparameters.head_fit = graft::train::HeadFit::Probe;
    let deep = train(&teacher, &train_set, &validation, &deep, &Device::flex(), &Silent).unwrap();
    let mut still = options(Strategy::Mid, &dir.join("still"), &dir.join("cache"));
    still.hyperparameters.head_init = graft::train::HeadInit::Probe;
    still.hyperparameters.batch_norm = graft::train::BatchNormMode::Auto;
    still.hyperparameters.learning_rate = 0.0;
    still.hyperparameters.epochs = 1;
    let still = train(&teacher, &train_set, &validation, &still, &Device::flex(), &Silent).unwrap();
    let hyper = &still.config.hyperparameters;
    assert_eq!(
        (hyper.head_init, hyper.batch_norm),
        (graft::train::HeadInit::Probe, graft::train::BatchNormMode::Stored),
        "batch-norm auto resolves to stored for a pretrained teacher, saved resolved"
    );
    assert_eq!(still.config.header.metrics["head_init_probe"]["l2"], deep.config.header.metrics["probe"]["l2"]);
    let (a, b) = (
        deep.config.header.metrics["validation_accuracy"].as_f64().unwrap(),
        still.config.header.metrics["validation_accuracy"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-9, "deep probe {a} vs the mid student it starts: {b}");
    let (a, b) = (
        deep.config.header.metrics["validation_loss"].as_f64().unwrap(),
        still.config.header.metrics["validation_loss"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-3 * a.max(1.0), "validation loss: deep probe {a} vs mid at rate 0 {b}");

    let mut moving = options(Strategy::Mid, &dir.join("moving"), &dir.join("cache"));
    moving.hyperparameters.batch_norm = graft::train::BatchNormMode::Stored;
    train(&teacher, &train_set, &validation, &moving, &Device::flex(), &Silent).unwrap();
    let trained = graft_weights::read(&dir.join("moving/student.safetensors")).unwrap();
    let (mut statistics, mut weights_changed) = (0, 0);
    for (key, tensor) in &lite0_tensors() {
        let Some(student) = trained.get(&format!("backbone.{key}")) else { continue };
        if key.starts_with("_blocks.15.") && (key.ends_with("running_mean") || key.ends_with("running_var")) {
            assert_eq!(student.values, tensor.values, "`{key}` moved on stored statistics");
            statistics += 1;
        } else if key.starts_with("_blocks.15.") && key.ends_with("weight") && student.values != tensor.values {
            weights_changed += 1;
        }
    }
    assert!(
        statistics >= 6 && weights_changed >= 3,
        "{statistics} statistics checked, {weights_changed} weights changed"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--augment auto`'s measurement: one trial per augmentation, the chosen one the union of
/// those kept, and a reason that names each with its score.
#[test]
fn auto_augmentation_measures_each_candidate_and_keeps_those_that_help() {
    let dir = temp_dir("augment-choice");
    let teacher = teacher();
    let (train_set, _) = sample(10);
    let preprocessing = graft::train::trainer::preprocessing_at(&teacher.card.preprocessing, Some(64)).unwrap();
    let context = graft::train::augment_choice::MeasureContext {
        teacher: &teacher,
        preprocessing: &preprocessing,
        cache_dir: &dir,
        seed: 3,
        fused_plan: true,
        batch_size: 16,
        device: &Device::flex(),
    };
    let choice = graft::train::augment_choice::choose(&context, &train_set, &Silent).unwrap();
    let names: Vec<&str> = choice.trials.iter().map(|trial| trial.augmentation.as_str()).collect();
    assert_eq!(names, ["random crops", "horizontal flips", "colour jitter"]);
    assert!(choice.plain_accuracy > 0.3, "ten classes of Fashion-MNIST: {choice:?}");
    let kept = |name: &str| choice.trials.iter().any(|trial| trial.augmentation == name && trial.kept);
    assert_eq!(choice.augmentation.random_resized_crop, kept("random crops"));
    assert_eq!(choice.augmentation.horizontal_flip, kept("horizontal flips"));
    assert_eq!(choice.augmentation.color_jitter > 0.0, kept("colour jitter"));
    for trial in &choice.trials {
        assert_eq!(trial.kept, graft::train::augment_choice::clearly_helps(trial, choice.plain_accuracy));
        // The change is the paired difference of the two mean log-losses.
        assert!((trial.log_loss_change - (trial.log_loss - choice.plain_log_loss)).abs() < 1e-9, "{trial:?}");
        assert!(trial.log_loss_change_standard_error > 0.0, "{trial:?}");
        assert!(
            choice.reason.contains(&format!("{} {:.1}%", trial.augmentation, trial.accuracy * 100.0)),
            "{}",
            choice.reason
        );
    }
    // Measured again on the same data: the same answer, from the cache.
    let again = graft::train::augment_choice::choose(&context, &train_set, &Silent).unwrap();
    assert_eq!(again.augmentation, choice.augmentation);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `auto` adds a measurement and nothing else: with the same seed, its student is bit for
/// bit the one the strategy it chose trains, augmentation choice and refit included (so an
/// `auto` row of docs/QUALITY.md is the chosen strategy's run with the same seed).
#[test]
fn auto_trains_exactly_the_strategy_it_chose() {
    use graft::data::augment::AugmentChoice;
    let dir = temp_dir("auto-same");
    let teacher = teacher();
    let (train_set, validation) = sample(6);
    let mut auto = options(Strategy::Auto, &dir.join("auto"), &dir.join("cache"));
    auto.hyperparameters.epochs = 1;
    // 32 px keeps it under a minute in the test profile; on this sample the advisor picks
    // `full`, so the augmentation measurement and the refit run in both.
    auto.image_size = Some(32);
    auto.hyperparameters.refit = graft::train::Refit::On;
    let mut direct = auto.clone();
    let chosen =
        graft::run::train_run(&teacher, &train_set, &validation, auto, AugmentChoice::Auto, &Device::flex(), &Silent)
            .unwrap();
    assert_ne!(chosen.config.header.strategy, Strategy::Auto);
    assert!(chosen.config.header.strategy_reason.is_some());
    direct.strategy = chosen.config.header.strategy;
    direct.out = dir.join("direct");
    let again =
        graft::run::train_run(&teacher, &train_set, &validation, direct, AugmentChoice::Auto, &Device::flex(), &Silent)
            .unwrap();
    assert_eq!(again.config.hyperparameters, chosen.config.hyperparameters, "the same recipe, augmentation included");
    let student = |run: &str| std::fs::read(dir.join(run).join("student.safetensors")).unwrap();
    assert!(
        student("auto") == student("direct"),
        "auto's {} student differs from {}'s own",
        chosen.config.header.strategy,
        chosen.config.header.strategy
    );
    let accuracies = |outcome: &graft::train::TrainOutcome| {
        outcome.history.iter().map(|epoch| epoch.validation_accuracy).collect::<Vec<_>>()
    };
    assert_eq!(accuracies(&again), accuracies(&chosen));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_diverging_loss_stops_the_run_and_says_what_to_lower() {
    let dir = temp_dir("diverge");
    let teacher = teacher();
    let (train_set, validation) = sample(4);
    let mut options = options(Strategy::Deep, &dir.join("run"), &dir.join("cache"));
    options.hyperparameters.learning_rate = 1e38;
    options.hyperparameters.warmup_epochs = 0;
    let error = train(&teacher, &train_set, &validation, &options, &Device::flex(), &Silent).unwrap_err();
    assert!(matches!(error, graft::GraftError::Diverged { .. }), "{error}");
    assert!(error.to_string().contains("lower learning rate"), "{error}");
    assert!(!dir.join("run/checkpoint/LATEST").exists(), "no checkpoint of a diverged epoch");
    assert!(!dir.join("run/student.safetensors").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn second_run_on_the_same_data_hits_the_cache_and_runs_no_teacher_forward() {
    let dir = temp_dir("cache-hit");
    let teacher = teacher();
    let (train_set, validation) = sample(6);
    let first = train(
        &teacher,
        &train_set,
        &validation,
        &options(Strategy::Deep, &dir.join("a"), &dir.join("cache")),
        &Device::flex(),
        &Silent,
    )
    .unwrap();
    assert_eq!(first.teacher_forwards, train_set.len() + validation.len());
    assert_eq!(first.cache_hits, 0);
    let mut other = options(Strategy::Deep, &dir.join("b"), &dir.join("cache"));
    other.hyperparameters.learning_rate = 3e-3;
    other.head = HeadKind::Mlp { hidden: 32 };
    let second = train(&teacher, &train_set, &validation, &other, &Device::flex(), &Silent).unwrap();
    assert_eq!(second.teacher_forwards, 0, "the teacher ran again");
    assert_eq!(second.cache_misses, 0);
    assert_eq!(second.cache_hits, train_set.len() + validation.len());
    let entries = entry_files(&dir.join("cache").join("features"));
    // Another compute path (burn's modules instead of the fused CPU plan) computes its own
    // entries: its numbers differ in the last bits, and a cache never mixes them.
    let mut unfused = options(Strategy::Deep, &dir.join("c"), &dir.join("cache"));
    unfused.fused_plan = false;
    let third = train(&teacher, &train_set, &validation, &unfused, &Device::flex(), &Silent).unwrap();
    assert_eq!(third.cache_hits, 0);
    assert_eq!(third.teacher_forwards, train_set.len() + validation.len());
    // Damaged entries of the first run's cache: one of another shape (16 bytes), one of the
    // right shape whose values were edited (absurd, but the file looks whole). Each is a miss,
    // computed again and named in the notes; the run ends as the second did.
    std::fs::write(&entries[0], [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 128, 127, 0, 0, 128, 127]).unwrap();
    let mut bytes = std::fs::read(&entries[1]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 4].copy_from_slice(&1e30f32.to_le_bytes());
    std::fs::write(&entries[1], bytes).unwrap();
    let notes = graft::train::reporter::Notes::default();
    let fourth = train(&teacher, &train_set, &validation, &other, &Device::flex(), &notes).unwrap();
    assert_eq!((fourth.teacher_forwards, fourth.cache_misses), (2, 2));
    // Recomputed in a batch of their own, the two entries may differ from the first run's in the
    // last bits (the fused plan's blocking follows the batch), so the scores agree to rounding.
    assert_eq!(fourth.history.len(), second.history.len());
    for (a, b) in fourth.history.iter().zip(&second.history) {
        assert!((a.train_loss - b.train_loss).abs() < 1e-3, "{a:?} vs {b:?}");
        assert!((a.validation_loss - b.validation_loss).abs() < 1e-3, "{a:?} vs {b:?}");
    }
    // (Named by the stage that read them: training images and validation images apart.)
    let damaged =
        notes.taken().into_iter().filter(|note| note.contains("failed their check")).collect::<Vec<_>>().join("\n");
    for entry in &entries[..2] {
        assert!(damaged.contains(&entry.display().to_string()), "{damaged}");
    }
    assert!(damaged.contains("digest") && damaged.contains("not a graft cache entry"), "{damaged}");
    // A run record edited to ask for 70,000-pixel inputs (15 GB an image) is refused on load.
    let record = dir.join("a").join("graft.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    config["preprocessing"]["input_size"] = 70_000.into();
    std::fs::write(&record, serde_json::to_vec(&config).unwrap()).unwrap();
    let options = graft::run::StudentOptions::default();
    let error = graft::run::Student::load(&dir.join("a"), &options).err().expect("refused").to_string();
    assert!(error.contains("graft.json") && error.contains("70000 pixels"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every file under `directory`, sorted.
fn entry_files(directory: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { pending.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    files
}

#[test]
fn augmented_mid_caches_the_plain_view_and_the_augmented_ones() {
    let dir = temp_dir("views");
    let teacher = teacher();
    let (train_set, validation) = sample(4);
    let mut augmented = options(Strategy::Mid, &dir.join("a"), &dir.join("cache"));
    augmented.hyperparameters.augmentation = Augmentation::standard();
    augmented.hyperparameters.augmented_views = 3;
    augmented.hyperparameters.epochs = 1;
    let first = train(&teacher, &train_set, &validation, &augmented, &Device::flex(), &Silent).unwrap();
    assert_eq!(first.teacher_forwards, 3 * train_set.len() + validation.len());
    // The plain views are the ones a run without augmentation trains on: all cached already.
    let plain = options(Strategy::Mid, &dir.join("b"), &dir.join("cache"));
    let second = train(&teacher, &train_set, &validation, &plain, &Device::flex(), &Silent).unwrap();
    assert_eq!(second.teacher_forwards, 0, "the plain views were not among the cached ones");
    // An activation entry sealed properly but of a pooled entry's shape (a cut inside the
    // teacher checks entries against the activations' shape): a miss, computed again.
    let entry = entry_files(&dir.join("cache").join("features"))
        .into_iter()
        .find(|entry| entry.to_string_lossy().ends_with("-eval.f32"))
        .unwrap();
    let folder = entry.parent().unwrap().parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    let key = format!("image features {folder}/{}", entry.file_name().unwrap().to_string_lossy());
    std::fs::write(&entry, graft::cache_entry::encode(&key, &[4], &[0.0; 4])).unwrap();
    let again = options(Strategy::Mid, &dir.join("c"), &dir.join("cache"));
    let third = train(&teacher, &train_set, &validation, &again, &Device::flex(), &Silent).unwrap();
    assert_eq!(third.teacher_forwards, 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn resume_after_an_interruption_reaches_the_same_final_metrics() {
    let dir = temp_dir("resume");
    let teacher = teacher();
    let (train_set, validation) = sample(6);
    // Batches split across two threads: the run must still be exactly reproducible.
    let mut whole = options(Strategy::Mid, &dir.join("whole"), &dir.join("cache"));
    whole.hyperparameters.epochs = 4;
    whole.hyperparameters.shards = 2;
    let uninterrupted = train(&teacher, &train_set, &validation, &whole, &Device::flex(), &Silent).unwrap();

    let mut first_half = options(Strategy::Mid, &dir.join("halves"), &dir.join("cache"));
    first_half.hyperparameters.epochs = 4;
    first_half.hyperparameters.shards = 2;
    first_half.stop_after = Some(2);
    let interrupted = train(&teacher, &train_set, &validation, &first_half, &Device::flex(), &Silent).unwrap();
    assert!(!interrupted.finished);
    assert_eq!(interrupted.history.len(), 2);
    assert!(!dir.join("halves/student.safetensors").exists());

    let mut second_half = first_half.clone();
    second_half.stop_after = None;
    second_half.resume = true;
    let resumed = train(&teacher, &train_set, &validation, &second_half, &Device::flex(), &Silent).unwrap();
    assert!(resumed.finished);
    assert_eq!(resumed.history.len(), 4);
    for (a, b) in uninterrupted.history.iter().zip(&resumed.history) {
        assert_eq!(
            (a.train_loss, a.validation_loss, a.validation_accuracy),
            (b.train_loss, b.validation_loss, b.validation_accuracy),
            "epoch {}",
            a.epoch
        );
    }
    assert_eq!(
        uninterrupted.config.header.metrics["validation_accuracy"],
        resumed.config.header.metrics["validation_accuracy"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_run_folder_in_use_by_another_run_is_named_not_overwritten() {
    let dir = temp_dir("locked");
    let teacher = teacher();
    let (train_set, validation) = sample(4);
    let options = options(Strategy::Deep, &dir.join("run"), &dir.join("cache"));
    // Another graft process holds the folder (the same lock, taken as it takes it).
    let held = graft::train::trainer::lock_run_folder(&options.out).unwrap();
    let error = train(&teacher, &train_set, &validation, &options, &Device::flex(), &Silent).unwrap_err().to_string();
    assert!(error.contains("is in use by another graft run") && error.contains("another --out"), "{error}");
    assert!(!error.contains("resume"), "{error}");
    drop(held);
    train(&teacher, &train_set, &validation, &options, &Device::flex(), &Silent).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn resuming_from_a_checkpoint_of_another_student_is_an_error_not_a_panic() {
    let dir = temp_dir("resume-other");
    let teacher = teacher();
    let (train_set, validation) = sample(4);
    let interrupted = |name: &str, head: HeadKind| {
        let mut options = options(Strategy::Deep, &dir.join(name), &dir.join("cache"));
        options.hyperparameters.epochs = 3;
        options.head = head;
        options.stop_after = Some(1);
        train(&teacher, &train_set, &validation, &options, &Device::flex(), &Silent).unwrap();
        options
    };
    let mut linear = interrupted("linear", HeadKind::Linear);
    interrupted("mlp", HeadKind::Mlp { hidden: 32 });
    // The linear run's checkpoint now holds the MLP run's student (its state still says linear).
    let checkpoint = |name: &str| dir.join(name).join("checkpoint").join("epoch-0001").join("student.bpk");
    std::fs::copy(checkpoint("mlp"), checkpoint("linear")).unwrap();
    linear.stop_after = None;
    linear.resume = true;
    let error = train(&teacher, &train_set, &validation, &linear, &Device::flex(), &Silent).unwrap_err();
    assert!(matches!(error, graft::GraftError::Checkpoint { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("does not fit this run's student") && message.contains("student.bpk"), "{message}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A `full` run trains on images, the next batch decoded and augmented on another thread
/// while one trains: stopped after its first batch, it ends with `Interrupted` (that thread
/// waiting with the second batch must not hold it up) and writes no student.
#[test]
fn an_interrupt_between_image_batches_stops_a_full_run_cleanly() {
    use graft::interrupt::Interrupt;
    struct StopAfterFirstBatch(Interrupt);
    impl graft::train::Reporter for StopAfterFirstBatch {
        fn advance(&self, _count: usize, _detail: &str) {
            self.0.request();
        }
    }
    let dir = temp_dir("interrupt");
    let teacher = teacher();
    let (train_set, validation) = sample(2);
    let flag = Interrupt::new();
    let mut run = options(Strategy::Full, &dir.join("run"), &dir.join("cache"));
    run.hyperparameters.batch_size = 4;
    run.hyperparameters.augmentation = Augmentation::standard();
    run.interrupt = Some(flag.clone());
    let error = train(&teacher, &train_set, &validation, &run, &Device::flex(), &StopAfterFirstBatch(flag.clone()))
        .unwrap_err();
    assert!(matches!(error, graft::GraftError::Interrupted { epochs_done: 0, .. }), "{error}");
    assert!(!dir.join("run/student.safetensors").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--refit auto` where graft split the validation images off: after the held-out run, a
/// second run on every image for as many epochs becomes the student, the held-out run's
/// last epoch its estimate; interrupted inside the refit and resumed, it ends with the same
/// student.
#[test]
fn a_refit_trains_on_every_image_for_the_chosen_epochs_and_resumes_to_the_same_student() {
    let dir = temp_dir("refit");
    let teacher = teacher();
    let (train_set, validation) = sample(6);
    let mut refit = options(Strategy::Mid, &dir.join("refit"), &dir.join("cache"));
    refit.pooled_validation = true;
    refit.hyperparameters.refit = graft::train::Refit::Auto;
    let whole = train(&teacher, &train_set, &validation, &refit, &Device::flex(), &Silent).unwrap();
    let config = &whole.config;
    assert_eq!(config.hyperparameters.refit, graft::train::Refit::On, "auto refits where graft made the split");
    let epochs = refit.hyperparameters.epochs as u64;
    assert_eq!(
        config.header.metrics["refit"]["images"].as_u64().unwrap() as usize,
        train_set.len() + validation.len(),
        "{}",
        config.header.metrics
    );
    assert_eq!(config.header.metrics["refit"]["epochs"].as_u64().unwrap(), epochs, "{}", config.header.metrics);
    // The estimate is the held-out run at the epoch the refit ends on, scored as evaluated.
    assert_eq!(config.header.metrics["best_epoch"].as_u64().unwrap(), epochs, "{}", config.header.metrics);
    let estimate = whole.validation_evaluation.as_ref().expect("the held-out student's evaluation");
    assert_eq!(estimate.accuracy, whole.history.last().unwrap().validation_accuracy);
    assert_eq!(estimate.accuracy, config.header.metrics["validation_accuracy"].as_f64().unwrap());

    // The same held-out run without the refit: the same epochs, another student.
    let mut kept = refit.clone();
    kept.out = dir.join("kept");
    kept.pooled_validation = false;
    let held_out = train(&teacher, &train_set, &validation, &kept, &Device::flex(), &Silent).unwrap();
    assert_eq!(
        held_out.config.hyperparameters.refit,
        graft::train::Refit::Off,
        "the data came with its validation set"
    );
    let scores = |history: &[graft::train::EpochMetrics]| {
        history.iter().map(|m| (m.train_loss, m.validation_loss, m.validation_accuracy)).collect::<Vec<_>>()
    };
    assert_eq!(scores(&held_out.history), scores(&whole.history));
    let student = |run: &str| graft_weights::read(&dir.join(run).join("student.safetensors")).unwrap();
    assert_ne!(student("refit")["head.weight"], student("kept")["head.weight"], "the refit trained a new student");

    let mut interrupted = refit.clone();
    interrupted.out = dir.join("halves");
    interrupted.stop_after = Some(interrupted.hyperparameters.epochs + 1);
    let first = train(&teacher, &train_set, &validation, &interrupted, &Device::flex(), &Silent).unwrap();
    assert!(!first.finished, "stopped after the refit's first epoch");
    assert!(!dir.join("halves/student.safetensors").exists(), "an unfinished refit saves no student");
    interrupted.stop_after = None;
    interrupted.resume = true;
    let resumed = train(&teacher, &train_set, &validation, &interrupted, &Device::flex(), &Silent).unwrap();
    assert!(resumed.finished);
    let (resumed_student, whole_student) = (student("halves"), student("refit"));
    let differing: Vec<&String> =
        whole_student.keys().filter(|key| resumed_student.get(*key) != whole_student.get(*key)).collect();
    assert!(
        differing.is_empty(),
        "resumed inside the refit, a different student: {} of {} tensors differ, e.g. {:?}",
        differing.len(),
        whole_student.len(),
        &differing[..differing.len().min(5)]
    );
    assert_eq!(resumed.config.header.metrics["refit"]["images"], config.header.metrics["refit"]["images"]);

    // A probe fits every image already; it is not refitted by epochs.
    let mut probe = options(Strategy::Deep, &dir.join("probe"), &dir.join("cache"));
    probe.hyperparameters.head_fit = graft::train::HeadFit::Probe;
    probe.hyperparameters.refit = graft::train::Refit::On;
    let error = train(&teacher, &train_set, &validation, &probe, &Device::flex(), &Silent).unwrap_err().to_string();
    assert!(error.contains("refit `on`") && error.contains("linear probe"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_run_resumes_with_more_epochs_but_not_with_other_settings() {
    let dir = temp_dir("resume-longer");
    let teacher = teacher();
    let (train_set, validation) = sample(4);
    let mut short = options(Strategy::Deep, &dir.join("run"), &dir.join("cache"));
    short.hyperparameters.epochs = 2;
    let first = train(&teacher, &train_set, &validation, &short, &Device::flex(), &Silent).unwrap();
    assert_eq!(first.history.len(), 2);

    let mut other = short.clone();
    other.resume = true;
    other.hyperparameters.learning_rate = 3e-3;
    let error = train(&teacher, &train_set, &validation, &other, &Device::flex(), &Silent).unwrap_err().to_string();
    assert!(error.contains("different run") && error.contains("learning_rate"), "{error}");
    assert!(!error.contains("epochs"), "the epochs may change: {error}");

    let mut longer = short.clone();
    longer.resume = true;
    longer.hyperparameters.epochs = 3;
    let resumed = train(&teacher, &train_set, &validation, &longer, &Device::flex(), &Silent).unwrap();
    assert_eq!(resumed.history.len(), 3);
    assert_eq!(resumed.history[..2], first.history[..2], "the first two epochs are the checkpoint's");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_run_whose_config_names_other_blocks_is_refused() {
    let dir = temp_dir("renamed-blocks");
    let teacher = teacher();
    let (train_set, validation) = sample(4);
    let mut short = options(Strategy::Deep, &dir.join("run"), &dir.join("cache"));
    short.hyperparameters.epochs = 1;
    train(&teacher, &train_set, &validation, &short, &Device::flex(), &Silent).unwrap();
    graft::train::load_run(&dir.join("run"), &Device::flex()).unwrap();
    let config_path = dir.join("run/graft.json");
    let text = std::fs::read_to_string(&config_path).unwrap().replace("\"_blocks.15\"", "\"_blocks.99\"");
    std::fs::write(&config_path, text).unwrap();
    let error = graft::train::load_run(&dir.join("run"), &Device::flex())
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("graft.json") && error.contains("_blocks.99") && error.contains("efficientnet_lite0"),
        "{error}"
    );
    // The record opens with the header every run shares (a text run's too); one written before
    // text students, without `modality`, reads as an image run.
    let header = graft::train::student::read_header(&dir.join("run")).unwrap();
    assert_eq!(
        (header.modality, header.strategy, header.teacher.as_str()),
        (graft::modality::Modality::Image, Strategy::Deep, "efficientnet_lite0")
    );
    let mut record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    assert_eq!(record.as_object_mut().unwrap().remove("modality"), Some(serde_json::json!("image")));
    std::fs::write(&config_path, record.to_string()).unwrap();
    assert_eq!(graft::train::student::read_header(&dir.join("run")).unwrap(), header);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unreadable_images_are_skipped_and_named() {
    let dir = temp_dir("bad-files");
    for class in ["Bag", "Trouser"] {
        let from = repo(&format!("crates/graft-assets/data/fashion-mnist-sample/train/{class}"));
        std::fs::create_dir_all(dir.join("data").join(class)).unwrap();
        for entry in std::fs::read_dir(&from).unwrap().take(6) {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join("data").join(class).join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.join("data/Bag/broken.png"), b"\x89PNG\r\n\x1a\nnot really a png").unwrap();
    let data = dataset::open(&dir.join("data"), &dir).unwrap().train;
    assert_eq!(data.len(), 13);
    let (train_set, validation) = data.stratified_split(0.25, 3);
    let outcome = train(
        &teacher(),
        &train_set,
        &validation,
        &options(Strategy::Deep, &dir.join("run"), &dir.join("cache")),
        &Device::flex(),
        &Silent,
    )
    .unwrap();
    assert_eq!(outcome.skipped.len(), 1, "{:?}", outcome.skipped);
    assert!(outcome.skipped[0].name.ends_with("broken.png"));
    assert_eq!(outcome.config.train_images + outcome.config.validation_images, 12);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn data_without_images_or_with_one_class_stops_with_a_message() {
    let dir = temp_dir("one-class");
    std::fs::create_dir_all(dir.join("empty/cats")).unwrap();
    let error =
        dataset::open(&dir.join("empty"), &dir).unwrap().train.check_trainable("`empty`").unwrap_err().to_string();
    assert!(error.contains("holds no images"), "{error}");
    std::fs::create_dir_all(dir.join("single/Bag")).unwrap();
    let from = repo("crates/graft-assets/data/fashion-mnist-sample/train/Bag/00035.png");
    std::fs::copy(&from, dir.join("single/Bag/a.png")).unwrap();
    std::fs::copy(&from, dir.join("single/Bag/b.png")).unwrap();
    let error =
        dataset::open(&dir.join("single"), &dir).unwrap().train.check_trainable("`single`").unwrap_err().to_string();
    assert!(error.contains("only one class (Bag)"), "{error}");
    // An empty class folder beside two full ones: trainable, and the empty class is named.
    std::fs::create_dir_all(dir.join("single/Coat")).unwrap();
    std::fs::create_dir_all(dir.join("single/Dress")).unwrap();
    std::fs::copy(&from, dir.join("single/Dress/c.png")).unwrap();
    let data = dataset::open(&dir.join("single"), &dir).unwrap().train;
    data.check_trainable("`single`").unwrap();
    assert_eq!(data.empty_classes(), ["Coat"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn idx_files_gzipped_with_class_names_read_item_by_item() {
    use std::io::Write;
    let dir = temp_dir("idx");
    // 3 images of 2x2, labels 0, 1, 1.
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2];
    images.extend([0, 50, 100, 150, 10, 20, 30, 40, 255, 255, 0, 0]);
    let labels = [0u8, 0, 8, 1, 0, 0, 0, 3, 0, 1, 1];
    let gz = |name: &str, bytes: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(dir.join(name)).unwrap(),
            flate2::Compression::default(),
        );
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap();
    };
    gz("train-images-idx3-ubyte.gz", &images);
    gz("train-labels-idx1-ubyte.gz", &labels);
    std::fs::write(dir.join("classes.txt"), "zero\none\n").unwrap();
    let data = dataset::open(&dir, &dir.join("cache")).unwrap().train;
    assert_eq!(data.classes, ["zero", "one"]);
    assert_eq!(data.items.iter().map(|i| i.label).collect::<Vec<_>>(), [0, 1, 1]);
    let image = data.items[1].source.load().unwrap();
    assert_eq!(image.dimensions(), (2, 2));
    assert_eq!(image.get_pixel(1, 1).0, [40, 40, 40], "greyscale is replicated into RGB");
    assert!(data.items[2].source.name().ends_with("train-images-idx3-ubyte.gz#2"));
    // The decompressed copy is keyed by content: the same path with other pixels (same size)
    // is read anew, not served from the cache.
    let mut changed = images.clone();
    changed[16 + 4] = 77;
    gz("train-images-idx3-ubyte.gz", &changed);
    let data = dataset::open(&dir, &dir.join("cache")).unwrap().train;
    assert_eq!(data.items[1].source.load().unwrap().get_pixel(0, 0).0, [77, 77, 77]);
    assert_eq!(std::fs::read_dir(dir.join("cache/idx")).unwrap().count(), 2);
    // A header that declares more images than the file holds, a label file that declares more
    // labels than it has, and a label file inflating past one byte per image: clear errors.
    let mut short = images.clone();
    short[7] = 200;
    gz("train-images-idx3-ubyte.gz", &short);
    let error = dataset::open(&dir, &dir.join("cache")).unwrap_err().to_string();
    assert!(error.contains("train-images-idx3-ubyte.gz") && error.contains("200 images"), "{error}");
    gz("train-images-idx3-ubyte.gz", &images);
    gz("train-labels-idx1-ubyte.gz", &[0u8, 0, 8, 1, 0, 0, 0, 9, 0, 1, 1]);
    let error = dataset::open(&dir, &dir.join("cache")).unwrap_err().to_string();
    assert!(error.contains("train-labels-idx1-ubyte.gz") && error.contains("9 labels"), "{error}");
    gz("train-labels-idx1-ubyte.gz", &[[0u8, 0, 8, 1, 0, 0, 0, 3].as_slice(), &[0; 1 << 20]].concat());
    let error = dataset::open(&dir, &dir.join("cache")).unwrap_err().to_string();
    assert!(error.contains("train-labels-idx1-ubyte.gz") && error.contains("more than"), "{error}");
    let mut huge = images.clone();
    huge[8..16].copy_from_slice(&[0xff; 8]);
    std::fs::write(dir.join("huge-images-idx3-ubyte"), &huge).unwrap();
    let error = dataset::open(&dir.join("huge-images-idx3-ubyte"), &dir.join("cache")).unwrap_err().to_string();
    assert!(error.contains("not plausible"), "{error}");
    // 8 MB of zeros under a true header gzip to 8 KB: over 100 times its size, refused before
    // anything is written to the cache.
    let mut bomb = vec![0, 0, 8, 3, 0, 0, 0x27, 0x10, 0, 0, 0, 28, 0, 0, 0, 28];
    bomb.resize(16 + 10_000 * 28 * 28, 0);
    gz("train-images-idx3-ubyte.gz", &bomb);
    gz("train-labels-idx1-ubyte.gz", &[[0u8, 0, 8, 1, 0, 0, 0x27, 0x10].as_slice(), &[0; 10_000]].concat());
    let before = std::fs::read_dir(dir.join("cache/idx")).unwrap().count();
    let error = dataset::open(&dir, &dir.join("cache")).unwrap_err().to_string();
    assert!(error.contains("train-images-idx3-ubyte.gz") && error.contains("more than 100 times"), "{error}");
    assert!(error.contains("gunzip -k"), "{error}");
    assert_eq!(std::fs::read_dir(dir.join("cache/idx")).unwrap().count(), before);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn data_files_that_are_not_regular_files_or_too_large_are_refused() {
    // A manifest whose rows name a device and a FIFO beside a real image: the real one reads,
    // the others are refused by what they are, never opened (a FIFO's open would wait for ever,
    // /dev/zero would be read until memory ran out).
    let dir = temp_dir("special-files");
    let image = repo("crates/graft-assets/data/fashion-mnist-sample/train/Bag")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let fifo = dir.join("fifo.png");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let manifest = dir.join("data.csv");
    std::fs::write(
        &manifest,
        format!("path,label\n{},bag\n/dev/zero,zero\n{},fifo\n", image.display(), fifo.display()),
    )
    .unwrap();
    let data = dataset::open_csv(&manifest).unwrap();
    let by_label = |label: &str| {
        let class = data.classes.iter().position(|c| c == label).unwrap();
        data.items.iter().find(|item| item.label == class).unwrap().source.clone()
    };
    assert!(by_label("bag").load().is_ok());
    for (label, name) in [("zero", "/dev/zero"), ("fifo", "fifo.png")] {
        let error = by_label(label).content_hash().unwrap_err().to_string();
        assert!(error.contains(name) && error.contains("not a regular file"), "{error}");
        let error = by_label(label).load().unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }
    // The manifest itself, and a text data file, must be regular files too.
    let error = dataset::open_csv(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(error.contains("not a regular file"), "{error}");
    let texts = dir.join("texts.csv");
    assert!(std::process::Command::new("mkfifo").arg(&texts).status().unwrap().success());
    let error = graft::text::data::open(&texts, &Default::default()).unwrap_err().to_string();
    assert!(error.contains("texts.csv") && error.contains("not a regular file"), "{error}");
    // An image file past the size limit is refused by its size, before it is read.
    let big = dir.join("big.png");
    std::fs::File::create(&big).unwrap().set_len(graft::fsutil::MAX_IMAGE_FILE_BYTES + 1).unwrap();
    let error = graft::data::image::load_rgb(&big).unwrap_err().to_string();
    assert!(error.contains("big.png") && error.contains("more than the"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn validation_images_identical_to_training_images_are_named() {
    let dir = temp_dir("duplicates");
    let train_dir = repo("crates/graft-assets/data/fashion-mnist-sample/train");
    let data = dataset::open(&train_dir, &dir).unwrap().train;
    let (train_set, mut validation) = data.subsample(3, 1).stratified_split(0.34, 1);
    assert!(dataset::duplicates_across(&train_set, &validation).is_empty());
    // A copy of a training image, under another name, in the validation set.
    let copy = dir.join("copy.png");
    let graft::data::dataset::ItemSource::File(original) = &train_set.items[0].source else {
        panic!("folder items are files")
    };
    std::fs::copy(original, &copy).unwrap();
    validation.items.push(graft::data::dataset::Item {
        source: graft::data::dataset::ItemSource::File(copy.clone()),
        label: train_set.items[0].label,
    });
    let found = dataset::duplicates_across(&train_set, &validation);
    assert_eq!(found, [(copy.display().to_string(), original.display().to_string())]);
    // Training says so, from the feature cache's own hashes (cached strategies) and from the
    // files (full fine-tuning).
    struct Notes(std::sync::Mutex<Vec<String>>);
    impl graft::train::Reporter for Notes {
        fn note(&self, message: &str) {
            self.0.lock().unwrap().push(message.to_owned());
        }
    }
    for strategy in [Strategy::Deep, Strategy::Full] {
        let notes = Notes(Default::default());
        let mut run = options(strategy, &dir.join(format!("run-{strategy}")), &dir.join("cache"));
        run.hyperparameters.epochs = 1;
        run.image_size = Some(32);
        train(&teacher(), &train_set, &validation, &run, &Device::flex(), &notes).unwrap();
        let notes = notes.0.into_inner().unwrap();
        let expected = format!(
            "1 of {} validation images are byte-identical to training images (e.g. `{}` = `{}`)",
            validation.len(),
            copy.display(),
            original.display()
        );
        assert!(notes.iter().any(|note| note.starts_with(&expected)), "{strategy}: {notes:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn csv_manifest_with_relative_paths() {
    let dir = temp_dir("csv");
    let bag = repo("crates/graft-assets/data/fashion-mnist-sample/train/Bag/00035.png");
    std::fs::copy(&bag, dir.join("a.png")).unwrap();
    std::fs::copy(&bag, dir.join("b.png")).unwrap();
    std::fs::write(dir.join("labels.csv"), "path,label\na.png,bag\nb.png,other\n").unwrap();
    let data = dataset::open(&dir.join("labels.csv"), &dir).unwrap().train;
    assert_eq!(data.classes, ["bag", "other"]);
    assert!(data.items[1].source.load().is_ok());
    std::fs::write(dir.join("bad.csv"), "file,class\na.png,bag\n").unwrap();
    let error = dataset::open(&dir.join("bad.csv"), &dir).unwrap_err().to_string();
    assert!(error.contains("`path` and `label`"), "{error}");
    // Quoted fields hold commas and quotes; columns come in any order; spaces are trimmed.
    std::fs::copy(&bag, dir.join("c, \"d\".png")).unwrap();
    std::fs::write(dir.join("quoted.csv"), "Label, Path\n\"bag, small\",\"c, \"\"d\"\".png\"\nother,a.png\n").unwrap();
    let data = dataset::open(&dir.join("quoted.csv"), &dir).unwrap().train;
    assert_eq!(data.classes, ["bag, small", "other"]);
    assert_eq!(data.items[0].label, 0);
    assert!(data.items[0].source.load().is_ok(), "{}", data.items[0].source.name());
    std::fs::write(dir.join("short.csv"), "path,label\na.png\n").unwrap();
    let error = dataset::open(&dir.join("short.csv"), &dir).unwrap_err().to_string();
    assert!(error.contains("short.csv") && error.contains("line 2"), "{error}");
    // Scoring a student on a manifest with a label it was not trained on names the label.
    std::fs::write(dir.join("other.csv"), "path,label\na.png,bag\nb.png,shoe\n").unwrap();
    let other = dataset::open(&dir.join("other.csv"), &dir).unwrap().train;
    let error = other.align_classes(&["bag".to_owned(), "other".to_owned()]).unwrap_err().to_string();
    assert!(error.contains("`shoe` is not one of the training classes (bag, other)"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn auto_measures_the_data_and_explains_its_choice() {
    let device = Device::flex();
    let (teacher, _) = load_teacher("efficientnet_lite0", &offline_options(), &device).unwrap();
    let data =
        graft::data::dataset::open(&repo("crates/graft-assets/data/fashion-mnist-sample/train"), &std::env::temp_dir())
            .unwrap()
            .train;
    let (train_set, validation) = data.subsample(30, 2).stratified_split(0.3, 2);
    let advice =
        graft::train::advisor::advise(&teacher, &train_set, &validation, Some(64), 2, &device, &graft::train::Silent)
            .unwrap();
    assert_eq!(advice.probes.len(), 3);
    assert_eq!(advice.probes[2].block, "_conv_head");
    assert!(
        advice.probes.iter().all(|p| p.accuracy > 0.2),
        "10 classes: every probe beats chance: {:?}",
        advice.probes
    );
    assert_eq!(advice.examples_per_class, 21);
    assert_ne!(advice.strategy, graft::train::Strategy::Auto);
    assert!(
        advice.reason.contains("21 examples per class") && advice.reason.contains("_conv_head"),
        "{}",
        advice.reason
    );
}
