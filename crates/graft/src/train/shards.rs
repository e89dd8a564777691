//! Data-parallel training steps on one machine.
//!
//! burn's `flex` backend keeps only about one of two cores busy while training: most of the
//! tensors of a student's trainable tail are below the size at which it splits an operation
//! across threads. So graft can split each batch into shards that run forward and backward at the
//! same time on their own threads, each through a replica of the student whose trainable
//! parameters are fresh autodiff leaves (the same values and parameter ids, so each replica has a
//! graph of its own), then add the gradients up, each shard weighted by its share of the batch's
//! loss. The step is then the step of the whole batch with one difference: each shard's batch
//! norms normalize with that shard's statistics (as with PyTorch's `DistributedDataParallel`
//! without `SyncBatchNorm`). Their running statistics are updated once per batch, from the
//! statistics of the whole batch, on the calling thread (`batch_statistics`), so
//! results do not depend on thread timing.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::student::{Student, StudentInput};
use crate::backend::batch_statistics::{self, BatchStatistics, update_running_statistics};
use crate::error::Result;

/// One training step's loss, per-shard logits (in inference form, for accuracy) and gradients.
pub struct Step {
    /// The loss of the whole batch.
    pub loss: f64,
    pub logits: Vec<Tensor<2>>,
    pub gradients: GradientsParams,
}

/// Forward and backward of one batch split into `shards` (each `(input, labels)`), in parallel;
/// one shard is the whole batch in one pass on the calling thread, through the student itself.
/// `class_weights` must be those `loss_function` was built with; `head_only` keeps only the
/// head's gradients. Updates the batch norms' running statistics.
pub fn step(
    student: &Student,
    mut shards: Vec<(StudentInput, Vec<i64>)>,
    cut: usize,
    loss_function: &CrossEntropyLoss,
    class_weights: Option<&[f32]>,
    head_only: bool,
    device: &Device,
) -> Result<Step> {
    if shards.len() == 1
        && let Some((input, labels)) = shards.pop()
    {
        let (loss, logits, gradients) =
            forward_backward(student, input, labels, cut, loss_function, head_only, device)?;
        return Ok(Step { loss, logits: vec![logits], gradients });
    }
    // What each shard's mean loss is divided by: its examples' summed class weights.
    let loss_weights: Vec<f64> = shards
        .iter()
        .map(|(_, labels)| match class_weights {
            Some(weights) => labels.iter().map(|label| weights[*label as usize] as f64).sum(),
            None => labels.len() as f64,
        })
        .collect();
    let total: f64 = loss_weights.iter().sum();
    let shares: Vec<f64> = loss_weights.iter().map(|weight| weight / total).collect();

    let (step, _) = parallel(student, shards, &shares, device, |replica, (input, labels)| {
        forward_backward(replica, input, labels, cut, loss_function, head_only, device)
            .map(|(loss, logits, gradients)| (loss, logits, gradients, ()))
    })?;
    Ok(step)
}

/// Runs `pass` (forward and backward of one shard, returning its mean loss, its logits, its
/// gradients and whatever else the caller measures on it) on every shard at the same time, each
/// on a thread of its own through a replica of `student`, and adds the gradients up, shard `i`'s
/// times `shares[i]` (which sum to 1); the loss likewise. Returns the step and each shard's own
/// figures, in the shards' order. Updates the batch norms' running statistics from the whole
/// batch's.
///
/// # Errors
/// The first shard's error.
pub fn parallel<M, S, X, F>(
    student: &M,
    shards: Vec<S>,
    shares: &[f64],
    device: &Device,
    pass: F,
) -> Result<(Step, Vec<X>)>
where
    M: Module,
    S: Send,
    X: Send,
    F: Fn(&M, S) -> Result<(f64, Tensor<2>, GradientsParams, X)> + Sync,
{
    let threads = intra_op_threads(device, shards.len());
    let run = |replica: M, shard: S| {
        if let Some(threads) = threads {
            set_intra_op_threads(threads);
        }
        batch_statistics::collect(|| pass(&replica, shard))
    };
    let replicas: Vec<M> = shards.iter().map(|_| student.clone().map(&mut FreshLeaves)).collect();
    #[allow(clippy::type_complexity)]
    let results: Vec<(Result<(f64, Tensor<2>, GradientsParams, X)>, Vec<BatchStatistics>)> =
        std::thread::scope(|scope| {
            // Every shard on a thread of its own, so that a per-thread setting (libtorch's intra-op
            // threads) never touches the calling thread.
            let handles: Vec<_> = replicas
                .into_iter()
                .zip(shards)
                .map(|(replica, shard)| scope.spawn(move || run(replica, shard)))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                .collect()
        });

    let mut loss = 0.0;
    let mut logits = Vec::with_capacity(results.len());
    let mut gradients = Vec::with_capacity(results.len());
    let mut statistics = Vec::with_capacity(results.len());
    let mut figures = Vec::with_capacity(results.len());
    for ((result, shard_statistics), share) in results.into_iter().zip(shares) {
        let (shard_loss, shard_logits, shard_gradients, shard_figures) = result?;
        loss += shard_loss * share;
        logits.push(shard_logits);
        gradients.push(shard_gradients);
        statistics.push(shard_statistics);
        figures.push(shard_figures);
    }
    update_running_statistics(statistics);
    let mut sum = WeightedSum { shards: gradients, shares: shares.to_vec(), out: GradientsParams::new() };
    student.visit(&mut sum);
    Ok((Step { loss, logits, gradients: sum.out }, figures))
}

