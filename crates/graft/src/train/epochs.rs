//! The training loop every student goes through: image strategies ([`super::trainer`]), text
//! fine-tuning ([`crate::text::finetune`]) and hardening ([`crate::audit::harden`]). A caller
//! says how one batch turns into a loss and gradients, and how gradients are applied
//! ([`Steps`]); the loop owns the rest, once: the seeded order of each epoch, the batches, the
//! stop request between batches, the divergence check and the progress.
//!
//! What differs between students (the example type, the loss, a penalty, checkpoints) stays
//! with the caller; what a user relies on (Ctrl-C stops at the next batch, a loss that stops
//! being finite stops training with a message) cannot be left out of one of them.

use burn::optim::GradientsParams;

use super::reporter::Reporter;
use crate::error::{GraftError, Result};
use crate::interrupt::Interrupt;
use crate::rng::SplitMix64;

/// What one batch gave: its mean loss, the gradients, and the caller's own figures for it.
pub struct Step<F> {
    pub loss: f64,
    pub gradients: GradientsParams,
    pub figures: F,
}

/// How a student trains, batch by batch.
pub trait Steps {
    /// The network being trained (on the autodiff device).
    type Model;
    /// What the caller sums over an epoch (correct answers, distances, ...).
    type Figures;

    /// The loss, gradients and figures of the examples `batch` (indices into the training set).
    ///
    /// # Errors
    /// Whatever making the inputs or reading values back can fail with.
    fn step(&mut self, model: &Self::Model, batch: &[usize]) -> Result<Step<Self::Figures>>;

    /// The model after one optimizer step with `gradients` (at this step's learning rate).
    fn apply(&mut self, model: Self::Model, gradients: GradientsParams) -> Self::Model;

    /// The error to end with when asked to stop between batches.
    fn stopped(&self) -> GraftError;

    /// The error to end with when a batch's loss is not finite.
    fn diverged(&self, loss: f64) -> GraftError;
}

/// Steps that also know what an epoch's end means (scores, notes, history): for students
/// trained for a fixed number of epochs with nothing to resume ([`run_epochs`]).
pub trait Epochs: Steps {
    /// Epoch `epoch` (from 0) is over: `model` is its result, `totals` its batches' figures.
    ///
    /// # Errors
    /// A validation that fails, or the caller's own reason to stop.
    fn end_epoch(
        &mut self,
        model: &Self::Model,
        epoch: usize,
        totals: EpochTotals<Self::Figures>,
        seconds: f64,
    ) -> Result<()>;
}

/// One epoch's batches, summed.
pub struct EpochTotals<F> {
    /// Each batch's mean loss times its size, summed.
    pub loss_sum: f64,
    /// Examples trained on.
    pub seen: usize,
    /// Each batch's figures, in order.
    pub figures: Vec<F>,
}

impl<F> EpochTotals<F> {
    /// The mean loss per example.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }
}

/// The order of the training examples in epoch `epoch`: a permutation of `0..items` drawn from
/// `seed` and the caller's `stream` (each kind of student keeps its own, so a seed gives the
/// order it always gave).
pub fn epoch_order(items: usize, seed: u64, stream: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items).collect();
    SplitMix64::derive(seed, &[stream, epoch as u64]).shuffle(&mut order);
    order
}

/// Trains one epoch: `order` in batches of `batch_size`, each stepped and applied, stopping
/// between batches when `interrupt` is requested and at a loss that is not finite. `stage`
/// names the progress bar.
///
/// # Errors
/// [`Steps::stopped`], [`Steps::diverged`], or a step's own error.
pub fn run_epoch<S: Steps>(
    steps: &mut S,
    mut model: S::Model,
    order: &[usize],
    batch_size: usize,
    interrupt: Option<&Interrupt>,
    stage: &str,
    reporter: &dyn Reporter,
) -> Result<(S::Model, EpochTotals<S::Figures>)> {
    reporter.start(stage, order.len());
    let mut totals = EpochTotals { loss_sum: 0.0, seen: 0, figures: Vec::new() };
    for batch in order.chunks(batch_size.max(1)) {
        let outcome = (|| {
            if interrupt.is_some_and(Interrupt::is_requested) {
                return Err(steps.stopped());
            }
            let step = steps.step(&model, batch)?;
            if !step.loss.is_finite() {
                return Err(steps.diverged(step.loss));
            }
            Ok(step)
        })();
        let step = match outcome {
            Ok(step) => step,
            Err(error) => {
                reporter.finish();
                return Err(error);
            }
        };
        model = steps.apply(model, step.gradients);
        totals.loss_sum += step.loss * batch.len() as f64;
        totals.seen += batch.len();
        totals.figures.push(step.figures);
        reporter.advance(batch.len(), &format!("loss {:.4}", totals.mean_loss()));
    }
    reporter.finish();
    Ok((model, totals))
}

