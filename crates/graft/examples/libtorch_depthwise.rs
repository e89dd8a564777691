//! Forward + backward of depthwise convolutions on burn's libtorch backend (build with
//! `--features tch`): burn's `conv2d`, whose backward burn composes (the weight gradient one
//! channel at a time), against graft's `models::layers::conv`, whose backward libtorch runs
//! (`models/libtorch.rs`). Shapes are EfficientNet-Lite0's at 112x112 input, batch 16 (one
//! training shard); prints milliseconds per forward + backward and the largest difference of
//! the outputs and gradients.
//!
//!     cargo run --release -p graft --features tch --example libtorch_depthwise

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

/// The largest difference relative to the largest magnitude in `a`.
fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    let scale = a.clone().abs().max().into_scalar::<f32>();
    (a - b).abs().max().into_scalar::<f32>() / scale
}

#[allow(deprecated)] // burn 0.22 marks libtorch deprecated.
fn main() {
    let device = Device::libtorch().autodiff();
    for (channels, kernel, stride, size) in [(32usize, 3usize, 1usize, 56usize), (96, 3, 2, 56), (144, 3, 1, 28), (144, 5, 2, 28), (240, 5, 1, 14), (480, 3, 1, 7), (672, 5, 2, 7), (1152, 5, 1, 4)] {
        let conv = Conv2dConfig::new([channels, channels], [kernel, kernel])
            .with_groups(channels)
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Same)
            .with_bias(false)
            .init(&device);
        let x = Tensor::<4>::random([16, channels, size, size], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let mut line = format!("{channels} channels {kernel}x{kernel} stride {stride} @{size}x{size}:");
        let mut results = Vec::new();
        for graft in [false, true] {
            let run = || {
                let y = if graft { graft::models::layers::conv(&conv, x.clone()) } else { conv.forward(x.clone()) };
                let gradients = (y.clone() * y.clone()).sum().backward();
                (y, conv.weight.grad(&gradients).unwrap(), x.grad(&gradients).unwrap())
            };
            let result = run();
            let started = Instant::now();
            for _ in 0..5 {
                let (y, weight, input) = run();
                let _ = (y.into_data(), weight.into_data(), input.into_data());
            }
            line += &format!(" {} {:.2} ms", if graft { "graft" } else { "burn" }, started.elapsed().as_secs_f64() * 200.0);
            results.push(result);
        }
        let (graft, burn) = (results.pop().unwrap(), results.pop().unwrap());
        line += &format!(
            "; largest relative difference: output {:.1e}, weight gradient {:.1e}, input gradient {:.1e}",
            max_diff(burn.0, graft.0),
            max_diff(burn.1, graft.1),
            max_diff(burn.2, graft.2)
        );
        println!("{line}");
    }
}
