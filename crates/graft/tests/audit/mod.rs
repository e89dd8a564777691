//! The audit on real students: the mimicry attack, fingerprints, and hardening.

use burn::tensor::Device;
use graft::train::{Silent, Strategy, train};

use crate::common::temp_dir;
use crate::training::{options, sample, teacher};

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
    let pixels =
        |item: &graft::data::dataset::Item| graft::data::image::pixels(&item.source.load().unwrap(), &preprocessing);
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
    let classes = student.config.header.classes.len();
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
        let probabilities =
            graft::audit::pixels::student_probabilities(&model, &[pixels.to_vec()], &preprocessing, &Device::flex())
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
        let worker = std::thread::Builder::new().stack_size(64 << 20).spawn_scoped(scope, hardening_checks).unwrap();
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
    let attack = craft(&student, &teacher, validation.clone(), &audit, &inference, &Device::flex(), &Silent).unwrap();
    let (before, _) = score(&attack, &student, attack.clean_accuracy, &Device::flex(), &Silent).unwrap();

    // The default setting: the penalty moves the representation at K beyond τ, and well away
    // from where the same training without it leaves it.
    let options = HardenOptions { epochs: 6, batch_size: 10, mimicry_examples: Some(0), ..HardenOptions::default() };
    let (_, config, report) = harden(&student, &teacher, &train_set, &options, &Device::flex(), &Silent).unwrap();
    assert_eq!(config.header.strategy, Strategy::Full);
    assert!(config.frozen_blocks.is_empty());
    let distance = |report: &graft::audit::harden::HardenReport| report.history.last().unwrap().mean_distance;
    assert!(
        distance(&report) > report.final_threshold,
        "the student's representation ended beyond τ: {:?}",
        report.history
    );
    // Both distances are logged, the penalised one as `mean_distance`.
    let last = report.history.last().unwrap();
    assert!((last.mean_euclidean_distance - last.mean_distance).abs() < 1e-6 * last.mean_distance.max(1.0), "{last:?}");
    assert!(last.mean_standardised_distance > 0.0 && report.typical_standardised_distance > 0.0, "{report:?}");
    let plain = HardenOptions { penalty: 0.0, ..options.clone() };
    let (plain_student, plain_config, unpenalised) =
        harden(&student, &teacher, &train_set, &plain, &Device::flex(), &Silent).unwrap();
    assert!(unpenalised.mimicry_examples.is_none());
    assert!(distance(&unpenalised) < 0.8 * distance(&report), "{:?} against {:?}", unpenalised.history, report.history);
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
    assert!(adversarial_config.header.data.contains("mimicry examples"), "{}", adversarial_config.header.data);
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
