//! Co-GRPO: group-relative policy optimization of the model (theta) and the
//! schedule (phi) of an MDM together (Zhou et al. 2025).
//!
//! Per iteration (CleanRL order, top to bottom in [`trainer`]):
//! 1. B training prompts, G canvas rows each; one batched rollout records
//!    every step (canvas, schedule action, tokens, both log-probabilities);
//! 2. the reward set scores the completions; advantages are normalized
//!    within each prompt's group;
//! 3. `mu` passes of the clipped surrogate on each factor the update mode
//!    trains at this iteration, each factor with its own optimizer;
//! 4. TensorBoard scalars, a checkpoint now and then.
//!
//! [`arms`] runs the comparison `cogrpo run` reports: base, the tuned fixed
//! schedule ([`tuned`], when `[cogrpo.tune]` is set), then each configured
//! update mode from the same pre-trained weights and budget.

pub mod arms;
pub mod evaluate;
mod groups;
pub mod loss;
pub mod plots;
pub mod report;
pub mod samples;
pub mod state;
pub mod trainer;
pub mod tuned;
pub mod update;
