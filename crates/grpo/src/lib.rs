//! Co-GRPO (Zhou et al. 2025): group-relative policy optimization of an
//! MDM's model (theta) and its inference schedule (phi) together, and the
//! comparison of arms that `cogrpo run` reports.
//!
//! Per iteration (CleanRL order, top to bottom in [`trainer`]):
//! 1. B training prompts, G canvas rows each; one batched rollout records
//!    every step (canvas, schedule action, tokens, both log-probabilities)
//!    ([`groups`]);
//! 2. the reward set scores the completions; advantages are normalized
//!    within each prompt's group;
//! 3. `mu` passes of the clipped surrogate ([`loss`]) on each [`factor`]
//!    the update mode trains at this iteration, each with its own
//!    optimizer;
//! 4. TensorBoard scalars, rollout dumps, a checkpoint now and then
//!    ([`iteration`]).
//!
//! [`arms`] is the comparison: `base`, the tuned fixed schedule ([`tuned`],
//! when `[cogrpo.tune]` is set), then each configured update mode from the
//! same pre-trained weights and budget, each evaluated alike ([`evaluate`])
//! and written up in [`report`] with [`plots`] and the quality-per-NFE
//! [`frontier`].

pub mod arms;
pub mod evaluate;
pub mod factor;
pub mod frontier;
mod groups;
mod iteration;
pub mod learned_rewards;
pub mod loss;
pub mod plots;
pub mod report;
pub mod samples;
mod setup;
pub mod state;
pub mod synthetic;
pub mod trainer;
pub mod tuned;
pub mod validation;

pub use setup::ArmRun;
