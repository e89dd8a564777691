//! The verbs for text teachers and students: `train`, `eval`, `predict` and `embed` route here
//! when the teacher (or the run) is a text one.

use std::path::{Path, PathBuf};

use graft::models::WeightOptions;
use graft::run::Student;
use graft::text::{self, TextRunConfig, TextTeacher, TextTrainOptions};

use crate::cli::{CompareArgs, EmbedArgs, EvalArgs, TeacherArgs, TrainArgs, TrainingArgs};
use crate::progress::CliReporter;
use crate::settings::Settings;

/// The text recipe from the arguments: what is not given takes the text defaults.
fn train_options(training: &TrainingArgs, out: &Path, data: &Path, settings: &Settings) -> TextTrainOptions {
    let defaults = TextTrainOptions::default();
    TextTrainOptions {
        strategy: training.strategy,
        unfreeze: training.unfreeze,
        epochs: training.epochs.unwrap_or(defaults.epochs),
        learning_rate: training.learning_rate.unwrap_or(defaults.learning_rate),
        encoder_factor: training.backbone_lr_factor.unwrap_or(defaults.encoder_factor),
        weight_decay: training.weight_decay,
        shards: training.shards.unwrap_or_else(|| graft::device::default_shards(&settings.device)),
        validation_fraction: training.validation_fraction,
        seed: training.seed,
        cache_dir: settings.cache_dir.clone(),
        out: out.to_owned(),
        batch_size: training.batch_size,
        data: data.display().to_string(),
        interrupt: Some(crate::INTERRUPT.clone()),
    }
}

/// Whether the arguments name a text teacher.
pub fn is_text(args: &TeacherArgs) -> bool {
    text::is_text_teacher(&args.teacher, args.weights.as_deref())
}

/// Loads the text teacher the arguments name.
pub fn teacher(args: &TeacherArgs, settings: &Settings) -> anyhow::Result<TextTeacher> {
    load(&args.teacher, args.weights.clone(), settings)
}

fn load(name: &str, weights: Option<PathBuf>, settings: &Settings) -> anyhow::Result<TextTeacher> {
    let options = WeightOptions {
        weights,
        cache_dir: settings.cache_dir.clone(),
        offline: settings.offline,
        allow_partial: false,
        progress: !settings.quiet,
    };
    let (teacher, report) = text::load_text_teacher(name, &options, &settings.device)?;
    settings.log(format!(
        "teacher {}: {report} (weights sha256 {}, {} tokens at most, {:?} pooling)",
        teacher.name,
        &teacher.weights_sha256[..12],
        teacher.tokenizer.max_length(),
        teacher.pooling
    ));
    Ok(teacher)
}

/// The texts of `predict` and `embed`: the arguments, or the lines of `--file` (`-` = stdin).
pub fn texts(arguments: &[PathBuf], file: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let mut texts: Vec<String> = arguments.iter().map(|text| text.to_string_lossy().into_owned()).collect();
    if let Some(file) = file {
        texts.extend(text::data::read_lines(file)?);
    }
    if texts.is_empty() {
        anyhow::bail!("no texts given");
    }
    Ok(texts)
}

