//! A text student as an ONNX graph: the BERT encoder as trained (embeddings, post-norm
//! transformer layers with exact GELU), the teacher's pooling over the text's tokens (padding
//! left out), L2 normalisation, the head and the softmax, as [`crate::text`] computes them. Batch
//! and sequence axes are dynamic; the graph reads up to the position table's length of tokens.

use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;

use super::graph::{Declared, Dim, Graph, float, int, ints};
use super::proto::{GraphProto, data_type};
use crate::error::Result;
use crate::tensor::host_values;
use crate::text::bert::{Bert, BertLayer};
use crate::text::{Pooling, TextStudent, TextTeacher};

/// The additive attention bias of a padding key, as graft's [`crate::text::bert::attention_bias`].
const PADDING_BIAS: f32 = -1e9;

/// The graph of a text student whose sentence features `encoder` computes, from `input_ids`,
/// `attention_mask` and `token_type_ids` (int64 `[batch, sequence]`) to `probabilities`.
pub(super) fn student_graph(student: &TextStudent, encoder: &TextTeacher) -> Result<GraphProto> {
    let mut graph = Graph::default();
    let bert = &encoder.bert;
    let epsilon = encoder.config.layer_norm_eps as f32;
    let mask = graph.node("Cast", &["attention_mask"], vec![int("to", i64::from(data_type::FLOAT))]);
    let mut hidden = embeddings(&mut graph, bert, epsilon)?;
    // `[batch, 1, 1, sequence]`: 0 on a token, a large negative on padding.
    let one = graph.constant("one", &[], &[1.0]);
    let missing = graph.node("Sub", &[&mask, &one], vec![]);
    let scale = graph.constant("padding_bias", &[], &[-PADDING_BIAS]);
    let bias = graph.node("Mul", &[&missing, &scale], vec![]);
    let shape = graph.constant_i64("shape", &[0, 1, 1, -1]);
    let bias = graph.node("Reshape", &[&bias, &shape], vec![]);
    for layer in &bert.encoder.layer {
        hidden = transformer_layer(&mut graph, layer, &hidden, &bias, epsilon)?;
    }
    let pooled = match encoder.pooling {
        Pooling::Cls => {
            let first = graph.constant_i64_shaped("first", &[], &[0]);
            graph.node("Gather", &[&hidden, &first], vec![int("axis", 1)])
        }
        Pooling::Mean => {
            let shape = graph.constant_i64("shape", &[0, 0, 1]);
            let weights = graph.node("Reshape", &[&mask, &shape], vec![]);
            let masked = graph.node("Mul", &[&hidden, &weights], vec![]);
            let tokens_axis = graph.constant_i64("axes", &[1]);
            let sum = graph.node("ReduceSum", &[&masked, &tokens_axis], vec![int("keepdims", 0)]);
            let count = graph.node("ReduceSum", &[&weights, &tokens_axis], vec![int("keepdims", 0)]);
            let floor = graph.constant("floor", &[], &[1e-9]);
            let count = graph.node("Max", &[&count, &floor], vec![]);
            graph.node("Div", &[&sum, &count], vec![])
        }
    };
    let squares = graph.node("Mul", &[&pooled, &pooled], vec![]);
    let feature_axis = graph.constant_i64("axes", &[1]);
    let norm = graph.node("ReduceSum", &[&squares, &feature_axis], vec![int("keepdims", 1)]);
    let norm = graph.node("Sqrt", &[&norm], vec![]);
    let floor = graph.constant("floor", &[], &[1e-12]);
    let norm = graph.node("Max", &[&norm, &floor], vec![]);
    let features = graph.node("Div", &[&pooled, &norm], vec![]);
    let classes = student.config.header.classes.len();
    let logits = graph.gemm(&features, student.config.feature_dim, &student.weight, &student.bias);
    graph.node_into("Softmax", &[&logits], vec![int("axis", 1)], "probabilities");

    let limit = encoder.tokenizer.max_length();
    let tokens = |name, doc: String| Declared {
        name,
        element: data_type::INT64,
        shape: vec![Dim::Dynamic("batch"), Dim::Dynamic("sequence")],
        doc,
    };
    let inputs = [
        tokens(
            "input_ids",
            format!(
                "token ids from the tokenizer.json beside this file (special tokens included, at most {limit} per text), each row padded with 0 to the batch's longest"
            ),
        ),
        tokens("attention_mask", "1 for a token, 0 for padding".to_owned()),
        tokens("token_type_ids", "segment ids: 0 for a single text".to_owned()),
    ];
    let output = Declared {
        name: "probabilities",
        element: data_type::FLOAT,
        shape: vec![Dim::Dynamic("batch"), Dim::Fixed(classes)],
        doc: "class probabilities (softmax), in the order of the metadata's `classes`".to_owned(),
    };
    Ok(graph.finish("graft_text_student", &inputs, &[output]))
}

