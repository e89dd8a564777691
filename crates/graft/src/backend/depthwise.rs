//! Depthwise convolutions on `flex` as graft's own kernels, forward and backward.
//!
//! burn's `flex` runs a depthwise convolution through its general convolution, and its backward
//! through a general transposed convolution: at the large planes of a network at its own size
//! (Lite0 at 224x224: 112x112 and 56x56 planes) that backward was among the largest items of a
//! `full` training step (docs/PERFORMANCE.md). Here each of the three is a direct loop over one
//! plane (one image's channel) at a time, the planes spread over the cores: the forward and the
//! input's gradient write whole output rows from whole input rows, and the filter's gradient is
//! a sum of row dot products per channel, every tap a contiguous run (a strided row is first
//! split into its phases, [`Phased`]). Recorded in burn's
//! autodiff graph as one operation whose backward is these kernels; the outputs and gradients
//! equal burn's convolution's up to rounding (tests below).

use burn::tensor::Tensor;
use rayon::prelude::*;

use super::simd::multiversion;

/// The shape of one depthwise convolution: input `[batch, channels, height, width]`, filter
/// `[channels, 1, kernel_h, kernel_w]`, padding (top, left; bottom and right follow from the
/// output size), output `[batch, channels, out_h, out_w]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Padding as (top, left, bottom, right).
    pub padding: [usize; 4],
}

impl Geometry {
    pub fn output(&self) -> [usize; 2] {
        super::ops::output_size(self.height, self.width, self.kernel, self.stride, self.padding)
    }

    /// The output columns `ox` whose tap `kx` falls inside the input row, as a range.
    fn columns(&self, kx: usize, out_w: usize) -> std::ops::Range<usize> {
        let (left, stride) = (self.padding[1], self.stride[1]);
        let first = if kx >= left { 0 } else { (left - kx).div_ceil(stride) };
        // ix = ox * stride + kx - left < width  <=>  ox * stride < width + left - kx
        let end = (self.width + left).saturating_sub(kx).div_ceil(stride).min(out_w);
        first..end.max(first)
    }

    /// The input row under output row `oy`'s tap `ky`, if inside the image.
    fn row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride[0] + ky).checked_sub(self.padding[0]).filter(|iy| *iy < self.height)
    }
}

/// One input row split into its `stride` phases, padded: phase `p` holds the padded row's
/// pixels `p, p + stride, p + 2 stride, ...`, so that tap `kx` of every output pixel of a row is
/// one contiguous run (`tap`), where a strided row would be a gather.
struct Phased {
    stride: usize,
    left: usize,
    /// Pixels per phase.
    len: usize,
    out_w: usize,
    values: Vec<f32>,
}

impl Phased {
    fn new(g: &Geometry, out_w: usize) -> Phased {
        let stride = g.stride[1];
        let len = (g.width + g.padding[1] + g.padding[3]).div_ceil(stride).max(out_w + (g.kernel[1] - 1) / stride);
        Phased { stride, left: g.padding[1], len, out_w, values: vec![0.0; stride * len] }
    }

    /// Loads an input row (zero in the padding).
    fn fill(&mut self, row: &[f32]) {
        self.values.fill(0.0);
        let (mut phase, mut at) = (self.left % self.stride, self.left / self.stride);
        for value in row {
            self.values[phase * self.len + at] = *value;
            phase += 1;
            if phase == self.stride {
                phase = 0;
                at += 1;
            }
        }
    }

    /// The inputs under tap `kx` of each output pixel of the row.
    fn tap(&self, kx: usize) -> &[f32] {
        let start = (kx % self.stride) * self.len + kx / self.stride;
        &self.values[start..start + self.out_w]
    }

    fn tap_mut(&mut self, kx: usize) -> &mut [f32] {
        let start = (kx % self.stride) * self.len + kx / self.stride;
        &mut self.values[start..start + self.out_w]
    }

    /// Adds the phases back onto an input row (the adjoint of `fill`; the padding is dropped).
    fn add_to(&self, row: &mut [f32]) {
        let (mut phase, mut at) = (self.left % self.stride, self.left / self.stride);
        for value in row {
            *value += self.values[phase * self.len + at];
            phase += 1;
            if phase == self.stride {
                phase = 0;
                at += 1;
            }
        }
    }
}