pub fn train(args: &TrainArgs, settings: &Settings) -> anyhow::Result<()> {
    use graft::train::Strategy;
    let training = &args.training;
    if !matches!(training.strategy, Strategy::Deep | Strategy::Mid | Strategy::Full | Strategy::Auto) {
        anyhow::bail!(
            "text students train with `deep`, `mid`, `full` or `auto`; `{}` is for image teachers",
            training.strategy
        );
    }
    if args.resume {
        anyhow::bail!(
            "text students keep no checkpoints to resume from: run it again (a `deep` student trains in seconds from cached features)"
        );
    }
    let teacher = teacher(&args.teacher, settings)?;
    let data_path = &args.data;
    let splits = text::data::open_splits(data_path, &args.columns.columns())?;
    let (mut train_set, validation) = (splits.train, splits.validation);
    for skipped in &train_set.skipped {
        eprintln!("skipped {}: {}", skipped.location, skipped.reason);
    }
    if let Some(per_class) = training.per_class {
        train_set = train_set.subsample(per_class, training.seed);
    }
    train_set.check_trainable(&format!("`{}`", data_path.display()))?;
    let counts = train_set.class_counts();
    settings.log(format!(
        "data: {} texts in {} classes ({}..{} per class){}",
        train_set.len(),
        train_set.classes.len(),
        counts.iter().min().unwrap_or(&0),
        counts.iter().max().unwrap_or(&0),
        match (&validation, training.strategy) {
            (Some(validation), _) => format!(", {} given for validation", validation.len()),
            (None, Strategy::Deep) => ", scored by cross-validation".to_owned(),
            (None, _) => format!(", {:.0}% held out to score it", training.validation_fraction * 100.0),
        }
    ));
    let options = train_options(training, &args.out, data_path, settings);
    let reporter = CliReporter::new(settings.quiet);
    let outcome =
        graft::run::train_text_run(&teacher, &train_set, validation.as_ref(), &options, &settings.device, &reporter)?;
    let config = &outcome.config;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run": args.out,
                "modality": "text",
                "teacher": config.teacher,
                "strategy": config.strategy,
                "strategy_reason": config.strategy_reason,
                "validation_accuracy": outcome.accuracy,
                "standard_error": outcome.standard_error,
                "validation": config.metrics["validation"],
                "texts": train_set.len(),
                "truncated": outcome.truncated,
                "seconds": outcome.seconds,
                "cache": {"hits": outcome.cache_hits},
            }))?
        );
    } else {
        let scored = match outcome.standard_error {
            Some(error) => format!("cross-validated accuracy {:.2}% ± {:.2}%", outcome.accuracy * 100.0, error * 100.0),
            None => format!("validation accuracy {:.2}%", outcome.accuracy * 100.0),
        };
        println!(
            "trained a {} text student of {} on {} texts in {:.1}s\n{scored} ({}); {} texts longer than {} tokens were cut\nrun: {} (report.html, graft.json, student.safetensors)",
            config.strategy,
            config.teacher,
            train_set.len(),
            outcome.seconds,
            config.metrics["validation"].as_str().unwrap_or(""),
            outcome.truncated,
            config.max_length,
            args.out.display()
        );
    }
    Ok(())
}

/// `graft eval` for a text student.
pub fn eval(student: &Student, config: &TextRunConfig, args: &EvalArgs, settings: &Settings) -> anyhow::Result<()> {
    // Data that comes split is scored on its test part; otherwise on everything it holds.
    let splits = text::data::open_splits(&args.data, &args.columns.columns())?;
    let data = match splits.test {
        Some(test) => test,
        None => splits.train,
    };
    for skipped in &data.skipped {
        eprintln!("skipped {}: {}", skipped.location, skipped.reason);
    }
    let reporter = CliReporter::new(settings.quiet);
    let (evaluation, wrong, truncated) = student.evaluate_texts(data, &settings.cache_dir, &reporter)?;
    if args.json {
        let mut value = serde_json::to_value(&evaluation)?;
        value["texts"] = serde_json::json!(evaluation.images);
        value["truncated"] = serde_json::json!(truncated);
        value["confidently_wrong"] = serde_json::to_value(&wrong)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{} texts, accuracy {:.2}%, macro F1 {:.3} ({truncated} cut at {} tokens)",
        evaluation.images,
        evaluation.accuracy * 100.0,
        evaluation.macro_f1,
        config.max_length
    );
    println!("\n{:<24} {:>9} {:>9} {:>9} {:>8}", "class", "precision", "recall", "f1", "support");
    for class in &evaluation.per_class {
        println!(
            "{:<24} {:>9.3} {:>9.3} {:>9.3} {:>8}",
            class.class, class.precision, class.recall, class.f1, class.support
        );
    }
    if !wrong.is_empty() {
        println!("\nmost confidently wrong:");
        for example in wrong.iter().take(5) {
            let shown: String = example.text.chars().take(100).collect::<String>().replace('\n', " ");
            println!("  {:>5.1}% {} (is {}): {shown}", example.confidence * 100.0, example.predicted, example.label);
        }
    }
    Ok(())
}

