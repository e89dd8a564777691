//! Fine-tuning a text student (`mid`: the last layers of the encoder and the head; `full`:
//! every layer): the head on the pooled, normalised sentence vector, as `deep`'s probe sees it.
//!
//! `mid` runs the frozen front of the encoder once per text and keeps each text's hidden states
//! at the cut (unpadded); every epoch then starts from them. Batches are split into shards that
//! run forward and backward side by side (`train::shards`), as image students train. Each epoch
//! can end in a checkpoint (`train::checkpoint`, as image students keep theirs) that a resumed
//! run continues from, to the same student an uninterrupted run gives.

use burn::module::{Module, ParamGroup};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

use super::bert::{Bert, TextDropout, TokenBatch, attention_bias};
use super::teacher::{Pooling, TextTeacher, pool_normalised};
use super::tokenize::Encoded;
use crate::backend::host_values;
use crate::error::{GraftError, Result};
use crate::train::checkpoint::{Checkpoints, read_optimizer, read_record, write_optimizer, write_record};
use crate::train::epochs::{EpochPlan, EpochTotals, Epochs, Step, Steps, run_epochs};
use crate::train::reporter::Reporter;
use crate::train::schedule::WarmupCosine;
use crate::train::shards;

/// Epochs of text fine-tuning unless told otherwise.
pub const DEFAULT_EPOCHS: usize = 3;
/// The head's peak learning rate.
pub const DEFAULT_LEARNING_RATE: f64 = 1e-3;
/// The encoder's rate as a fraction of the head's: 5e-5, within the range BERT's authors
/// recommend for fine-tuning (2e-5 to 5e-5).
pub const DEFAULT_ENCODER_FACTOR: f64 = 0.05;
/// The encoder's dropout while fine-tuning unless told otherwise.
pub const DEFAULT_DROPOUT: f64 = 0.0;
/// The fraction of the steps the learning rate warms up over.
pub const WARMUP_FRACTION: f64 = 0.1;
/// Where each text's dropout seeds come from (see [`TextDropout`]).
const DROPOUT_STREAM: u64 = 0xD809;

/// The encoder and a linear head on its pooled sentence vector.
#[derive(Module, Debug)]
pub struct TextNet {
    pub bert: Bert,
    pub head: Linear,
}

/// What fine-tuning does.
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    /// Transformer layers `[0, cut)` (and the embeddings) stay frozen; 0 trains everything.
    pub cut: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    pub encoder_factor: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub shards: usize,
    pub seed: u64,
    /// The encoder's dropout probability while it trains (see [`TextDropout`]); 0 for none.
    pub dropout: f64,
    /// Set (by a Ctrl-C handler, say) to stop at the next batch: with
    /// [`GraftError::Interrupted`] when checkpoints are kept, else [`GraftError::Stopped`].
    pub interrupt: Option<crate::interrupt::Interrupt>,
    /// Where each epoch's checkpoint goes; `None` keeps none.
    pub checkpoints: Option<CheckpointOptions>,
}

/// A fine-tune's checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// The checkpoint folder (a run's `checkpoint/`).
    pub folder: std::path::PathBuf,
    /// Continue from the newest complete checkpoint in `folder`, if there is one.
    pub resume: bool,
    /// What a checkpoint must agree on with the run that resumes it (the data, the teacher,
    /// the recipe; not the number of epochs, so a run can be resumed to train longer).
    pub identity: serde_json::Value,
}

