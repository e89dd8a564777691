//! Forward + backward of depthwise convolutions: burn's `conv2d` against graft's
//! `backend::ops::conv`, with the largest difference of the outputs and gradients.
//!
//! On burn's `flex` backend (the default) graft writes a depthwise convolution on a small plane
//! (up to 64 pixels) as one dense matrix per channel; shapes are EfficientNet-Lite0's last
//! stages at 112x112 input, batch 32:
//!
//!     cargo run --release -p graft --example depthwise_small
//!
//! At the teacher's own size (224x224, batch 16, one training shard: every depthwise layer of
//! Lite0 on planes above 64 pixels, which graft runs through its direct kernels,
//! `backend/depthwise.rs`):
//!
//!     cargo run --release -p graft --example depthwise_small -- flex224
//!
//! On libtorch (build with `--features tch`, pass `libtorch`) graft has libtorch differentiate
//! the convolution (`models/libtorch.rs`), where burn computes the weight gradient one channel at
//! a time; shapes are all of Lite0's depthwise convolutions at 112x112 input, batch 16 (one
//! training shard):
//!
//!     cargo run --release -p graft --features tch --example depthwise_small -- libtorch

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

/// The largest difference relative to the largest magnitude in `a`.
fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let scale = a.clone().abs().max().into_scalar::<f32>();
    (a - b).abs().max().into_scalar::<f32>() / scale
}

/// (channels, kernel, stride, plane size) per layer, and the batch.
type Shapes = (Vec<(usize, usize, usize, usize)>, usize);

fn flex() -> (Device, Shapes) {
    (
        Device::flex().autodiff(),
        (vec![(1152, 5, 1, 4), (1152, 3, 1, 4), (672, 5, 2, 7), (480, 3, 1, 7), (480, 5, 1, 7)], 32),
    )
}

fn flex224() -> (Device, Shapes) {
    let shapes = vec![
        (32, 3, 1, 112),
        (96, 3, 2, 112),
        (144, 3, 1, 56),
        (144, 5, 2, 56),
        (240, 5, 1, 28),
        (240, 3, 2, 28),
        (480, 3, 1, 14),
        (672, 5, 1, 14),
        (672, 5, 2, 14),
    ];
    (Device::flex().autodiff(), (shapes, 16))
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn 0.22 marks libtorch deprecated.
fn libtorch() -> (Device, Shapes) {
    let shapes = vec![
        (32, 3, 1, 56),
        (96, 3, 2, 56),
        (144, 3, 1, 28),
        (144, 5, 2, 28),
        (240, 5, 1, 14),
        (480, 3, 1, 7),
        (672, 5, 2, 7),
        (1152, 5, 1, 4),
    ];
    (Device::libtorch().autodiff(), (shapes, 16))
}

#[cfg(not(feature = "tch"))]
fn libtorch() -> (Device, Shapes) {
    eprintln!("this build has no libtorch: build the example with `--features tch`");
    std::process::exit(2)
}

fn main() {
    let (device, (shapes, batch)) = match std::env::args().nth(1).as_deref() {
        None | Some("flex") => flex(),
        Some("flex224") => flex224(),
        Some("libtorch") => libtorch(),
        Some(other) => {
            eprintln!("unknown device `{other}`: `flex` (default), `flex224` or `libtorch`");
            std::process::exit(2)
        }
    };
    for (channels, kernel, stride, size) in shapes {
        let conv = Conv2dConfig::new([channels, channels], [kernel, kernel])
            .with_groups(channels)
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Same)
            .with_bias(false)
            .init(&device);
        let x =
            Tensor::<4>::random([batch, channels, size, size], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let mut line = format!("{channels} channels {kernel}x{kernel} stride {stride} @{size}x{size}:");
        let mut results = Vec::new();
        for graft in [false, true] {
            let run = || {
                let y = if graft { graft::backend::ops::conv(&conv, x.clone()) } else { conv.forward(x.clone()) };
                let gradients = (y.clone() * y.clone()).sum().backward();
                (y, conv.weight.grad(&gradients).unwrap(), x.grad(&gradients).unwrap())
            };
            let result = run();
            let started = Instant::now();
            for _ in 0..10 {
                let (y, weight, input) = run();
                let _ = (y.into_data(), weight.into_data(), input.into_data());
            }
            line += &format!(" {:.2} ms", started.elapsed().as_secs_f64() * 100.0);
            results.push(result);
        }
        let (graft, burn) = (results.pop().unwrap(), results.pop().unwrap());
        println!(
            "{line} (burn conv2d, graft); largest relative difference: output {:.1e}, weight grad {:.1e}, input grad {:.1e}",
            max_diff(burn.0.inner(), graft.0.inner()),
            max_diff(burn.1, graft.1),
            max_diff(burn.2, graft.2)
        );
    }
}
