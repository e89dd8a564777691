//! The new classification head a student puts on the teacher's features.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, Relu};
use burn::tensor::{Device, Tensor};

/// What kind of head to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HeadKind {
    /// One linear layer (the default).
    Linear,
    /// Linear, ReLU, dropout 0.2, linear.
    Mlp { hidden: usize },
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub hidden: Linear,
    pub output: Linear,
    pub relu: Relu,
    pub dropout: Dropout,
}

/// One per student, so the size of its larger variant costs nothing worth boxing.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Head {
    Linear(Linear),
    Mlp(Mlp),
}

impl Head {
    pub fn new(kind: HeadKind, features: usize, classes: usize, device: &Device) -> Head {
        match kind {
            HeadKind::Linear => Head::Linear(LinearConfig::new(features, classes).init(device)),
            HeadKind::Mlp { hidden } => Head::Mlp(Mlp {
                hidden: LinearConfig::new(features, hidden).init(device),
                output: LinearConfig::new(hidden, classes).init(device),
                relu: Relu::new(),
                dropout: DropoutConfig::new(0.2).init(),
            }),
        }
    }

    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        match self {
            Head::Linear(linear) => linear.forward(features),
            Head::Mlp(mlp) => mlp.output.forward(mlp.dropout.forward(mlp.relu.forward(mlp.hidden.forward(features)))),
        }
    }
}
