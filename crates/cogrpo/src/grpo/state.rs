//! What an arm checkpoint holds besides weights and optimizer states: the
//! iteration count, the rollout budget spent and the per-iteration log the
//! report draws its curves from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use envs::Task;
use mdm::Denoiser;
use policy::SamplerKind;
use policy::learned::SchedulePolicy;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, load_record};
use crate::config::{CogrpoConfig, ExperimentConfig, UpdateMode};
use crate::tasks::denoiser_config;

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
}

/// A trained arm: its weights and state.
pub struct TrainedArm<B: AutodiffBackend> {
    pub model: Denoiser<B>,
    pub policy: SchedulePolicy<B>,
    pub state: ArmState,
    pub checkpoint: PathBuf,
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
    let path = dir.join("state.json");
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let state: ArmState = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a Co-GRPO arm state", path.display()))?;
    if state.format_version != ARM_FORMAT_VERSION {
        bail!(
            "{} has arm format {}, this build reads {ARM_FORMAT_VERSION}",
            path.display(),
            state.format_version
        );
    }
    Ok(state)
}

/// Loads a finished arm's model and schedule policy for inference.
pub fn load_arm<B: burn::prelude::Backend>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    dir: &Path,
    device: &B::Device,
) -> anyhow::Result<(Denoiser<B>, SchedulePolicy<B>, ArmState)> {
    let c = cfg
        .cogrpo
        .as_ref()
        .context("the config has no [cogrpo] section")?;
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
