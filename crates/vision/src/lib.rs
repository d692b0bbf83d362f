//! Learned image models of the image task (digits): the reward models a
//! user plugs in as they would plug ImageReward, registered by name beside
//! the verifiers ([`registry`]), the evaluation model and image metrics the
//! arms are judged by (the GenEval / FID analogues: [`evaluation`],
//! [`metrics`]), and image files ([`images`]: PNG grids).
//!
//! Both are trained by the project on first use, deterministically from the
//! task's split, and saved with how they were trained under
//! `<run.out_dir>/models/<name>/`; a later run loads them when the saved
//! settings match. They are small and run on the CPU beside the trainer, as
//! a reward server would beside it.
//!
//! - `digit_classifier` (reward, `mlp`): trained on `train` only, the split
//!   the generator learns from; reward = probability of the prompted class.
//! - `digit_realism` (reward, `conv`): real `train` images against the
//!   pre-trained generator's samples; reward = P(real) ([`realism`]);
//!   fixed during RL, or with `[cogrpo.adversarial]` updated against the
//!   arm's own rollouts ([`adversarial`]).
//! - `eval_classifier` (evaluation, `conv`): trained on `heldout` only, so
//!   it never saw an image the reward models or the generator saw.

pub mod adversarial;
pub mod evaluation;
pub mod images;
pub mod metrics;
pub mod net;
pub mod realism;
pub mod registry;
mod reward;
pub mod store;
pub mod train;

pub use reward::{ClassifierReward, Target};
pub use store::{ModelRole, TrainedClassifier, load_or_train};