/// Word, position and segment embeddings summed and layer-normalised: `[batch, sequence, hidden]`.
fn embeddings(graph: &mut Graph, bert: &Bert, epsilon: f32) -> Result<String> {
    let table = |graph: &mut Graph, hint: &str, weight: Tensor<2>| -> Result<String> {
        let dims = weight.dims();
        Ok(graph.constant(hint, &dims, &host_values::<f32>(weight.into_data())?))
    };
    let embeddings = &bert.embeddings;
    let words = table(graph, "word_embeddings", embeddings.word_embeddings.weight.val())?;
    let positions = table(graph, "position_embeddings", embeddings.position_embeddings.weight.val())?;
    let segments = table(graph, "token_type_embeddings", embeddings.token_type_embeddings.weight.val())?;
    let words = graph.node("Gather", &[&words, "input_ids"], vec![int("axis", 0)]);
    let segments = graph.node("Gather", &[&segments, "token_type_ids"], vec![int("axis", 0)]);
    // The first `sequence` rows of the position table, broadcast over the batch.
    let shape = graph.node("Shape", &["input_ids"], vec![]);
    let (from, to) = (graph.constant_i64("start", &[1]), graph.constant_i64("end", &[2]));
    let length = graph.node("Slice", &[&shape, &from, &to], vec![]);
    let zero = graph.constant_i64("start", &[0]);
    let rows_axis = graph.constant_i64("axes", &[0]);
    let positions = graph.node("Slice", &[&positions, &zero, &length, &rows_axis], vec![]);
    let sum = graph.node("Add", &[&words, &positions], vec![]);
    let sum = graph.node("Add", &[&sum, &segments], vec![]);
    layer_norm(graph, &embeddings.layer_norm, &sum, epsilon)
}

/// One post-norm transformer layer: self-attention, then the feed-forward part.
fn transformer_layer(graph: &mut Graph, layer: &BertLayer, x: &str, bias: &str, epsilon: f32) -> Result<String> {
    let attention = &layer.attention.self_attention;
    let [width, _] = attention.query.weight.val().dims();
    let heads = attention.heads;
    let head_width = width / heads;
    let split = graph.constant_i64("shape", &[0, 0, heads as i64, head_width as i64]);
    // `[batch, heads, sequence, head_width]`, keys transposed to `[batch, heads, head_width, sequence]`.
    let project = |graph: &mut Graph, linear: &Linear, perm: &[i64]| -> Result<String> {
        let projected = dense(graph, linear, x)?;
        let heads = graph.node("Reshape", &[&projected, &split], vec![]);
        Ok(graph.node("Transpose", &[&heads], vec![ints("perm", perm)]))
    };
    let query = project(graph, &attention.query, &[0, 2, 1, 3])?;
    let key = project(graph, &attention.key, &[0, 2, 3, 1])?;
    let value = project(graph, &attention.value, &[0, 2, 1, 3])?;
    let scores = graph.node("MatMul", &[&query, &key], vec![]);
    let scale = graph.constant("scale", &[], &[1.0 / (head_width as f32).sqrt()]);
    let scores = graph.node("Mul", &[&scores, &scale], vec![]);
    let scores = graph.node("Add", &[&scores, bias], vec![]);
    let weights = graph.node("Softmax", &[&scores], vec![int("axis", -1)]);
    let context = graph.node("MatMul", &[&weights, &value], vec![]);
    let context = graph.node("Transpose", &[&context], vec![ints("perm", &[0, 2, 1, 3])]);
    let merge = graph.constant_i64("shape", &[0, 0, width as i64]);
    let context = graph.node("Reshape", &[&context, &merge], vec![]);
    let output = &layer.attention.output;
    let projected = dense(graph, &output.dense, &context)?;
    let residual = graph.node("Add", &[&projected, x], vec![]);
    let attended = layer_norm(graph, &output.layer_norm, &residual, epsilon)?;

    let inner = dense(graph, &layer.intermediate.dense, &attended)?;
    let inner = gelu(graph, &inner);
    let projected = dense(graph, &layer.output.dense, &inner)?;
    let residual = graph.node("Add", &[&projected, &attended], vec![]);
    layer_norm(graph, &layer.output.layer_norm, &residual, epsilon)
}

/// `x W + b` over the last axis (burn's weight is `[inputs, outputs]`).
fn dense(graph: &mut Graph, linear: &Linear, x: &str) -> Result<String> {
    let dims = linear.weight.val().dims();
    let weight = graph.constant("weight", &dims, &host_values::<f32>(linear.weight.val().into_data())?);
    let product = graph.node("MatMul", &[x, &weight], vec![]);
    let Some(bias) = &linear.bias else { return Ok(product) };
    let bias = graph.constant("bias", &[dims[1]], &host_values::<f32>(bias.val().into_data())?);
    Ok(graph.node("Add", &[&product, &bias], vec![]))
}

/// The exact GELU: `x / 2 (1 + erf(x / sqrt 2))`.
fn gelu(graph: &mut Graph, x: &str) -> String {
    let root_two = graph.constant("sqrt2", &[], &[std::f32::consts::SQRT_2]);
    let scaled = graph.node("Div", &[x, &root_two], vec![]);
    let erf = graph.node("Erf", &[&scaled], vec![]);
    let one = graph.constant("one", &[], &[1.0]);
    let shifted = graph.node("Add", &[&erf, &one], vec![]);
    let product = graph.node("Mul", &[x, &shifted], vec![]);
    let half = graph.constant("half", &[], &[0.5]);
    graph.node("Mul", &[&product, &half], vec![])
}

fn layer_norm(graph: &mut Graph, norm: &LayerNorm, x: &str, epsilon: f32) -> Result<String> {
    let gamma = norm.gamma.val();
    let width = gamma.dims()[0];
    let scale = graph.constant("gamma", &[width], &host_values::<f32>(gamma.into_data())?);
    let shift = match &norm.beta {
        Some(beta) => host_values::<f32>(beta.val().into_data())?,
        None => vec![0.0; width],
    };
    let shift = graph.constant("beta", &[width], &shift);
    Ok(graph.node("LayerNormalization", &[x, &scale, &shift], vec![int("axis", -1), float("epsilon", epsilon)]))
}
