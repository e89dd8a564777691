//! BERT (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
//! Understanding"): the encoder behind BERT-base and the sentence-transformers MiniLM models.
//!
//! Fields carry the Hugging Face checkpoint's names (`embeddings.word_embeddings`,
//! `encoder.layer.3.attention.self.query`); [`BertKeys`] maps the few burn spellings that differ
//! (`layer_norm` -> `LayerNorm`, `self_attention` -> `self`, layer norm `gamma`/`beta` ->
//! `weight`/`bias`). Post-norm layers, exact (erf) GELU, absolute position embeddings.

use std::ops::Range;

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::weights::KeyMap;

/// The shape of a BERT encoder, as its `config.json` gives it (Hugging Face's names).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".to_owned()
}
fn default_position_embedding_type() -> String {
    "absolute".to_owned()
}

impl BertConfig {
    /// all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads.
    pub fn minilm_l6() -> Self {
        BertConfig {
            num_hidden_layers: 6,
            hidden_size: 384,
            num_attention_heads: 12,
            intermediate_size: 1536,
            ..Self::base()
        }
    }

    /// BERT-base: 12 layers, hidden 768, 12 heads, WordPiece vocabulary of 30,522.
    pub fn base() -> Self {
        BertConfig {
            vocab_size: 30_522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".to_owned(),
            position_embedding_type: "absolute".to_owned(),
        }
    }

    /// What graft can run: what the checkpoint's config asks for beyond that is refused, not
    /// silently run differently.
    ///
    /// # Errors
    /// A reason, for the caller to name the file with.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!("hidden_act `{}` (graft runs `gelu`)", self.hidden_act));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!("position_embedding_type `{}` (graft runs `absolute`)", self.position_embedding_type));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> Bert {
        let layer_norm = || LayerNormConfig::new(self.hidden_size).with_epsilon(self.layer_norm_eps).init(device);
        let linear = |input, output| LinearConfig::new(input, output).init(device);
        let embedding = |count| EmbeddingConfig::new(count, self.hidden_size).init(device);
        let layers = (0..self.num_hidden_layers)
            .map(|_| BertLayer {
                attention: BertAttention {
                    self_attention: SelfAttention {
                        query: linear(self.hidden_size, self.hidden_size),
                        key: linear(self.hidden_size, self.hidden_size),
                        value: linear(self.hidden_size, self.hidden_size),
                        heads: self.num_attention_heads,
                    },
                    output: Projection { dense: linear(self.hidden_size, self.hidden_size), layer_norm: layer_norm() },
                },
                intermediate: Intermediate { dense: linear(self.hidden_size, self.intermediate_size) },
                output: Projection {
                    dense: linear(self.intermediate_size, self.hidden_size),
                    layer_norm: layer_norm(),
                },
            })
            .collect();
        Bert {
            embeddings: Embeddings {
                word_embeddings: embedding(self.vocab_size),
                position_embeddings: embedding(self.max_position_embeddings),
                token_type_embeddings: embedding(self.type_vocab_size),
                layer_norm: layer_norm(),
            },
            encoder: Encoder { layer: layers },
        }
    }
}

#[derive(Module, Debug)]
pub struct Embeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub heads: usize,
}

/// A dense layer, then the residual added and layer-normalised (BERT's `*Output` modules).
#[derive(Module, Debug)]
pub struct Projection {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct BertAttention {
    pub self_attention: SelfAttention,
    pub output: Projection,
}

#[derive(Module, Debug)]
pub struct Intermediate {
    pub dense: Linear,
}

/// One transformer layer: self-attention, then the feed-forward part, each post-normalised.
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: Intermediate,
    pub output: Projection,
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub layer: Vec<BertLayer>,
}

/// The encoder without BERT's pre-training heads (and without its pooler: sentence features are
/// pooled over tokens, [`super::pool`]).
#[derive(Module, Debug)]
pub struct Bert {
    pub embeddings: Embeddings,
    pub encoder: Encoder,
}

/// A batch of token sequences padded to one length, as the encoder takes them.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// `[rows * length]` token ids, row-major.
    pub ids: Vec<i64>,
    /// `[rows * length]` segment ids (all 0 for single sentences).
    pub type_ids: Vec<i64>,
    /// `[rows * length]`: 1 for a real token, 0 for padding.
    pub mask: Vec<f32>,
    pub rows: usize,
    pub length: usize,
}

/// The additive attention mask of a batch, `[rows, 1, 1, length]`: 0 where a key is a token,
/// a large negative where it is padding (its weight after the softmax is then exactly 0).
pub fn attention_bias(batch: &TokenBatch, device: &Device) -> Tensor<4> {
    let bias: Vec<f32> = batch.mask.iter().map(|&m| if m > 0.0 { 0.0 } else { -1e9 }).collect();
    Tensor::<4>::from_data(TensorData::new(bias, [batch.rows, 1, 1, batch.length]), device)
}

impl SelfAttention {
    fn forward(&self, hidden: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let [rows, length, width] = hidden.dims();
        let head_width = width / self.heads;
        let split = |x: Tensor<3>| x.reshape([rows, length, self.heads, head_width]).swap_dims(1, 2);
        let query = split(self.query.forward(hidden.clone()));
        let key = split(self.key.forward(hidden.clone()));
        let value = split(self.value.forward(hidden));
        let scores = query.matmul(key.swap_dims(2, 3)).mul_scalar(1.0 / (head_width as f64).sqrt());
        let scores = scores + bias.expand([rows, self.heads, length, length]);
        let weights = softmax(scores, 3);
        weights.matmul(value).swap_dims(1, 2).reshape([rows, length, width])
    }
}

