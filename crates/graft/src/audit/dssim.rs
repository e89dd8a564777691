//! DSSIM, the perceptual distance that budgets the mimicry attack's perturbation:
//! (1 − MS-SSIM) / 2, with MS-SSIM as Wang, Simoncelli and Bovik define it ("Multiscale
//! structural similarity for image quality assessment", 2003) and as the attack's reference code
//! computes it (Wang et al., USENIX Security 2018). Tensor operations throughout, so the attack
//! differentiates through it.
//!
//! Not the single-scale 7×7 SSIM of some libraries, nor the `dssim` crate's definition: checked
//! against an independent implementation (`tests/fixtures/dssim_pairs.py`).

use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Tensor, TensorData};

/// MS-SSIM's constants. [`MsSsim::default`] is the reference's: RGB pixels in 0–255, an 11×11
/// Gaussian window of σ 1.5, K1 0.01, K2 0.03, five scales with the published weights.
#[derive(Debug, Clone, PartialEq)]
pub struct MsSsim {
    /// Side of the Gaussian window; shrunk to a scale's image where that is smaller (σ with it).
    pub window: usize,
    pub sigma: f64,
    pub k1: f64,
    pub k2: f64,
    /// One weight per scale, finest first: contrast-structure at all but the last, SSIM there.
    pub weights: Vec<f64>,
    /// The pixels' dynamic range.
    pub max_value: f64,
}

impl Default for MsSsim {
    fn default() -> Self {
        MsSsim {
            window: 11,
            sigma: 1.5,
            k1: 0.01,
            k2: 0.03,
            weights: vec![0.0448, 0.2856, 0.3001, 0.2363, 0.1333],
            max_value: 255.0,
        }
    }
}

impl MsSsim {
    /// MS-SSIM of each pair of images in two batches `[N, C, H, W]` (pixels in `0..=max_value`):
    /// `[N]`, 1 for identical images. At each scale the SSIM and contrast-structure maps are
    /// averaged over all pixels and channels together (the reference's way; some libraries
    /// average per channel and then combine); a negative average counts as 0. Between scales the
    /// images are halved by 2×2 averages, an odd last row or column averaged on its own
    /// (TensorFlow's `SAME` pooling, which the reference used).
    ///
    /// # Panics
    /// With no scale weights, or batches of different shapes.
    pub fn similarity(&self, a: Tensor<4>, b: Tensor<4>) -> Tensor<1> {
        assert!(!self.weights.is_empty(), "MS-SSIM needs at least one scale");
        assert_eq!(a.dims(), b.dims(), "MS-SSIM compares images of one shape");
        let (mut a, mut b) = (a, b);
        let mut product: Option<Tensor<1>> = None;
        for (level, weight) in self.weights.iter().enumerate() {
            let last = level + 1 == self.weights.len();
            let (ssim, contrast_structure) = self.single_scale(a.clone(), b.clone());
            let term = if last { ssim } else { contrast_structure }.clamp_min(0.0).powf_scalar(*weight);
            product = Some(match product {
                Some(product) => product * term,
                None => term,
            });
            if !last {
                (a, b) = (halve(a), halve(b));
            }
        }
        product.expect("one scale at least")
    }

    /// DSSIM, `(1 − MS-SSIM) / 2`, of each pair: `[N]`, 0 for identical images.
    pub fn dssim(&self, a: Tensor<4>, b: Tensor<4>) -> Tensor<1> {
        (self.similarity(a, b).neg() + 1.0) / 2.0
    }