/// `y[n, c] = x[n, c] (*) w[c]`: the forward, one plane per task.
pub fn forward_values(x: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    let [out_h, out_w] = g.output();
    let plane_out = out_h * out_w;
    let mut y = vec![0.0f32; g.batch * g.channels * plane_out];
    y.par_chunks_mut(plane_out).enumerate().for_each(|(plane, out)| forward_plane(x, w, g, plane, out));
    y
}

multiversion! {
/// One output plane of [`forward_values`].
#[inline(never)]
fn forward_plane(x: &[f32], w: &[f32], g: &Geometry, plane: usize, out: &mut [f32]) [fma] {
    let [out_h, out_w] = g.output();
    let [kernel_h, kernel_w] = g.kernel;
    let (plane_in, taps) = (g.height * g.width, kernel_h * kernel_w);
    let c = plane % g.channels;
    let input = &x[plane * plane_in..(plane + 1) * plane_in];
    let filter = &w[c * taps..(c + 1) * taps];
    if g.stride[1] > 1 {
        let mut phased = Phased::new(g, out_w);
        for oy in 0..out_h {
            let out_row = &mut out[oy * out_w..(oy + 1) * out_w];
            for ky in 0..kernel_h {
                let Some(iy) = g.row(oy, ky) else { continue };
                phased.fill(&input[iy * g.width..(iy + 1) * g.width]);
                for kx in 0..kernel_w {
                    let weight = filter[ky * kernel_w + kx];
                    for (o, i) in out_row.iter_mut().zip(phased.tap(kx)) {
                        *o = fma(weight, *i, *o);
                    }
                }
            }
        }
        return;
    }
    for oy in 0..out_h {
        let out_row = &mut out[oy * out_w..(oy + 1) * out_w];
        for ky in 0..kernel_h {
            let Some(iy) = g.row(oy, ky) else { continue };
            let in_row = &input[iy * g.width..(iy + 1) * g.width];
            for kx in 0..kernel_w {
                let weight = filter[ky * kernel_w + kx];
                let columns = g.columns(kx, out_w);
                if columns.is_empty() {
                    continue;
                }
                let start = (columns.start as isize + kx as isize - g.padding[1] as isize) as usize;
                let source = &in_row[start..start + columns.len()];
                for (o, i) in out_row[columns].iter_mut().zip(source) {
                    *o = fma(weight, *i, *o);
                }
            }
        }
    }
}
}

/// The gradient of the input for an output gradient `gy`: each output pixel's gradient spread
/// back over the input pixels under its taps, one input plane per task.
pub fn input_gradient(gy: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    let plane_in = g.height * g.width;
    let mut gx = vec![0.0f32; g.batch * g.channels * plane_in];
    gx.par_chunks_mut(plane_in).enumerate().for_each(|(plane, grad_in)| input_gradient_plane(gy, w, g, plane, grad_in));
    gx
}

multiversion! {
/// One input plane of [`input_gradient`].
#[inline(never)]
fn input_gradient_plane(gy: &[f32], w: &[f32], g: &Geometry, plane: usize, grad_in: &mut [f32]) [fma] {
    let [out_h, out_w] = g.output();
    let [kernel_h, kernel_w] = g.kernel;
    let (plane_out, taps) = (out_h * out_w, kernel_h * kernel_w);
    let c = plane % g.channels;
    let grad_out = &gy[plane * plane_out..(plane + 1) * plane_out];
    let filter = &w[c * taps..(c + 1) * taps];
    if g.stride[1] > 1 {
        let mut phased = Phased::new(g, out_w);
        for oy in 0..out_h {
            let go_row = &grad_out[oy * out_w..(oy + 1) * out_w];
            for ky in 0..kernel_h {
                let Some(iy) = g.row(oy, ky) else { continue };
                phased.values.fill(0.0);
                for kx in 0..kernel_w {
                    let weight = filter[ky * kernel_w + kx];
                    for (i, o) in phased.tap_mut(kx).iter_mut().zip(go_row) {
                        *i = fma(weight, *o, *i);
                    }
                }
                phased.add_to(&mut grad_in[iy * g.width..(iy + 1) * g.width]);
            }
        }
        return;
    }
    for oy in 0..out_h {
        let go_row = &grad_out[oy * out_w..(oy + 1) * out_w];
        for ky in 0..kernel_h {
            let Some(iy) = g.row(oy, ky) else { continue };
            let gi_row = &mut grad_in[iy * g.width..(iy + 1) * g.width];
            for kx in 0..kernel_w {
                let weight = filter[ky * kernel_w + kx];
                let columns = g.columns(kx, out_w);
                if columns.is_empty() {
                    continue;
                }
                let start = (columns.start as isize + kx as isize - g.padding[1] as isize) as usize;
                let target = &mut gi_row[start..start + columns.len()];
                for (i, o) in target.iter_mut().zip(&go_row[columns]) {
                    *i = fma(weight, *o, *i);
                }
            }
        }
    }
}
}

