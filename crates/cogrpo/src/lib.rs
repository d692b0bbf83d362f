//! cogrpo's trainers and the machinery around them: experiment configs,
//! pre-training, Co-GRPO, evaluation, reports, checkpoints, logging and run
//! directories.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod grpo;
pub mod images;
pub mod logging;
pub mod optim;
pub mod parallel;
pub mod pretrain;
pub mod reward_models;
pub mod run_dir;
pub mod sample;
pub mod tasks;
pub mod vision;
