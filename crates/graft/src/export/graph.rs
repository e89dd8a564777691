//! Building an ONNX graph: constants, nodes with fresh output names, typed inputs and outputs.

use super::proto::{
    AttributeProto, Dimension, DimensionValue, GraphProto, NodeProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto, attribute_type, data_type,
};

/// A graph under construction: nodes in the order they are added (each one's inputs exist
/// before it), and its constant tensors.
#[derive(Default)]
pub struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: usize,
}

/// A tensor's element type and shape as a graph input or output declares it.
pub struct Declared<'a> {
    pub name: &'a str,
    pub element: i32,
    pub shape: Vec<Dim>,
    pub doc: String,
}

/// One dimension of a declared tensor.
#[derive(Debug, Clone, Copy)]
pub enum Dim {
    Fixed(usize),
    /// A dynamic axis, by name (`batch`, `sequence`): the same name is the same size.
    Dynamic(&'static str),
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.names += 1;
        format!("{hint}_{}", self.names)
    }

    /// A float constant of `dims` (row-major values).
    pub fn constant(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        assert_eq!(dims.iter().product::<usize>(), values.len(), "a constant's values fill its shape");
        let name = self.fresh(hint);
        let raw: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
        self.initializers.push(tensor(&name, dims, data_type::FLOAT, raw));
        name
    }

    /// A 1-D 64-bit integer constant (shapes, axes).
    pub fn constant_i64(&mut self, hint: &str, values: &[i64]) -> String {
        self.constant_i64_shaped(hint, &[values.len()], values)
    }

    /// A 64-bit integer constant of `dims` (`&[]`: a scalar).
    pub fn constant_i64_shaped(&mut self, hint: &str, dims: &[usize], values: &[i64]) -> String {
        assert_eq!(dims.iter().product::<usize>(), values.len(), "a constant's values fill its shape");
        let name = self.fresh(hint);
        let raw: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
        self.initializers.push(tensor(&name, dims, data_type::INT64, raw));
        name
    }

    /// `x W + b` on a `[batch, inputs]` tensor (`Gemm`): `weight` row-major `[inputs, outputs]`
    /// (burn's `Linear` layout), `bias` of `outputs` values.
    pub fn gemm(&mut self, x: &str, inputs: usize, weight: &[f32], bias: &[f32]) -> String {
        let outputs = bias.len();
        let weight = self.constant("weight", &[inputs, outputs], weight);
        let bias = self.constant("bias", &[outputs], bias);
        self.node("Gemm", &[x, &weight, &bias], vec![float("alpha", 1.0), float("beta", 1.0)])
    }

    /// A node of `op` on `inputs` with one output, whose name it returns.
    pub fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let output = self.fresh(&op.to_lowercase());
        self.node_into(op, inputs, attributes, &output);
        output
    }

    /// A node of `op` whose one output is named `output` (a graph output).
    pub fn node_into(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>, output: &str) {
        let name = self.fresh(op);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|input| (*input).to_owned()).collect(),
            output: vec![output.to_owned()],
            name: Some(name),
            op_type: Some(op.to_owned()),
            attribute: attributes,
            ..NodeProto::default()
        });
    }

    /// The finished graph.
    pub fn finish(self, name: &str, inputs: &[Declared], outputs: &[Declared]) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: Some(name.to_owned()),
            initializer: self.initializers,
            input: inputs.iter().map(value_info).collect(),
            output: outputs.iter().map(value_info).collect(),
            ..GraphProto::default()
        }
    }
}

fn tensor(name: &str, dims: &[usize], element: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&dim| dim as i64).collect(),
        data_type: Some(element),
        name: Some(name.to_owned()),
        raw_data: Some(raw),
        ..TensorProto::default()
    }
}

fn value_info(declared: &Declared) -> ValueInfoProto {
    let dim = declared
        .shape
        .iter()
        .map(|size| Dimension {
            value: Some(match size {
                Dim::Fixed(size) => DimensionValue::DimValue(*size as i64),
                Dim::Dynamic(name) => DimensionValue::DimParam((*name).to_owned()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: Some(declared.name.to_owned()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(declared.element),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: Some(declared.doc.clone()),
    }
}

/// An integer attribute.
pub fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        i: Some(value),
        r#type: Some(attribute_type::INT),
        ..AttributeProto::default()
    }
}

/// A list-of-integers attribute.
pub fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        ints: values.to_vec(),
        r#type: Some(attribute_type::INTS),
        ..AttributeProto::default()
    }
}

/// A float attribute.
pub fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        f: Some(value),
        r#type: Some(attribute_type::FLOAT),
        ..AttributeProto::default()
    }
}
