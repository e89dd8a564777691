//! The wgpu backend computes what `flex` computes: a pretrained teacher's predictions, and a
//! training step's loss and gradients. Needs a build with `--features wgpu` and a wgpu adapter
//! (a GPU, or Mesa's software drivers):
//!
//!     cargo test --release -p graft --features wgpu --test wgpu
//!
//! CI builds without the feature, so it does not run these.
#![cfg(feature = "wgpu")]

mod common;

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Gradients, Tensor, TensorData};
use common::{assert_close_within as assert_close, offline_options, repo, values};
use graft::models::{Backbone, load_teacher, zoo};
use graft::weights::{SameKeys, collect_tensors, load_into};

fn wgpu() -> Device {
    graft::device::parse("wgpu").expect("built with --features wgpu")
}

#[test]
fn pretrained_lite0_predicts_the_same_on_wgpu_as_on_flex() {
    let options = offline_options();
    let paths = vec![repo("crates/graft-assets/images/chelsea.png"), repo("crates/graft-assets/images/coffee.png")];
    let predict = |device: &Device| {
        let (teacher, _) = load_teacher("efficientnet_lite0", &options, device).unwrap();
        graft::predict::predict_images(&teacher, &paths, 5, zoo::imagenet_labels(), 8, device, true).unwrap().0
    };
    let (gpu, cpu) = (predict(&wgpu()), predict(&Device::flex()));
    for (g, c) in gpu.iter().zip(&cpu) {
        let classes = |p: &graft::predict::Prediction| p.top.iter().map(|t| t.class_index).collect::<Vec<_>>();
        assert_eq!(classes(g), classes(c), "top-5 of {}", c.path.display());
        for (a, b) in g.top.iter().zip(&c.top) {
            assert!(
                (a.probability - b.probability).abs() <= 1e-4,
                "{}: {} against {}",
                c.path.display(),
                a.probability,
                b.probability
            );
        }
    }
    assert_eq!(cpu[1].top[0].label, "espresso");
}

/// Every parameter's gradient, in the module's order (empty where it has none).
struct GradientValues<'a> {
    gradients: &'a Gradients,
    out: Vec<Vec<f32>>,
}

impl ModuleVisitor for GradientValues<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out.push(param.val().grad(self.gradients).map(values).unwrap_or_default());
    }
}

/// The last `trained` blocks of a teacher, trained (batch norm on batch statistics) on wgpu and on
/// flex from the same weights and input: same loss, same gradients for every parameter and for the
/// input.
fn last_blocks_step_matches(architecture: zoo::Architecture, trained: usize) {
    let flex = Device::flex();
    flex.seed(5);
    let source = Backbone::new(architecture, 1000, &flex);
    let tensors = collect_tensors(&source, &SameKeys).unwrap();
    let blocks = source.block_names().len();
    let first = blocks - trained;
    // The trained blocks' input: a small random image through the blocks before them.
    let image = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &flex);
    let prefix = source.forward_blocks(image, 0..first).unwrap();
    let shape = prefix.dims();
    let input = values(prefix);

    let step = |device: &Device| {
        let backbone =
            load_into(Backbone::new(architecture, 1000, device), &tensors, &SameKeys, Path::new("random"), false)
                .unwrap()
                .0;
        let x = Tensor::<4>::from_data(TensorData::new(input.clone(), shape), device).require_grad();
        let out = backbone.forward_blocks(x.clone(), first..blocks).unwrap();
        let loss = (out.clone() * out).mean();
        let loss_value = values(loss.clone())[0];
        let gradients = loss.backward();
        let mut visitor = GradientValues { gradients: &gradients, out: Vec::new() };
        backbone.visit(&mut visitor);
        (loss_value, values(x.grad(&gradients).unwrap()), visitor.out)
    };
    let (gpu, cpu) = (step(&wgpu().autodiff()), step(&flex.autodiff()));
    assert!((gpu.0 - cpu.0).abs() <= 1e-4 * cpu.0.abs(), "{architecture:?} loss {} against {}", gpu.0, cpu.0);
    assert_close(&gpu.1, &cpu.1, 1e-3, &format!("{architecture:?} input gradient"));
    assert_eq!(gpu.2.len(), cpu.2.len());
    let with_gradients = cpu.2.iter().filter(|g| !g.is_empty()).count();
    assert!(with_gradients >= 6, "{architecture:?}: only {with_gradients} parameters have gradients");
    for (index, (g, c)) in gpu.2.iter().zip(&cpu.2).enumerate() {
        assert_close(g, c, 1e-3, &format!("{architecture:?} gradient of parameter {index}"));
    }
}

#[test]
fn resnet18_last_block_step_matches_flex() {
    last_blocks_step_matches(zoo::Architecture::ResNet(graft::models::resnet::ResNetDepth::ResNet18), 1);
}

#[test]
fn efficientnet_lite0_last_blocks_step_matches_flex() {
    // The last inverted-residual block (expansion, depthwise, projection) and the 1x1 head conv.
    last_blocks_step_matches(
        zoo::Architecture::EfficientNetLite(graft::models::efficientnet_lite::LiteVariant::Lite0),
        2,
    );
}
