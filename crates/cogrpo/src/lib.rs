//! cogrpo's trainers and the machinery around them: experiment configs,
//! pre-training, evaluation, checkpoints, logging and run directories.

pub mod config;
pub mod optim;
pub mod checkpoint;
pub mod logging;
pub mod run_dir;
pub mod tasks;
pub mod pretrain;
pub mod eval;
pub mod sample;
pub mod bench;
pub mod parallel;