/// The gradient of the filter for an output gradient `gy`: per channel, each tap's sum over the
/// batch of the output gradient times the input under that tap; one channel per task.
pub fn filter_gradient(gy: &[f32], x: &[f32], g: &Geometry) -> Vec<f32> {
    let taps = g.kernel[0] * g.kernel[1];
    let mut gw = vec![0.0f32; g.channels * taps];
    gw.par_chunks_mut(taps).enumerate().for_each(|(c, grad_filter)| filter_gradient_channel(gy, x, g, c, grad_filter));
    gw
}

multiversion! {
/// One channel of [`filter_gradient`].
#[inline(never)]
fn filter_gradient_channel(gy: &[f32], x: &[f32], g: &Geometry, c: usize, grad_filter: &mut [f32]) [fma] {
    let [out_h, out_w] = g.output();
    let [kernel_h, kernel_w] = g.kernel;
    let (plane_in, plane_out, taps) = (g.height * g.width, out_h * out_w, kernel_h * kernel_w);
    let mut sums = vec![0.0f64; taps];
    let mut phased = Phased::new(g, out_w);
    for n in 0..g.batch {
        let plane = n * g.channels + c;
        let input = &x[plane * plane_in..(plane + 1) * plane_in];
        let grad_out = &gy[plane * plane_out..(plane + 1) * plane_out];
        if g.stride[1] > 1 {
            for oy in 0..out_h {
                let go_row = &grad_out[oy * out_w..(oy + 1) * out_w];
                for ky in 0..kernel_h {
                    let Some(iy) = g.row(oy, ky) else { continue };
                    phased.fill(&input[iy * g.width..(iy + 1) * g.width]);
                    for kx in 0..kernel_w {
                        sums[ky * kernel_w + kx] += dot(fma, go_row, phased.tap(kx)) as f64;
                    }
                }
            }
            continue;
        }
        for oy in 0..out_h {
            let go_row = &grad_out[oy * out_w..(oy + 1) * out_w];
            for ky in 0..kernel_h {
                let Some(iy) = g.row(oy, ky) else { continue };
                let in_row = &input[iy * g.width..(iy + 1) * g.width];
                for kx in 0..kernel_w {
                    let columns = g.columns(kx, out_w);
                    if columns.is_empty() {
                        continue;
                    }
                    let start = (columns.start as isize + kx as isize - g.padding[1] as isize) as usize;
                    sums[ky * kernel_w + kx] +=
                        dot(fma, &go_row[columns.clone()], &in_row[start..start + columns.len()]) as f64;
                }
            }
        }
    }
    for (out, sum) in grad_filter.iter_mut().zip(sums) {
        *out = sum as f32;
    }
}
}

