//! How a cogrpo training run lives, whatever it trains: its run directory
//! (one writer, [`run_lock`]), verified atomic checkpoints
//! ([`checkpoint`]) and the fingerprint a LoRA arm keeps of its base
//! ([`fingerprint`]), the scaffold every training loop shares (how it starts
//! or resumes, its clock and checkpoint cadence: [`training`]),
//! TensorBoard logs and progress ([`logging`]), data parallelism over CPU
//! threads ([`parallel`]) and over devices and machines ([`distributed`]),
//! and the optimiser helpers ([`optim`]). It knows no objective: the
//! pre-training and Co-GRPO crates plug their models and states into it.

pub mod checkpoint;
pub mod distributed;
mod event_files;
pub mod files;
pub mod fingerprint;
pub mod logging;
pub mod optim;
pub mod parallel;
pub mod run_dir;
pub mod run_lock;
pub mod training;

/// A user's input that cannot be used (a checkpoint file that fails its
/// checks, a plan that cannot fit this machine): the CLI exits with status 2
/// for it, as for a bad config, and the message names the file or key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);
