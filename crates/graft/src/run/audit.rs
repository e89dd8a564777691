//! Audits and hardening as whole runs: each call does the work and writes its records into the
//! run directory (`audit.json` and `audit.html`; for hardening, a new run with `harden.json`).

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::audit::harden::{HardenOptions, HardenReport, harden};
use crate::audit::run::{AuditOptions, AuditReport, correctly_classified, craft, score};
use crate::data::dataset::{self, Dataset};
use crate::error::{GraftError, Result};
use crate::models::Teacher;
use crate::train::evaluate::InferenceOptions;
use crate::train::reporter::Reporter;
use crate::train::student::{LoadedStudent, save_run};

/// Attacks `student` through `teacher` alone on the labelled `data` ([`craft`], then [`score`] on
/// the same student) and writes `audit.json` and `audit.html` into the student's run directory.
///
/// # Errors
/// As [`craft`] and [`score`], or a record that cannot be written.
pub fn audit_run(
    student: &LoadedStudent,
    teacher: &Teacher,
    data: Dataset,
    options: &AuditOptions,
    inference: &InferenceOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<AuditReport> {
    let attack = craft(student, teacher, data, options, inference, device, reporter)?;
    let (report, pictures) = score(&attack, student, attack.clean_accuracy, device, reporter)?;
    crate::report::write_audit(&student.run, &report, &pictures)?;
    Ok(report)
}

/// The images a hardening trains on and the ones it is measured on.
pub struct HardenData {
    /// The training images: a data set's training and validation parts together.
    pub train: Dataset,
    /// Where accuracy and the attack are measured, before and after.
    pub measuring: Dataset,
    /// What `measuring` is, for the record.
    pub measured_on: String,
    /// There were no test images: `measuring` is the training images.
    pub measures_training_images: bool,
}

impl HardenData {
    /// Opens `data` (any form `train` takes) to train on, and `test` to measure on; without
    /// `test`, `data`'s test part, or else the training images themselves (then `measured_on`
    /// says so).
    ///
    /// # Errors
    /// Data that cannot be opened, or a validation part whose classes are not the training
    /// part's.
    pub fn open(data: &Path, test: Option<&Path>, cache_dir: &Path) -> Result<HardenData> {
        let splits = dataset::open(data, cache_dir)?;
        let mut train = splits.train;
        if let Some(validation) = splits.validation {
            let validation = validation.align_classes(&train.classes)?;
            train.items.extend(validation.items);
        }
        let (measuring, measured_on, measures_training_images) = match test {
            Some(test) => {
                let test_splits = dataset::open(test, cache_dir)?;
                (test_splits.test.unwrap_or(test_splits.train), test.display().to_string(), false)
            }
            None => match splits.test {
                Some(test) => (test, format!("{} (its test part)", data.display()), false),
                None => (train.clone(), format!("{} (the training images)", data.display()), true),
            },
        };
        Ok(HardenData { train, measuring, measured_on, measures_training_images })
    }
}

/// One student's figures on the measuring images.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Measured {
    pub accuracy: f64,
    /// `None` when no pairs were attacked.
    pub attack: Option<AuditReport>,
}

/// What [`harden_run`] did and measured (`harden.json` in the hardened run).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HardenOutcome {
    pub out: String,
    /// What the figures were measured on.
    pub measured_on: String,
    pub before: Measured,
    pub after: Measured,
    pub harden: HardenReport,
}

/// Hardens `student` ([`harden`]) into the new run directory `out`, measured before and after
/// on the same crafted images: the attack is crafted on the teacher alone, once, with `audit`
/// (`audit.pairs` 0: accuracy only). Writes the hardened run, `harden.json` and, when pairs were
/// attacked, the after audit's `audit.json` and `audit.html`.
///
/// # Errors
/// `out` being the student's own run, and whatever crafting, scoring, hardening or writing
/// fails with.
#[allow(clippy::too_many_arguments)]
pub fn harden_run(
    student: &LoadedStudent,
    teacher: &Teacher,
    data: &HardenData,
    data_description: &str,
    options: &HardenOptions,
    audit: &AuditOptions,
    out: &Path,
    inference: &InferenceOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<HardenOutcome> {
    if same_directory(out, &student.run) {
        return Err(GraftError::Invalid(format!(
            "the hardened student needs a new run directory, not the student's own (`{}`)",
            student.run.display()
        )));
    }
    options.check()?;
    let measuring = &data.measuring;
    let attack = (audit.pairs > 0)
        .then(|| craft(student, teacher, measuring.clone(), audit, inference, device, reporter))
        .transpose()?;
    let accuracy = |student: &LoadedStudent| -> Result<f64> {
        let aligned = measuring.clone().align_classes(&student.config.header.classes)?;
        Ok(correctly_classified(student, &aligned, inference, device, reporter)?.accuracy())
    };
    let before_accuracy = match &attack {
        Some(attack) => attack.clean_accuracy,
        None => accuracy(student)?,
    };
    let before_attack =
        attack.as_ref().map(|attack| score(attack, student, before_accuracy, device, reporter)).transpose()?;

    let (hardened, mut config, report) = harden(student, teacher, &data.train, options, device, reporter)?;
    config.header.data = format!("{data_description} ({}; hardening)", report.images_trained_on());
    save_run(out, &hardened, &config)?;
    let hardened = LoadedStudent { student: hardened, config, run: out.to_owned() };
    let after_accuracy = accuracy(&hardened)?;
    let after_attack =
        attack.as_ref().map(|attack| score(attack, &hardened, after_accuracy, device, reporter)).transpose()?;
    if let Some((after, pictures)) = &after_attack {
        crate::report::write_audit(out, after, pictures)?;
    }
    let outcome = HardenOutcome {
        out: out.display().to_string(),
        measured_on: data.measured_on.clone(),
        before: Measured { accuracy: before_accuracy, attack: before_attack.map(|(report, _)| report) },
        after: Measured { accuracy: after_accuracy, attack: after_attack.map(|(report, _)| report) },
        harden: report,
    };
    let json = serde_json::to_vec_pretty(&outcome).map_err(|error| GraftError::Invalid(error.to_string()))?;
    crate::fsutil::write_atomic(&out.join("harden.json"), &json)?;
    Ok(outcome)
}

/// Whether two paths name one directory (as written, or once both exist, resolved).
fn same_directory(a: &Path, b: &Path) -> bool {
    let resolved = |path: &Path| -> PathBuf { path.canonicalize().unwrap_or_else(|_| path.to_owned()) };
    a == b || resolved(a) == resolved(b)
}