pub fn embed(args: &EmbedArgs, settings: &Settings) -> anyhow::Result<()> {
    let teacher = teacher(&args.teacher, settings)?;
    let texts = texts(&args.images, args.file.as_deref())?;
    let borrowed: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embedded = teacher.embed(&borrowed, args.batch_size, &settings.device, &|_| {}, Some(&crate::INTERRUPT))?;
    if embedded.truncated > 0 {
        settings.log(format!(
            "{} texts were longer than {} tokens and were cut",
            embedded.truncated,
            teacher.tokenizer.max_length()
        ));
    }
    if args.json {
        let rows: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(index, text)| serde_json::json!({"text": text, "features": embedded.row(index)}))
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
        for (index, text) in texts.iter().enumerate() {
            let mut record = vec![text.clone()];
            record.extend(embedded.row(index).iter().map(f32::to_string));
            writer.write_record(&record)?;
        }
        writer.flush()?;
    }
    Ok(())
}

/// `graft compare` for a text teacher: each strategy trained on the same texts and scored on the
/// same held-out ones (the data's own validation part, or one split made once for all), and on
/// the test texts when there are any.
pub fn compare(args: &CompareArgs, settings: &Settings) -> anyhow::Result<()> {
    use graft::train::Strategy;
    use std::fmt::Write as _;
    let teacher = teacher(&args.teacher, settings)?;
    let splits = text::data::open_splits(&args.data, &args.columns.columns())?;
    let mut train_set = splits.train;
    if let Some(per_class) = args.training.per_class {
        train_set = train_set.subsample(per_class, args.training.seed);
    }
    train_set.check_trainable(&format!("`{}`", args.data.display()))?;
    let (train_set, validation) = match splits.validation {
        Some(validation) => (train_set, validation),
        None => train_set.stratified_split(args.training.validation_fraction, args.training.seed),
    };
    let test = match &args.test {
        Some(path) => Some(text::data::open(path, &args.columns.columns())?),
        None => splits.test,
    };
    let reporter = CliReporter::new(settings.quiet);
    let mut table =
        String::from("| strategy | validation accuracy | test accuracy | wall time (s) |\n|---|---|---|---|\n");
    let mut rows = Vec::new();
    for strategy in args
        .strategies
        .iter()
        .filter(|strategy| matches!(strategy, Strategy::Deep | Strategy::Mid | Strategy::Full | Strategy::Auto))
    {
        settings.log(format!("== {strategy}"));
        let mut training = args.training.clone();
        training.strategy = *strategy;
        let out = args.out.join(strategy.to_string());
        let options = train_options(&training, &out, &args.data, settings);
        let outcome =
            graft::run::train_text_run(&teacher, &train_set, Some(&validation), &options, &settings.device, &reporter)?;
        let test_accuracy = match &test {
            Some(test) => {
                let student = Student::load(&out, &settings.student_options(32))?;
                Some(student.evaluate_texts(test.clone(), &settings.cache_dir, &reporter)?.0.accuracy)
            }
            None => None,
        };
        let shown = test_accuracy.map_or("–".to_owned(), |accuracy| format!("{:.2}%", accuracy * 100.0));
        let _ = writeln!(
            table,
            "| {} | {:.2}% | {shown} | {:.1} |",
            outcome.config.strategy,
            outcome.accuracy * 100.0,
            outcome.seconds
        );
        rows.push(serde_json::json!({
            "strategy": outcome.config.strategy, "validation_accuracy": outcome.accuracy, "test_accuracy": test_accuracy,
            "seconds": outcome.seconds, "run": out,
        }));
    }
    let header = format!(
        "# graft compare\n\nText teacher `{}`, data `{}`, {} training / {} validation texts, seed {}.\n\n",
        teacher.name,
        args.data.display(),
        train_set.len(),
        validation.len(),
        args.training.seed
    );
    super::write_compare_report(args, &header, &table, &rows, settings)
}
