//! Forward + backward of a depthwise convolution on a small plane on burn's `flex` backend: burn's
//! `conv2d` against graft's dense per-channel form (`models::layers::conv`, used for planes up to
//! 64 pixels). Shapes are EfficientNet-Lite0's last stages at 112x112 input, batch 32; prints the
//! largest difference of the outputs and gradients too.
//!
//!     cargo run --release -p graft --example depthwise_small

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

fn main() {
    let device = Device::flex().autodiff();
    for (channels, kernel, stride, size) in [(1152usize, 5usize, 1usize, 4usize), (1152, 3, 1, 4), (672, 5, 2, 7), (480, 3, 1, 7), (480, 5, 1, 7)] {
        let conv = Conv2dConfig::new([channels, channels], [kernel, kernel])
            .with_groups(channels)
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Same)
            .with_bias(false)
            .init(&device);
        let x = Tensor::<4>::random([32, channels, size, size], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let mut line = format!("{channels} channels {kernel}x{kernel} stride {stride} @{size}x{size}:");
        let mut results = Vec::new();
        for dense in [false, true] {
            let run = || {
                let y = if dense { graft::models::layers::conv(&conv, x.clone()) } else { conv.forward(x.clone()) };
                let gradients = (y.clone() * y.clone()).sum().backward();
                (y, conv.weight.grad(&gradients).unwrap(), x.grad(&gradients).unwrap())
            };
            let result = run();
            let started = Instant::now();
            for _ in 0..10 {
                run();
            }
            line += &format!(" {:.2} ms", started.elapsed().as_secs_f64() * 100.0);
            results.push(result);
        }
        let (dense, burn) = (results.pop().unwrap(), results.pop().unwrap());
        println!(
            "{line} (burn conv2d, dense); max difference: output {:.1e}, weight grad {:.1e}, input grad {:.1e}",
            max_diff(dense.0.inner(), burn.0.inner()),
            max_diff(dense.1, burn.1),
            max_diff(dense.2, burn.2)
        );
    }
}