/// A fine-tune's checkpoint state (`state.json`); the network and the optimizer lie beside it.
#[derive(serde::Serialize, serde::Deserialize)]
struct FinetuneState {
    run: serde_json::Value,
    epochs_done: usize,
    history: Vec<TextEpoch>,
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextEpoch {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// On the held-out texts, when there are any.
    pub validation_accuracy: Option<f64>,
    pub texts_per_second: f64,
    pub seconds: f64,
}

impl TextNet {
    /// Logits of a batch entering at its token ids (`at_cut` `None`: every layer runs) or at
    /// its hidden states at the cut (the layers behind it run), with dropout where given.
    fn logits(
        &self,
        batch: &TokenBatch,
        at_cut: Option<Tensor<3>>,
        cut: usize,
        pooling: Pooling,
        dropout: Option<&TextDropout>,
        device: &Device,
    ) -> Tensor<2> {
        let bias = attention_bias(batch, device);
        let (hidden, from) = match at_cut {
            None => (self.bert.embed_with(batch, device, dropout), 0),
            Some(hidden) => (hidden, cut),
        };
        let hidden = self.bert.forward_layers_with(hidden, &bias, from..self.bert.layer_count(), dropout);
        self.head.forward(pool_normalised(hidden, batch, pooling, device))
    }
}

/// The frozen front's hidden states at `cut` for every text, unpadded (`[tokens * width]`
/// each), computed in parallel batches.
fn hidden_at_cut(
    teacher: &TextTeacher,
    encoded: &[Encoded],
    cut: usize,
    batch_size: usize,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Vec<Vec<f32>>> {
    let width = teacher.feature_dim();
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(encoded[index].ids.len()));
    reporter.start(&format!("encoding texts up to layer {cut}"), encoded.len());
    let chunks: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
    let computed: Vec<Result<Vec<f32>>> = chunks
        .par_iter()
        .map(|chunk| {
            let batch = TokenBatch::pad(&chunk.iter().map(|&index| &encoded[index]).collect::<Vec<_>>());
            let bias = attention_bias(&batch, device);
            let hidden = teacher.bert.forward_layers(teacher.bert.embed(&batch, device), &bias, 0..cut);
            let values = host_values::<f32>(hidden.into_data());
            reporter.advance(chunk.len(), "");
            values
        })
        .collect();
    reporter.finish();
    let mut out = vec![Vec::new(); encoded.len()];
    for (chunk, values) in chunks.iter().zip(computed) {
        let values = values?;
        let length = values.len() / (chunk.len() * width).max(1);
        for (row, &index) in chunk.iter().enumerate() {
            let tokens = encoded[index].ids.len();
            out[index] = values[row * length * width..(row * length + tokens) * width].to_vec();
        }
    }
    Ok(out)
}

/// A batch's hidden states at the cut, padded with zeros to its longest text.
fn hidden_batch(rows: &[&Vec<f32>], batch: &TokenBatch, width: usize, device: &Device) -> Tensor<3> {
    let mut values = vec![0.0f32; batch.rows * batch.length * width];
    for (row, hidden) in rows.iter().enumerate() {
        let start = row * batch.length * width;
        values[start..start + hidden.len()].copy_from_slice(hidden);
    }
    Tensor::<3>::from_data(TensorData::new(values, [batch.rows, batch.length, width]), device)
}

/// What fine-tuning gives: the trained network (inference form), each epoch's figures, and the
/// last epoch's class probabilities of the validation texts (empty without them).
pub struct Finetuned {
    pub net: TextNet,
    pub history: Vec<TextEpoch>,
    pub validation_probabilities: Vec<f32>,
}

/// Fine-tunes `teacher`'s encoder with a new head on `train` (texts tokenized, labels), scoring
/// each epoch on `validation` when given; the last epoch is kept.
///
/// # Errors
/// A cut past the encoder's layers, a diverging loss, or a tensor that cannot be read back.
pub fn finetune(
    teacher: &TextTeacher,
    train: (&[Encoded], &[usize]),
    validation: Option<(&[Encoded], &[usize])>,
    classes: usize,
    options: &FinetuneOptions,
    device: &Device,
    reporter: &dyn Reporter,
) -> Result<Finetuned> {
    let layers = teacher.bert.layer_count();
    if options.cut > layers {
        return Err(GraftError::BlockRange { start: options.cut, end: layers, count: layers });
    }
    let (encoded, labels) = train;
    let width = teacher.feature_dim();
    // A checkpoint of another run is refused before any work.
    let checkpoints = match &options.checkpoints {
        Some(spec) => Some((Checkpoints::open(spec.folder.clone(), spec.resume)?, spec)),
        None => None,
    };
    let resumed: Option<FinetuneState> = match &checkpoints {
        Some((checkpoints, spec)) => {
            let saved: Option<FinetuneState> = checkpoints.state()?;
            if let Some(saved) = &saved {
                let differences = crate::train::checkpoint::differences(&saved.run, &spec.identity);
                if !differences.is_empty() {
                    return Err(GraftError::CheckpointMismatch { path: spec.folder.clone(), differences });
                }
            }
            saved
        }
        None => None,
    };
    let cached = if options.cut > 0 {
        Some(hidden_at_cut(teacher, encoded, options.cut, options.batch_size, device, reporter)?)
    } else {
        None
    };

    let training = device.clone().autodiff();
    training.seed(options.seed);
    let head: Linear = LinearConfig::new(width, classes).init(&training);
    let mut model = TextNet { bert: teacher.bert.clone().fork(&training).train(), head };
    let mut optimizer = crate::train::trainer::adamw(options.weight_decay).init();
    if let (Some((checkpoints, _)), Some(saved)) = (&checkpoints, &resumed)
        && let Some(current) = checkpoints.current()
    {
        let path = current.join("student.bpk");
        model = model.try_load_record(read_record(&path)?).map_err(|error| GraftError::Checkpoint {
            path,
            reason: format!("it does not fit this run's student ({error:?})"),
        })?;
        optimizer = read_optimizer(&current.join("optimizer.bpk"), optimizer)?;
        reporter.note(&format!("resuming after epoch {}", saved.epochs_done));
    }
    // Frozen and grouped by the parameters' ids, which a loaded checkpoint sets: only now.
    let mut frozen = burn::module::list_param_ids(&model.bert.embeddings);
    for layer in &model.bert.encoder.layer[..options.cut] {
        frozen.extend(burn::module::list_param_ids(layer));
    }
    let model = TextNet { bert: model.bert.freeze_group(ParamGroup::from_ids(frozen)), head: model.head };
    let head_group = ParamGroup::ids_from_module(model.head.clone());
    let (epochs_done, history) = resumed.map_or((0, Vec::new()), |saved| (saved.epochs_done, saved.history));
    let steps_per_epoch = encoded.len().div_ceil(options.batch_size.max(1));
    let total_steps = steps_per_epoch * options.epochs;
    let warmup_steps = ((total_steps as f64 * WARMUP_FRACTION).round() as usize).max(1);
    // Saturating: `epochs_done` comes from a checkpoint file, which may be damaged or forged.
    let step = steps_per_epoch.saturating_mul(epochs_done).min(total_steps);
    let schedule = |peak: f64| WarmupCosine { peak, warmup_steps, total_steps, step };
    let mut steps = FinetuneSteps {
        train: (encoded, labels),
        cached,
        width,
        cut: options.cut,
        pooling: teacher.pooling,
        options,
        loss_function: CrossEntropyLossConfig::new().init(&training),
        optimizer,
        scheduler: ModuleLrScheduler::new(schedule(options.learning_rate * options.encoder_factor))
            .with_group(head_group, schedule(options.learning_rate)),
        training,
        validation,
        classes,
        device,
        reporter,
        history,
        validation_probabilities: Vec::new(),
        epoch: epochs_done,
        checkpoints: checkpoints.map(|(checkpoints, spec)| (checkpoints, &spec.identity)),
    };
    let plan = EpochPlan {
        first_epoch: epochs_done,
        epochs: options.epochs,
        batch_size: options.batch_size,
        items: encoded.len(),
        seed: options.seed,
        order_stream: 0x7E47,
        interrupt: options.interrupt.as_ref(),
        stage: "fine-tuning",
    };
    let net = run_epochs(&mut steps, model, &plan, reporter)?.valid();
    let FinetuneSteps { history, mut validation_probabilities, .. } = steps;
    if validation_probabilities.is_empty()
        && let Some((texts, _)) = validation
    {
        // No epoch ran in this call (`--epochs 0`, or a resumed run already done): the student
        // is still scored.
        validation_probabilities = probabilities(&net, texts, teacher.pooling, classes, options.batch_size, device)?;
    }
    Ok(Finetuned { net, history, validation_probabilities })
}

/// A text fine-tune as the training loop sees it: batches of tokenized texts (entering at the
/// cut's cached hidden states for `mid`), sharded, with the encoder's and the head's rates.
struct FinetuneSteps<'a> {
    train: (&'a [Encoded], &'a [usize]),
    /// Each text's hidden states at the cut, when part of the encoder is frozen.
    cached: Option<Vec<Vec<f32>>>,
    width: usize,
    cut: usize,
    pooling: Pooling,
    options: &'a FinetuneOptions,
    loss_function: burn::nn::loss::CrossEntropyLoss,
    optimizer: burn::optim::ModuleOptimizer,
    scheduler: ModuleLrScheduler,
    training: Device,
    validation: Option<(&'a [Encoded], &'a [usize])>,
    classes: usize,
    device: &'a Device,
    reporter: &'a dyn Reporter,
    history: Vec<TextEpoch>,
    validation_probabilities: Vec<f32>,
    /// The epoch in progress, from 0.
    epoch: usize,
    /// The checkpoint folder and the run's identity, when checkpoints are kept.
    checkpoints: Option<(Checkpoints, &'a serde_json::Value)>,
}

impl Steps for FinetuneSteps<'_> {
    type Model = TextNet;
    /// Texts classified correctly.
    type Figures = usize;

