//! cogrpo's trainers and the machinery around them: experiment configs,
//! pre-training, Co-GRPO, evaluation, reports, checkpoints, logging and run
//! directories.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod distributed;
pub mod dumps;
pub mod eval;
pub mod families;
pub mod grpo;
pub mod images;
pub mod logging;
pub mod optim;
pub mod parallel;
pub mod plan;
pub mod pretrain;
pub mod reward_models;
pub mod run_dir;
pub mod run_lock;
pub mod sample;
pub mod tasks;
pub mod vision;

/// A user's input that cannot be used (a checkpoint file that fails its
/// checks, a plan that cannot fit this machine): the CLI exits with status 2
/// for it, as for a bad config, and the message names the file or key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);
