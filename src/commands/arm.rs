//! `--arm`: a trained Co-GRPO arm loaded for `eval` and `sample`.

use std::path::Path;

use burn::prelude::*;
use cogrpo_train::config::resume::Scope;
use cogrpo_train::config::{ExperimentConfig, UpdateMode};
use cogrpo_train::{grpo, sample};
use envs::Task;
use mdm::Kernels;

/// A trained arm for inference: its model, its schedule policy, and whether
/// the arm learned a schedule (otherwise it follows the reference sampler).
pub(super) struct LoadedArm<B: Backend> {
    pub model: mdm::Denoiser<B>,
    pub policy: policy::SchedulePolicy<B>,
    pub mode: UpdateMode,
}

impl<B: Kernels> LoadedArm<B> {
    pub fn policy(&self) -> Option<&policy::SchedulePolicy<B>> {
        self.mode.uses_schedule().then_some(&self.policy)
    }

    /// How `sample --arm` generates: the learned schedule in mode over the
    /// reference sampler at the first evaluation step count, tokens at
    /// `cogrpo.eval_temperature` (what the report evaluates).
    pub fn generator(
        &self,
        cfg: &ExperimentConfig,
        task: &dyn Task,
    ) -> anyhow::Result<sample::Generator<'_, B>> {
        let c = cfg.cogrpo_section()?;
        Ok(sample::Generator {
            model: &self.model,
            policy: self.policy(),
            sampler: c.reference.with_steps(c.eval_step_counts()[0]),
            temperature: Some(c.eval_temperature_for(task.layout().prompt_len)),
        })
    }
}

/// What `sample` generates with: a checkpoint's model under the config's
/// fixed sampler, or a trained arm.
pub(super) enum Source<B: Backend> {
    Model(Box<mdm::Denoiser<B>>),
    Arm(Box<LoadedArm<B>>),
}

/// Loads `--arm PATH` after checking that the arm was trained under this
/// config (everything but the evaluation settings agrees).
pub(super) fn load_trained_arm<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    path: &Path,
    device: &B::Device,
) -> anyhow::Result<LoadedArm<B>> {
    let dir = grpo::state::find_arm_checkpoint(path)?;
    // Trained under this config (everything but the evaluation settings).
    cogrpo_train::checkpoint::check_resume(&dir, cfg, Scope::Arm)?;
    let (model, policy, state) = grpo::state::load_arm::<B>(cfg, task, &dir, device)?;
    tracing::info!(
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
