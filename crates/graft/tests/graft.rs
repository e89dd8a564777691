//! graft's integration tests: real weights, real images, reference outputs.

mod common;
mod text;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use common::{offline_options, repo, values};
use graft::models::{WeightOptions, load_teacher, zoo};

fn to_tensor(tensor: &graft_weights::Tensor, device: &Device) -> Tensor<4> {
    let values = tensor.as_f32().expect("float tensor").to_vec();
    Tensor::from_data(TensorData::new(values, tensor.shape.clone()), device)
}

#[test]
fn efficientnet_lite0_matches_reference_logits() {
    let device = Device::flex();
    let (teacher, report) = load_teacher("efficientnet_lite0", &offline_options(), &device).unwrap();
    assert!(report.is_complete() && report.unused.is_empty(), "{report}");
    // 296 tensors in the file, less the 49 batch-norm `num_batches_tracked` counters.
    assert_eq!(report.applied.len(), 296 - 49, "{report}");
    let fixture =
        graft_weights::read(&repo("crates/graft/tests/fixtures/efficientnet_lite0_logits.safetensors")).unwrap();
    let logits = teacher.logits(to_tensor(&fixture["input"], &device));
    let logits = logits.into_data().convert::<f32>();
    let got = logits.as_slice::<f32>().unwrap();
    let want = fixture["logits"].as_f32().unwrap();
    assert_eq!(got.len(), want.len());
    let max_diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff <= 1e-3, "max abs logit difference {max_diff}");
}

#[test]
fn lite0_recognises_the_cat_and_the_espresso() {
    let device = Device::flex();
    let (teacher, _) = load_teacher("efficientnet_lite0", &offline_options(), &device).unwrap();
    let paths = vec![repo("crates/graft-assets/images/chelsea.png"), repo("crates/graft-assets/images/coffee.png")];
    let predictions =
        graft::predict::predict_images(&teacher, &paths, 3, zoo::imagenet_labels(), 8, &device, true).unwrap().0;
    let cat = &predictions[0].top[0];
    assert!(["tabby", "tiger cat", "Egyptian cat"].contains(&cat.label.as_str()), "{:?}", predictions[0]);
    assert_eq!(predictions[1].top[0].label, "espresso", "{:?}", predictions[1]);
    assert!(predictions[1].top[0].probability > 0.5);
    // Through burn's modules instead of the fused CPU plan: the same classes and probabilities.
    let reference =
        graft::predict::predict_images(&teacher, &paths, 3, zoo::imagenet_labels(), 8, &device, false).unwrap().0;
    for (fused, plain) in predictions.iter().zip(&reference) {
        for (a, b) in fused.top.iter().zip(&plain.top) {
            assert_eq!(a.class_index, b.class_index);
            assert!((a.probability - b.probability).abs() < 1e-3, "{a:?} {b:?}");
        }
    }
}