/// A dot product in eight lanes (so the compiler vectorises it without reassociating a single
/// sum), multiplying and adding by `fma`.
#[inline(always)]
fn dot(fma: impl Fn(f32, f32, f32) -> f32, a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = a.len() / 8;
    for (ca, cb) in a[..chunks * 8].chunks_exact(8).zip(b[..chunks * 8].chunks_exact(8)) {
        for lane in 0..8 {
            lanes[lane] = fma(ca[lane], cb[lane], lanes[lane]);
        }
    }
    let tail: f32 = a[chunks * 8..].iter().zip(&b[chunks * 8..]).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// The depthwise convolution of `x` (`[batch, channels, h, w]`) with `weight` (`[channels, 1,
/// kh, kw]`), float32 on `flex`, no bias; tracked by burn's autodiff when either is.
pub fn conv(x: Tensor<4>, weight: Tensor<4>, stride: [usize; 2], padding: [usize; 4]) -> Tensor<4> {
    let [batch, channels, height, width] = x.dims();
    let [_, _, kernel_h, kernel_w] = weight.dims();
    super::flexop::run(
        x,
        weight,
        Geometry { batch, channels, height, width, kernel: [kernel_h, kernel_w], stride, padding },
    )
}

impl super::flexop::Kernels for Geometry {
    fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.height, self.width]
    }

    fn filter_shape(&self) -> [usize; 4] {
        [self.channels, 1, self.kernel[0], self.kernel[1]]
    }

    fn output_shape(&self) -> [usize; 4] {
        let [out_h, out_w] = self.output();
        [self.batch, self.channels, out_h, out_w]
    }

    fn forward(&self, x: &[f32], w: &[f32]) -> Vec<f32> {
        forward_values(x, w, self)
    }

    fn filter_gradient(&self, gy: &[f32], x: &[f32]) -> Vec<f32> {
        filter_gradient(gy, x, self)
    }

    fn input_gradient(&self, gy: &[f32], w: &[f32]) -> Vec<f32> {
        input_gradient(gy, w, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::relative_difference;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::{Device, Distribution};

    /// Outputs and gradients equal burn's own convolution's for the depthwise layers of
    /// EfficientNet-Lite and MobileNetV2 (3x3 and 5x5, stride 1 and 2, TensorFlow's uneven "same"
    /// padding and PyTorch's even padding), on odd and even sizes, tracked or not.
    #[test]
    fn depthwise_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        let cases = [
            (3, 3, 1, PaddingConfig2d::Same, 9),
            (4, 3, 2, PaddingConfig2d::Same, 12),
            (5, 5, 2, PaddingConfig2d::Same, 11),
            (2, 5, 1, PaddingConfig2d::Same, 14),
            (3, 3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), 10),
            (6, 3, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), 7),
            (2, 5, 2, PaddingConfig2d::Same, 3),
        ];
        for (channels, kernel, stride, padding, size) in cases {
            let layer = Conv2dConfig::new([channels, channels], [kernel, kernel])
                .with_groups(channels)
                .with_stride([stride, stride])
                .with_padding(padding.clone())
                .with_bias(false)
                .init(&device);
            let sides =
                crate::backend::ops::padding_sides(&padding, [kernel, kernel], [stride, stride], size, size + 1);
            for input_tracked in [true, false] {
                let x = Tensor::<4>::random([3, channels, size, size + 1], Distribution::Normal(0.0, 1.0), &device);
                let x = if input_tracked { x.require_grad() } else { x };
                let expected = layer.forward(x.clone());
                let actual = conv(x.clone(), layer.weight.val(), [stride, stride], sides);
                assert_eq!(expected.dims(), actual.dims(), "{channels} {kernel} {stride} {size}");
                assert!(relative_difference(expected.clone(), actual.clone()) < 1e-5);
                let target = Tensor::<4>::random(expected.dims(), Distribution::Normal(0.0, 1.0), &device);
                let expected_grads = (expected * target.clone()).sum().backward();
                let actual_grads = (actual * target).sum().backward();
                let weight = |grads| layer.weight.grad(grads).expect("a weight gradient");
                assert!(
                    relative_difference(weight(&expected_grads), weight(&actual_grads)) < 1e-5,
                    "{channels} {kernel} {stride} {size}"
                );
                match (x.grad(&expected_grads), x.grad(&actual_grads)) {
                    (Some(expected), Some(actual)) => assert!(relative_difference(expected, actual) < 1e-5),
                    (None, None) => assert!(!input_tracked),
                    _ => panic!("the input's gradient exists for one implementation only"),
                }
            }
            // Without autodiff: the same forward as burn's module without autodiff.
            let plain = burn::module::Module::valid(&layer);
            let x = Tensor::<4>::random([2, channels, size, size + 1], Distribution::Normal(0.0, 1.0), &Device::flex());
            let actual = conv(x.clone(), plain.weight.val(), [stride, stride], sides);
            assert!(!actual.is_autodiff());
            assert!(relative_difference(plain.forward(x), actual) < 1e-5);
        }
    }
}
