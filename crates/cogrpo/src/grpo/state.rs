//! What an arm checkpoint holds besides weights and optimizer states: the
//! iteration count, the rollout budget spent and the per-iteration log the
//! report draws its curves from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::Module;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use envs::Task;
use mdm::Denoiser;
use policy::SamplerKind;
use policy::learned::SchedulePolicy;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointDir, load_record, save_record};
use crate::config::resume::Scope;
use crate::config::{CogrpoConfig, ExperimentConfig, UpdateMode};
use crate::run_dir::write_atomic;
use crate::tasks::denoiser_config;
use mdm::AutodiffKernels;

/// Bumped when an arm checkpoint's layout changes incompatibly.
pub const ARM_FORMAT_VERSION: u32 = 1;

/// What one iteration measured (kept for the report's curves).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationLog {
    pub iteration: usize,
    #[serde(with = "nan_as_null")]
    pub reward_mean: f64,
    /// Mean of the task's first verifier (e.g. solved) over the rollouts.
    pub solve_rate: Option<f64>,
    /// Share of groups whose rewards were all equal (no gradient).
    pub zero_variance_share: f64,
    /// The same after `resample_rounds` replaced such groups.
    pub zero_variance_after_resampling: f64,
    pub nfe: f64,
    pub updated_model: bool,
    pub updated_schedule: bool,
    /// Mean action per step: `reveal` (positions) and each learned component
    /// (NaN where the policy did not act, e.g. the last step's ratio).
    #[serde(with = "per_step_nan_as_null")]
    pub schedule: BTreeMap<String, Vec<f64>>,
}

