//! Forward + backward of a 1x1 convolution on burn's `flex` backend, three ways: burn's `conv2d`,
//! one NHWC matrix product, and a batched product over NCHW planes (what `backend::ops::conv`
//! chooses between). Shapes are EfficientNet-Lite0's at 112x112 input, batch 32.
//!
//!     cargo run --release -p graft --example pointwise_conv
//!
//! Milliseconds per step (10 steps after one warm-up); also includes `(y * y).sum()` and its
//! backward, the same for all three.

use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

fn main() {
    let device = Device::flex().autodiff();
    for (c, co, hw) in
        [(192usize, 1152usize, 4usize), (1152, 192, 4), (24, 144, 28), (144, 24, 28), (16, 96, 56), (40, 240, 14)]
    {
        let conv = Conv2dConfig::new([c, co], [1, 1]).with_bias(false).init(&device);
        let x = Tensor::<4>::random([32, c, hw, hw], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let w = conv.weight.val();
        let mut line = format!("{c}->{co} @{hw}x{hw}:");
        for variant in 0..3 {
            let run = || {
                let y = match variant {
                    0 => conv.forward(x.clone()),
                    1 => {
                        let [n, c, h, wd] = x.dims();
                        let flat = x.clone().permute([0, 2, 3, 1]).reshape([n * h * wd, c]);
                        flat.matmul(w.clone().reshape([co, c]).transpose())
                            .reshape([n, h, wd, co])
                            .permute([0, 3, 1, 2])
                    }
                    _ => {
                        let [n, c, h, wd] = x.dims();
                        w.clone().reshape([1, co, c]).matmul(x.clone().reshape([n, c, h * wd])).reshape([n, co, h, wd])
                    }
                };
                let g = (y.clone() * y).sum().backward();
                let _ = w.grad(&g);
                let _ = x.grad(&g);
            };
            run();
            let t = Instant::now();
            for _ in 0..10 {
                run();
            }
            line += &format!(" {:.2}", t.elapsed().as_secs_f64() * 100.0);
        }
        println!("{line} ms (conv, permute+matmul, batched matmul)");
    }
}
