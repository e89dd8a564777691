//! Learning rate: linear warm-up, then cosine decay to zero, per optimizer step.

use burn::optim::LearningRate;
use burn::optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};

/// Warm-up over `warmup_steps`, cosine decay over the rest of `total_steps`, scaled by `peak`.
/// Stateless apart from the step counter, which a resumed run sets from its checkpoint.
#[derive(Debug, Clone)]
pub struct WarmupCosine {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub step: usize,
}

impl WarmupCosine {
    /// The rate at `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        let total = self.total_steps.max(1);
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = (total - self.warmup_steps.min(total)).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

impl LrScheduler for WarmupCosine {
    fn step(&mut self) -> LearningRate {
        let rate = self.at(self.step);
        self.step += 1;
        rate
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::new()
    }

    fn load_record(&mut self, _record: LrSchedulerRecord) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays() {
        let schedule = WarmupCosine { peak: 1.0, warmup_steps: 4, total_steps: 14, step: 0 };
        assert_eq!(schedule.at(0), 0.25);
        assert_eq!(schedule.at(3), 1.0);
        assert!((schedule.at(4) - 1.0).abs() < 1e-12);
        assert!((schedule.at(9) - 0.5).abs() < 1e-12);
        assert!(schedule.at(13) < 0.03);
    }
}
