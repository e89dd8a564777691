//! `TextTeacher`: a BERT-family sentence encoder loaded from a model directory (Hugging Face
//! layout: `config.json`, `tokenizer.json`, `model.safetensors`; sentence-transformers' pooling
//! files when present), and its sentence features.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use super::bert::{Bert, BertConfig, BertKeys, TokenBatch};
use super::tokenize::{Encoded, TextTokenizer};
use crate::error::{GraftError, Result};
use crate::weights::{LoadReport, load_into, sha256_file};

/// Pools hidden states `[rows, length, hidden]` into sentence vectors (padding left out), then
/// L2-normalises them, as sentence-transformers' `Pooling` and `Normalize` modules do.
pub fn pool_normalised(hidden: Tensor<3>, batch: &TokenBatch, pooling: Pooling, device: &Device) -> Tensor<2> {
    let [rows, length, width] = hidden.dims();
    let pooled = match pooling {
        Pooling::Cls => hidden.slice([0..rows, 0..1, 0..width]).reshape([rows, width]),
        Pooling::Mean => {
            let mask = Tensor::<3>::from_data(TensorData::new(batch.mask.clone(), [rows, length, 1]), device);
            let counts = mask.clone().sum_dim(1).reshape([rows, 1]).clamp_min(1e-9);
            (hidden * mask.expand([rows, length, width])).sum_dim(1).reshape([rows, width])
                / counts.expand([rows, width])
        }
    };
    let norms = pooled.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    pooled / norms.expand([rows, width])
}

/// Runs `compute` on `encoded` in padded batches of texts of similar length (sorted longest
/// first, so little goes on padding), the batches in parallel (rayon: an encoder's operations on
/// a batch of short texts are too small to keep every core busy on their own), and gathers the
/// `width` values it gives per text back into the texts' order.
///
/// # Errors
/// The first batch's error.
pub(crate) fn by_length_batches(
    encoded: &[Encoded],
    batch_size: usize,
    width: usize,
    compute: impl Fn(&TokenBatch) -> Result<Vec<f32>> + Sync,
) -> Result<Vec<f32>> {
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(encoded[index].ids.len()));
    let chunks: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
    let computed: Vec<Result<Vec<f32>>> = chunks
        .par_iter()
        .map(|chunk| compute(&TokenBatch::pad(&chunk.iter().map(|&index| &encoded[index]).collect::<Vec<_>>())))
        .collect();
    let mut out = vec![0.0f32; encoded.len() * width];
    for (chunk, values) in chunks.iter().zip(computed) {
        let values = values?;
        for (row, &index) in chunk.iter().enumerate() {
            out[index * width..(index + 1) * width].copy_from_slice(&values[row * width..(row + 1) * width]);
        }
    }
    Ok(out)
}

/// How token states become one sentence vector (sentence-transformers' `1_Pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The mean over the text's tokens (padding excluded), as sentence-transformers' MiniLM
    /// models are trained; graft's default where the directory does not say.
    Mean,
    /// The first token's (`[CLS]`) state.
    Cls,
}

/// A sentence encoder with its tokenizer and pooling. Sentence features are pooled, then
/// L2-normalised.
#[derive(Debug, Clone)]
pub struct TextTeacher {
    /// The zoo name, or the directory's name for a model outside the zoo.
    pub name: String,
    pub config: BertConfig,
    pub bert: Bert,
    pub tokenizer: TextTokenizer,
    pub pooling: Pooling,
    /// SHA-256 of the weight file.
    pub weights_sha256: String,
    /// SHA-256 of `tokenizer.json` (with the weights', the key of everything cached from it).
    pub tokenizer_sha256: String,
    pub directory: PathBuf,
}

/// Sentence features of several texts, in their order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// `[texts, width]`, row-major.
    pub features: Vec<f32>,
    pub width: usize,
    /// How many texts were longer than the model's limit and were cut.
    pub truncated: usize,
}

impl Embedded {
    pub fn row(&self, index: usize) -> &[f32] {
        &self.features[index * self.width..(index + 1) * self.width]
    }
}

#[derive(serde::Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<usize>,
}

#[derive(serde::Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| GraftError::Io { path: path.to_owned(), source })?;
    serde_json::from_str(&text)
        .map_err(|error| GraftError::TextModel { path: path.to_owned(), reason: error.to_string() })
}

/// The model directory a `--weights` path names: the directory itself, or the one holding the
/// weight file it names.
pub fn model_directory(weights: &Path) -> PathBuf {
    if weights.is_file() {
        weights.parent().map_or_else(|| PathBuf::from("."), Path::to_owned)
    } else {
        weights.to_owned()
    }
}