    fn step(&mut self, model: &TextNet, batch: &[usize]) -> Result<Step<usize>> {
        let (encoded, labels) = self.train;
        let parts = shards::split(batch, self.options.shards.max(1));
        let shares: Vec<f64> = parts.iter().map(|part| part.len() as f64 / batch.len() as f64).collect();
        let (cached, width, cut, pooling, training) =
            (self.cached.as_ref(), self.width, self.cut, self.pooling, &self.training);
        let (seed, epoch, probability) = (self.options.seed, self.epoch as u64, self.options.dropout);
        let loss_function = &self.loss_function;
        let pass = |replica: &TextNet,
                    part: Vec<usize>|
         -> Result<(f64, Tensor<2>, burn::optim::GradientsParams, usize)> {
            let tokens = TokenBatch::pad(&part.iter().map(|&index| &encoded[index]).collect::<Vec<_>>());
            let entry = cached.map(|cached| {
                hidden_batch(&part.iter().map(|&index| &cached[index]).collect::<Vec<_>>(), &tokens, width, training)
            });
            // Each text's seed from its index and the epoch: it is drawn once per epoch.
            let dropout = (probability > 0.0).then(|| TextDropout {
                probability,
                row_seeds: part
                    .iter()
                    .map(|&index| {
                        crate::rng::SplitMix64::derive(seed, &[DROPOUT_STREAM, epoch, index as u64]).next_u64()
                    })
                    .collect(),
                tokens: part.iter().map(|&index| encoded[index].ids.len()).collect(),
            });
            let logits = replica.logits(&tokens, entry, cut, pooling, dropout.as_ref(), training);
            let targets: Vec<i64> = part.iter().map(|&index| labels[index] as i64).collect();
            let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [part.len()]), training);
            let loss = loss_function.forward(logits.clone(), targets);
            let loss_value = f64::from(loss.clone().into_scalar::<f32>());
            let predicted = host_values::<f32>(logits.clone().valid().argmax(1).float().into_data())?;
            let right =
                predicted.iter().zip(&part).filter(|(class, index)| **class as usize == labels[**index]).count();
            let gradients = burn::optim::GradientsParams::from_grads(loss.backward(), replica);
            Ok((loss_value, logits.valid(), gradients, right))
        };
        let (result, rights) = shards::parallel(model, parts, &shares, training, pass)?;
        Ok(Step { loss: result.loss, gradients: result.gradients, figures: rights.iter().sum() })
    }

    fn apply(&mut self, model: TextNet, gradients: burn::optim::GradientsParams) -> TextNet {
        self.optimizer.step(self.scheduler.step(), model, gradients)
    }

    fn stopped(&self) -> GraftError {
        match &self.checkpoints {
            Some((checkpoints, _)) => checkpoints.interrupted(self.epoch),
            None => GraftError::Stopped { what: "fine-tuning".to_owned() },
        }
    }

    fn diverged(&self, loss: f64) -> GraftError {
        GraftError::Diverged {
            what: "training loss",
            value: loss,
            epoch: self.epoch + 1,
            learning_rate: self.options.learning_rate,
            kept_epoch: self
                .checkpoints
                .as_ref()
                .and_then(|(checkpoints, _)| checkpoints.current())
                .map(|_| self.epoch),
        }
    }
}

