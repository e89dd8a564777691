//! The new classification head a student puts on the teacher's features.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, Relu};
use burn::tensor::{Device, Tensor, TensorData};

use crate::rng::SplitMix64;

/// What kind of head to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HeadKind {
    /// One linear layer (the default).
    Linear,
    /// Linear, ReLU, dropout 0.2, linear.
    Mlp { hidden: usize },
}

/// The head's kind by name (`linear`, `mlp`), as a setting; [`HeadChoice::kind`] adds the MLP's
/// hidden width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadChoice {
    Linear,
    Mlp,
}

crate::choice::choice!(HeadChoice, "head", [(HeadChoice::Linear, "linear"), (HeadChoice::Mlp, "mlp")]);

impl HeadChoice {
    pub fn kind(self, hidden: usize) -> HeadKind {
        match self {
            HeadChoice::Linear => HeadKind::Linear,
            HeadChoice::Mlp => HeadKind::Mlp { hidden },
        }
    }
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
    /// A freshly initialised head, its weights drawn from `seed` alone.
    pub fn new(kind: HeadKind, features: usize, classes: usize, seed: u64, device: &Device) -> Head {
        match kind {
            HeadKind::Linear => Head::Linear(seeded_linear(features, classes, seed, 0, device)),
            HeadKind::Mlp { hidden } => Head::Mlp(Mlp {
                hidden: seeded_linear(features, hidden, seed, 0, device),
                output: seeded_linear(hidden, classes, seed, 1, device),
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

/// A linear layer initialised as burn's and PyTorch's default, weight and bias uniform in
/// `±1/sqrt(inputs)`, from graft's own generator: burn's is one per process, shared by every thread
/// (and drawn lazily, when a parameter is first used), so a head drawn from it would depend on
/// whatever else drew before; this one depends on the run's seed and the layer's `index` only,
/// and is the same on every backend.
fn seeded_linear(inputs: usize, outputs: usize, seed: u64, index: u64, device: &Device) -> Linear {
    let mut rng = SplitMix64::derive(seed, &[0x4EAD, index]);
    let bound = 1.0 / (inputs as f64).sqrt();
    let mut draw = |count: usize| -> Vec<f32> { (0..count).map(|_| rng.uniform(-bound, bound) as f32).collect() };
    // burn's layout: the weight is `[inputs, outputs]`.
    let weight = Tensor::<2>::from_data(TensorData::new(draw(inputs * outputs), [inputs, outputs]), device);
    let bias = Tensor::<1>::from_data(TensorData::new(draw(outputs), [outputs]), device);
    Linear { weight: Param::from_tensor(weight), bias: Some(Param::from_tensor(bias)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(head: &Head) -> Vec<f32> {
        let Head::Mlp(mlp) = head else { panic!("an MLP head") };
        [
            mlp.hidden.weight.val().into_data(),
            mlp.output.weight.val().into_data(),
            mlp.output.bias.as_ref().unwrap().val().into_data(),
        ]
        .into_iter()
        .flat_map(|data| data.convert::<f32>().try_to_vec::<f32>().unwrap())
        .collect()
    }

    #[test]
    fn head_depends_on_its_seed_only() {
        let device = Device::flex();
        let kind = HeadKind::Mlp { hidden: 16 };
        let first = weights(&Head::new(kind, 64, 3, 7, &device));
        // Draws from burn's generator in between change nothing.
        device.seed(1);
        let _ = Tensor::<2>::random([100, 100], burn::tensor::Distribution::Default, &device).into_data();
        assert_eq!(first, weights(&Head::new(kind, 64, 3, 7, &device)));
        assert_ne!(first, weights(&Head::new(kind, 64, 3, 8, &device)));
        // Uniform in ±1/sqrt(inputs): the first layer's within ±1/8, and spread over that range.
        let hidden = &first[..64 * 16];
        assert!(hidden.iter().all(|w| w.abs() <= 0.125));
        let mean_square = hidden.iter().map(|w| w * w).sum::<f32>() / hidden.len() as f32;
        assert!((mean_square - 0.125 * 0.125 / 3.0).abs() < 0.2 * 0.125 * 0.125 / 3.0, "{mean_square}");
        // The layers differ from each other.
        assert_ne!(first[..16], first[64 * 16..64 * 16 + 16]);
    }
}
