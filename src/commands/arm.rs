//! `--arm`: a trained Co-GRPO arm loaded for `eval` and `sample`.

use std::path::Path;

use anyhow::Context;
use burn::prelude::*;
use cogrpo_train::config::{ExperimentConfig, UpdateMode};
use cogrpo_train::grpo;
use envs::Task;

/// A trained arm for inference: its model, its schedule policy, and whether
/// the arm learned a schedule (otherwise it follows the reference sampler).
pub(super) struct LoadedArm<B: Backend> {
    pub model: mdm::Denoiser<B>,
    pub policy: policy::SchedulePolicy<B>,
    pub mode: UpdateMode,
}

impl<B: Backend> LoadedArm<B> {
    pub fn policy(&self) -> Option<&policy::SchedulePolicy<B>> {
        self.mode.uses_schedule().then_some(&self.policy)
    }
}

/// Loads `--arm PATH` after checking that the arm was trained under this
/// config (everything but the evaluation settings agrees).
pub(super) fn load_trained_arm<B: Backend>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    path: &Path,
    device: &B::Device,
) -> anyhow::Result<LoadedArm<B>> {
    let dir = grpo::state::find_arm_checkpoint(path)?;
    let saved = dir.join("config.toml");
    let trained: ExperimentConfig = std::fs::read_to_string(&saved)
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .with_context(|| format!("cannot read the arm's config {}", saved.display()))?;
    anyhow::ensure!(
        grpo::arms::same_arm_training(&trained, cfg),
        "{} was trained under another config (task, model, pre-training, seed, rewards or \
         [cogrpo] differ from this one); pass the experiment file it was trained with",
        dir.display()
    );
    let (model, policy, state) = grpo::state::load_arm::<B>(cfg, task, &dir, device)?;
    eprintln!(
        "arm `{}` from {} (iteration {})",
        state.arm.name(),
        dir.display(),
        state.iteration
    );
    Ok(LoadedArm {
        model,
        policy,
        mode: state.arm,
    })
}
