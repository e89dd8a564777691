//! Convolutions with one group and a kernel larger than 1x1 on `flex` (ResNet's 3x3 and 7x7,
//! the stems of EfficientNet-Lite and MobileNetV2), forward and backward as matrix products.
//!
//! burn's `flex` takes a convolution's input gradient through a general transposed convolution
//! and its filter gradient through a convolution of the input with the output gradient as the
//! filter; at ResNet-50's sizes those were most of a `full` training step. Here each image is
//! unfolded (im2col: one row per input channel and filter tap, one column per output pixel) and
//! - the forward is `filter [out, in·kh·kw] x columns`,
//! - the filter's gradient is the sum over images of `output gradient x columns^T`,
//! - the input's gradient is `filter^T x output gradient`, folded back onto the input (col2im),
//!
//! a few images per product where planes are small (their columns side by side, so a 7x7 plane's
//! product is not 49 columns thin), the groups spread over the cores, each product on its
//! task's thread. The columns are made
//! again in the backward rather than kept: a batch's columns are kernel-area times the input's
//! size. Recorded in burn's autodiff as one operation; values and gradients equal burn's
//! convolution's up to rounding (tests below).

use burn::tensor::Tensor;
use rayon::prelude::*;

/// The shape of one convolution: input `[batch, inputs, height, width]`, filter `[outputs,
/// inputs, kernel_h, kernel_w]`, padding (top, left, bottom, right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub inputs: usize,
    pub outputs: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 4],
}

impl Geometry {
    pub fn output(&self) -> [usize; 2] {
        super::ops::output_size(self.height, self.width, self.kernel, self.stride, self.padding)
    }

    /// Rows of an image's columns: input channels times filter taps.
    fn depth(&self) -> usize {
        self.inputs * self.kernel[0] * self.kernel[1]
    }

    fn pixels(&self) -> usize {
        let [out_h, out_w] = self.output();
        out_h * out_w
    }

    fn image(&self) -> usize {
        self.inputs * self.height * self.width
    }
}

/// The output positions `o` in `0..out` whose input position `o * stride + tap - pad` lies in
/// `0..size`: a range, since the position grows with `o`.
fn valid(out: usize, size: usize, stride: usize, tap: usize, pad: usize) -> std::ops::Range<usize> {
    // First o with o * stride + tap >= pad; first o with o * stride + tap >= pad + size.
    let first = pad.saturating_sub(tap).div_ceil(stride).min(out);
    let end = (pad + size).saturating_sub(tap).div_ceil(stride).clamp(first, out);
    first..end
}

/// Unfolds one image (`[channels, height, width]`) into `columns` (`[channels * kh * kw, out_h *
/// out_w]`): row (c, ky, kx) holds, for every output pixel, the input under that tap (0 in the
/// padding). Each output row's valid span is found once per tap and copied (a contiguous run at
/// stride 1), the padding around it filled with zeros.
#[allow(clippy::too_many_arguments)] // a convolution's geometry, spelled out for the fused plan too.
pub(crate) fn im2col(
    input: &[f32],
    [channels, height, width]: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    output: [usize; 2],
    columns: &mut [f32],
) {
    im2col_into(input, [channels, height, width], kernel, stride, padding, output, columns, output[0] * output[1]);
}

