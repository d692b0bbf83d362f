//! Deterministic, in-process scorers of single items, and the adapter that
//! makes any of them a batch [`Reward`].

use crate::failure::RewardFailure;
use crate::item::{BatchScores, RewardItem};
use crate::reward::{BoxFuture, Reward};

/// A deterministic scorer of one completion: the task verifiers (Sudoku
/// validity, Countdown arithmetic, path match, ...). The same scores serve
/// as evaluation metrics and, through [`VerifierReward`], as rewards.
pub trait Verifier: Send + Sync {
    /// Name used in configs, logs and reports.
    fn name(&self) -> &'static str;

    /// Score of `item`; `None` when the verifier does not apply to it.
    fn score(&self, item: &RewardItem) -> Option<f64>;
}

/// A [`Verifier`] as a batch [`Reward`]. Verifiers are cheap, so the batch
/// is scored inline on the calling task.
pub struct VerifierReward(pub Box<dyn Verifier>);

impl Reward for VerifierReward {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn score<'a>(
        &'a self,
        batch: &'a [RewardItem],
    ) -> BoxFuture<'a, Result<BatchScores, RewardFailure>> {
        Box::pin(async move {
            Ok(BatchScores::new(
                batch
                    .iter()
                    .map(|item| self.0.score(item).map(|s| s as f32))
                    .collect(),
            ))
        })
    }
}