/// NaN ("no value") floats as JSON null, which JSON can hold and NaN cannot.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            s.serialize_none()
        } else {
            s.serialize_some(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

mod per_step_nan_as_null {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type PerStep = BTreeMap<String, Vec<f64>>;

    pub fn serialize<S: Serializer>(v: &PerStep, s: S) -> Result<S::Ok, S::Error> {
        let m: BTreeMap<&String, Vec<Option<f64>>> = v
            .iter()
            .map(|(k, xs)| (k, xs.iter().map(|x| (!x.is_nan()).then_some(*x)).collect()))
            .collect();
        m.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PerStep, D::Error> {
        let m = BTreeMap::<String, Vec<Option<f64>>>::deserialize(d)?;
        Ok(m.into_iter()
            .map(|(k, xs)| (k, xs.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect()))
            .collect())
    }
}

/// `state.json` of an arm checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmState {
    pub format_version: u32,
    pub arm: UpdateMode,
    /// Iterations completed.
    pub iteration: usize,
    pub seed: u64,
    /// Trajectories rolled out so far.
    pub rollouts: u64,
    pub wall_s: f64,
    /// The pre-trained checkpoint the arm started from.
    pub init: PathBuf,
    pub history: Vec<IterationLog>,
    /// Ranks of the run that wrote it (a resume needs as many).
    #[serde(default = "one_rank")]
    pub ranks: usize,
}

fn one_rank() -> usize {
    1
}

/// A trained arm: its weights and state.
pub struct TrainedArm<B: AutodiffBackend> {
    pub model: Denoiser<B>,
    pub policy: SchedulePolicy<B>,
    pub state: ArmState,
    pub checkpoint: PathBuf,
}

pub type ModelOptimizer<B> = OptimizerAdaptor<AdamW, Denoiser<B>, B>;
pub type ScheduleOptimizer<B> = OptimizerAdaptor<AdamW, SchedulePolicy<B>, B>;

/// An arm in training: what its checkpoint holds (`model.safetensors`,
/// `schedule`, `optimizer`, `schedule_optimizer`, `state.json`,
/// `config.toml`). The one type that starts, resumes and saves an arm;
/// [`load_arm`] reads the same files for inference.
pub struct ArmTraining<B: AutodiffBackend> {
    pub model: Denoiser<B>,
    pub policy: SchedulePolicy<B>,
    pub optim_model: ModelOptimizer<B>,
    pub optim_schedule: ScheduleOptimizer<B>,
    pub state: ArmState,
}

impl<B: AutodiffKernels> ArmTraining<B> {
    /// A fresh arm from the pre-trained checkpoint `init`, or with `resume`
    /// the newest checkpoint in `ckpts`. A checkpoint there without
    /// `resume`, or one of another arm or seed, is an error.
    pub fn start(
        cfg: &ExperimentConfig,
        task: &dyn Task,
        mode: UpdateMode,
        ckpts: &CheckpointDir,
        init: &Path,
        resume: bool,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        let c = cfg.cogrpo_section()?;
        let seed = cfg.run.seed;
        let optim_model = AdamWConfig::new()
            .with_weight_decay(c.weight_decay as f32)
            .init::<B, Denoiser<B>>();
        let optim_schedule = AdamWConfig::new()
            .with_weight_decay(0.0)
            .init::<B, SchedulePolicy<B>>();
        let found = if resume {
            ckpts.resume_point()
        } else {
            ckpts.latest()
        };
        match (resume, found) {
            (true, Some(dir)) => {
                checkpoint::check_resume(&dir, cfg, Scope::Arm)?;
                let (model, policy, state) = load_arm::<B>(cfg, task, &dir, device)?;
                if state.seed != seed || state.arm != mode {
                    bail!(
                        "{} holds arm `{}` with seed {}, not `{}` with seed {seed}",
                        dir.display(),
                        state.arm.name(),
                        state.seed,
                        mode.name()
                    );
                }
                tracing::info!(
                    "resuming arm `{}` at iteration {}",
                    mode.name(),
                    state.iteration
                );
                Ok(Self {
                    model,
                    policy,
                    optim_model: optim_model
                        .load_record(load_record(&dir.join("optimizer"), device)?),
                    optim_schedule: optim_schedule
                        .load_record(load_record(&dir.join("schedule_optimizer"), device)?),
                    state,
                })
            }
            (false, Some(dir)) => bail!(
                "{} already holds checkpoint {} (nothing was overwritten); continue it with \
                 `cogrpo train --arm {} --resume`, or remove it to start over",
                ckpts.root().display(),
                dir.display(),
                mode.name()
            ),
            (_, None) => {
                let model = checkpoint::load_model::<B>(init, &denoiser_config(cfg, task), device)
                    .with_context(|| {
                        format!("cannot load the pre-trained model {}", init.display())
                    })?;
                Ok(Self {
                    model,
                    policy: init_policy::<B>(c, task, device),
                    optim_model,
                    optim_schedule,
                    state: ArmState {
                        format_version: ARM_FORMAT_VERSION,
                        arm: mode,
                        iteration: 0,
                        seed,
                        rollouts: 0,
                        wall_s: 0.0,
                        init: init.to_path_buf(),
                        history: Vec::new(),
                        ranks: 1,
                    },
                })
            }
        }
    }

    /// Writes the arm atomically as checkpoint `state.iteration` in `ckpts`
    /// (the newest 2 are kept) with the resolved config `config_toml`.
    pub fn save(&self, ckpts: &CheckpointDir, config_toml: &str) -> anyhow::Result<PathBuf> {
        ckpts.save_with(self.state.iteration, 2, |dir| {
            mdm::weights::save(&self.model, &dir.join("model.safetensors"))?;
            save_record::<_, B>(
                Optimizer::<Denoiser<B>, B>::to_record(&self.optim_model),
                &dir.join("optimizer"),
            )?;
            save_record::<_, B>(self.policy.clone().into_record(), &dir.join("schedule"))?;
            save_record::<_, B>(
                Optimizer::<SchedulePolicy<B>, B>::to_record(&self.optim_schedule),
                &dir.join("schedule_optimizer"),
            )?;
            write_atomic(
                &dir.join("state.json"),
                serde_json::to_string_pretty(&self.state)?.as_bytes(),
            )?;
            write_atomic(&dir.join("config.toml"), config_toml.as_bytes())
        })
    }
}

/// The schedule policy of a fresh arm.
pub fn init_policy<B: burn::prelude::Backend>(
    c: &CogrpoConfig,
    task: &dyn Task,
    device: &B::Device,
) -> SchedulePolicy<B> {
    c.schedule.init::<B>(
        c.steps,
        task.layout().answer_len,
        c.reference.kind == SamplerKind::Confidence,
        device,
    )
}

/// Reads an arm checkpoint's `state.json`.
pub fn read_arm_state(dir: &Path) -> anyhow::Result<ArmState> {
    let state: ArmState = checkpoint::read_state_json(dir, "a Co-GRPO arm state")?;
    if state.format_version != ARM_FORMAT_VERSION {
        return Err(crate::BadInput(format!(
            "{} has arm format {}, this build reads {ARM_FORMAT_VERSION}",
            dir.join("state.json").display(),
            state.format_version
        ))
        .into());
    }
    Ok(state)
}

/// Loads an arm checkpoint's model, schedule policy and state.
pub fn load_arm<B: burn::prelude::Backend>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    dir: &Path,
    device: &B::Device,
) -> anyhow::Result<(Denoiser<B>, SchedulePolicy<B>, ArmState)> {
    let c = cfg.cogrpo_section()?;
    let state = read_arm_state(dir)?;
    let model = checkpoint::load_model::<B>(
        &dir.join("model.safetensors"),
        &denoiser_config(cfg, task),
        device,
    )?;
    let policy =
        init_policy::<B>(c, task, device).load_record(load_record(&dir.join("schedule"), device)?);
    Ok((model, policy, state))
}

/// The arm checkpoint `path` names: a checkpoint folder (with `state.json`)
/// as it is, or an arm folder (`runs/<name>/arms/<arm>`) by its newest
/// checkpoint.
pub fn find_arm_checkpoint(path: &Path) -> anyhow::Result<PathBuf> {
    if path.join("state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let ckpts = CheckpointDir::new(path.join("checkpoints"));
    ckpts.latest().with_context(|| {
        format!(
            "{} is neither an arm folder with checkpoints (runs/<name>/arms/<arm>) nor an arm \
             checkpoint: train the arm first (`cogrpo train` or `cogrpo run`)",
            path.display()
        )
    })
}