impl Projection {
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm.forward(self.dense.forward(x) + residual)
    }
}

impl BertLayer {
    pub fn forward(&self, hidden: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let attended = self.attention.self_attention.forward(hidden.clone(), bias);
        let attended = self.attention.output.forward(attended, hidden);
        let inner = gelu(self.intermediate.dense.forward(attended.clone()));
        self.output.forward(inner, attended)
    }
}

impl Bert {
    /// The number of transformer layers.
    pub fn layer_count(&self) -> usize {
        self.encoder.layer.len()
    }

    /// The embedding layer's output `[rows, length, hidden]`: word, position and segment
    /// embeddings summed and layer-normalised.
    pub fn embed(&self, batch: &TokenBatch, device: &Device) -> Tensor<3> {
        let ids = Tensor::<2, Int>::from_data(TensorData::new(batch.ids.clone(), [batch.rows, batch.length]), device);
        let type_ids =
            Tensor::<2, Int>::from_data(TensorData::new(batch.type_ids.clone(), [batch.rows, batch.length]), device);
        let positions: Vec<i64> = (0..batch.rows).flat_map(|_| 0..batch.length as i64).collect();
        let positions = Tensor::<2, Int>::from_data(TensorData::new(positions, [batch.rows, batch.length]), device);
        let embeddings = &self.embeddings;
        let sum = embeddings.word_embeddings.forward(ids)
            + embeddings.position_embeddings.forward(positions)
            + embeddings.token_type_embeddings.forward(type_ids);
        embeddings.layer_norm.forward(sum)
    }

    /// Runs transformer layers `range` (0-based, end excluded) on hidden states.
    pub fn forward_layers(&self, mut hidden: Tensor<3>, bias: &Tensor<4>, range: Range<usize>) -> Tensor<3> {
        for layer in &self.encoder.layer[range] {
            hidden = layer.forward(hidden, bias.clone());
        }
        hidden
    }

    /// The last layer's hidden states `[rows, length, hidden]`.
    pub fn forward(&self, batch: &TokenBatch, device: &Device) -> Tensor<3> {
        let bias = attention_bias(batch, device);
        let hidden = self.embed(batch, device);
        self.forward_layers(hidden, &bias, 0..self.layer_count())
    }
}

/// Hugging Face's BERT names from burn's paths. `prefix` is what the file puts in front of every
/// key (`bert.` in checkpoints saved with a task head, nothing in bare encoders).
pub struct BertKeys {
    pub prefix: String,
}

impl KeyMap for BertKeys {
    fn checkpoint_key(&self, path: &str) -> String {
        let key = path.replace("self_attention", "self");
        let key = match key.strip_suffix("layer_norm.gamma") {
            Some(stem) => format!("{stem}LayerNorm.weight"),
            None => match key.strip_suffix("layer_norm.beta") {
                Some(stem) => format!("{stem}LayerNorm.bias"),
                None => key.replace("layer_norm", "LayerNorm"),
            },
        };
        format!("{}{key}", self.prefix)
    }

    /// Position ids (a constant buffer), the pooler and the pre-training or task heads carry
    /// nothing the encoder uses.
    fn is_ignored(&self, key: &str) -> bool {
        let key = key.strip_prefix(&self.prefix).unwrap_or(key);
        key.ends_with("position_ids")
            || key.starts_with("pooler.")
            || key.starts_with("cls.")
            || key.starts_with("classifier.")
            || key.starts_with("qa_outputs.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hugging_faces() {
        let keys = BertKeys { prefix: String::new() };
        assert_eq!(
            keys.checkpoint_key("encoder.layer.3.attention.self_attention.query.weight"),
            "encoder.layer.3.attention.self.query.weight"
        );
        assert_eq!(
            keys.checkpoint_key("encoder.layer.0.output.layer_norm.gamma"),
            "encoder.layer.0.output.LayerNorm.weight"
        );
        assert_eq!(keys.checkpoint_key("embeddings.layer_norm.beta"), "embeddings.LayerNorm.bias");
        let prefixed = BertKeys { prefix: "bert.".to_owned() };
        assert_eq!(
            prefixed.checkpoint_key("embeddings.word_embeddings.weight"),
            "bert.embeddings.word_embeddings.weight"
        );
        assert!(prefixed.is_ignored("bert.pooler.dense.weight") && prefixed.is_ignored("cls.predictions.bias"));
        assert!(!prefixed.is_ignored("bert.encoder.layer.0.output.dense.weight"));
    }

    #[test]
    fn configs_outside_what_graft_runs_are_refused() {
        assert!(BertConfig::minilm_l6().check().is_ok());
        let relative = BertConfig { position_embedding_type: "relative_key".to_owned(), ..BertConfig::base() };
        assert!(relative.check().unwrap_err().contains("relative_key"));
        let odd = BertConfig { hidden_size: 100, ..BertConfig::base() };
        assert!(odd.check().is_err());
    }
}
