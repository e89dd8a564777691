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

use crate::rng::SplitMix64;
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

/// BERT's dropout while fine-tuning (Devlin et al.; Hugging Face's `hidden_dropout_prob` and
/// `attention_probs_dropout_prob`, one probability here): on the embeddings, on the attention
/// weights, and on each sublayer's output before its residual. Each text's masks come from a seed
/// of its own and cover its own tokens in a fixed order, so the noise a text gets does not depend
/// on the batch or the shard it is in, nor on the padding: a run is the same however its batches
/// are split across threads, and a resumed run draws what the uninterrupted one drew.
#[derive(Debug, Clone)]
pub struct TextDropout {
    /// The probability of dropping a value, in [0, 1).
    pub probability: f64,
    /// One seed per row of the batch.
    pub row_seeds: Vec<u64>,
    /// Real (unpadded) tokens per row.
    pub tokens: Vec<usize>,
}

/// Where in the network a mask is drawn, so that each place gets masks of its own.
#[derive(Debug, Clone, Copy)]
enum Site {
    Embeddings,
    AttentionWeights(usize),
    AttentionOutput(usize),
    FeedForwardOutput(usize),
}

impl Site {
    fn stream(self) -> u64 {
        match self {
            Site::Embeddings => 0,
            Site::AttentionWeights(layer) => 1 + 3 * layer as u64,
            Site::AttentionOutput(layer) => 2 + 3 * layer as u64,
            Site::FeedForwardOutput(layer) => 3 + 3 * layer as u64,
        }
    }
}

impl TextDropout {
    /// `[rows, length, width]` hidden states with dropout.
    fn hidden(&self, x: Tensor<3>, site: Site) -> Tensor<3> {
        let [rows, length, width] = x.dims();
        let mask = self.mask([rows, length, width], site, |tokens, draw, row| {
            for value in &mut row[..tokens * width] {
                *value = draw();
            }
        });
        let device = x.device();
        x * Tensor::<3>::from_data(mask, &device)
    }

    /// `[rows, heads, length, length]` attention weights with dropout.
    fn attention(&self, x: Tensor<4>, site: Site) -> Tensor<4> {
        let [rows, heads, length, _] = x.dims();
        let mask = self.mask([rows, heads, length, length], site, |tokens, draw, row| {
            for head in row.chunks_mut(length * length) {
                for query in head.chunks_mut(length).take(tokens) {
                    for value in &mut query[..tokens] {
                        *value = draw();
                    }
                }
            }
        });
        let device = x.device();
        x * Tensor::<4>::from_data(mask, &device)
    }

    /// A mask of `shape` (rows first), 1 wherever `fill` leaves it (padding: it never reaches a
    /// real token), `fill` drawing each kept value as `1 / (1 - p)` and each dropped one as 0.
    fn mask<const D: usize>(
        &self,
        shape: [usize; D],
        site: Site,
        fill: impl Fn(usize, &mut dyn FnMut() -> f32, &mut [f32]),
    ) -> TensorData {
        let per_row: usize = shape[1..].iter().product();
        let mut values = vec![1.0f32; shape[0] * per_row];
        // Dropped when a uniform 64-bit draw falls below p * 2^64.
        let threshold = (self.probability * 18_446_744_073_709_551_616.0) as u64;
        let kept = (1.0 / (1.0 - self.probability)) as f32;
        for (row, out) in values.chunks_mut(per_row.max(1)).enumerate() {
            let mut rng = SplitMix64::derive(self.row_seeds[row], &[site.stream()]);
            let mut draw = || if rng.next_u64() < threshold { 0.0 } else { kept };
            fill(self.tokens[row], &mut draw, out);
        }
        TensorData::new(values, shape)
    }
}

impl SelfAttention {
    fn forward(&self, hidden: Tensor<3>, bias: Tensor<4>, dropout: Option<(&TextDropout, usize)>) -> Tensor<3> {
        let [rows, length, width] = hidden.dims();
        let head_width = width / self.heads;
        let split = |x: Tensor<3>| x.reshape([rows, length, self.heads, head_width]).swap_dims(1, 2);
        let query = split(self.query.forward(hidden.clone()));
        let key = split(self.key.forward(hidden.clone()));
        let value = split(self.value.forward(hidden));
        let scores = query.matmul(key.swap_dims(2, 3)).mul_scalar(1.0 / (head_width as f64).sqrt());
        let scores = scores + bias.expand([rows, self.heads, length, length]);
        let mut weights = softmax(scores, 3);
        if let Some((dropout, layer)) = dropout {
            weights = dropout.attention(weights, Site::AttentionWeights(layer));
        }
        weights.matmul(value).swap_dims(1, 2).reshape([rows, length, width])
    }
}