impl Epochs for FinetuneSteps<'_> {
    fn end_epoch(&mut self, model: &TextNet, epoch: usize, totals: EpochTotals<usize>, seconds: f64) -> Result<()> {
        let texts = self.train.0.len();
        let validation_accuracy = match self.validation {
            Some((texts, labels)) => {
                self.validation_probabilities = probabilities(
                    &model.valid(),
                    texts,
                    self.pooling,
                    self.classes,
                    self.options.batch_size,
                    self.device,
                )?;
                Some(accuracy(&self.validation_probabilities, labels, self.classes))
            }
            None => None,
        };
        let record = TextEpoch {
            epoch: epoch + 1,
            train_loss: totals.mean_loss(),
            train_accuracy: totals.figures.iter().sum::<usize>() as f64 / texts.max(1) as f64,
            validation_accuracy,
            texts_per_second: texts as f64 / seconds.max(1e-9),
            seconds,
        };
        self.reporter.note(&format!(
            "epoch {}/{}: training loss {:.4}, accuracy {:.1}%{}, {:.1} texts/s",
            record.epoch,
            self.options.epochs,
            record.train_loss,
            record.train_accuracy * 100.0,
            record
                .validation_accuracy
                .map_or_else(String::new, |accuracy| format!(", validation accuracy {:.1}%", accuracy * 100.0)),
            record.texts_per_second
        ));
        self.history.push(record);
        self.epoch = epoch + 1;
        if let Some((checkpoints, identity)) = &mut self.checkpoints {
            let state =
                FinetuneState { run: (*identity).clone(), epochs_done: self.epoch, history: self.history.clone() };
            let optimizer = &self.optimizer;
            checkpoints.save(self.epoch, &state, |folder, _| {
                write_record(&folder.join("student.bpk"), model.clone().into_record())?;
                write_optimizer(&folder.join("optimizer.bpk"), optimizer)
            })?;
        }
        Ok(())
    }
}

/// Class probabilities of tokenized texts through a trained network, one row of `classes` each,
/// in parallel batches.
///
/// # Errors
/// A tensor that cannot be read back.
pub fn probabilities(
    net: &TextNet,
    encoded: &[Encoded],
    pooling: Pooling,
    classes: usize,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    super::teacher::by_length_batches(encoded, batch_size, classes, |batch| {
        host_values::<f32>(
            burn::tensor::activation::softmax(net.logits(batch, None, 0, pooling, None, device), 1).into_data(),
        )
    })
}

fn accuracy(probabilities: &[f32], labels: &[usize], classes: usize) -> f64 {
    let right = probabilities
        .chunks(classes)
        .zip(labels)
        .filter(|(row, label)| crate::train::probe::argmax(row) == **label)
        .count();
    right as f64 / labels.len().max(1) as f64
}
