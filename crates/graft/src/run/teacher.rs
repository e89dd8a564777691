//! Any teacher graft knows, image or text, loaded by name: the one place that decides which
//! modality a teacher's name (or weight directory) belongs to.

use std::path::PathBuf;

use burn::tensor::Device;

use crate::error::{GraftError, Result};
use crate::interrupt::Interrupt;
use crate::models::{Teacher, WeightOptions, load_teacher, zoo::imagenet_labels};
use crate::text::TextTeacher;

use super::modality::{DataOptions, Embeddings, LabelledData, Modality, Predictions, skipped_inputs};

/// An image teacher (an ImageNet CNN) or a text teacher (a BERT-family sentence encoder).
pub enum AnyTeacher {
    Image(Box<Teacher>),
    Text(Box<TextTeacher>),
}

/// How a teacher runs on inputs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub device: Device,
    /// Inputs per forward pass.
    pub batch_size: usize,
    /// An image teacher's blocks through graft's fused CPU plan on `flex`.
    pub fused_plan: bool,
    /// Stops between batches when requested.
    pub interrupt: Option<Interrupt>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions { device: Device::flex(), batch_size: 16, fused_plan: true, interrupt: None }
    }
}

impl AnyTeacher {
    /// Loads the teacher `name` (a zoo name; with `options.weights`, a weight file for an image
    /// teacher or a model directory for a text one), and a line that says what was loaded.
    /// A name in the text zoo, or weights that are a directory with a tokenizer, make a text
    /// teacher; anything else an image teacher.
    ///
    /// # Errors
    /// As [`load_teacher`] and [`crate::text::load_text_teacher`].
    pub fn load(name: &str, options: &WeightOptions, device: &Device) -> Result<(AnyTeacher, String)> {
        if crate::text::is_text_teacher(name, options.weights.as_deref()) {
            let (teacher, report) = crate::text::load_text_teacher(name, options, device)?;
            let line = format!(
                "teacher {}: {report} (weights sha256 {}, {} tokens at most, {:?} pooling)",
                teacher.name,
                crate::fsutil::short_digest(&teacher.weights_sha256),
                teacher.tokenizer.max_length(),
                teacher.pooling
            );
            return Ok((AnyTeacher::Text(Box::new(teacher)), line));
        }
        let (teacher, report) = load_teacher(name, options, device)?;
        let line = format!(
            "teacher {}: {report} (weights sha256 {})",
            teacher.card.name,
            crate::fsutil::short_digest(&teacher.weights_sha256)
        );
        Ok((AnyTeacher::Image(Box::new(teacher)), line))
    }

    pub fn modality(&self) -> Modality {
        match self {
            AnyTeacher::Image(_) => Modality::Image,
            AnyTeacher::Text(_) => Modality::Text,
        }
    }

    /// The teacher's name (the zoo's, or the directory's for a text model given by path).
    pub fn name(&self) -> &str {
        match self {
            AnyTeacher::Image(teacher) => teacher.card.name,
            AnyTeacher::Text(teacher) => &teacher.name,
        }
    }

    /// Opens labelled data the way this teacher reads it.
    ///
    /// # Errors
    /// As [`LabelledData::open`].
    pub fn open_data(&self, path: &std::path::Path, options: &DataOptions) -> Result<LabelledData> {
        LabelledData::open(path, self.modality(), options)
    }

    /// The teacher's pooled features of each input (image paths, or texts; see
    /// [`super::read_inputs`]): for a text teacher the sentence embedding, for an image teacher
    /// the pooled output of its last block.
    ///
    /// # Errors
    /// A stop request, a tensor that cannot be read back.
    pub fn embed(&self, inputs: &[String], options: &RunOptions) -> Result<Embeddings> {
        let interrupt = options.interrupt.as_ref();
        match self {
            AnyTeacher::Image(teacher) => {
                let paths: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
                let (features, skipped) = crate::predict::embed_images(
                    teacher,
                    &paths,
                    options.batch_size,
                    &options.device,
                    options.fused_plan,
                    interrupt,
                )?;
                Ok(Embeddings {
                    modality: Modality::Image,
                    rows: features.into_iter().map(|(path, row)| (path.display().to_string(), row)).collect(),
                    skipped: skipped_inputs(skipped),
                    truncated: 0,
                })
            }
            AnyTeacher::Text(teacher) => {
                let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let embedded = teacher.embed(&texts, options.batch_size, &options.device, &|_| {}, interrupt)?;
                let rows = inputs.iter().enumerate().map(|(index, text)| (text.clone(), embedded.row(index).to_vec()));
                Ok(Embeddings {
                    modality: Modality::Text,
                    rows: rows.collect(),
                    skipped: Vec::new(),
                    truncated: embedded.truncated,
                })
            }
        }
    }

    /// The `top` most probable ImageNet classes of each image: the teacher's own classifier.
    ///
    /// # Errors
    /// A text teacher (an encoder has no classes of its own).
    pub fn predict(&self, inputs: &[String], top: usize, options: &RunOptions) -> Result<Predictions> {
        let AnyTeacher::Image(teacher) = self else {
            return Err(GraftError::Invalid(format!(
                "`{}` is a text encoder: it has no classes of its own to predict\nhint: train a student on your labelled texts (`graft train`) and predict with `--student RUN`",
                self.name()
            )));
        };
        let paths: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
        let (predictions, skipped) = crate::predict::predict_images(
            teacher,
            &paths,
            top,
            imagenet_labels(),
            options.batch_size,
            &options.device,
            options.fused_plan,
        )?;
        Ok(Predictions {
            modality: Modality::Image,
            rows: predictions.into_iter().map(|p| (p.path.display().to_string(), p.top)).collect(),
            skipped: skipped_inputs(skipped),
            truncated: 0,
        })
    }
}