    /// Per image: the means of the SSIM and contrast-structure maps at one scale.
    fn single_scale(&self, a: Tensor<4>, b: Tensor<4>) -> (Tensor<1>, Tensor<1>) {
        let [_, _, height, width] = a.dims();
        let size = self.window.min(height).min(width);
        let sigma = size as f64 * self.sigma / self.window as f64;
        // The five local statistics in one grouped convolution, without padding, on pixels
        // centred on mid-range: variances are differences of squares, and squares of values
        // near 0 lose less to float32's rounding than squares of values near 255.
        let middle = self.max_value / 2.0;
        let (a, b) = (a - middle, b - middle);
        let signals = Tensor::cat(vec![a.clone(), b.clone(), a.clone() * a.clone(), b.clone() * b.clone(), a * b], 1);
        let local = gaussian_filter(signals, size, sigma).chunk(5, 1);
        let [mu_a, mu_b, aa, bb, ab]: [Tensor<4>; 5] = local.try_into().expect("five statistics");
        let c1 = (self.k1 * self.max_value).powi(2);
        let c2 = (self.k2 * self.max_value).powi(2);
        let covariance = (ab - mu_a.clone() * mu_b.clone()) * 2.0 + c2;
        let variances = aa - mu_a.clone() * mu_a.clone() + bb - mu_b.clone() * mu_b.clone() + c2;
        let contrast_structure = covariance / variances;
        // The luminance term on the pixels' own means.
        let (mu_a, mu_b) = (mu_a + middle, mu_b + middle);
        let luminance = (mu_a.clone() * mu_b.clone() * 2.0 + c1) / (mu_a.clone() * mu_a + mu_b.clone() * mu_b + c1);
        let ssim = contrast_structure.clone() * luminance;
        (per_image_mean(ssim), per_image_mean(contrast_structure))
    }
}

