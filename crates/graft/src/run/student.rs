//! `Student`: a trained student held in memory. Loaded once from its run directory, it answers
//! any number of predictions, from decoded pixels, encoded image bytes, files or strings, in
//! batches, from any thread; a prediction writes nothing to disk (the feature cache is read and
//! filled only where a caller hands [`Student::predict_sources`] a cache directory, as
//! evaluation does to reuse the teacher's work on a set it has seen).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use image::RgbImage;

use crate::backend::fused::FusedBackbone;
use crate::data::dataset::{Dataset, ItemSource};
use crate::data::image::{decode_rgb_at_least, preprocess};
use crate::error::{GraftError, Result};
use crate::models::WeightOptions;
use crate::predict::{ClassScore, top_k};
use crate::text::{TextDataset, TextStudent, TextTeacher};
use crate::train::cache::Skipped;
use crate::train::evaluate::{
    InferenceOptions, Probabilities, evaluate_run, predict_decoded, predict_sources, whole_student_probabilities,
};
use crate::train::metrics::Evaluation;
use crate::train::reporter::Reporter;
use crate::train::student::{LoadedStudent, RunHeader, load_run};

use super::modality::{LabelledSet, Modality, Predictions, skipped_inputs};

/// How a loaded student runs.
#[derive(Debug, Clone)]
pub struct StudentOptions {
    pub device: Device,
    /// Inputs per forward pass; larger requests are split.
    pub batch_size: usize,
    /// The teacher's blocks through graft's fused CPU plan on `flex` (the same values up to
    /// rounding, faster).
    pub fused_plan: bool,
    /// Where a text student's teacher is found when the directory it was trained from is gone
    /// (the zoo's copy under `<cache_dir>/text-teachers/`).
    pub cache_dir: PathBuf,
    /// Never download a missing text teacher.
    pub offline: bool,
}

impl Default for StudentOptions {
    fn default() -> StudentOptions {
        StudentOptions {
            device: Device::flex(),
            batch_size: 32,
            fused_plan: true,
            cache_dir: crate::fsutil::default_cache_dir(),
            offline: false,
        }
    }
}

/// A student's scores on a labelled set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scores {
    pub evaluation: Evaluation,
    /// The texts it got most confidently wrong (text students).
    pub confidently_wrong: Vec<crate::text::student::WrongExample>,
    /// Texts longer than the teacher reads, cut to fit.
    pub truncated: usize,
    /// Rows of the data that could not be used (`location: reason`).
    pub skipped_rows: Vec<String>,
}

enum Held {
    Image { loaded: Box<LoadedStudent>, fused: Option<FusedBackbone> },
    Text { student: Box<TextStudent>, encoder: Box<TextTeacher> },
}

/// A trained student in memory (`Send + Sync`: share one behind an `Arc` between threads).
///
/// ```no_run
/// use graft::run::{Student, StudentOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let student = Student::load("my-run".as_ref(), &StudentOptions::default())?;
/// let photo = std::fs::read("photo.jpg")?;
/// for row in student.predict_encoded(&[photo.as_slice()])? {
///     for class in student.top_k(&row?, 3) {
///         println!("{:<20} {:.3}", class.label, class.probability);
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub struct Student {
    run: PathBuf,
    record: serde_json::Value,
    held: Held,
    options: StudentOptions,
}

impl Student {
    /// Loads the student saved in the run directory `run` (`graft.json` and
    /// `student.safetensors`); a text student's teacher is loaded with it.
    ///
    /// # Errors
    /// A directory that holds no run, a damaged or mismatched record or weight file, a text
    /// teacher that cannot be found or is not the one the student was trained on.
    pub fn load(run: &Path, options: &StudentOptions) -> Result<Student> {
        let path = run.join(crate::train::student::CONFIG_FILE);
        let bytes = crate::fsutil::read_limited(&path, crate::train::student::MAX_RECORD_BYTES, "a run record")?;
        let not_a_record = |error: serde_json::Error| {
            GraftError::Invalid(format!("`{}` is not a graft run record: {error}", path.display()))
        };
        let record: serde_json::Value = serde_json::from_slice(&bytes).map_err(not_a_record)?;
        let header: RunHeader = serde_json::from_value(record.clone()).map_err(not_a_record)?;
        let held = if header.modality == Modality::Text {
            let student = TextStudent::load(run)?;
            let teacher = text_teacher(&student, options)?;
            let encoder = student.encoder(&teacher, &options.device)?;
            Held::Text { student: Box::new(student), encoder: Box::new(encoder) }
        } else {
            let mut loaded = load_run(run, &options.device)?;
            loaded.student = burn::module::Module::valid(&loaded.student);
            let fused = FusedBackbone::for_device(&loaded.student.backbone, &options.device, options.fused_plan);
            Held::Image { loaded: Box::new(loaded), fused }
        };
        Ok(Student { run: run.to_owned(), record, held, options: options.clone() })
    }