/// How [`run_epochs`] runs.
pub struct EpochPlan<'a> {
    /// The first epoch to train (from 0): a resumed run's epochs done.
    pub first_epoch: usize,
    /// The epoch to end before: the run's number of epochs.
    pub epochs: usize,
    pub batch_size: usize,
    /// The training examples: indices `0..items`.
    pub items: usize,
    pub seed: u64,
    /// The caller's stream of epoch orders (see [`epoch_order`]).
    pub order_stream: u64,
    pub interrupt: Option<&'a Interrupt>,
    /// Names the progress bar of each epoch ("fine-tuning" gives "fine-tuning epoch 2/5").
    pub stage: &'a str,
}

/// Trains `plan.epochs` epochs of `steps`, each ended by [`Epochs::end_epoch`]; returns the last
/// epoch's model.
///
/// # Errors
/// As [`run_epoch`] and [`Epochs::end_epoch`].
pub fn run_epochs<S: Epochs>(
    steps: &mut S,
    mut model: S::Model,
    plan: &EpochPlan<'_>,
    reporter: &dyn Reporter,
) -> Result<S::Model> {
    for epoch in plan.first_epoch..plan.epochs {
        let started = std::time::Instant::now();
        let order = epoch_order(plan.items, plan.seed, plan.order_stream, epoch);
        let stage = format!("{} epoch {}/{}", plan.stage, epoch + 1, plan.epochs);
        let (trained, totals) = run_epoch(steps, model, &order, plan.batch_size, plan.interrupt, &stage, reporter)?;
        model = trained;
        steps.end_epoch(&model, epoch, totals, started.elapsed().as_secs_f64())?;
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model that is a number: each step's loss is the model's value, applying adds one.
    struct Counting {
        losses: Vec<f64>,
        ends: Vec<(usize, usize, f64)>,
        poison_at: Option<usize>,
        interrupt_after: Option<(usize, Interrupt)>,
    }

    impl Steps for Counting {
        type Model = f64;
        type Figures = usize;

        fn step(&mut self, model: &f64, batch: &[usize]) -> Result<Step<usize>> {
            self.losses.push(*model);
            if let Some((after, interrupt)) = &self.interrupt_after
                && self.losses.len() == *after
            {
                interrupt.request();
            }
            let loss = if self.poison_at == Some(self.losses.len()) { f64::NAN } else { *model };
            Ok(Step { loss, gradients: GradientsParams::new(), figures: batch.len() })
        }

        fn apply(&mut self, model: f64, _gradients: GradientsParams) -> f64 {
            model + 1.0
        }

        fn stopped(&self) -> GraftError {
            GraftError::Stopped { what: "counting".into() }
        }

        fn diverged(&self, loss: f64) -> GraftError {
            GraftError::Diverged { what: "loss", value: loss, epoch: 1, learning_rate: 0.1, kept_epoch: None }
        }
    }

    impl Epochs for Counting {
        fn end_epoch(&mut self, model: &f64, epoch: usize, totals: EpochTotals<usize>, _seconds: f64) -> Result<()> {
            self.ends.push((epoch, totals.figures.iter().sum(), *model));
            Ok(())
        }
    }

    fn counting() -> Counting {
        Counting { losses: Vec::new(), ends: Vec::new(), poison_at: None, interrupt_after: None }
    }

    #[test]
    fn every_example_is_trained_once_per_epoch_in_a_seeded_order() {
        let first = epoch_order(10, 7, 1, 0);
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(first, epoch_order(10, 7, 1, 0), "the same seed, stream and epoch give the same order");
        assert_ne!(first, epoch_order(10, 7, 1, 1), "each epoch its own order");
        assert_ne!(first, epoch_order(10, 7, 2, 0), "each stream its own order");

        let mut steps = counting();
        let plan = EpochPlan {
            first_epoch: 0,
            epochs: 2,
            batch_size: 4,
            items: 10,
            seed: 7,
            order_stream: 1,
            interrupt: None,
            stage: "counting",
        };
        let model = run_epochs(&mut steps, 0.0, &plan, &crate::train::Silent).unwrap();
        // Batches of 4, 4 and 2 in each epoch: three steps an epoch.
        assert_eq!(model, 6.0);
        assert_eq!(steps.ends, vec![(0, 10, 3.0), (1, 10, 6.0)]);
    }

    #[test]
    fn a_stop_request_ends_the_epoch_at_the_next_batch() {
        let interrupt = Interrupt::new();
        let mut steps = Counting { interrupt_after: Some((2, interrupt.clone())), ..counting() };
        let order: Vec<usize> = (0..12).collect();
        let error =
            run_epoch(&mut steps, 0.0, &order, 2, Some(&interrupt), "counting", &crate::train::Silent).err().unwrap();
        assert!(matches!(error, GraftError::Stopped { .. }), "{error}");
        assert_eq!(steps.losses.len(), 2, "no batch after the request");
    }

    #[test]
    fn a_loss_that_is_not_finite_stops_training_before_its_step_is_applied() {
        let mut steps = Counting { poison_at: Some(3), ..counting() };
        let order: Vec<usize> = (0..12).collect();
        let error = run_epoch(&mut steps, 0.0, &order, 2, None, "counting", &crate::train::Silent).err().unwrap();
        assert!(matches!(error, GraftError::Diverged { .. }), "{error}");
        assert_eq!(steps.losses, vec![0.0, 1.0, 2.0]);
    }
}