/// One forward and backward pass of `student` on one shard: its mean loss, its logits (in
/// inference form) and the gradients (the head's only with `head_only`).
fn forward_backward(
    student: &Student,
    input: StudentInput,
    labels: Vec<i64>,
    cut: usize,
    loss_function: &CrossEntropyLoss,
    head_only: bool,
    device: &Device,
) -> Result<(f64, Tensor<2>, GradientsParams)> {
    let count = labels.len();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [count]), device);
    let logits = student.forward(input, cut)?;
    let loss = loss_function.forward(logits.clone(), targets);
    let loss_value = loss.clone().into_scalar::<f32>() as f64;
    let mut gradients = loss.backward();
    let gradients = if head_only {
        GradientsParams::from_module(&mut gradients, &student.head)
    } else {
        GradientsParams::from_grads(gradients, student)
    };
    Ok((loss_value, logits.valid(), gradients))
}

/// The intra-op threads each shard's thread should use, where the backend has such a setting:
/// libtorch runs every operation on all cores (OpenMP); with shards already side by side, each
/// shard gets its share of them instead of oversubscribing the cores (measured in
/// docs/PERFORMANCE.md, section 2b). `None` on other backends.
fn intra_op_threads(device: &Device, shards: usize) -> Option<usize> {
    #[cfg(feature = "tch")]
    #[allow(deprecated)]
    if *device == Device::libtorch() {
        // Read on the calling thread, which also fixes its own count before any shard thread
        // changes libtorch's default for threads started later.
        let threads = tch::get_num_threads().max(1) as usize;
        return Some((threads / shards.max(1)).max(1));
    }
    let _ = (device, shards);
    None
}

/// Sets the calling thread's intra-op threads (OpenMP's and MKL's counts are per thread).
fn set_intra_op_threads(threads: usize) {
    #[cfg(feature = "tch")]
    tch::set_num_threads(threads as i32);
    let _ = threads;
}

/// Gives every trainable parameter a fresh autodiff leaf with the same value and id.
struct FreshLeaves;

impl ModuleMapper for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !param.val().is_require_grad() {
            return param;
        }
        param.map(|tensor| tensor.detach().require_grad())
    }
}

/// Adds up the shards' gradients of each parameter, each times its shard's share.
struct WeightedSum {
    shards: Vec<GradientsParams>,
    shares: Vec<f64>,
    out: GradientsParams,
}

impl ModuleVisitor for WeightedSum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let mut sum: Option<Tensor<D>> = None;
        for (gradients, share) in self.shards.iter_mut().zip(&self.shares) {
            if let Some(gradient) = gradients.remove::<D>(param.id) {
                let gradient = gradient.mul_scalar(*share);
                sum = Some(match sum {
                    Some(sum) => sum + gradient,
                    None => gradient,
                });
            }
        }
        if let Some(sum) = sum {
            self.out.register(param.id, sum);
        }
    }
}

/// Splits `items` into `shards` runs of nearly equal length (the first ones one longer), in order.
pub fn split<T: Clone>(items: &[T], shards: usize) -> Vec<Vec<T>> {
    let shards = shards.clamp(1, items.len().max(1));
    let (base, extra) = (items.len() / shards, items.len() % shards);
    let mut out = Vec::with_capacity(shards);
    let mut start = 0;
    for shard in 0..shards {
        let length = base + usize::from(shard < extra);
        out.push(items[start..start + length].to_vec());
        start += length;
    }
    out
}
