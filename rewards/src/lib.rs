//! Rewards: scores of completed generations, and the plugin API that lets
//! users bring their own.
//!
//! A reward sees what a user would see — the prompt, the completion (text
//! and token ids) and the task example's metadata — never the network.
//! Three kinds plug in the same way ([`Reward`]): in-process Rust (the task
//! verifiers, or your own type), a subprocess speaking JSON lines, and an
//! HTTP reward server; the wire protocol is in `docs/reward-protocol.md`.
//! A [`RewardSet`] combines them with weights and a rollout cost into
//! group-normalized advantages, and survives plugins that fail.

pub mod answer;
pub mod compose;
pub mod config;
pub mod countdown;
pub mod failure;
pub mod http;
pub mod item;
pub mod protocol;
pub mod registry;
pub mod reversal;
pub mod reward;
pub mod serve;
pub mod shards;
pub mod star;
pub mod subprocess;
pub mod sudoku;
pub mod verifier;

pub use compose::{Outcome, RewardSet, RolloutCost, ScoredBatch, TooManyFailures};
pub use config::{
    Aggregation, BuiltinTerm, CostConfig, CostMode, HttpTerm, RewardTerm, RewardsConfig,
    SubprocessTerm,
};
pub use failure::{FailureKind, RewardFailure};
pub use item::{BatchScores, RewardItem};
pub use registry::{Registry, RewardFactory, build_reward_set, default_reward, verifiers_for};
pub use reward::{BoxFuture, Reward};
pub use verifier::{Verifier, VerifierReward};