fn lite0_tensors() -> graft_weights::TensorMap {
    let bytes = graft::models::hub::BUNDLED_LITE0.expect("built with bundled weights");
    graft_weights::read_bytes(Path::new("lite0.pth"), bytes).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("graft-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn wrong_shape_tensor_names_the_file_the_key_and_both_shapes() {
    let dir = temp_dir("wrong-shape");
    let mut tensors = lite0_tensors();
    tensors.insert("_fc.weight".into(), graft_weights::Tensor::from_f32(vec![10, 1280], vec![0.0; 12800]));
    let path = dir.join("ten-classes.safetensors");
    graft_weights::write_safetensors(&path, &tensors).unwrap();
    let options = WeightOptions { weights: Some(path.clone()), ..offline_options() };
    let error = load_teacher("efficientnet_lite0", &options, &Device::flex()).unwrap_err().to_string();
    assert!(error.contains("ten-classes.safetensors"), "{error}");
    assert!(error.contains("`_fc.weight`: expected [1000, 1280], found [10, 1280]"), "{error}");

    // A partial load keeps going and reports the mismatch.
    let options = WeightOptions { allow_partial: true, ..options };
    let (_, report) = load_teacher("efficientnet_lite0", &options, &Device::flex()).unwrap();
    assert_eq!(report.mismatched.len(), 1);
    assert_eq!(report.mismatched[0].key, "_fc.weight");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_tensor_is_an_error_unless_partial() {
    let dir = temp_dir("missing");
    let mut tensors = lite0_tensors();
    tensors.remove("_blocks.3._bn1.running_var");
    tensors.insert("extra.weight".into(), graft_weights::Tensor::from_f32(vec![1], vec![1.0]));
    let path = dir.join("missing.safetensors");
    graft_weights::write_safetensors(&path, &tensors).unwrap();
    let options = WeightOptions { weights: Some(path), ..offline_options() };
    let error = load_teacher("efficientnet_lite0", &options, &Device::flex()).unwrap_err().to_string();
    assert!(error.contains("missing: `_blocks.3._bn1.running_var`"), "{error}");
    let (_, report) =
        load_teacher("efficientnet_lite0", &WeightOptions { allow_partial: true, ..options }, &Device::flex()).unwrap();
    assert_eq!(report.missing, vec!["_blocks.3._bn1.running_var".to_owned()]);
    assert_eq!(report.unused, vec!["extra.weight".to_owned()]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn timm_layout_lite0_loads_to_the_same_network() {
    use graft::weights::KeyMap;
    let device = Device::flex();
    let dir = temp_dir("timm");
    let keys = graft::models::efficientnet_lite::TimmLiteKeys {
        stage_depths: graft::models::efficientnet_lite::stage_depths(
            graft::models::efficientnet_lite::LiteVariant::Lite0,
        ),
    };
    let renamed: graft_weights::TensorMap = lite0_tensors()
        .into_iter()
        .filter(|(key, _)| !key.ends_with("num_batches_tracked"))
        .map(|(key, tensor)| (keys.checkpoint_key(&key), tensor))
        .collect();
    assert!(renamed.contains_key("blocks.1.1.conv_pwl.weight") && renamed.contains_key("conv_stem.weight"));
    let path = dir.join("timm.safetensors");
    graft_weights::write_safetensors(&path, &renamed).unwrap();
    let (timm, report) =
        load_teacher("efficientnet_lite0", &WeightOptions { weights: Some(path), ..offline_options() }, &device)
            .unwrap();
    assert!(report.is_complete() && report.unused.is_empty(), "{report}");
    let (bundled, _) = load_teacher("efficientnet_lite0", &offline_options(), &device).unwrap();
    let input = Tensor::<4>::random([1, 3, 224, 224], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let difference = (timm.logits(input.clone()) - bundled.logits(input)).abs().max().into_scalar::<f32>();
    assert_eq!(difference, 0.0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn lite_family_has_the_published_parameter_counts() {
    use graft::models::efficientnet_lite::{EfficientNetLite, LiteVariant};
    // Trainable parameters of the TensorFlow Lite models (1000 classes), as counted by timm's
    // `tf_efficientnet_liteN`: 4.65 M, 5.42 M, 6.09 M, 8.20 M, 13.01 M.
    let device = Device::flex();
    let expected = [
        (LiteVariant::Lite0, 4_652_008),
        (LiteVariant::Lite1, 5_416_680),
        (LiteVariant::Lite2, 6_092_072),
        (LiteVariant::Lite3, 8_197_096),
        (LiteVariant::Lite4, 13_006_568),
    ];
    for (variant, count) in expected {
        let network = EfficientNetLite::new(variant, 1000, &device);
        assert_eq!(graft::weights::count_parameters(&network), count, "{variant:?}");
    }
}

#[test]
fn offline_without_weights_says_what_to_fetch() {
    let error = load_teacher("resnet18", &offline_options(), &Device::flex()).unwrap_err().to_string();
    assert!(error.contains("https://download.pytorch.org/models/resnet18-f37072fd.pth"), "{error}");
    assert!(error.contains("give its path as the weights file"), "{error}");
}

// ---- training -----------------------------------------------------------------------------

mod training {
    use super::*;
    use graft::data::augment::Augmentation;
    use graft::data::dataset::{self, Dataset};
    use graft::models::Teacher;
    use graft::train::{HeadKind, Hyperparameters, Silent, Strategy, TrainOptions, train};

    fn teacher() -> Teacher {
        load_teacher("efficientnet_lite0", &offline_options(), &Device::flex()).unwrap().0
    }

    /// `per_class` training images of each class of the bundled sample, split 75/25.
    fn sample(per_class: usize) -> (Dataset, Dataset) {
        let data = dataset::open(&repo("crates/graft-assets/data/fashion-mnist-sample/train"), &std::env::temp_dir())
            .unwrap()
            .train;
        data.subsample(per_class, 1).stratified_split(0.25, 1)
    }

    fn options(strategy: Strategy, out: &Path, cache: &Path) -> TrainOptions {
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
            let frozen =
                !key.starts_with("_blocks.15.") && !key.starts_with("_conv_head.") && !key.starts_with("_bn1.");
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
            TensorData::new(
                (0..3 * 64 * 64).map(|i| ((i % 97) as f32 / 48.0) - 1.0).collect::<Vec<f32>>(),
                [1, 3, 64, 64],
            ),
            &Device::flex(),
        );
        use burn::module::Module;
        let student = loaded.student.valid();
        let blocks = student.backbone.blocks();
        let want = values(student.backbone.features(graft::backend::forward::blocks(&blocks, image.clone())));
        assert_eq!(
            values(exported_teacher.features(image)),
            want,
            "the exported teacher computes the student's features"
        );
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
        let fit = &config.metrics["probe"];
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
        let reported = config.metrics["validation_accuracy"].as_f64().unwrap();
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
        assert_eq!(still.config.metrics["head_init_probe"]["l2"], deep.config.metrics["probe"]["l2"]);
        let (a, b) = (
            deep.config.metrics["validation_accuracy"].as_f64().unwrap(),
            still.config.metrics["validation_accuracy"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "deep probe {a} vs the mid student it starts: {b}");
        let (a, b) = (
            deep.config.metrics["validation_loss"].as_f64().unwrap(),
            still.config.metrics["validation_loss"].as_f64().unwrap(),
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
        let preprocessing = graft::train::trainer::preprocessing_at(&teacher.card.preprocessing, Some(64));
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
        let chosen = graft::run::train_run(
            &teacher,
            &train_set,
            &validation,
            auto,
            AugmentChoice::Auto,
            &Device::flex(),
            &Silent,
        )
        .unwrap();
        assert_ne!(chosen.config.strategy, Strategy::Auto);
        assert!(chosen.config.strategy_reason.is_some());
        direct.strategy = chosen.config.strategy;
        direct.out = dir.join("direct");
        let again = graft::run::train_run(
            &teacher,
            &train_set,
            &validation,
            direct,
            AugmentChoice::Auto,
            &Device::flex(),
            &Silent,
        )
        .unwrap();
        assert_eq!(
            again.config.hyperparameters, chosen.config.hyperparameters,
            "the same recipe, augmentation included"
        );
        let student = |run: &str| std::fs::read(dir.join(run).join("student.safetensors")).unwrap();
        assert!(
            student("auto") == student("direct"),
            "auto's {} student differs from {}'s own",
            chosen.config.strategy,
            chosen.config.strategy
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
        // Another compute path (burn's modules instead of the fused CPU plan) computes its own
        // entries: its numbers differ in the last bits, and a cache never mixes them.
        let mut unfused = options(Strategy::Deep, &dir.join("c"), &dir.join("cache"));
        unfused.fused_plan = false;
        let third = train(&teacher, &train_set, &validation, &unfused, &Device::flex(), &Silent).unwrap();
        assert_eq!(third.cache_hits, 0);
        assert_eq!(third.teacher_forwards, train_set.len() + validation.len());
        std::fs::remove_dir_all(dir).unwrap();
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
        assert_eq!(uninterrupted.config.metrics["validation_accuracy"], resumed.config.metrics["validation_accuracy"]);
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
            config.metrics["refit"]["images"].as_u64().unwrap() as usize,
            train_set.len() + validation.len(),
            "{}",
            config.metrics
        );
        assert_eq!(config.metrics["refit"]["epochs"].as_u64().unwrap(), epochs, "{}", config.metrics);
        // The estimate is the held-out run at the epoch the refit ends on, scored as evaluated.
        assert_eq!(config.metrics["best_epoch"].as_u64().unwrap(), epochs, "{}", config.metrics);
        let estimate = whole.validation_evaluation.as_ref().expect("the held-out student's evaluation");
        assert_eq!(estimate.accuracy, whole.history.last().unwrap().validation_accuracy);
        assert_eq!(estimate.accuracy, config.metrics["validation_accuracy"].as_f64().unwrap());

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
        assert_eq!(resumed.config.metrics["refit"]["images"], config.metrics["refit"]["images"]);

        // A probe fits every image already; it is not refitted by epochs.
        let mut probe = options(Strategy::Deep, &dir.join("probe"), &dir.join("cache"));
        probe.hyperparameters.head_fit = graft::train::HeadFit::Probe;
        probe.hyperparameters.refit = graft::train::Refit::On;
        let error = train(&teacher, &train_set, &validation, &probe, &Device::flex(), &Silent).unwrap_err().to_string();
        assert!(error.contains("--refit on") && error.contains("linear probe"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The mimicry attack, run against the teacher alone, moves a `deep` student towards the
    /// target's class within the DSSIM budget (small images and few iterations: the mechanics,
    /// not the rates docs/AUDIT.md measures).
    #[test]
    fn the_mimicry_attack_raises_the_target_class_within_the_budget() {
        use graft::audit::mimicry::{AttackOptimizer, MimicryOptions, TeacherFront, mimic};
        let dir = temp_dir("mimicry");
        let teacher = teacher();
        let (train_set, validation) = sample(6);
        let deep = options(Strategy::Deep, &dir.join("run"), &dir.join("cache"));
        train(&teacher, &train_set, &validation, &deep, &Device::flex(), &Silent).unwrap();
        let student = graft::train::load_run(&dir.join("run"), &Device::flex()).unwrap();
        let preprocessing = student.config.preprocessing.clone();
        let size = preprocessing.input_size;
        // Two images of different classes, each the other's target.
        let first = &validation.items[0];
        let second = validation.items.iter().find(|item| item.label != first.label).unwrap();
        let pixels = |item: &graft::data::dataset::Item| {
            graft::data::image::pixels(&item.source.load().unwrap(), &preprocessing)
        };
        let (sources, targets) = (vec![pixels(first), pixels(second)], vec![pixels(second), pixels(first)]);
        let front = TeacherFront::new(&teacher, student.config.plan().cut, &preprocessing).unwrap();
        let options = MimicryOptions {
            budget: 0.01,
            iterations: 100,
            optimizer: AttackOptimizer::Adam,
            learning_rate: 0.02,
            penalty: 1e10,
        };
        let crafted = mimic(&front, &sources, &targets, size, &options, &Device::flex(), &Silent).unwrap();

        use burn::module::Module;
        let model = student.student.valid();
        let probabilities = |images: Vec<Vec<f32>>| {
            graft::audit::pixels::student_probabilities(&model, &images, &preprocessing, &Device::flex()).unwrap()
        };
        let classes = student.config.classes.len();
        let before = probabilities(sources.clone());
        let after = probabilities(crafted.iter().map(|c| c.pixels.iter().map(|v| *v as f32).collect()).collect());
        for (pair, (crafted, target)) in crafted.iter().zip([second.label, first.label]).enumerate() {
            assert!(crafted.within_budget, "pair {pair}: no iterate within the budget");
            // Rounding to 8-bit pixels moves DSSIM a little either way.
            assert!(
                crafted.dssim <= options.budget * 1.1,
                "pair {pair}: DSSIM {} over the budget {}",
                crafted.dssim,
                options.budget
            );
            assert!(
                crafted.distance < 0.9 * crafted.start_distance,
                "pair {pair}: distance {} from {}",
                crafted.distance,
                crafted.start_distance
            );
            let (was, is) = (before[pair * classes + target], after[pair * classes + target]);
            assert!(is > was, "pair {pair}: the target class's probability went from {was} to {is}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Fingerprinting: an input crafted to carry nothing at the real teacher's last layer makes
    /// a student built on it answer near-uniformly, and one crafted on another network of the
    /// same architecture (random weights) does not; aimed at zero (the reference), a probe head
    /// answers with its centred bias instead (docs/AUDIT.md).
    #[test]
    fn the_fingerprint_tells_the_students_teacher_from_another_network() {
        use graft::audit::fingerprint::{Aim, FingerprintOptions, fingerprint_input, gini};
        use graft::audit::mimicry::TeacherFront;
        let dir = temp_dir("fingerprint");
        let teacher = teacher();
        let (train_set, validation) = sample(6);
        let mut deep = options(Strategy::Deep, &dir.join("run"), &dir.join("cache"));
        deep.hyperparameters.head_fit = graft::train::HeadFit::Probe;
        train(&teacher, &train_set, &validation, &deep, &Device::flex(), &Silent).unwrap();
        let student = graft::train::load_run(&dir.join("run"), &Device::flex()).unwrap();
        let preprocessing = student.config.preprocessing.clone();
        let size = preprocessing.input_size;
        let reference: Vec<Vec<f32>> = validation
            .items
            .iter()
            .map(|item| graft::data::image::pixels(&item.source.load().unwrap(), &preprocessing))
            .collect();
        let other = graft::models::Teacher {
            card: teacher.card.clone(),
            backbone: graft::models::Backbone::new(teacher.card.architecture, 1000, &Device::flex()),
            weights_sha256: "random".into(),
        };
        use burn::module::Module;
        let model = student.student.valid();
        let answer_gini = |pixels: &[f32]| -> f64 {
            let probabilities = graft::audit::pixels::student_probabilities(
                &model,
                &[pixels.to_vec()],
                &preprocessing,
                &Device::flex(),
            )
            .unwrap();
            gini(&probabilities.into_iter().map(f64::from).collect::<Vec<f64>>())
        };
        let blocks = teacher.block_names().len();
        let mut scores = Vec::new();
        for aim in [Aim::Mean, Aim::Zero] {
            let options = FingerprintOptions { aim, layer: None, iterations: 60, learning_rate: 0.05, seed: 1 };
            let mut row = Vec::new();
            for candidate in [&teacher, &other] {
                let front = TeacherFront::new(candidate, blocks, &preprocessing).unwrap();
                let (pixels, left) =
                    fingerprint_input(&front, &reference, size, &options, &Device::flex(), &Silent).unwrap();
                row.push((answer_gini(&pixels), left));
            }
            scores.push(row);
        }
        let [mean, zero] = [&scores[0], &scores[1]];
        assert!(mean[0].1 < 0.5, "the fingerprint got near its aim: {scores:?}");
        assert!(
            mean[0].0 < 0.5 * mean[1].0,
            "the real teacher's fingerprint answers nearer uniform than another network's: {scores:?}"
        );
        assert!(mean[0].0 < zero[0].0, "a probe head at zero features answers with its centred bias: {scores:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// `graft harden`: the hardened student's representation at the attacked layer moves away
    /// from the teacher's, it is saved as a run that loads back, and the mimicry images crafted on
    /// the teacher (the same images for both students) pull it towards their targets less.
    #[test]
    fn hardening_moves_the_student_away_from_what_the_attack_mimics() {
        // Debug builds give every network this long test holds its own stack slot: more than a
        // test thread's 2 MiB.
        std::thread::scope(|scope| {
            let worker =
                std::thread::Builder::new().stack_size(64 << 20).spawn_scoped(scope, hardening_checks).unwrap();
            worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
    }

    fn hardening_checks() {
        use graft::audit::harden::{HardenOptions, harden};
        use graft::audit::mimicry::{AttackOptimizer, MimicryOptions};
        use graft::audit::run::{AuditOptions, craft, score};
        let dir = temp_dir("harden");
        let teacher = teacher();
        let (train_set, validation) = sample(8);
        let mut deep = options(Strategy::Deep, &dir.join("run"), &dir.join("cache"));
        deep.hyperparameters.head_fit = graft::train::HeadFit::Probe;
        train(&teacher, &train_set, &validation, &deep, &Device::flex(), &Silent).unwrap();
        let student = graft::train::load_run(&dir.join("run"), &Device::flex()).unwrap();
        let inference =
            graft::train::evaluate::InferenceOptions { batch_size: 16, cache_dir: dir.join("cache"), fused_plan: true };
        let audit = AuditOptions {
            pairs: 6,
            layer: None,
            mimicry: MimicryOptions {
                budget: 0.01,
                iterations: 80,
                optimizer: AttackOptimizer::Adam,
                learning_rate: 0.02,
                penalty: 1e10,
            },
            batch_size: 6,
            seed: 1,
            interrupt: None,
        };
        let attack =
            craft(&student, &teacher, validation.clone(), &audit, &inference, &Device::flex(), &Silent).unwrap();
        let (before, _) = score(&attack, &student, attack.clean_accuracy, &Device::flex(), &Silent).unwrap();

        // The default setting: the penalty moves the representation at K beyond τ, and well away
        // from where the same training without it leaves it.
        let options =
            HardenOptions { epochs: 6, batch_size: 10, mimicry_examples: Some(0), ..HardenOptions::default() };
        let (_, config, report) = harden(&student, &teacher, &train_set, &options, &Device::flex(), &Silent).unwrap();
        assert_eq!(config.strategy, Strategy::Full);
        assert!(config.frozen_blocks.is_empty());
        let distance = |report: &graft::audit::harden::HardenReport| report.history.last().unwrap().mean_distance;
        assert!(
            distance(&report) > report.final_threshold,
            "the student's representation ended beyond τ: {:?}",
            report.history
        );
        // Both distances are logged, the penalised one as `mean_distance`.
        let last = report.history.last().unwrap();
        assert!(
            (last.mean_euclidean_distance - last.mean_distance).abs() < 1e-6 * last.mean_distance.max(1.0),
            "{last:?}"
        );
        assert!(last.mean_standardised_distance > 0.0 && report.typical_standardised_distance > 0.0, "{report:?}");
        let plain = HardenOptions { penalty: 0.0, ..options.clone() };
        let (plain_student, plain_config, unpenalised) =
            harden(&student, &teacher, &train_set, &plain, &Device::flex(), &Silent).unwrap();
        assert!(unpenalised.mimicry_examples.is_none());
        assert!(
            distance(&unpenalised) < 0.8 * distance(&report),
            "{:?} against {:?}",
            unpenalised.history,
            report.history
        );
        // A strong hardening (ten times the default rate), for an effect on the attack clear on
        // 60 images at 64 px (docs/AUDIT.md measures the default at the teacher's own size).
        let strong = HardenOptions { learning_rate: 1e-3, ..options };
        let (hardened, config, _) = harden(&student, &teacher, &train_set, &strong, &Device::flex(), &Silent).unwrap();
        graft::train::student::save_run(&dir.join("hardened"), &hardened, &config).unwrap();
        let hardened = graft::train::load_run(&dir.join("hardened"), &Device::flex()).unwrap();
        let (after, _) = score(&attack, &hardened, 0.0, &Device::flex(), &Silent).unwrap();
        let pull = |report: &graft::audit::run::AuditReport| {
            report.examples.iter().map(|example| example.target_probability).sum::<f64>() / report.examples.len() as f64
        };
        assert!(
            pull(&after) < 0.5 * pull(&before),
            "the crafted images pull the hardened student less: {} against {}",
            pull(&after),
            pull(&before)
        );
        assert!(
            after.attack_success_rate <= before.attack_success_rate,
            "{} against {}",
            after.attack_success_rate,
            before.attack_success_rate
        );

        // Adversarial training: the same training without the penalty, on a mimicry example of
        // every training image as well (the default count; crafted on the teacher from other
        // training images, none of the attack's), leaves the attack's images less pull than the
        // training without them.
        let adversarial = HardenOptions {
            mimicry_examples: None,
            mimicry: MimicryOptions {
                budget: 0.01,
                iterations: 40,
                optimizer: AttackOptimizer::Adam,
                learning_rate: 0.02,
                penalty: 1e10,
            },
            ..plain
        };
        let (adversarial_student, adversarial_config, report) =
            harden(&student, &teacher, &train_set, &adversarial, &Device::flex(), &Silent).unwrap();
        let examples = report.mimicry_examples.as_ref().unwrap();
        assert_eq!(examples.crafted, train_set.len());
        assert!(examples.used > train_set.len() / 2 && examples.mean_dssim < 0.01, "{examples:?}");
        assert_eq!(adversarial_config.train_images, train_set.len(), "the examples are not counted as training images");
        assert!(adversarial_config.data.contains("mimicry examples"), "{}", adversarial_config.data);
        let mut pulls = Vec::new();
        for (name, trained, config) in
            [("plain", plain_student, plain_config), ("adversarial", adversarial_student, adversarial_config)]
        {
            graft::train::student::save_run(&dir.join(name), &trained, &config).unwrap();
            let loaded = graft::train::load_run(&dir.join(name), &Device::flex()).unwrap();
            pulls.push(pull(&score(&attack, &loaded, 0.0, &Device::flex(), &Silent).unwrap().0));
        }
        assert!(
            pulls[1] < 0.8 * pulls[0],
            "the mimicry examples lower the crafted images' pull: {} against {} without them ({} before)",
            pulls[1],
            pulls[0],
            pull(&before)
        );
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
        let error = dataset::open(&dir.join("single"), &dir)
            .unwrap()
            .train
            .check_trainable("`single`")
            .unwrap_err()
            .to_string();
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
        std::fs::write(dir.join("quoted.csv"), "Label, Path\n\"bag, small\",\"c, \"\"d\"\".png\"\nother,a.png\n")
            .unwrap();
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

    /// Every file under `dir`, with its length (what a run wrote there).
    fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        let mut pending = vec![dir.to_owned()];
        while let Some(next) = pending.pop() {
            for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    out.push((path.clone(), entry.metadata().unwrap().len()));
                }
            }
        }
        out.sort();
        out
    }

    /// A student held in memory predicts from encoded bytes, decoded pixels and files alike, the
    /// same probabilities as the evaluation's cached path, from several threads at once, and
    /// writes nothing: the feature cache its run filled is left as it was.
    #[test]
    fn a_student_in_memory_predicts_from_bytes_and_writes_nothing() {
        use graft::data::dataset::ItemSource;
        use graft::run::{Modality, Student, StudentOptions};
        let dir = temp_dir("in-memory");
        let teacher = teacher();
        let (train_set, validation) = sample(6);
        let cache = dir.join("cache");
        for strategy in [Strategy::Deep, Strategy::Mid] {
            let run = dir.join(strategy.to_string());
            let mut run_options = options(strategy, &run, &cache);
            run_options.hyperparameters.epochs = 1;
            train(&teacher, &train_set, &validation, &run_options, &Device::flex(), &Silent).unwrap();
            let student_options =
                StudentOptions { batch_size: 5, cache_dir: cache.clone(), ..StudentOptions::default() };
            let student = std::sync::Arc::new(Student::load(&run, &student_options).unwrap());
            assert_eq!(student.modality(), Modality::Image);
            assert_eq!(student.classes(), &train_set.classes[..]);
            assert_eq!(student.record()["strategy"], strategy.to_string());

            let before = files_under(&cache);
            let sources: Vec<ItemSource> = validation.items.iter().map(|item| item.source.clone()).collect();
            let files: Vec<Vec<u8>> = sources.iter().map(|source| source.content().unwrap()).collect();
            let mut encoded: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
            let truncated = &files[0][..files[0].len() / 3];
            encoded.insert(1, truncated);
            let from_bytes = student.predict_encoded(&encoded).unwrap();
            assert!(from_bytes[1].is_err(), "the truncated image is refused on its own");
            let from_bytes: Vec<Vec<f32>> =
                from_bytes.into_iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, row)| row.unwrap()).collect();
            let pixels: Vec<image::RgbImage> = sources.iter().map(|source| source.load().unwrap()).collect();
            let from_pixels = student.predict_images(&pixels).unwrap();
            let (uncached, skipped) = student.predict_sources(&sources, None, &Silent).unwrap();
            assert!(skipped.is_empty());
            assert_eq!(files_under(&cache), before, "{strategy}: predicting wrote nothing");

            // The evaluation's path through the feature cache (the same entries training made).
            let (cached, _) = student.predict_sources(&sources, Some(&cache), &Silent).unwrap();
            for (index, row) in from_bytes.iter().enumerate() {
                assert_eq!(row.len(), train_set.classes.len());
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
                let cached = cached[index].as_ref().unwrap();
                common::assert_close_within(row, cached, 1e-4, &format!("{strategy}: bytes against the cache"));
                // The same images in other batches: equal up to the kernels' rounding.
                common::assert_close_within(row, &from_pixels[index], 1e-5, &format!("{strategy}: bytes and pixels"));
                let file = uncached[index].as_ref().unwrap();
                common::assert_close_within(row, file, 1e-5, &format!("{strategy}: bytes and files"));
            }

            // One student, several threads.
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (student, files) = (student.clone(), files.clone());
                    std::thread::spawn(move || {
                        let encoded: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
                        student
                            .predict_encoded(&encoded)
                            .unwrap()
                            .into_iter()
                            .map(|row| row.unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for thread in threads {
                // The same batches as `files` makes (no truncated image among them).
                let rows = thread.join().unwrap();
                for (row, single) in rows.iter().zip(&from_bytes) {
                    common::assert_close_within(row, single, 1e-5, "a second thread");
                }
            }
            let top = student.top_k(&from_bytes[0], 2);
            assert_eq!(top.len(), 2);
            assert!(top[0].probability >= top[1].probability);
            let error = student.predict_texts(&["a bag"]).err().unwrap().to_string();
            assert!(error.contains("holds an image student: it does not take texts"), "{error}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
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

/// A backbone with seeded random weights and batch-norm statistics far from (0, 1), so that a
/// folding mistake cannot hide behind an identity batch norm.
fn random_backbone(architecture: zoo::Architecture, seed: u64, device: &Device) -> graft::models::Backbone {
    use graft::weights::{SameKeys, collect_tensors, load_into};
    device.seed(seed);
    let backbone = graft::models::Backbone::new(architecture, 1000, device);
    let mut tensors = collect_tensors(&backbone, &SameKeys).unwrap();
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let norms: Vec<String> =
        tensors.keys().filter_map(|name| name.strip_suffix(".running_var").map(str::to_owned)).collect();
    for (name, tensor) in tensors.iter_mut() {
        let graft_weights::Values::F32(values) = &mut tensor.values else { continue };
        let Some((layer, field)) = name.rsplit_once('.') else { continue };
        if !norms.iter().any(|norm| norm == layer) {
            continue;
        }
        for value in values.iter_mut() {
            let u = next();
            *value = match field {
                "running_var" => 0.2 + 2.0 * u,
                "weight" => 0.5 + u,
                _ => u - 0.5,
            };
        }
    }
    load_into(backbone, &tensors, &SameKeys, Path::new("random"), false).unwrap().0
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    common::assert_close_within(got, want, 1e-4, what);
}

#[test]
fn fused_frozen_blocks_match_burn() {
    use graft::backend::fused::FusedBackbone;
    let device = Device::flex();
    // Built one at a time: a backbone is a large value, and four on a test thread's stack overflow it.
    type Build = Box<dyn Fn(&Device) -> Box<graft::models::Backbone>>;
    let cases: Vec<(&str, Build, usize)> = vec![
        (
            "efficientnet_lite0 (ImageNet weights)",
            Box::new(|device| {
                Box::new(load_teacher("efficientnet_lite0", &offline_options(), device).unwrap().0.backbone)
            }),
            72,
        ),
        (
            "resnet18",
            Box::new(|device| {
                Box::new(random_backbone(
                    zoo::Architecture::ResNet(graft::models::resnet::ResNetDepth::ResNet18),
                    7,
                    device,
                ))
            }),
            64,
        ),
        (
            "resnet50",
            Box::new(|device| {
                Box::new(random_backbone(
                    zoo::Architecture::ResNet(graft::models::resnet::ResNetDepth::ResNet50),
                    8,
                    device,
                ))
            }),
            64,
        ),
        ("mobilenet_v2", Box::new(|device| Box::new(random_backbone(zoo::Architecture::MobileNetV2, 9, device))), 70),
    ];
    for (name, build, size) in cases {
        let backbone = build(&device);
        let fused = FusedBackbone::new(&*backbone).unwrap_or_else(|| panic!("{name}: no fused plan"));
        let blocks = backbone.block_names().len();
        assert_eq!(fused.block_count(), blocks, "{name}");
        let batch = 3;
        device.seed(11);
        let images = Tensor::<4>::random([batch, 3, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let pixels = images.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        for cut in [1, blocks / 2, blocks] {
            let activations = backbone.forward_blocks(images.clone(), 0..cut).unwrap();
            let (got, shape) = fused.forward(&pixels, [batch, 3, size, size], cut, false).unwrap();
            assert_eq!(shape, activations.dims().to_vec(), "{name} at cut {cut}");
            let want = activations.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            assert_close(&got, &want, &format!("{name}, activations after {cut} blocks"));
            if cut < blocks {
                // The rest of the network from the cut, pooled: how a student's tail is scored.
                let dims = activations.dims();
                let entering = activations.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                let (got, _) = fused.forward_range(&entering, dims, cut, blocks, true).unwrap();
                let rest = backbone.forward_blocks(activations.clone(), cut..blocks).unwrap();
                let want = backbone.features(rest).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                assert_close(&got, &want, &format!("{name}, features from block {cut} on"));
            }
            if cut == blocks {
                let (got, shape) = fused.forward(&pixels, [batch, 3, size, size], cut, true).unwrap();
                let want = backbone.features(activations).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                assert_eq!(shape, vec![batch, backbone.feature_dim()], "{name}");
                assert_close(&got, &want, &format!("{name}, pooled features"));
            }
        }
    }
    let alexnet = Box::new(graft::models::Backbone::new(zoo::Architecture::AlexNet, 10, &device));
    assert!(FusedBackbone::new(&*alexnet).is_none(), "AlexNet runs through burn");
}

#[test]
fn a_block_range_outside_the_network_is_an_error() {
    let device = Device::flex();
    let backbone = graft::models::Backbone::new(
        zoo::Architecture::ResNet(graft::models::resnet::ResNetDepth::ResNet18),
        10,
        &device,
    );
    let blocks = backbone.block_names();
    assert_eq!(blocks, ["conv1", "layer1", "layer2", "layer3", "layer4"]);
    let image = Tensor::<4>::zeros([1, 3, 32, 32], &device);
    let error = backbone.forward_blocks(image.clone(), 3..6).err().map(|error| error.to_string()).unwrap_or_default();
    assert!(error.contains("3..6") && error.contains("5 blocks"), "{error}");
    assert!(backbone.forward_blocks(image.clone(), std::ops::Range { start: 4, end: 3 }).is_err(), "a reversed range");
    assert_eq!(backbone.forward_blocks(image, 0..5).unwrap().dims(), [1, 512, 1, 1]);
    assert!(backbone.clone().freeze_until(6).is_err());
    let frozen = backbone.freeze_until(5).unwrap();
    assert_eq!(graft::train::trainer::count_trainable(&frozen), 0, "every block and the classifier frozen");
}

#[test]
fn dense_depthwise_convolution_matches_burn_forward_and_backward() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    let device = Device::flex().autodiff();
    device.seed(5);
    let cases = [
        (6, 3, 1, PaddingConfig2d::Same, 4),
        (5, 5, 1, PaddingConfig2d::Same, 4),
        (5, 5, 2, PaddingConfig2d::Same, 7),
        (4, 3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), 8),
        (3, 3, 1, PaddingConfig2d::Valid, 6),
    ];
    for (channels, kernel, stride, padding, size) in cases {
        let what = format!("{channels} channels, {kernel}x{kernel}, stride {stride}, {padding:?}, {size}x{size}");
        let conv = Conv2dConfig::new([channels, channels], [kernel, kernel])
            .with_groups(channels)
            .with_stride([stride, stride])
            .with_padding(padding)
            .init(&device);
        let x = Tensor::<4>::random([3, channels, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let values = |dense: bool| {
            let y = if dense { graft::backend::ops::conv(&conv, x.clone()) } else { conv.forward(x.clone()) };
            // A loss that weighs every output differently, so a misplaced tap shows in the gradients.
            let count = y.dims().iter().product::<usize>() as i64;
            let weights = Tensor::<1, burn::tensor::Int>::arange(0..count, &device)
                .float()
                .reshape(y.dims())
                .div_scalar(count as f32);
            let gradients = (y.clone() * weights).sum().backward();
            let flat = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            let flat1 = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            (
                y.dims(),
                flat(y.inner()),
                flat(conv.weight.grad(&gradients).unwrap()),
                flat1(conv.bias.as_ref().unwrap().grad(&gradients).unwrap()),
                flat(x.grad(&gradients).unwrap()),
            )
        };
        let (dense, burn) = (values(true), values(false));
        assert_eq!(dense.0, burn.0, "{what}: output shape");
        assert_close(&dense.1, &burn.1, &format!("{what}: output"));
        assert_close(&dense.2, &burn.2, &format!("{what}: weight gradient"));
        assert_close(&dense.3, &burn.3, &format!("{what}: bias gradient"));
        assert_close(&dense.4, &burn.4, &format!("{what}: input gradient"));
    }
}

#[test]
fn sharded_batch_norm_updates_running_statistics_as_one_batch_would() {
    use burn::nn::BatchNormConfig;
    use graft::backend::batch_statistics::{collect, update_running_statistics};
    use graft::backend::ops::normalize;
    let device = Device::flex().autodiff();
    device.seed(3);
    // Shards of unequal size with different means, so the spread between them matters.
    let x = Tensor::<4>::random([7, 5, 3, 3], burn::tensor::Distribution::Normal(0.5, 2.0), &device);
    let (first, second) = (x.clone().slice(0..4), x.clone().slice(4..7) * 3.0 + 1.0);
    let whole_batch = Tensor::cat(vec![first.clone(), second.clone()], 0);
    let whole = BatchNormConfig::new(5).init(&device);
    let sharded = BatchNormConfig::new(5).init(&device);
    for _ in 0..2 {
        let _ = whole.forward(whole_batch.clone());
        let (out_first, stats_first) = collect(|| normalize(&sharded, first.clone()));
        let (out_second, stats_second) = collect(|| normalize(&sharded, second.clone()));
        assert_eq!((stats_first.len(), stats_second.len()), (1, 1));
        // Each shard is normalized with its own statistics, as a batch norm on the shard alone.
        let alone = BatchNormConfig::new(5).init(&device);
        assert_close(&values(out_first), &values(alone.forward(first.clone())), "first shard's output");
        assert_close(&values(out_second), &values(alone.forward(second.clone())), "second shard's output");
        update_running_statistics(vec![stats_first, stats_second]);
    }
    assert_close(&values(sharded.running_mean.value_sync()), &values(whole.running_mean.value_sync()), "running mean");
    assert_close(
        &values(sharded.running_var.value_sync()),
        &values(whole.running_var.value_sync()),
        "running variance",
    );
    // Outside a collector the layer is burn's own.
    let before = values(sharded.running_mean.value_sync());
    let _ = normalize(&sharded, first.clone());
    assert_ne!(
        values(sharded.running_mean.value_sync()),
        before,
        "normalize outside a collector updates the running mean"
    );
}

#[test]
fn sharded_step_matches_the_whole_batch_without_batch_norm() {
    use burn::tensor::Int;
    use graft::train::shards;
    use graft::train::student::{Student, StudentInput};
    use graft::train::{FreezePlan, HeadKind, Strategy};
    let device = Device::flex().autodiff();
    let backbone = random_backbone(zoo::Architecture::MobileNetV2, 4, &Device::flex());
    let plan = FreezePlan::new(Strategy::Deep, backbone.block_names(), None, None).unwrap();
    let cut = plan.cut;
    let student = Student::new(backbone, &plan, HeadKind::Linear, 3, 1, &device).unwrap();
    device.seed(9);
    let features =
        Tensor::<2>::random([9, student.backbone.feature_dim()], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = vec![0, 1, 2, 2, 1, 0, 0, 0, 1];
    // Class weights: each shard's loss is a weighted mean, so shards weigh by their summed weights.
    let class_weights = vec![0.5f32, 1.0, 3.0];
    let loss_function =
        burn::nn::loss::CrossEntropyLossConfig::new().with_weights(Some(class_weights.clone())).init(&device);

    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [labels.len()]), &device);
    let loss = loss_function.forward(student.forward(StudentInput::Features(features.clone()), cut).unwrap(), targets);
    let whole_loss = loss.clone().into_scalar::<f32>();
    let whole = burn::optim::GradientsParams::from_grads(loss.backward(), &student);

    let parts = vec![
        (StudentInput::Features(features.clone().slice(0..5)), labels[..5].to_vec()),
        (StudentInput::Features(features.clone().slice(5..9)), labels[5..].to_vec()),
    ];
    let step = shards::step(&student, parts, cut, &loss_function, Some(&class_weights), false, &device).unwrap();
    assert!(
        (step.loss as f32 - whole_loss).abs() <= 1e-5 * whole_loss.abs(),
        "loss {} against {whole_loss}",
        step.loss
    );
    assert_eq!(step.logits.iter().map(|logits| logits.dims()[0]).collect::<Vec<_>>(), [5, 4]);
    let graft::train::head::Head::Linear(linear) = &student.head else { unreachable!() };
    assert_close(
        &values(step.gradients.get::<2>(linear.weight.id).unwrap()),
        &values(whole.get::<2>(linear.weight.id).unwrap()),
        "weight gradient",
    );
    let bias = linear.bias.as_ref().unwrap();
    assert_close(
        &values(step.gradients.get::<1>(bias.id).unwrap()),
        &values(whole.get::<1>(bias.id).unwrap()),
        "bias gradient",
    );
    assert_eq!(step.gradients.len(), 2, "only the head trains");
}
