//! Where a command's model comes from: a pre-training checkpoint (the
//! run's newest, or `--checkpoint`, in cogrpo's or SMDM's layout), or a
//! trained Co-GRPO arm (`--arm`) with its learned schedule.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::prelude::*;
use cogrpo_config::resume::Scope;
use cogrpo_config::tasks::denoiser_config;
use cogrpo_config::{ExperimentConfig, UpdateMode};
use cogrpo_eval::sample::Generator;
use cogrpo_grpo::state::{find_arm_checkpoint, load_arm};
use cogrpo_runtime::checkpoint::{self, check_resume};
use cogrpo_runtime::run_dir::RunDir;
use envs::Task;
use mdm::{Denoiser, Kernels};
use policy::learned::SchedulePolicy;

/// The pre-trained model a command reads: `explicit`, else the newest
/// checkpoint in the config's run directory, else `model.source` (a model
/// directory used as it is).
pub fn checkpoint_source(
    cfg: &ExperimentConfig,
    explicit: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.exists(), "checkpoint {} does not exist", p.display());
        return Ok(p);
    }
    let dir = cfg.run.out_dir();
    let newest = if dir.exists() || cfg.model.source.is_none() {
        RunDir::open(&dir)?.checkpoints().latest()
    } else {
        None
    };
    newest
        .or_else(|| cfg.model.source.clone())
        .with_context(|| {
            format!(
                "{} holds no checkpoint: run `cogrpo pretrain` with this config first",
                dir.display()
            )
        })
}

/// The denoiser of checkpoint `source`, of the shape `cfg` and `task` give:
/// a pre-training checkpoint or model file, or a Co-GRPO arm (its folder or
/// one of its checkpoints; a LoRA arm's adapters come on their base).
pub fn load_model<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    source: &Path,
    device: &B::Device,
) -> anyhow::Result<Denoiser<B>> {
    if let Some(dir) = arm_checkpoint(source) {
        check_resume(&dir, cfg, Scope::Arm)?;
        let (model, _, _) = load_arm::<B>(cfg, task, &dir, device)
            .with_context(|| format!("cannot load the arm {}", source.display()))?;
        return Ok(model);
    }
    let d = denoiser_config(cfg, task);
    checkpoint::load_model::<B>(source, &d, device)
        .with_context(|| format!("cannot load the model from {}", source.display()))
}

/// The arm checkpoint `source` names, if it names one: a folder whose
/// `state.json` records an arm, or an arm folder with such checkpoints.
fn arm_checkpoint(source: &Path) -> Option<PathBuf> {
    let dir = find_arm_checkpoint(source).ok()?;
    let text = std::fs::read_to_string(dir.join("state.json")).ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    state.get("arm").is_some().then_some(dir)
}

/// A trained arm for inference: its model, its schedule policy, and whether
/// the arm learned a schedule (otherwise it follows the reference sampler).
pub struct LoadedArm<B: Backend> {
    pub model: Denoiser<B>,
    pub policy: SchedulePolicy<B>,
    pub mode: UpdateMode,
}

impl<B: Kernels> LoadedArm<B> {
    /// `--arm PATH` (an arm folder or one of its checkpoints), after checking
    /// that the arm was trained under this config (everything but the
    /// evaluation settings agrees).
    pub fn load(
        cfg: &ExperimentConfig,
        task: &dyn Task,
        path: &Path,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        let dir = find_arm_checkpoint(path)?;
        check_resume(&dir, cfg, Scope::Arm)?;
        let (model, policy, state) = load_arm::<B>(cfg, task, &dir, device)?;
        tracing::info!(
            "arm `{}` from {} (iteration {})",
            state.arm.name(),
            dir.display(),
            state.iteration
        );
        Ok(Self {
            model,
            policy,
            mode: state.arm,
        })
    }

    /// The learned schedule, if the arm learned one.
    pub fn policy(&self) -> Option<&SchedulePolicy<B>> {
        self.mode.uses_schedule().then_some(&self.policy)
    }

    /// How `sample --arm` generates: the learned schedule in mode over the
    /// reference sampler at the first evaluation step count, tokens at
    /// `cogrpo.eval_temperature` (what the report evaluates).
    pub fn generator(
        &self,
        cfg: &ExperimentConfig,
        task: &dyn Task,
    ) -> anyhow::Result<Generator<'_, B>> {
        let c = cfg.cogrpo_section()?;
        Ok(Generator {
            model: &self.model,
            policy: self.policy(),
            sampler: c.reference.with_steps(c.eval_step_counts()[0]),
            temperature: Some(c.eval_temperature_override(task.layout().prompt_len)),
        })
    }
}

/// What `sample` generates with: a checkpoint's model under the config's
/// fixed sampler, or a trained arm.
pub enum Source<B: Backend> {
    Model(Box<Denoiser<B>>),
    Arm(Box<LoadedArm<B>>),
}
