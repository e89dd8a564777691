//! An image student as an ONNX graph: the teacher's blocks as trained (each batch norm folded
//! into the convolution before it, with its stored statistics), the pooling, the head and the
//! softmax, read from the network's one description ([`crate::net`]). Shapes are followed
//! through the layers at the student's input size, since `same` padding and adaptive pooling
//! depend on it; the batch axis stays dynamic.

use super::graph::{Declared, Dim, Graph, int, ints};
use super::proto::data_type;
use crate::backend::fused::folded;
use crate::backend::ops::padding_sides;
use crate::error::{GraftError, Result};
use crate::models::zoo::Preprocessing;
use crate::net::{Activation, Layer, Pooling};
use crate::train::head::Head;
use crate::train::student::Student;

/// A 4-D activation in the graph: its name and `[channels, height, width]`.
#[derive(Clone)]
struct Value {
    name: String,
    shape: [usize; 3],
}

/// What the exported graph takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageInput {
    /// `input`: float32 `[batch, 3, size, size]`, preprocessed as graft does.
    Preprocessed,
    /// `rgb`: uint8 `[batch, size, size, 3]`, RGB pixels already resized and cropped to the
    /// teacher's size; the graph scales and normalises them.
    Rgb,
}

/// The graph of `student` for `preprocessing`'s input size, from its one input to
/// `probabilities` (`[batch, classes]`).
pub(super) fn student_graph(
    student: &Student,
    preprocessing: &Preprocessing,
    input: ImageInput,
    classes: usize,
) -> Result<super::proto::GraphProto> {
    let mut graph = Graph::default();
    let size = preprocessing.input_size;
    let (input_name, entry) = match input {
        ImageInput::Preprocessed => ("input", "input".to_owned()),
        ImageInput::Rgb => ("rgb", normalise_rgb(&mut graph, preprocessing)),
    };
    let mut x = Value { name: entry, shape: [3, size, size] };
    for block in student.backbone.blocks() {
        x = layers(&mut graph, &block.layers, x)
            .map_err(|reason| GraftError::Invalid(format!("cannot export block `{}` to ONNX: {reason}", block.name)))?;
    }
    let top = student.backbone.top();
    let features = match top.pooling {
        Pooling::GlobalAverage => {
            let pooled = graph.node("GlobalAveragePool", &[&x.name], vec![]);
            graph.node("Flatten", &[&pooled], vec![int("axis", 1)])
        }
        Pooling::Flatten => graph.node("Flatten", &[&x.name], vec![int("axis", 1)]),
    };
    let logits = match &student.head {
        Head::Linear(linear) => gemm(&mut graph, linear, &features)?,
        Head::Mlp(mlp) => {
            let hidden = gemm(&mut graph, &mlp.hidden, &features)?;
            let hidden = graph.node("Relu", &[&hidden], vec![]);
            gemm(&mut graph, &mlp.output, &hidden)?
        }
    };
    graph.node_into("Softmax", &[&logits], vec![int("axis", 1)], "probabilities");
    let declared_input = match input {
        ImageInput::Preprocessed => Declared {
            name: input_name,
            element: data_type::FLOAT,
            shape: vec![Dim::Dynamic("batch"), Dim::Fixed(3), Dim::Fixed(size), Dim::Fixed(size)],
            doc: format!(
                "RGB images as graft preprocesses them: the shorter side resized to {}, centre-cropped to {size}x{size}, values scaled to 0-1, then (value - mean) / std per channel with mean {:?} and std {:?}; channels first",
                preprocessing.resize, preprocessing.mean, preprocessing.std
            ),
        },
        ImageInput::Rgb => Declared {
            name: input_name,
            element: data_type::UINT8,
            shape: vec![Dim::Dynamic("batch"), Dim::Fixed(size), Dim::Fixed(size), Dim::Fixed(3)],
            doc: format!(
                "RGB pixels 0-255, channels last, already at {size}x{size} (graft resizes the shorter side to {} and crops the centre); the graph normalises them",
                preprocessing.resize
            ),
        },
    };
    let output = Declared {
        name: "probabilities",
        element: data_type::FLOAT,
        shape: vec![Dim::Dynamic("batch"), Dim::Fixed(classes)],
        doc: "class probabilities (softmax), in the order of the metadata's `classes`".to_owned(),
    };
    Ok(graph.finish("graft_student", &[declared_input], &[output]))
}

