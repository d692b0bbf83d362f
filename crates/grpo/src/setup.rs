//! What an arm's training reads and never changes: where it runs
//! ([`ArmRun`]: the run's config, task, directory, pre-trained checkpoint,
//! device and ranks) and what its iterations share ([`Setup`]: the reward
//! set, the verifiers, the reference sampler, the clip range).

use std::path::{Path, PathBuf};

use cogrpo_config::{CogrpoConfig, ExperimentConfig, UpdateMode};
use cogrpo_eval::Scorer;
use cogrpo_runtime::distributed::World;
use cogrpo_runtime::run_dir::RunDir;
use cogrpo_vision::adversarial::Discriminator;
use cogrpo_vision::registry;
use envs::Task;
use mdm::AutodiffKernels;
use policy::SamplerConfig;
use rewards::{RewardSet, Verifier};

use crate::loss::Clip;

/// Where the arms of a run train: every arm starts from the pre-trained
/// checkpoint `init` and writes under `run` (rank 0 only).
pub struct ArmRun<'a, B: AutodiffKernels> {
    pub cfg: &'a ExperimentConfig,
    pub task: &'a dyn Task,
    pub run: &'a RunDir,
    pub init: &'a Path,
    pub device: B::Device,
    pub world: &'a World,
}

impl<B: AutodiffKernels> ArmRun<'_, B> {
    /// The folder of arm `mode` (its checkpoints under `checkpoints/`).
    pub fn arm_dir(&self, mode: UpdateMode) -> PathBuf {
        self.run.arm(mode.name())
    }

    /// The `[cogrpo]` section, which every arm needs.
    pub fn cogrpo(&self) -> anyhow::Result<&CogrpoConfig> {
        self.cfg.cogrpo_section()
    }
}

/// What stays fixed over one arm's training.
pub(crate) struct Setup<'a, B: AutodiffKernels> {
    pub(crate) arm: &'a ArmRun<'a, B>,
    pub(crate) c: &'a CogrpoConfig,
    pub(crate) mode: UpdateMode,
    /// The fixed schedule at the training episode length.
    pub(crate) reference: SamplerConfig,
    pub(crate) reward_set: RewardSet,
    pub(crate) verifiers: Vec<Box<dyn Verifier>>,
    pub(crate) clip: Clip,
    /// The judges of validation during RL (`eval_every`; rank 0 only).
    pub(crate) scorer: Option<Scorer>,
}

impl<'a, B: AutodiffKernels> Setup<'a, B> {
    /// The setup of arm `mode`; a `discriminator` that keeps learning
    /// replaces the fixed one of the same name in the reward set.
    pub(crate) fn new(
        arm: &'a ArmRun<'a, B>,
        mode: UpdateMode,
        discriminator: Option<&Discriminator>,
    ) -> anyhow::Result<Self> {
        let c = arm.cogrpo()?;
        let mut rewards = registry::registry(arm.cfg, arm.task.verifiers())?;
        if let (Some(d), Some(a)) = (discriminator, &c.adversarial) {
            let reward = d.reward();
            rewards.register(&a.reward, move || Box::new(reward.clone()));
        }
        Ok(Self {
            arm,
            c,
            mode,
            reference: c.reference_sampler(),
            reward_set: rewards
                .build(&arm.cfg.rewards, arm.task.verifiers())
                .map_err(anyhow::Error::msg)?,
            verifiers: rewards::verifiers_for(arm.task.verifiers()),
            clip: Clip {
                low: c.epsilon_low,
                high: c.epsilon_high,
            },
            scorer: (c.eval_every > 0 && arm.world.is_writer())
                .then(|| Scorer::new(arm.cfg, arm.task))
                .transpose()?,
        })
    }

    pub(crate) fn cfg(&self) -> &'a ExperimentConfig {
        self.arm.cfg
    }

    pub(crate) fn task(&self) -> &'a dyn Task {
        self.arm.task
    }

    pub(crate) fn world(&self) -> &'a World {
        self.arm.world
    }
}