impl TextTeacher {
    /// Loads the encoder in `directory` (or the directory of the weight file it names).
    ///
    /// # Errors
    /// A missing `config.json`, `tokenizer.json` or weight file, a configuration graft cannot
    /// run, or weights that do not fit (the load report names each key).
    pub fn from_directory(name: Option<&str>, weights: &Path, device: &Device) -> Result<(TextTeacher, LoadReport)> {
        let directory = model_directory(weights);
        let config_path = directory.join("config.json");
        if !config_path.is_file() {
            return Err(GraftError::TextModel {
                path: directory.clone(),
                reason: "it has no `config.json`\nhint: give the directory of a Hugging Face BERT model (config.json, tokenizer.json, model.safetensors)".to_owned(),
            });
        }
        let config: BertConfig = read_json(&config_path)?;
        config.check().map_err(|reason| GraftError::TextModel { path: config_path.clone(), reason })?;
        let weights_path = if weights.is_file() {
            weights.to_owned()
        } else {
            ["model.safetensors", "pytorch_model.bin"]
                .iter()
                .map(|file| directory.join(file))
                .find(|path| path.is_file())
                .ok_or_else(|| GraftError::TextModel {
                    path: directory.clone(),
                    reason: "it has neither `model.safetensors` nor `pytorch_model.bin`".to_owned(),
                })?
        };
        // sentence-transformers' limit where the directory gives one (all-MiniLM-L6-v2: 256),
        // else the position table's length.
        let sentence_config = directory.join("sentence_bert_config.json");
        let max_length = if sentence_config.is_file() {
            read_json::<SentenceConfig>(&sentence_config)?.max_seq_length.unwrap_or(config.max_position_embeddings)
        } else {
            config.max_position_embeddings
        }
        .min(config.max_position_embeddings);
        let pooling_path = directory.join("1_Pooling").join("config.json");
        let pooling = if pooling_path.is_file() {
            let modes: PoolingConfig = read_json(&pooling_path)?;
            match (
                modes.pooling_mode_mean_tokens,
                modes.pooling_mode_cls_token,
                modes.pooling_mode_max_tokens || modes.pooling_mode_mean_sqrt_len_tokens,
            ) {
                (true, false, false) => Pooling::Mean,
                (false, true, false) => Pooling::Cls,
                _ => {
                    return Err(GraftError::TextModel {
                        path: pooling_path,
                        reason: "graft pools by the mean of the tokens or by the [CLS] token, one of them".to_owned(),
                    });
                }
            }
        } else {
            Pooling::Mean
        };
        let tokenizer_path = directory.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(GraftError::TextModel {
                path: directory.clone(),
                reason: "it has no `tokenizer.json`\nhint: save the model's fast tokenizer (`tokenizer.save_pretrained(DIR)` in Python writes it)".to_owned(),
            });
        }
        let tokenizer = TextTokenizer::from_file(&tokenizer_path, max_length)?;
        let tensors = graft_weights::read(&weights_path)?;
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
        // The layers are built before the weights fill them: a config that names more layers
        // than the file holds would allocate for nothing (or abort on a lying count).
        let layers_in_file = tensors
            .keys()
            .filter_map(|key| {
                key.strip_prefix(prefix)?.strip_prefix("encoder.layer.")?.split('.').next()?.parse::<usize>().ok()
            })
            .max()
            .map_or(0, |last| last + 1);
        if config.num_hidden_layers != layers_in_file {
            return Err(GraftError::TextModel {
                path: config_path,
                reason: format!(
                    "num_hidden_layers is {} but `{}` holds {layers_in_file} layers",
                    config.num_hidden_layers,
                    weights_path.display()
                ),
            });
        }
        let (bert, report) =
            load_into(config.init(device), &tensors, &BertKeys { prefix: prefix.to_owned() }, &weights_path, false)?;
        let name = name.map(str::to_owned).unwrap_or_else(|| {
            directory.file_name().map_or_else(|| "bert".to_owned(), |n| n.to_string_lossy().into_owned())
        });
        let teacher = TextTeacher {
            name,
            config,
            bert,
            tokenizer,
            pooling,
            weights_sha256: sha256_file(&weights_path)?,
            tokenizer_sha256: sha256_file(&tokenizer_path)?,
            directory,
        };
        Ok((teacher, report))
    }

    /// The width of a sentence feature vector.
    pub fn feature_dim(&self) -> usize {
        self.config.hidden_size
    }

    /// Pools hidden states `[rows, length, hidden]` into L2-normalised sentence vectors.
    pub fn pool(&self, hidden: Tensor<3>, batch: &TokenBatch, device: &Device) -> Tensor<2> {
        pool_normalised(hidden, batch, self.pooling, device)
    }

    /// L2-normalised sentence features of one padded batch.
    pub fn features(&self, batch: &TokenBatch, device: &Device) -> Tensor<2> {
        self.pool(self.bert.forward(batch, device), batch, device)
    }

    /// Sentence features of `texts`, `batch_size` at a time; texts of similar length are batched
    /// together so little is spent on padding. `progress` hears how many more texts are done, batch
    /// by batch; `interrupt`, when requested, stops it before the next batch.
    ///
    /// # Errors
    /// The tokenizer's failure, a tensor whose values cannot be read back, or the stop request.
    pub fn embed(
        &self,
        texts: &[&str],
        batch_size: usize,
        device: &Device,
        progress: &(dyn Fn(usize) + Sync),
        interrupt: Option<&crate::interrupt::Interrupt>,
    ) -> Result<Embedded> {
        let encoded = self.tokenizer.encode(texts)?;
        self.embed_encoded(&encoded, batch_size, device, progress, interrupt)
    }

    /// [`Self::embed`] for texts already tokenized.
    ///
    /// # Errors
    /// A tensor whose values cannot be read back, or the stop request.
    pub fn embed_encoded(
        &self,
        encoded: &[Encoded],
        batch_size: usize,
        device: &Device,
        progress: &(dyn Fn(usize) + Sync),
        interrupt: Option<&crate::interrupt::Interrupt>,
    ) -> Result<Embedded> {
        let width = self.feature_dim();
        let features = by_length_batches(encoded, batch_size, width, |batch| {
            crate::interrupt::check(interrupt, "embedding")?;
            let values = crate::backend::host_values::<f32>(self.features(batch, device).into_data());
            progress(batch.rows);
            values
        })?;
        Ok(Embedded { features, width, truncated: encoded.iter().filter(|e| e.truncated).count() })
    }
}