    /// The run directory it was loaded from.
    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    /// The run's record (`graft.json`) as JSON: teacher, strategy, classes, metrics.
    pub fn record(&self) -> &serde_json::Value {
        &self.record
    }

    pub fn modality(&self) -> Modality {
        match self.held {
            Held::Image { .. } => Modality::Image,
            Held::Text { .. } => Modality::Text,
        }
    }

    /// What the run record says of every student: teacher, strategy, classes, metrics.
    pub fn header(&self) -> &RunHeader {
        match &self.held {
            Held::Image { loaded, .. } => &loaded.config.header,
            Held::Text { student, .. } => &student.config.header,
        }
    }

    /// Class names, in the order of every probability row.
    pub fn classes(&self) -> &[String] {
        &self.header().classes
    }

    /// The teacher's name.
    pub fn teacher(&self) -> &str {
        &self.header().teacher
    }

    /// The image student's network and record (for the audit, hardening and export), `None` for
    /// a text student.
    pub fn image(&self) -> Option<&LoadedStudent> {
        match &self.held {
            Held::Image { loaded, .. } => Some(loaded),
            Held::Text { .. } => None,
        }
    }

    /// [`Self::image`], by value.
    pub fn into_image(self) -> Option<LoadedStudent> {
        match self.held {
            Held::Image { loaded, .. } => Some(*loaded),
            Held::Text { .. } => None,
        }
    }

    /// The text student's head and record, `None` for an image student.
    pub fn text(&self) -> Option<&TextStudent> {
        match &self.held {
            Held::Text { student, .. } => Some(student),
            Held::Image { .. } => None,
        }
    }

    /// The text student's head and record with the encoder that computes its sentence features
    /// (the teacher, with the student's trained layers where it fine-tuned them); `None` for an
    /// image student.
    pub fn text_parts(&self) -> Option<(&TextStudent, &TextTeacher)> {
        match &self.held {
            Held::Text { student, encoder } => Some((student, encoder)),
            Held::Image { .. } => None,
        }
    }

    /// The `k` most probable classes of one probability row, most probable first.
    pub fn top_k(&self, probabilities: &[f32], k: usize) -> Vec<ClassScore> {
        top_k(probabilities, k, self.classes())
    }

