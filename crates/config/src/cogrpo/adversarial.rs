//! `[cogrpo.adversarial]`: a discriminator reward that keeps learning
//! during RL, against the arm's own recent rollouts.
//!
//! A discriminator trained once, before RL, has blind spots the policy
//! finds (on digits, Frechet distance 8-24 rose to 30-45 while the reward
//! rose). AdaGen (Ni et al. 2024) trains its adversarial reward against the
//! policy's own samples for that reason; here every `update_every`
//! iterations the discriminator takes `steps` Adam steps on real training
//! examples against generated ones drawn from a replay of the last
//! `replay` rollouts, unless it already tells the iteration's fresh
//! rollouts apart with balanced accuracy above `max_accuracy` (so
//! that it does not win outright and zero the reward's signal).
//!
//! ```toml
//! [cogrpo.adversarial]
//! reward = "digit_realism"
//! update_every = 1
//! steps = 8
//! ```
//!
//! Without the section the discriminator stays as it was trained before
//! RL (the frozen variant).

use envs::{Problems, Validate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The discriminator rewards that can keep learning (by name, as
/// `[[rewards.terms]]` name them).
pub const DISCRIMINATORS: [&str; 1] = ["digit_realism"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdversarialConfig {
    /// The discriminator reward it updates (a `[[rewards.terms]]` builtin).
    pub reward: String,
    /// Iterations between updates (1: after every iteration).
    pub update_every: usize,
    /// Adam steps per update.
    pub steps: usize,
    /// Images per step: half real `train` examples, half generated ones
    /// from the replay.
    pub batch_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Rollouts kept to draw generated examples from (the newest; older
    /// ones keep it from forgetting what the policy did before).
    pub replay: usize,
    /// No update while the balanced accuracy on the iteration's fresh
    /// rollouts (and as many real examples) is above this (1: always).
    pub max_accuracy: f64,
}

impl Default for AdversarialConfig {
    fn default() -> Self {
        Self {
            reward: DISCRIMINATORS[0].into(),
            update_every: 1,
            steps: 8,
            batch_size: 64,
            lr: 1e-3,
            replay: 1024,
            max_accuracy: 0.9,
        }
    }
}

impl Validate for AdversarialConfig {
    fn check(&self, p: &mut Problems) {
        if !DISCRIMINATORS.contains(&self.reward.as_str()) {
            p.bad(
                "reward",
                format!(
                    "`{}` is not a discriminator reward; one of: {}",
                    self.reward,
                    DISCRIMINATORS.join(", ")
                ),
            );
        }
        p.at_least_one("update_every", self.update_every);
        p.at_least_one("steps", self.steps);
        if self.batch_size < 2 {
            p.bad(
                "batch_size",
                "must be at least 2: half real, half generated",
            );
        }
        p.at_least_one("replay", self.replay);
        p.positive("lr", self.lr);
        if !(self.max_accuracy > 0.5 && self.max_accuracy <= 1.0) {
            p.bad(
                "max_accuracy",
                format!(
                    "must lie in (0.5, 1] (0.5 is chance), got {}",
                    self.max_accuracy
                ),
            );
        }
    }
}

impl AdversarialConfig {
    /// Whether the discriminator is updated after `iteration` (0-based).
    pub fn updates_after(&self, iteration: usize) -> bool {
        (iteration + 1).is_multiple_of(self.update_every.max(1))
    }
}