impl Projection {
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>, dropout: Option<(&TextDropout, Site)>) -> Tensor<3> {
        let mut projected = self.dense.forward(x);
        if let Some((dropout, site)) = dropout {
            projected = dropout.hidden(projected, site);
        }
        self.layer_norm.forward(projected + residual)
    }
}

impl BertLayer {
    /// The layer's output; with `dropout`, as layer `index` (0-based) trains.
    pub fn forward(&self, hidden: Tensor<3>, bias: Tensor<4>, dropout: Option<(&TextDropout, usize)>) -> Tensor<3> {
        let attended = self.attention.self_attention.forward(hidden.clone(), bias, dropout);
        let site = |site: fn(usize) -> Site| dropout.map(|(dropout, layer)| (dropout, site(layer)));
        let attended = self.attention.output.forward(attended, hidden, site(Site::AttentionOutput));
        let inner = gelu(self.intermediate.dense.forward(attended.clone()));
        self.output.forward(inner, attended, site(Site::FeedForwardOutput))
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
    pub fn forward_layers(&self, hidden: Tensor<3>, bias: &Tensor<4>, range: Range<usize>) -> Tensor<3> {
        self.forward_layers_with(hidden, bias, range, None)
    }

    /// [`Bert::forward_layers`], with dropout as the layers train when it is given.
    pub fn forward_layers_with(
        &self,
        mut hidden: Tensor<3>,
        bias: &Tensor<4>,
        range: Range<usize>,
        dropout: Option<&TextDropout>,
    ) -> Tensor<3> {
        for index in range {
            hidden = self.encoder.layer[index].forward(hidden, bias.clone(), dropout.map(|dropout| (dropout, index)));
        }
        hidden
    }

    /// [`Bert::embed`] with dropout on its output, as the embeddings train.
    pub fn embed_with(&self, batch: &TokenBatch, device: &Device, dropout: Option<&TextDropout>) -> Tensor<3> {
        let embedded = self.embed(batch, device);
        match dropout {
            Some(dropout) => dropout.hidden(embedded, Site::Embeddings),
            None => embedded,
        }
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

    /// Values of a `[rows, ...]` tensor, row by row.
    fn rows<const D: usize>(tensor: Tensor<D>) -> Vec<Vec<f32>> {
        let rows = tensor.dims()[0];
        let values = tensor.into_data().try_to_vec::<f32>().unwrap();
        values.chunks(values.len() / rows).map(<[f32]>::to_vec).collect()
    }

    /// A text's dropout masks depend on its seed alone: the same in a padded batch beside a
    /// longer text as alone at its own length. About `p` of its values drop; the others are
    /// scaled by `1 / (1 - p)`, so the expected value is unchanged.
    #[test]
    fn text_dropout_masks_are_each_texts_own() {
        let device = Device::flex();
        let (width, heads, p) = (8, 2, 0.25);
        let together = TextDropout { probability: p, row_seeds: vec![11, 12], tokens: vec![3, 5] };
        let alone = TextDropout { probability: p, row_seeds: vec![11], tokens: vec![3] };
        let ones = |shape: [usize; 3]| Tensor::<3>::ones(shape, &device);
        let batch = rows(together.hidden(ones([2, 5, width]), Site::AttentionOutput(1)));
        let single = rows(alone.hidden(ones([1, 3, width]), Site::AttentionOutput(1)));
        assert_eq!(batch[0][..3 * width], single[0][..]);
        assert!(batch[0][3 * width..].iter().all(|&value| value == 1.0), "padding is left alone");
        let other_site = rows(alone.hidden(ones([1, 3, width]), Site::FeedForwardOutput(1)));
        assert_ne!(other_site, single, "every place draws masks of its own");

        let weights = |dropout: &TextDropout, length| {
            let shape = [dropout.tokens.len(), heads, length, length];
            rows(dropout.attention(Tensor::<4>::ones(shape, &device), Site::AttentionWeights(0)))
        };
        let (batch, single) = (weights(&together, 5), weights(&alone, 3));
        for head in 0..heads {
            for query in 0..3 {
                let padded = head * 25 + query * 5;
                let own = head * 9 + query * 3;
                assert_eq!(batch[0][padded..padded + 3], single[0][own..own + 3]);
            }
        }

        let many = TextDropout { probability: p, row_seeds: vec![7], tokens: vec![500] };
        let values = rows(many.hidden(ones([1, 500, 100]), Site::Embeddings)).remove(0);
        let dropped = values.iter().filter(|&&value| value == 0.0).count() as f64 / values.len() as f64;
        assert!((dropped - p).abs() < 0.01, "{dropped} dropped");
        assert!(values.iter().all(|&value| value == 0.0 || value == (1.0 / (1.0 - p)) as f32));
    }

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