    /// Class probabilities of decoded images (any size: resized and cropped as the teacher's
    /// preprocessing says), one row each.
    ///
    /// # Errors
    /// A text student, or a tensor that cannot be read back.
    pub fn predict_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let (loaded, fused) = self.image_parts("images")?;
        let preprocessing = &loaded.config.preprocessing;
        let mut rows = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.options.batch_size.max(1)) {
            use rayon::prelude::*;
            let prepared: Vec<Vec<f32>> = chunk.par_iter().map(|image| preprocess(image, preprocessing)).collect();
            rows.extend(self.rows(loaded, prepared, fused)?);
        }
        Ok(rows)
    }

    /// Class probabilities of encoded images (any format graft reads: JPEG, PNG, WebP, ...), one
    /// entry each: the row, or why that image could not be read. Decoding is bounded as for
    /// files (size and pixel limits).
    ///
    /// # Errors
    /// A text student, or a tensor that cannot be read back.
    pub fn predict_encoded(&self, files: &[&[u8]]) -> Result<Vec<Result<Vec<f32>>>> {
        let (loaded, fused) = self.image_parts("images")?;
        let preprocessing = &loaded.config.preprocessing;
        let side = preprocessing.resize as u32;
        let batch_size = self.options.batch_size.max(1);
        let mut out = Vec::with_capacity(files.len());
        for (index, chunk) in files.chunks(batch_size).enumerate() {
            use rayon::prelude::*;
            let decoded: Vec<Result<Vec<f32>>> = chunk
                .par_iter()
                .enumerate()
                .map(|(offset, bytes)| {
                    let name = PathBuf::from(format!("<image {}>", index * batch_size + offset));
                    Ok(preprocess(&decode_rgb_at_least(&name, bytes, side)?, preprocessing))
                })
                .collect();
            // The readable images go through the network together; each unreadable one keeps its
            // place in the answer with its reason.
            let mut images = Vec::with_capacity(decoded.len());
            let mut errors = Vec::with_capacity(decoded.len());
            for image in decoded {
                match image {
                    Ok(image) => {
                        images.push(image);
                        errors.push(None);
                    }
                    Err(error) => errors.push(Some(error)),
                }
            }
            let mut rows = if images.is_empty() { Vec::new() } else { self.rows(loaded, images, fused)? }.into_iter();
            out.extend(errors.into_iter().map(|error| match error {
                None => Ok(rows.next().unwrap_or_default()),
                Some(error) => Err(error),
            }));
        }
        Ok(out)
    }

    /// Class probabilities of images named by `sources` (files or IDX items), `None` where one
    /// could not be read (listed with the reason). With `cache_dir`, a student whose front is the
    /// frozen teacher reads and fills the feature cache there (evaluation reuses the teacher's
    /// work); without, nothing is written.
    ///
    /// # Errors
    /// A text student, or a tensor that cannot be read back.
    pub fn predict_sources(
        &self,
        sources: &[ItemSource],
        cache_dir: Option<&Path>,
        reporter: &dyn Reporter,
    ) -> Result<(Probabilities, Vec<Skipped>)> {
        let (loaded, fused) = self.image_parts("images")?;
        let batch_size = self.options.batch_size.max(1);
        if let Some(cache_dir) = cache_dir.filter(|_| loaded.config.plan().cut > 0) {
            let inference =
                InferenceOptions { batch_size, cache_dir: cache_dir.to_owned(), fused_plan: self.options.fused_plan };
            return predict_sources(loaded, sources, &inference, &self.options.device, reporter);
        }
        predict_decoded(&loaded.student, &loaded.config, sources, batch_size, fused, &self.options.device, reporter)
    }

    /// Class probabilities of texts, one row each, and how many texts were longer than the
    /// teacher reads and were cut.
    ///
    /// # Errors
    /// An image student, the tokenizer's or the encoder's failure.
    pub fn predict_texts(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, usize)> {
        let Held::Text { student, encoder } = &self.held else {
            return Err(self.wrong_input("texts"));
        };
        let features = encoder.embed(texts, self.options.batch_size, &self.options.device, &|_| {}, None)?;
        let classes = student.config.header.classes.len();
        let rows = student.probabilities(&features.features).chunks(classes).map(<[f32]>::to_vec).collect();
        Ok((rows, features.truncated))
    }

    /// Scores an image student on a labelled set whose classes are (a subset of) its own; the
    /// feature cache in `cache_dir` is reused and filled where the student's front is frozen.
    ///
    /// # Errors
    /// A text student, classes the student does not know, an empty set.
    pub fn evaluate_images(&self, data: Dataset, cache_dir: &Path, reporter: &dyn Reporter) -> Result<Evaluation> {
        let (loaded, _) = self.image_parts("images")?;
        let inference = InferenceOptions {
            batch_size: self.options.batch_size.max(1),
            cache_dir: cache_dir.to_owned(),
            fused_plan: self.options.fused_plan,
        };
        evaluate_run(loaded, data, &inference, &self.options.device, reporter)
    }

    /// Scores a text student on labelled texts: the evaluation, the most confidently wrong
    /// texts, and how many were cut. Sentence features are cached in `cache_dir`.
    ///
    /// # Errors
    /// An image student, classes the student does not know, an empty set, the encoder's failure.
    pub fn evaluate_texts(
        &self,
        data: TextDataset,
        cache_dir: &Path,
        reporter: &dyn Reporter,
    ) -> Result<(Evaluation, Vec<crate::text::student::WrongExample>, usize)> {
        let Held::Text { student, encoder } = &self.held else {
            return Err(self.wrong_input("texts"));
        };
        crate::text::student::evaluate_encoded(
            student,
            encoder,
            data,
            cache_dir,
            self.options.batch_size,
            &self.options.device,
            reporter,
        )
    }

    /// The `top` most probable classes of each input, in input order: image files (paths) for an
    /// image student, texts for a text student (see [`super::read_inputs`]). Unreadable images
    /// are listed as skipped; nothing is written to disk.
    ///
    /// # Errors
    /// The encoder's or a tensor's failure.
    pub fn predict(&self, inputs: &[String], top: usize, reporter: &dyn Reporter) -> Result<Predictions> {
        match self.modality() {
            Modality::Image => {
                let sources: Vec<ItemSource> =
                    inputs.iter().map(|path| ItemSource::File(PathBuf::from(path))).collect();
                let (probabilities, skipped) = self.predict_sources(&sources, None, reporter)?;
                let rows = inputs
                    .iter()
                    .zip(probabilities)
                    .filter_map(|(input, row)| row.map(|row| (input.clone(), self.top_k(&row, top))))
                    .collect();
                Ok(Predictions { modality: Modality::Image, rows, skipped: skipped_inputs(skipped), truncated: 0 })
            }
            Modality::Text => {
                let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let (probabilities, truncated) = self.predict_texts(&texts)?;
                let rows = inputs
                    .iter()
                    .zip(probabilities)
                    .map(|(input, row)| (input.clone(), self.top_k(&row, top)))
                    .collect();
                Ok(Predictions { modality: Modality::Text, rows, skipped: Vec::new(), truncated })
            }
        }
    }

    /// Scores the student on a labelled set of its modality whose classes are (a subset of) its
    /// own. The teacher's features are cached in `cache_dir` where the student's front is frozen.
    ///
    /// # Errors
    /// A set of the other modality, classes the student does not know, an empty set, the
    /// network's failure.
    pub fn evaluate(&self, set: LabelledSet, cache_dir: &Path, reporter: &dyn Reporter) -> Result<Scores> {
        let skipped_rows = set.skipped_rows();
        match set {
            LabelledSet::Images(data) => Ok(Scores {
                evaluation: self.evaluate_images(data, cache_dir, reporter)?,
                confidently_wrong: Vec::new(),
                truncated: 0,
                skipped_rows,
            }),
            LabelledSet::Texts(data) => {
                let (evaluation, confidently_wrong, truncated) = self.evaluate_texts(data, cache_dir, reporter)?;
                Ok(Scores { evaluation, confidently_wrong, truncated, skipped_rows })
            }
        }
    }

    fn image_parts(&self, what: &str) -> Result<(&LoadedStudent, Option<&FusedBackbone>)> {
        match &self.held {
            Held::Image { loaded, fused } => Ok((loaded, fused.as_ref())),
            Held::Text { .. } => Err(self.wrong_input(what)),
        }
    }

    fn wrong_input(&self, what: &str) -> GraftError {
        let article = match self.modality() {
            Modality::Image => "an",
            Modality::Text => "a",
        };
        GraftError::Invalid(format!(
            "`{}` holds {article} {} student: it does not take {what}",
            self.run.display(),
            self.modality()
        ))
    }

    fn rows(
        &self,
        loaded: &LoadedStudent,
        images: Vec<Vec<f32>>,
        fused: Option<&FusedBackbone>,
    ) -> Result<Vec<Vec<f32>>> {
        let classes = loaded.config.header.classes.len();
        let values = whole_student_probabilities(&loaded.student, images, &loaded.config, fused, &self.options.device)?;
        Ok(values.chunks(classes).map(<[f32]>::to_vec).collect())
    }
}

/// A text student's teacher: from the directory the run recorded, else (moved or deleted) the
/// zoo's copy in the cache; checked to be the one the student was trained on.
fn text_teacher(student: &TextStudent, options: &StudentOptions) -> Result<TextTeacher> {
    let recorded = &student.config.teacher_directory;
    let weights = recorded.join("config.json").is_file().then(|| recorded.clone());
    if weights.is_none() && crate::text::text_card(&student.config.header.teacher).is_none() {
        return Err(GraftError::Invalid(format!(
            "the teacher directory `{}` this student was trained with is gone, and `{}` is not in graft's zoo\nhint: put the model back there",
            recorded.display(),
            student.config.header.teacher
        )));
    }
    let weight_options = WeightOptions {
        weights,
        cache_dir: options.cache_dir.clone(),
        offline: options.offline,
        allow_partial: false,
        progress: false,
    };
    let (teacher, _) =
        crate::text::load_text_teacher(&student.config.header.teacher, &weight_options, &options.device)?;
    student.check_teacher(&teacher)?;
    Ok(teacher)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_student_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<super::Student>();
    }
}