/// `rgb` (uint8, channels last) to the preprocessed float input: graft's `(v / 255 - mean) / std`.
fn normalise_rgb(graph: &mut Graph, preprocessing: &Preprocessing) -> String {
    let cast = graph.node("Cast", &["rgb"], vec![int("to", i64::from(data_type::FLOAT))]);
    let planar = graph.node("Transpose", &[&cast], vec![ints("perm", &[0, 3, 1, 2])]);
    let scale = graph.constant("scale", &[], &[255.0]);
    let scaled = graph.node("Div", &[&planar, &scale], vec![]);
    let mean = graph.constant("mean", &[1, 3, 1, 1], &preprocessing.mean);
    let centred = graph.node("Sub", &[&scaled, &mean], vec![]);
    let std = graph.constant("std", &[1, 3, 1, 1], &preprocessing.std);
    graph.node("Div", &[&centred, &std], vec![])
}

fn layers(graph: &mut Graph, layers: &[Layer<'_>], x: Value) -> std::result::Result<Value, String> {
    layers.iter().try_fold(x, |x, layer| self::layer(graph, layer, x))
}

fn layer(graph: &mut Graph, layer: &Layer<'_>, x: Value) -> std::result::Result<Value, String> {
    let [channels, height, width] = x.shape;
    Ok(match layer {
        Layer::Conv { conv, norm, activation } => {
            let [outputs, per_group, kernel_h, kernel_w] = conv.weight.val().dims();
            let (weight, bias) = folded(conv, *norm).ok_or("a convolution's tensors cannot be read back")?;
            let pads = padding_sides(&conv.padding, [kernel_h, kernel_w], conv.stride, height, width);
            let weight = graph.constant("weight", &[outputs, per_group, kernel_h, kernel_w], &weight);
            let bias = graph.constant("bias", &[outputs], &bias);
            let out = graph.node(
                "Conv",
                &[&x.name, &weight, &bias],
                vec![
                    ints("kernel_shape", &[kernel_h as i64, kernel_w as i64]),
                    ints("strides", &pair(conv.stride)),
                    ints("pads", &sides(pads)),
                    ints("dilations", &pair(conv.dilation)),
                    int("group", conv.groups as i64),
                ],
            );
            let shape = [
                outputs,
                windows(height, kernel_h, conv.stride[0], pads[0] + pads[2], conv.dilation[0], false, pads[0]),
                windows(width, kernel_w, conv.stride[1], pads[1] + pads[3], conv.dilation[1], false, pads[1]),
            ];
            activate(graph, Value { name: out, shape }, *activation)
        }
        Layer::MaxPool(pool) => {
            let pads = padding_sides(&pool.padding, pool.kernel_size, pool.stride, height, width);
            pool_node(graph, "MaxPool", &x, pool.kernel_size, pool.stride, pads, pool.dilation, pool.ceil_mode, None)
        }
        Layer::AvgPool(pool) => {
            let pads = padding_sides(&pool.padding, pool.kernel_size, pool.stride, height, width);
            pool_node(
                graph,
                "AveragePool",
                &x,
                pool.kernel_size,
                pool.stride,
                pads,
                [1, 1],
                pool.ceil_mode,
                Some(pool.count_include_pad),
            )
        }
        Layer::AdaptiveAvgPool(pool) => {
            let [out_h, out_w] = pool.output_size;
            if [out_h, out_w] == [height, width] {
                x
            } else if [out_h, out_w] == [1, 1] {
                let name = graph.node("GlobalAveragePool", &[&x.name], vec![]);
                Value { name, shape: [channels, 1, 1] }
            } else if [height, width] == [1, 1] {
                // One value per channel, repeated over the whole output plane.
                let shape = graph.constant_i64("shape", &[1, 1, out_h as i64, out_w as i64]);
                let name = graph.node("Expand", &[&x.name, &shape], vec![]);
                Value { name, shape: [channels, out_h, out_w] }
            } else if height % out_h == 0 && width % out_w == 0 {
                let kernel = [height / out_h, width / out_w];
                pool_node(graph, "AveragePool", &x, kernel, kernel, [0; 4], [1, 1], false, Some(false))
            } else {
                return Err(format!(
                    "adaptive average pooling from {height}x{width} to {out_h}x{out_w} has windows of unequal sizes, which ONNX's pooling cannot express (export at an input size whose feature map divides evenly)"
                ));
            }
        }
        Layer::Dense { linear, activation, .. } => {
            // Dropout is the identity in inference.
            let flat = graph.node("Flatten", &[&x.name], vec![int("axis", 1)]);
            let out = gemm(graph, linear, &flat).map_err(|error| error.to_string())?;
            let outputs = linear.weight.val().dims()[1];
            let shape = graph.constant_i64("shape", &[0, -1, 1, 1]);
            let name = graph.node("Reshape", &[&out, &shape], vec![]);
            activate(graph, Value { name, shape: [outputs, 1, 1] }, *activation)
        }
        Layer::Residual { body, shortcut, activation } => {
            let y = layers(graph, body, x.clone())?;
            let shortcut = if shortcut.is_empty() { x } else { layers(graph, shortcut, x)? };
            if y.shape != shortcut.shape {
                return Err(format!("a residual adds {:?} to {:?}", y.shape, shortcut.shape));
            }
            let name = graph.node("Add", &[&y.name, &shortcut.name], vec![]);
            activate(graph, Value { name, shape: y.shape }, *activation)
        }
        Layer::Concat(branches) => {
            let outputs: Vec<Value> = branches
                .iter()
                .map(|branch| layers(graph, branch, x.clone()))
                .collect::<std::result::Result<_, _>>()?;
            let plane = [outputs[0].shape[1], outputs[0].shape[2]];
            if outputs.iter().any(|output| [output.shape[1], output.shape[2]] != plane) {
                return Err("concatenated branches differ in size".to_owned());
            }
            let names: Vec<&str> = outputs.iter().map(|output| output.name.as_str()).collect();
            let name = graph.node("Concat", &names, vec![int("axis", 1)]);
            Value { name, shape: [outputs.iter().map(|output| output.shape[0]).sum(), plane[0], plane[1]] }
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn pool_node(
    graph: &mut Graph,
    op: &str,
    x: &Value,
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    dilation: [usize; 2],
    ceil_mode: bool,
    count_include_pad: Option<bool>,
) -> Value {
    let [channels, height, width] = x.shape;
    let mut attributes = vec![
        ints("kernel_shape", &pair(kernel)),
        ints("strides", &pair(stride)),
        ints("pads", &sides(pads)),
        int("ceil_mode", i64::from(ceil_mode)),
    ];
    if dilation != [1, 1] {
        attributes.push(ints("dilations", &pair(dilation)));
    }
    if let Some(include) = count_include_pad {
        attributes.push(int("count_include_pad", i64::from(include)));
    }
    let name = graph.node(op, &[&x.name], attributes);
    let shape = [
        channels,
        windows(height, kernel[0], stride[0], pads[0] + pads[2], dilation[0], ceil_mode, pads[0]),
        windows(width, kernel[1], stride[1], pads[1] + pads[3], dilation[1], ceil_mode, pads[1]),
    ];
    Value { name, shape }
}

/// How many windows fit along a side (PyTorch's rule: with `ceil`, a last window that would
/// start in the padding is dropped).
fn windows(
    size: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    ceil: bool,
    before: usize,
) -> usize {
    let span = (size + padding).saturating_sub(dilation * (kernel - 1) + 1);
    let mut count = if ceil { span.div_ceil(stride) + 1 } else { span / stride + 1 };
    if ceil && (count - 1) * stride >= size + before {
        count -= 1;
    }
    count
}

fn activate(graph: &mut Graph, x: Value, activation: Activation) -> Value {
    let name = match activation {
        Activation::Identity => return x,
        Activation::Relu => graph.node("Relu", &[&x.name], vec![]),
        Activation::Relu6 => {
            let low = graph.constant("zero", &[], &[0.0]);
            let high = graph.constant("six", &[], &[6.0]);
            graph.node("Clip", &[&x.name, &low, &high], vec![])
        }
    };
    Value { name, ..x }
}

/// `x W + b` for burn's `Linear` (weight `[inputs, outputs]`).
fn gemm(graph: &mut Graph, linear: &burn::nn::Linear, x: &str) -> Result<String> {
    let [inputs, outputs] = linear.weight.val().dims();
    let weight = crate::tensor::host_values::<f32>(linear.weight.val().into_data())?;
    let bias = match &linear.bias {
        Some(bias) => crate::tensor::host_values::<f32>(bias.val().into_data())?,
        None => vec![0.0; outputs],
    };
    Ok(graph.gemm(x, inputs, &weight, &bias))
}

fn pair(values: [usize; 2]) -> [i64; 2] {
    [values[0] as i64, values[1] as i64]
}

/// graft's `[top, left, bottom, right]` as ONNX's `[top, left, bottom, right]` (begins, then ends).
fn sides(pads: [usize; 4]) -> [i64; 4] {
    pads.map(|pad| pad as i64)
}
