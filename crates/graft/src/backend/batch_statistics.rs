//! Batch-norm statistics of a sharded training step, collected per shard and applied once.
//!
//! Inside [`collect`] a batch norm in training mode ([`crate::backend::ops::normalize`])
//! normalizes with the statistics of the shard it sees but hands them here instead of updating
//! its running mean and variance; [`update_running_statistics`] then combines every shard's
//! statistics into those of the whole batch and updates the running state once, from one
//! thread, so the result does not depend on how threads interleave.

use std::cell::RefCell;

use burn::nn::BatchNorm;
use burn::tensor::Tensor;

/// One batch norm's statistics over one shard of a batch.
#[derive(Clone)]
pub struct BatchStatistics {
    /// The layer (a clone: its running state is shared with the model's).
    layer: BatchNorm,
    mean: Tensor<1>,
    /// The biased variance, as batch norm normalizes with.
    variance: Tensor<1>,
    /// Values per channel the statistics were taken over.
    count: usize,
}

impl BatchStatistics {
    fn new(layer: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>, count: usize) -> BatchStatistics {
        BatchStatistics { layer: layer.clone(), mean, variance, count }
    }
}

thread_local! {
    static COLLECTORS: RefCell<Vec<Vec<BatchStatistics>>> = const { RefCell::new(Vec::new()) };
}

/// Whether a collector is open on this thread.
pub(crate) fn is_collecting() -> bool {
    COLLECTORS.with(|stack| !stack.borrow().is_empty())
}

/// Hands one batch norm's statistics to this thread's innermost collector; without one, updates
/// the layer's running state at once (as burn's batch norm does).
pub(crate) fn record(layer: &BatchNorm, mean: Tensor<1>, variance: Tensor<1>, count: usize) {
    let statistics = BatchStatistics::new(layer, mean, variance, count);
    let unclaimed = COLLECTORS.with(|stack| match stack.borrow_mut().last_mut() {
        Some(collector) => {
            collector.push(statistics);
            None
        }
        None => Some(statistics),
    });
    if let Some(statistics) = unclaimed {
        update_running_statistics(vec![vec![statistics]]);
    }
}

/// Runs `f` with the batch norms it calls on this thread collecting their training statistics
/// instead of updating their running state; returns them in call order.
pub fn collect<R>(f: impl FnOnce() -> R) -> (R, Vec<BatchStatistics>) {
    COLLECTORS.with(|stack| stack.borrow_mut().push(Vec::new()));
    let result = f();
    let statistics = COLLECTORS.with(|stack| stack.borrow_mut().pop()).unwrap_or_default();
    (result, statistics)
}

/// Updates each batch norm's running mean and variance once from the statistics of all the
/// shards of a batch (each shard's list in the same layer order), combined into those of the
/// whole batch: the mean of the means weighted by size, and the variance including the spread
/// between the shard means. The same update as one batch norm over the whole batch.
pub fn update_running_statistics(shards: Vec<Vec<BatchStatistics>>) {
    let mut shards: Vec<std::vec::IntoIter<BatchStatistics>> = shards.into_iter().map(Vec::into_iter).collect();
    let Some((first, rest)) = shards.split_first_mut() else { return };
    for head in first.by_ref() {
        // Every shard runs the same layers, so each list yields one entry per layer.
        let parts: Vec<BatchStatistics> =
            std::iter::once(head).chain(rest.iter_mut().filter_map(Iterator::next)).collect();
        let total: usize = parts.iter().map(|part| part.count).sum();
        let share = |part: &BatchStatistics| part.count as f64 / total as f64;
        let Some(mean) = parts.iter().map(|part| part.mean.clone().mul_scalar(share(part))).reduce(|a, b| a + b) else {
            continue;
        };
        let Some(variance) = parts
            .iter()
            .map(|part| {
                (part.variance.clone() + (part.mean.clone() - mean.clone()).powi_scalar(2)).mul_scalar(share(part))
            })
            .reduce(|a, b| a + b)
        else {
            continue;
        };
        let layer = &parts[0].layer;
        let momentum = layer.momentum;
        let running_mean = layer.running_mean.value_sync().to_device(&mean.device());
        let running_var = layer.running_var.value_sync().to_device(&mean.device());
        layer.running_mean.update(running_mean.mul_scalar(1.0 - momentum).add(mean.mul_scalar(momentum)).detach());
        layer.running_var.update(running_var.mul_scalar(1.0 - momentum).add(variance.mul_scalar(momentum)).detach());
    }
}