/// [`im2col`] into rows `row_stride` apart: row r of this image's columns is
/// `columns[r * row_stride..][..out_h * out_w]` (several images' columns side by side).
#[allow(clippy::too_many_arguments)]
fn im2col_into(
    input: &[f32],
    [channels, height, width]: [usize; 3],
    [kernel_h, kernel_w]: [usize; 2],
    [stride_h, stride_w]: [usize; 2],
    [top, left]: [usize; 2],
    [out_h, out_w]: [usize; 2],
    columns: &mut [f32],
    row_stride: usize,
) {
    let plane = out_h * out_w;
    for channel in 0..channels {
        let source = &input[channel * height * width..(channel + 1) * height * width];
        for ky in 0..kernel_h {
            let rows = valid(out_h, height, stride_h, ky, top);
            for kx in 0..kernel_w {
                let row = &mut columns[((channel * kernel_h + ky) * kernel_w + kx) * row_stride..][..plane];
                let span = valid(out_w, width, stride_w, kx, left);
                row[..rows.start * out_w].fill(0.0);
                row[rows.end * out_w..].fill(0.0);
                for oy in rows.clone() {
                    let target = &mut row[oy * out_w..(oy + 1) * out_w];
                    let line = &source[(oy * stride_h + ky - top) * width..][..width];
                    target[..span.start].fill(0.0);
                    target[span.end..].fill(0.0);
                    if span.is_empty() {
                        continue;
                    }
                    let first = span.start * stride_w + kx - left;
                    let target = &mut target[span.clone()];
                    if stride_w == 1 {
                        target.copy_from_slice(&line[first..first + target.len()]);
                    } else {
                        for (value, source) in target.iter_mut().zip(line[first..].iter().step_by(stride_w)) {
                            *value = *source;
                        }
                    }
                }
            }
        }
    }
}

/// Folds columns back onto an image: the adjoint of [`im2col`], adding each column entry to the
/// input pixel it was read from.
#[cfg(test)]
fn col2im(columns: &[f32], g: &Geometry, image: &mut [f32]) {
    col2im_from(columns, g.pixels(), g, image);
}

/// [`col2im`] from rows `row_stride` apart (see [`im2col_into`]).
fn col2im_from(columns: &[f32], row_stride: usize, g: &Geometry, image: &mut [f32]) {
    let [out_h, out_w] = g.output();
    let [kernel_h, kernel_w] = g.kernel;
    let [stride_h, stride_w] = g.stride;
    let [top, left, ..] = g.padding;
    let plane = out_h * out_w;
    for channel in 0..g.inputs {
        let target = &mut image[channel * g.height * g.width..(channel + 1) * g.height * g.width];
        for ky in 0..kernel_h {
            let rows = valid(out_h, g.height, stride_h, ky, top);
            for kx in 0..kernel_w {
                let row = &columns[((channel * kernel_h + ky) * kernel_w + kx) * row_stride..][..plane];
                let span = valid(out_w, g.width, stride_w, kx, left);
                if span.is_empty() {
                    continue;
                }
                let first = span.start * stride_w + kx - left;
                for oy in rows.clone() {
                    let values = &row[oy * out_w..(oy + 1) * out_w][span.clone()];
                    let line = &mut target[(oy * stride_h + ky - top) * g.width..][..g.width];
                    if stride_w == 1 {
                        line[first..first + values.len()]
                            .iter_mut()
                            .zip(values)
                            .for_each(|(pixel, value)| *pixel += value);
                    } else {
                        line[first..]
                            .iter_mut()
                            .step_by(stride_w)
                            .zip(values)
                            .for_each(|(pixel, value)| *pixel += value);
                    }
                }
            }
        }
    }
}

/// A matrix as gemm reads it: where it starts and its column and row strides.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    column_stride: isize,
    row_stride: isize,
}

impl View {
    /// A row-major `rows x columns` matrix in `values`.
    fn rows(values: &[f32], columns: usize) -> View {
        View { ptr: values.as_ptr(), column_stride: 1, row_stride: columns as isize }
    }

    /// The transpose of a row-major matrix with `columns` columns in `values`.
    fn transposed(values: &[f32], columns: usize) -> View {
        View { ptr: values.as_ptr(), column_stride: columns as isize, row_stride: 1 }
    }
}

