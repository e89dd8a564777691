//! graft's own kernels against burn's: the fused CPU plan, depthwise convolutions, sharded
//! steps and their batch-norm statistics.

use burn::tensor::{Device, Tensor, TensorData};
use graft::models::{load_teacher, zoo};

use crate::common::{self, offline_options, random_backbone, values};

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    common::assert_close_within(got, want, 1e-4, what);
}

#[test]
fn fused_frozen_blocks_match_burn() {
    use graft::backend::fused::FusedBackbone;
    let device = Device::flex();
    // Built one at a time: a backbone is a large value, and four on a test thread's stack overflow it.
    type Build = Box<dyn Fn(&Device) -> Box<graft::models::Backbone>>;
    let cases: Vec<(&str, Build, usize)> = vec![
        (
            "efficientnet_lite0 (ImageNet weights)",
            Box::new(|device| {
                Box::new(load_teacher("efficientnet_lite0", &offline_options(), device).unwrap().0.backbone)
            }),
            72,
        ),
        (
            "resnet18",
            Box::new(|device| {
                Box::new(random_backbone(
                    zoo::Architecture::ResNet(graft::models::resnet::ResNetDepth::ResNet18),
                    7,
                    device,
                ))
            }),
            64,
        ),
        (
            "resnet50",
            Box::new(|device| {
                Box::new(random_backbone(
                    zoo::Architecture::ResNet(graft::models::resnet::ResNetDepth::ResNet50),
                    8,
                    device,
                ))
            }),
            64,
        ),
        ("mobilenet_v2", Box::new(|device| Box::new(random_backbone(zoo::Architecture::MobileNetV2, 9, device))), 70),
    ];
    for (name, build, size) in cases {
        let backbone = build(&device);
        let fused = FusedBackbone::new(&*backbone).unwrap_or_else(|| panic!("{name}: no fused plan"));
        let blocks = backbone.block_names().len();
        assert_eq!(fused.block_count(), blocks, "{name}");
        let batch = 3;
        device.seed(11);
        let images = Tensor::<4>::random([batch, 3, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let pixels = images.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        for cut in [1, blocks / 2, blocks] {
            let activations = backbone.forward_blocks(images.clone(), 0..cut).unwrap();
            let (got, shape) = fused.forward(&pixels, [batch, 3, size, size], cut, false).unwrap();
            assert_eq!(shape, activations.dims().to_vec(), "{name} at cut {cut}");
            let want = activations.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            assert_close(&got, &want, &format!("{name}, activations after {cut} blocks"));
            if cut < blocks {
                // The rest of the network from the cut, pooled: how a student's tail is scored.
                let dims = activations.dims();
                let entering = activations.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                let (got, _) = fused.forward_range(&entering, dims, cut, blocks, true).unwrap();
                let rest = backbone.forward_blocks(activations.clone(), cut..blocks).unwrap();
                let want = backbone.features(rest).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                assert_close(&got, &want, &format!("{name}, features from block {cut} on"));
            }
            if cut == blocks {
                let (got, shape) = fused.forward(&pixels, [batch, 3, size, size], cut, true).unwrap();
                let want = backbone.features(activations).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                assert_eq!(shape, vec![batch, backbone.feature_dim()], "{name}");
                assert_close(&got, &want, &format!("{name}, pooled features"));
            }
        }
    }
    let alexnet = Box::new(graft::models::Backbone::new(zoo::Architecture::AlexNet, 10, &device));
    assert!(FusedBackbone::new(&*alexnet).is_none(), "AlexNet runs through burn");
}

#[test]
fn a_block_range_outside_the_network_is_an_error() {
    let device = Device::flex();
    let backbone = graft::models::Backbone::new(
        zoo::Architecture::ResNet(graft::models::resnet::ResNetDepth::ResNet18),
        10,
        &device,
    );
    let blocks = backbone.block_names();
    assert_eq!(blocks, ["conv1", "layer1", "layer2", "layer3", "layer4"]);
    let image = Tensor::<4>::zeros([1, 3, 32, 32], &device);
    let error = backbone.forward_blocks(image.clone(), 3..6).err().map(|error| error.to_string()).unwrap_or_default();
    assert!(error.contains("3..6") && error.contains("5 blocks"), "{error}");
    assert!(backbone.forward_blocks(image.clone(), std::ops::Range { start: 4, end: 3 }).is_err(), "a reversed range");
    assert_eq!(backbone.forward_blocks(image, 0..5).unwrap().dims(), [1, 512, 1, 1]);
    assert!(backbone.clone().freeze_until(6).is_err());
    let frozen = backbone.freeze_until(5).unwrap();
    assert_eq!(graft::train::trainer::count_trainable(&frozen), 0, "every block and the classifier frozen");
}

#[test]
fn dense_depthwise_convolution_matches_burn_forward_and_backward() {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    let device = Device::flex().autodiff();
    device.seed(5);
    let cases = [
        (6, 3, 1, PaddingConfig2d::Same, 4),
        (5, 5, 1, PaddingConfig2d::Same, 4),
        (5, 5, 2, PaddingConfig2d::Same, 7),
        (4, 3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), 8),
        (3, 3, 1, PaddingConfig2d::Valid, 6),
    ];
    for (channels, kernel, stride, padding, size) in cases {
        let what = format!("{channels} channels, {kernel}x{kernel}, stride {stride}, {padding:?}, {size}x{size}");
        let conv = Conv2dConfig::new([channels, channels], [kernel, kernel])
            .with_groups(channels)
            .with_stride([stride, stride])
            .with_padding(padding)
            .init(&device);
        let x = Tensor::<4>::random([3, channels, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let values = |dense: bool| {
            let y = if dense { graft::backend::ops::conv(&conv, x.clone()) } else { conv.forward(x.clone()) };
            // A loss that weighs every output differently, so a misplaced tap shows in the gradients.
            let count = y.dims().iter().product::<usize>() as i64;
            let weights = Tensor::<1, burn::tensor::Int>::arange(0..count, &device)
                .float()
                .reshape(y.dims())
                .div_scalar(count as f32);
            let gradients = (y.clone() * weights).sum().backward();
            let flat = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            let flat1 = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            (
                y.dims(),
                flat(y.inner()),
                flat(conv.weight.grad(&gradients).unwrap()),
                flat1(conv.bias.as_ref().unwrap().grad(&gradients).unwrap()),
                flat(x.grad(&gradients).unwrap()),
            )
        };
        let (dense, burn) = (values(true), values(false));
        assert_eq!(dense.0, burn.0, "{what}: output shape");
        assert_close(&dense.1, &burn.1, &format!("{what}: output"));
        assert_close(&dense.2, &burn.2, &format!("{what}: weight gradient"));
        assert_close(&dense.3, &burn.3, &format!("{what}: bias gradient"));
        assert_close(&dense.4, &burn.4, &format!("{what}: input gradient"));
    }
}

#[test]
fn sharded_batch_norm_updates_running_statistics_as_one_batch_would() {
    use burn::nn::BatchNormConfig;
    use graft::backend::batch_statistics::{collect, update_running_statistics};
    use graft::backend::ops::normalize;
    let device = Device::flex().autodiff();
    device.seed(3);
    // Shards of unequal size with different means, so the spread between them matters.
    let x = Tensor::<4>::random([7, 5, 3, 3], burn::tensor::Distribution::Normal(0.5, 2.0), &device);
    let (first, second) = (x.clone().slice(0..4), x.clone().slice(4..7) * 3.0 + 1.0);
    let whole_batch = Tensor::cat(vec![first.clone(), second.clone()], 0);
    let whole = BatchNormConfig::new(5).init(&device);
    let sharded = BatchNormConfig::new(5).init(&device);
    for _ in 0..2 {
        let _ = whole.forward(whole_batch.clone());
        let (out_first, stats_first) = collect(|| normalize(&sharded, first.clone()));
        let (out_second, stats_second) = collect(|| normalize(&sharded, second.clone()));
        assert_eq!((stats_first.len(), stats_second.len()), (1, 1));
        // Each shard is normalized with its own statistics, as a batch norm on the shard alone.
        let alone = BatchNormConfig::new(5).init(&device);
        assert_close(&values(out_first), &values(alone.forward(first.clone())), "first shard's output");
        assert_close(&values(out_second), &values(alone.forward(second.clone())), "second shard's output");
        update_running_statistics(vec![stats_first, stats_second]);
    }
    assert_close(&values(sharded.running_mean.value_sync()), &values(whole.running_mean.value_sync()), "running mean");
    assert_close(
        &values(sharded.running_var.value_sync()),
        &values(whole.running_var.value_sync()),
        "running variance",
    );
    // Outside a collector the layer is burn's own.
    let before = values(sharded.running_mean.value_sync());
    let _ = normalize(&sharded, first.clone());
    assert_ne!(
        values(sharded.running_mean.value_sync()),
        before,
        "normalize outside a collector updates the running mean"
    );
}

#[test]
fn sharded_step_matches_the_whole_batch_without_batch_norm() {
    use burn::tensor::Int;
    use graft::train::shards;
    use graft::train::student::{Student, StudentInput};
    use graft::train::{FreezePlan, HeadKind, Strategy};
    let device = Device::flex().autodiff();
    let backbone = random_backbone(zoo::Architecture::MobileNetV2, 4, &Device::flex());
    let plan = FreezePlan::new(Strategy::Deep, backbone.block_names(), None, None).unwrap();
    let cut = plan.cut;
    let student = Student::new(backbone, &plan, HeadKind::Linear, 3, 1, &device).unwrap();
    device.seed(9);
    let features =
        Tensor::<2>::random([9, student.backbone.feature_dim()], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = vec![0, 1, 2, 2, 1, 0, 0, 0, 1];
    // Class weights: each shard's loss is a weighted mean, so shards weigh by their summed weights.
    let class_weights = vec![0.5f32, 1.0, 3.0];
    let loss_function =
        burn::nn::loss::CrossEntropyLossConfig::new().with_weights(Some(class_weights.clone())).init(&device);

    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [labels.len()]), &device);
    let loss = loss_function.forward(student.forward(StudentInput::Features(features.clone()), cut).unwrap(), targets);
    let whole_loss = loss.clone().into_scalar::<f32>();
    let whole = burn::optim::GradientsParams::from_grads(loss.backward(), &student);

    let parts = vec![
        (StudentInput::Features(features.clone().slice(0..5)), labels[..5].to_vec()),
        (StudentInput::Features(features.clone().slice(5..9)), labels[5..].to_vec()),
    ];
    let step = shards::step(&student, parts, cut, &loss_function, Some(&class_weights), false, &device).unwrap();
    assert!(
        (step.loss as f32 - whole_loss).abs() <= 1e-5 * whole_loss.abs(),
        "loss {} against {whole_loss}",
        step.loss
    );
    assert_eq!(step.logits.iter().map(|logits| logits.dims()[0]).collect::<Vec<_>>(), [5, 4]);
    let graft::train::head::Head::Linear(linear) = &student.head else { unreachable!() };
    assert_close(
        &values(step.gradients.get::<2>(linear.weight.id).unwrap()),
        &values(whole.get::<2>(linear.weight.id).unwrap()),
        "weight gradient",
    );
    let bias = linear.bias.as_ref().unwrap();
    assert_close(
        &values(step.gradients.get::<1>(bias.id).unwrap()),
        &values(whole.get::<1>(bias.id).unwrap()),
        "bias gradient",
    );
    assert_eq!(step.gradients.len(), 2, "only the head trains");
}
