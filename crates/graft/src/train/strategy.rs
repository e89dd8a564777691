//! Strategies and the freeze plan they make: which named blocks of the teacher stay frozen.
//!
//! - `deep`: deep-layer feature extraction, everything frozen, a new head trained;
//! - `mid`: mid-layer feature extraction, the last few blocks trained with the head;
//! - `full`: full fine-tuning, every block trained from the pretrained values;
//! - `auto`: chosen from measurements (see `advisor`).

use crate::data::augment::{AugmentChoice, Augmentation};
use crate::error::{GraftError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Deep,
    Mid,
    Full,
    /// From scratch: the teacher's architecture with random weights, all trained (a baseline).
    Scratch,
    Auto,
}

crate::choice::choice!(
    Strategy,
    "strategy",
    [
        (Strategy::Deep, "deep"),
        (Strategy::Mid, "mid"),
        (Strategy::Full, "full"),
        (Strategy::Scratch, "scratch"),
        (Strategy::Auto, "auto")
    ]
);

/// How many trailing blocks `mid` unfreezes when not told: the last ~15% of the network, at
/// least one block.
pub fn default_mid_unfreeze(blocks: usize) -> usize {
    (blocks * 3).div_ceil(20).max(1)
}

/// The cut through a teacher: blocks `[0, cut)` are frozen, `[cut, len)` are trained.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FreezePlan {
    pub blocks: Vec<String>,
    pub cut: usize,
}

impl FreezePlan {
    /// The plan for a (resolved, not `auto`) strategy. `unfreeze` (last N blocks) and
    /// `unfreeze_from` (a block name) refine `mid`; they are errors with other strategies.
    pub fn new(
        strategy: Strategy,
        blocks: Vec<String>,
        unfreeze: Option<usize>,
        unfreeze_from: Option<&str>,
    ) -> Result<FreezePlan> {
        let count = blocks.len();
        if strategy != Strategy::Mid && (unfreeze.is_some() || unfreeze_from.is_some()) {
            return Err(GraftError::Invalid(format!(
                "choosing the blocks to unfreeze refines `mid`; strategy `{strategy}` fixes the frozen blocks"
            )));
        }
        let cut = match strategy {
            Strategy::Deep => count,
            Strategy::Full | Strategy::Scratch => 0,
            Strategy::Auto => return Err(GraftError::Invalid("resolve `auto` before making a freeze plan".into())),
            Strategy::Mid => match (unfreeze, unfreeze_from) {
                (Some(_), Some(_)) => {
                    return Err(GraftError::Invalid(
                        "unfreeze a number of blocks or from a named block, not both".into(),
                    ));
                }
                (_, Some(name)) => blocks.iter().position(|block| block == name).ok_or_else(|| {
                    GraftError::Invalid(format!(
                        "no block named `{name}`; this teacher's blocks are: {}",
                        blocks.join(", ")
                    ))
                })?,
                (Some(n), None) if n == 0 || n > count => {
                    return Err(GraftError::Invalid(format!(
                        "cannot unfreeze the last {n} blocks: this teacher has {count} blocks (use 1..={count})"
                    )));
                }
                (Some(n), None) => count - n,
                (None, None) => count - default_mid_unfreeze(count),
            },
        };
        Ok(FreezePlan { blocks, cut })
    }

    pub fn frozen(&self) -> &[String] {
        &self.blocks[..self.cut]
    }

    pub fn trainable(&self) -> &[String] {
        &self.blocks[self.cut..]
    }

    /// Whether the whole teacher is frozen (only the head trains).
    pub fn is_head_only(&self) -> bool {
        self.cut == self.blocks.len()
    }
}

/// The augmentation a (resolved) strategy trains with when nothing is measured. `auto` is off
/// for `deep` (a head on pooled features of cached views gains little from them and each view
/// costs a teacher forward pass) and on for `scratch`; for `mid` and `full`,
/// [`crate::run::train_run`] measures which augmentations help ([`super::augment_choice`])
/// instead of calling this.
pub fn unmeasured_augmentation(choice: AugmentChoice, strategy: Strategy) -> Augmentation {
    match (choice, strategy) {
        (AugmentChoice::On, _) => Augmentation::standard(),
        (AugmentChoice::Off, _) | (AugmentChoice::Auto, Strategy::Deep) => Augmentation::none(),
        (AugmentChoice::Auto, _) => Augmentation::standard(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks() -> Vec<String> {
        ["conv1", "layer1", "layer2", "layer3", "layer4"].map(str::to_owned).to_vec()
    }

    #[test]
    fn plans() {
        assert_eq!(FreezePlan::new(Strategy::Deep, blocks(), None, None).unwrap().cut, 5);
        assert_eq!(FreezePlan::new(Strategy::Full, blocks(), None, None).unwrap().cut, 0);
        let mid = FreezePlan::new(Strategy::Mid, blocks(), Some(2), None).unwrap();
        assert_eq!(mid.trainable(), ["layer3", "layer4"]);
        let from = FreezePlan::new(Strategy::Mid, blocks(), None, Some("layer3")).unwrap();
        assert_eq!(from, mid);
        assert_eq!(FreezePlan::new(Strategy::Mid, blocks(), None, None).unwrap().trainable(), ["layer4"]);
    }

    #[test]
    fn bad_requests_say_what_is_allowed() {
        let error = FreezePlan::new(Strategy::Mid, blocks(), None, Some("layer9")).unwrap_err().to_string();
        assert!(error.contains("conv1, layer1"), "{error}");
        let error = FreezePlan::new(Strategy::Mid, blocks(), Some(6), None).unwrap_err().to_string();
        assert!(error.contains("1..=5"), "{error}");
        assert!(FreezePlan::new(Strategy::Deep, blocks(), Some(1), None).is_err());
    }
}