/// A normalised 1-D Gaussian of `size` taps, centred between pixels for even sizes (as MATLAB's
/// `fspecial`, which the reference mimics). The 2-D window is its outer product with itself.
fn gaussian_taps(size: usize, sigma: f64) -> Vec<f64> {
    let centre = (size as f64 - 1.0) / 2.0;
    let taps: Vec<f64> = (0..size).map(|i| (-(i as f64 - centre).powi(2) / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = taps.iter().sum();
    taps.iter().map(|tap| tap / total).collect()
}

/// Each plane of `[N, C, H, W]` filtered by the `size`×`size` Gaussian without padding:
/// `[N, C, H − size + 1, W − size + 1]`. As two products with banded matrices (rows, then
/// columns) rather than a grouped convolution: the same values, and matrix products (forward
/// and backward) are what the CPU backend does fastest; a grouped 11×11 convolution's backward
/// took 4 s for 8 images at 224 px.
fn gaussian_filter(planes: Tensor<4>, size: usize, sigma: f64) -> Tensor<4> {
    let [n, channels, height, width] = planes.dims();
    let (out_height, out_width) = (height - size + 1, width - size + 1);
    let taps = gaussian_taps(size, sigma);
    let device = planes.device();
    // band(rows, columns)[i][j] = taps[j - i] for j - i in 0..size.
    let band = |rows: usize, columns: usize| -> Tensor<3> {
        let mut values = vec![0.0f32; rows * columns];
        for i in 0..rows {
            for (k, tap) in taps.iter().enumerate() {
                values[i * columns + i + k] = *tap as f32;
            }
        }
        Tensor::<3>::from_data(TensorData::new(values, [1, rows, columns]), &device)
    };
    let batch = n * channels;
    let vertical = band(out_height, height).expand([batch, out_height, height]);
    let horizontal = band(out_width, width).swap_dims(1, 2).expand([batch, width, out_width]);
    vertical
        .matmul(planes.reshape([batch, height, width]))
        .matmul(horizontal)
        .reshape([n, channels, out_height, out_width])
}

/// Halves an image by 2×2 averages; an odd last row or column is repeated first, so that its
/// pixels are averaged on their own.
fn halve(image: Tensor<4>) -> Tensor<4> {
    let [_, _, height, width] = image.dims();
    let mut image = image;
    if height % 2 == 1 {
        let last = image.clone().narrow(2, height - 1, 1);
        image = Tensor::cat(vec![image, last], 2);
    }
    if width % 2 == 1 {
        let last = image.clone().narrow(3, width - 1, 1);
        image = Tensor::cat(vec![image, last], 3);
    }
    avg_pool2d(image, AvgPoolOptions::new([2, 2]))
}

fn per_image_mean(map: Tensor<4>) -> Tensor<1> {
    let [n, _, _, _] = map.dims();
    map.reshape([n as i32, -1]).mean_dim(1).reshape([n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn image(tensor: &graft_weights::Tensor, device: &Device) -> Tensor<4> {
        // Stored as `[H, W, 3]` bytes; the attack works on `[N, 3, H, W]` pixel values.
        let [height, width, channels] = tensor.shape[..] else { panic!("an HWC image") };
        let graft_weights::Values::I64(bytes) = &tensor.values else { panic!("8-bit pixels") };
        let values: Vec<f32> = bytes.iter().map(|v| *v as f32).collect();
        Tensor::<3>::from_data(TensorData::new(values, [height, width, channels]), device)
            .permute([2, 0, 1])
            .unsqueeze()
    }

    /// The pairs and values `tests/fixtures/dssim_pairs.py` wrote (NumPy in float64, itself
    /// checked against pytorch-msssim one channel at a time).
    #[test]
    fn dssim_matches_the_independent_implementation() {
        let device = Device::flex();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dssim_pairs.safetensors");
        let fixture = graft_weights::read(&path).unwrap();
        let measure = MsSsim::default();
        for name in ["different", "noise", "faint", "shift", "odd"] {
            // float64 in the file, read as float32: 7 digits, ample for these tolerances.
            let expected = fixture[&format!("{name}.dssim")].as_f32().unwrap()[0] as f64;
            let (a, b) =
                (image(&fixture[&format!("{name}.a")], &device), image(&fixture[&format!("{name}.b")], &device));
            let got = measure.dssim(a.clone(), b).into_scalar::<f32>() as f64;
            // float32 against float64: within 5e-8 on these pairs.
            assert!((got - expected).abs() <= 1e-6, "{name}: graft {got}, reference {expected}");
            assert!(measure.dssim(a.clone(), a).into_scalar::<f32>().abs() < 1e-6, "{name}: an image against itself");
        }
    }

    /// The attack descends DSSIM's gradient: it must be the function's, at odd sides too. Checked
    /// along directions (one pixel alone moves DSSIM by less than float32 resolves).
    #[test]
    fn dssim_gradient_matches_finite_differences() {
        let device = Device::flex().autodiff();
        let [height, width] = [23, 19];
        let count = 3 * height * width;
        let source: Vec<f32> = (0..count).map(|i| (i * 37 % 251) as f32 * 0.9 + 10.0).collect();
        let moved: Vec<f32> = source.iter().enumerate().map(|(i, v)| v + ((i * 13 % 17) as f32 - 8.0)).collect();
        let shape = [1, 3, height, width];
        let reference = Tensor::<4>::from_data(TensorData::new(source, shape), &device);
        let measure = MsSsim::default();
        let at = |values: Vec<f32>| -> f64 {
            let x = Tensor::<4>::from_data(TensorData::new(values, shape), &device);
            measure.dssim(x, reference.clone()).into_scalar::<f32>() as f64
        };
        let x = Tensor::<4>::from_data(TensorData::new(moved.clone(), shape), &device).require_grad();
        let gradients = measure.dssim(x.clone(), reference.clone()).sum().backward();
        let gradient = x.grad(&gradients).unwrap().into_data().try_to_vec::<f32>().unwrap();
        for seed in [1u64, 2, 3] {
            let mut random = crate::rng::SplitMix64::new(seed);
            let direction: Vec<f32> = (0..count).map(|_| if random.below(2) == 0 { -1.0 } else { 1.0 }).collect();
            let along = |step: f32| moved.iter().zip(&direction).map(|(v, d)| v + step * d).collect::<Vec<f32>>();
            // Central differences at two steps, extrapolated (Richardson): DSSIM curves fast along
            // pixel noise, and the smallest step float32 still resolves is not small enough alone.
            let central = |step: f32| (at(along(step)) - at(along(-step))) / (2.0 * step as f64);
            let numeric = (4.0 * central(0.5) - central(1.0)) / 3.0;
            let analytic: f64 = gradient.iter().zip(&direction).map(|(g, d)| *g as f64 * *d as f64).sum();
            assert!(
                (numeric - analytic).abs() <= 0.03 * analytic.abs(),
                "direction {seed}: autodiff {analytic}, finite difference {numeric}"
            );
        }
    }
}