/// `out[m x n] (+)= lhs[m x k] * rhs[k x n]` on the calling thread; `out` is row-major and is
/// added to when `accumulate`. The caller guarantees the views lie inside live slices of at
/// least m*k and k*n values.
fn product(out: &mut [f32], lhs: View, rhs: View, [m, k, n]: [usize; 3], accumulate: bool) {
    assert!(out.len() >= m * n);
    // SAFETY: `out` holds m*n values, row-major and unaliased; `lhs` and `rhs` come from
    // `View::rows` / `View::transposed` on slices the callers size as m x k and k x n.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.ptr,
            lhs.column_stride,
            lhs.row_stride,
            rhs.ptr,
            rhs.column_stride,
            rhs.row_stride,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Output pixels a matrix product should span at least: on small planes (ResNet's last stages,
/// 7x7 and 14x14) one image's product is thin, and the filter is packed again and a filter-sized
/// sum read and written for every image. Several images' columns side by side make one product.
const MIN_PRODUCT_PIXELS: usize = 512;

/// Images per product: each thread's share of the batch cut into the fewest equal groups of at
/// most the images that span [`MIN_PRODUCT_PIXELS`] (on 7x7 planes 11 images span 539 pixels; a
/// share of 16 becomes two groups of 8, not 11 and 5, which would leave a core idle).
fn group_size(g: &Geometry) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let share = g.batch.div_ceil(threads).max(1);
    let wanted = MIN_PRODUCT_PIXELS.div_ceil(g.pixels().max(1));
    share.div_ceil(share.div_ceil(wanted)).max(1)
}

/// Unfolds images `first..first + count` side by side: row r of image j at
/// `columns[r * count·pixels + j·pixels..]`.
fn unfold_group(x: &[f32], g: &Geometry, first: usize, count: usize, columns: &mut [f32]) {
    let (pixels, width) = (g.pixels(), count * g.pixels());
    for j in 0..count {
        let n = first + j;
        im2col_into(
            &x[n * g.image()..(n + 1) * g.image()],
            [g.inputs, g.height, g.width],
            g.kernel,
            g.stride,
            [g.padding[0], g.padding[1]],
            g.output(),
            &mut columns[j * pixels..],
            width,
        );
    }
}

/// The output gradients of images `first..first + count` as one `[outputs, count·pixels]`
/// matrix (in `wide`), or the one image's own when `count` is 1.
fn gather_group<'a>(gy: &'a [f32], g: &Geometry, first: usize, count: usize, wide: &'a mut [f32]) -> &'a [f32] {
    let (pixels, per_image) = (g.pixels(), g.outputs * g.pixels());
    if count == 1 {
        return &gy[first * per_image..(first + 1) * per_image];
    }
    let width = count * pixels;
    for j in 0..count {
        for o in 0..g.outputs {
            wide[o * width + j * pixels..][..pixels]
                .copy_from_slice(&gy[((first + j) * g.outputs + o) * pixels..][..pixels]);
        }
    }
    &wide[..g.outputs * width]
}

/// A task's buffers for groups of `group` images: their columns side by side, and (when there is
/// more than one image) their `[outputs, group·pixels]` output or output gradient.
fn scratch(g: &Geometry, group: usize) -> (Vec<f32>, Vec<f32>) {
    let wide = if group > 1 { group * g.outputs * g.pixels() } else { 0 };
    (vec![0.0f32; g.depth() * group * g.pixels()], vec![0.0f32; wide])
}

/// The forward: `group` images per product, one group per task.
pub fn forward_values(x: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    forward_grouped(x, w, g, group_size(g))
}

fn forward_grouped(x: &[f32], w: &[f32], g: &Geometry, group: usize) -> Vec<f32> {
    let (pixels, depth, per_image) = (g.pixels(), g.depth(), g.outputs * g.pixels());
    let mut y = vec![0.0f32; g.batch * per_image];
    y.par_chunks_mut(group * per_image).enumerate().for_each_init(
        || scratch(g, group),
        |(columns, wide), (chunk, out)| {
            let count = out.len() / per_image;
            let width = count * pixels;
            unfold_group(x, g, chunk * group, count, columns);
            let columns = View::rows(&columns[..depth * width], width);
            if count == 1 {
                product(out, View::rows(w, depth), columns, [g.outputs, depth, pixels], false);
                return;
            }
            let wide = &mut wide[..g.outputs * width];
            product(wide, View::rows(w, depth), columns, [g.outputs, depth, width], false);
            for j in 0..count {
                for o in 0..g.outputs {
                    out[(j * g.outputs + o) * pixels..][..pixels]
                        .copy_from_slice(&wide[o * width + j * pixels..][..pixels]);
                }
            }
        },
    );
    y
}

/// The filter's gradient: each task sums its groups' `gy_group x columns_group^T`, then the
/// tasks' sums are added.
pub fn filter_gradient(gy: &[f32], x: &[f32], g: &Geometry) -> Vec<f32> {
    filter_gradient_grouped(gy, x, g, group_size(g))
}

fn filter_gradient_grouped(gy: &[f32], x: &[f32], g: &Geometry, group: usize) -> Vec<f32> {
    let (pixels, depth) = (g.pixels(), g.depth());
    (0..g.batch.div_ceil(group))
        .into_par_iter()
        .fold(
            || {
                let (columns, wide) = scratch(g, group);
                (vec![0.0f32; g.outputs * depth], columns, wide)
            },
            |(mut sum, mut columns, mut wide), chunk| {
                let first = chunk * group;
                let count = group.min(g.batch - first);
                let width = count * pixels;
                unfold_group(x, g, first, count, &mut columns);
                let grad = gather_group(gy, g, first, count, &mut wide);
                product(
                    &mut sum,
                    View::rows(grad, width),
                    View::transposed(&columns[..depth * width], width),
                    [g.outputs, width, depth],
                    true,
                );
                (sum, columns, wide)
            },
        )
        .map(|(sum, _, _)| sum)
        .reduce(
            || vec![0.0f32; g.outputs * depth],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

/// The input's gradient: per group, `filter^T x gy_group` folded back onto each image.
pub fn input_gradient(gy: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    input_gradient_grouped(gy, w, g, group_size(g))
}

fn input_gradient_grouped(gy: &[f32], w: &[f32], g: &Geometry, group: usize) -> Vec<f32> {
    let (pixels, depth) = (g.pixels(), g.depth());
    let mut gx = vec![0.0f32; g.batch * g.image()];
    gx.par_chunks_mut(group * g.image()).enumerate().for_each_init(
        || scratch(g, group),
        |(columns, wide), (chunk, images)| {
            let count = images.len() / g.image();
            let width = count * pixels;
            let grad = gather_group(gy, g, chunk * group, count, wide);
            product(
                &mut columns[..depth * width],
                View::transposed(w, depth),
                View::rows(grad, width),
                [depth, g.outputs, width],
                false,
            );
            for (j, image) in images.chunks_mut(g.image()).enumerate() {
                col2im_from(&columns[j * pixels..], width, g, image);
            }
        },
    );
    gx
}

/// The convolution of `x` with `weight` (one group, no bias) on `flex`; tracked by burn's
/// autodiff when either is. `padding` is (top, left, bottom, right).
pub fn conv(x: Tensor<4>, weight: Tensor<4>, stride: [usize; 2], padding: [usize; 4]) -> Tensor<4> {
    let [batch, inputs, height, width] = x.dims();
    let [outputs, _, kernel_h, kernel_w] = weight.dims();
    super::flexop::run(
        x,
        weight,
        Geometry { batch, inputs, outputs, height, width, kernel: [kernel_h, kernel_w], stride, padding },
    )
}

impl super::flexop::Kernels for Geometry {
    fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.inputs, self.height, self.width]
    }

    fn filter_shape(&self) -> [usize; 4] {
        [self.outputs, self.inputs, self.kernel[0], self.kernel[1]]
    }

    fn output_shape(&self) -> [usize; 4] {
        let [out_h, out_w] = self.output();
        [self.batch, self.outputs, out_h, out_w]
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

    /// The unfolding reads, for every tap and output pixel, exactly the input pixel under it (0
    /// in the padding), and the folding is its adjoint: `<im2col(x), c> = <x, col2im(c)>`, over
    /// geometries where whole rows and columns of taps fall in the padding (a 7x7 kernel on a
    /// 2x3 image, padding wider than the image, strides 1-3).
    #[test]
    fn unfolding_reads_each_tap_and_folding_is_its_adjoint() {
        let naive = |x: &[f32], g: &Geometry| {
            let [out_h, out_w] = g.output();
            let mut columns = Vec::new();
            for c in 0..g.inputs {
                for ky in 0..g.kernel[0] {
                    for kx in 0..g.kernel[1] {
                        for oy in 0..out_h {
                            for ox in 0..out_w {
                                let iy = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                                let ix = (ox * g.stride[1] + kx) as isize - g.padding[1] as isize;
                                let inside =
                                    (0..g.height as isize).contains(&iy) && (0..g.width as isize).contains(&ix);
                                columns.push(if inside {
                                    x[(c * g.height + iy as usize) * g.width + ix as usize]
                                } else {
                                    0.0
                                });
                            }
                        }
                    }
                }
            }
            columns
        };
        let mut rng = crate::rng::SplitMix64::new(17);
        let mut random = move || rng.uniform(-0.5, 0.5) as f32;
        for (height, width, kernel, stride, padding) in [
            (5, 6, [3, 3], [1, 1], [1, 1, 1, 1]),
            (7, 7, [3, 3], [2, 2], [0, 0, 1, 1]),
            (2, 3, [7, 7], [2, 2], [3, 3, 3, 3]),
            (9, 4, [1, 3], [3, 1], [0, 2, 0, 2]),
            (3, 3, [3, 5], [1, 2], [4, 0, 4, 5]),
            (8, 8, [1, 1], [2, 2], [0, 0, 0, 0]),
        ] {
            let g = Geometry { batch: 1, inputs: 2, outputs: 1, height, width, kernel, stride, padding };
            let x: Vec<f32> = (0..g.image()).map(|_| random()).collect();
            let mut columns = vec![f32::NAN; g.depth() * g.pixels()];
            im2col(&x, [g.inputs, height, width], kernel, stride, [padding[0], padding[1]], g.output(), &mut columns);
            assert_eq!(columns, naive(&x, &g), "{g:?}");
            let c: Vec<f32> = (0..columns.len()).map(|_| random()).collect();
            let mut folded = vec![0.0f32; g.image()];
            col2im(&c, &g, &mut folded);
            let left: f64 = columns.iter().zip(&c).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            let right: f64 = x.iter().zip(&folded).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            assert!((left - right).abs() < 1e-4, "{g:?}: {left} against {right}");
        }
    }

    /// Several images per product (their columns side by side) give what one image per product
    /// gives, forward and both gradients, for every group size up to the batch (the last group
    /// short), on planes small enough that `group_size` groups them.
    #[test]
    fn grouped_products_match_one_image_at_a_time() {
        let mut rng = crate::rng::SplitMix64::new(5);
        let mut random = move |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect() };
        let close = |actual: &[f32], expected: &[f32]| {
            let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, b)| (a - b).abs() <= 1e-5 * scale)
        };
        for (height, width, kernel, stride, padding) in [
            (7, 7, [3, 3], [1, 1], [1, 1, 1, 1]),
            (9, 8, [3, 3], [2, 2], [0, 0, 1, 1]),
            (5, 6, [7, 7], [2, 2], [3, 3, 3, 3]),
        ] {
            let g = Geometry { batch: 5, inputs: 3, outputs: 4, height, width, kernel, stride, padding };
            let x = random(g.batch * g.image());
            let w = random(g.outputs * g.depth());
            let gy = random(g.batch * g.outputs * g.pixels());
            let forward = forward_grouped(&x, &w, &g, 1);
            let filter = filter_gradient_grouped(&gy, &x, &g, 1);
            let input = input_gradient_grouped(&gy, &w, &g, 1);
            for group in 2..=g.batch {
                assert!(
                    close(&forward_grouped(&x, &w, &g, group), &forward),
                    "forward, {group} images a product, {g:?}"
                );
                assert!(
                    close(&filter_gradient_grouped(&gy, &x, &g, group), &filter),
                    "filter gradient, {group} images a product, {g:?}"
                );
                assert!(
                    close(&input_gradient_grouped(&gy, &w, &g, group), &input),
                    "input gradient, {group} images a product, {g:?}"
                );
            }
        }
    }

    /// Outputs and gradients equal burn's own convolution's for ResNet's and the stems' shapes
    /// (3x3 stride 1 and 2, 7x7 stride 2, TensorFlow's uneven "same" padding, no padding, a
    /// rectangular kernel), tracked or not, and without autodiff.
    #[test]
    fn convolution_matches_burn_forward_and_backward() {
        let device = Device::flex().autodiff();
        let cases = [
            (3, 4, [3, 3], 1, PaddingConfig2d::Explicit(1, 1, 1, 1), 9),
            (3, 5, [3, 3], 2, PaddingConfig2d::Same, 10),
            (2, 3, [7, 7], 2, PaddingConfig2d::Explicit(3, 3, 3, 3), 13),
            (4, 2, [3, 3], 2, PaddingConfig2d::Valid, 8),
            (3, 6, [1, 3], 1, PaddingConfig2d::Explicit(0, 1, 0, 1), 6),
        ];
        for (inputs, outputs, kernel, stride, padding, size) in cases {
            let layer = Conv2dConfig::new([inputs, outputs], kernel)
                .with_stride([stride, stride])
                .with_padding(padding.clone())
                .with_bias(false)
                .init(&device);
            let sides = crate::backend::ops::padding_sides(&padding, kernel, [stride, stride], size, size + 1);
            for input_tracked in [true, false] {
                let x = Tensor::<4>::random([3, inputs, size, size + 1], Distribution::Normal(0.0, 1.0), &device);
                let x = if input_tracked { x.require_grad() } else { x };
                let expected = layer.forward(x.clone());
                let actual = conv(x.clone(), layer.weight.val(), [stride, stride], sides);
                assert_eq!(expected.dims(), actual.dims(), "{inputs} {outputs} {kernel:?} {stride} {size}");
                assert!(relative_difference(expected.clone(), actual.clone()) < 1e-5);
                let target = Tensor::<4>::random(expected.dims(), Distribution::Normal(0.0, 1.0), &device);
                let expected_grads = (expected * target.clone()).sum().backward();
                let actual_grads = (actual * target).sum().backward();
                let weight = |grads| layer.weight.grad(grads).expect("a weight gradient");
                assert!(
                    relative_difference(weight(&expected_grads), weight(&actual_grads)) < 1e-5,
                    "{inputs} {outputs} {kernel:?} {stride} {size}"
                );
                match (x.grad(&expected_grads), x.grad(&actual_grads)) {
                    (Some(expected), Some(actual)) => assert!(relative_difference(expected, actual) < 1e-5),
                    (None, None) => assert!(!input_tracked),
                    _ => panic!("the input's gradient exists for one implementation only"),
                }
            }
            let plain = burn::module::Module::valid(&layer);
            let x = Tensor::<4>::random([2, inputs, size, size + 1], Distribution::Normal(0.0, 1.0), &Device::flex());
            let actual = conv(x.clone(), plain.weight.val(), [stride, stride], sides);
            assert!(!actual.is_autodiff());
            assert!(relative_difference(plain.forward(x), actual) < 1e-5);
        }
    }
}
