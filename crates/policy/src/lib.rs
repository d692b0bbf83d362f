//! The schedule side of MDM generation.
//!
//! A sampler turns a [`envs::Canvas`] of masks into tokens over T steps. At
//! each step a *schedule action* decides how many positions to reveal, which
//! ones (uniformly at random, or by confidence, optionally perturbed with
//! Gumbel noise at a re-mask temperature), at what sampling temperature and
//! with what guidance scale; the model supplies the token distributions.
//! Categorical draws are made in float64 on the host ([`categorical`]).
//!
//! The other model families sample on their own terms: the ARM left to
//! right with a KV cache ([`autoregressive`]), the ILM by insertion until it
//! stops ([`insertion`]).

pub mod autoregressive;
mod blocks;
pub mod categorical;
mod decide;
pub mod device_draw;
pub mod draw;
pub mod factors;
pub mod generation;
pub mod insertion;
pub mod learned;
pub mod network;
pub mod rollout;
pub mod sampler;
pub mod schedule;

pub use blocks::block_count;
pub use generation::{Act, GenerationStats, SamplerError, TemperatureOverride};
pub use learned::{HeadKind, SchedulePolicy, SchedulePolicyConfig};
pub use network::logits_to_host;
pub use rollout::Rollout;
pub use sampler::Sampler;
pub use schedule::{
    MAX_STEPS, RevealSchedule, SamplerConfig, SamplerKind, ScheduleAction, check_step_counts,
    reveal_from_ratio,
};
