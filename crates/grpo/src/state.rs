//! What an arm checkpoint holds besides weights and optimizer states: the
//! iteration count, the rollout budget spent and the per-iteration log the
//! report draws its curves from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::module::Module;
use burn::optim::Optimizer;
use cogrpo_config::tasks::denoiser_config;
use cogrpo_config::{CogrpoConfig, ExperimentConfig, UpdateMode};
use cogrpo_runtime::BadInput;
use cogrpo_runtime::checkpoint::{self, CheckpointDir, load_record, save_record};
use cogrpo_runtime::fingerprint::fingerprint;
use cogrpo_runtime::training::{Checkpointed, RunRecord, RunState, read_run_state};
use cogrpo_vision::adversarial::{Discriminator, UpdateStats};
use envs::Task;
use mdm::{AutodiffKernels, Denoiser, Kernels};
use policy::learned::SchedulePolicy;
use serde::{Deserialize, Serialize};

use crate::factor::{Factor, Trainable};

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
    /// With `[cogrpo.adversarial]`: what the discriminator's update after
    /// this iteration measured (None where it did not update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discriminator: Option<UpdateStats>,
    /// With `cogrpo.eval_every`: the validation after this iteration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
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

/// One validation of an arm: each `metric@T` on all validation prompts,
/// and its noise (the gap between the two halves' values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub values: BTreeMap<String, f64>,
    pub noise: BTreeMap<String, f64>,
}

/// The checkpoint kept by `cogrpo.keep_best` ([`crate::validation`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub iteration: usize,
    /// `metric@T`.
    pub key: String,
    pub value: f64,
}

/// `state.json` of an arm checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmState {
    /// Format, seed, wall time and ranks, as every run records them.
    #[serde(flatten)]
    pub run: RunRecord,
    pub arm: UpdateMode,
    /// Iterations completed.
    pub iteration: usize,
    /// Trajectories rolled out so far.
    pub rollouts: u64,
    /// The pre-trained checkpoint the arm started from.
    pub init: PathBuf,
    /// With `[cogrpo.lora]`: the fingerprint of `init`
    /// ([`cogrpo_runtime::fingerprint`]), the frozen base the checkpoint's
    /// adapters sit on (it holds the adapters only), checked before they
    /// are loaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_fingerprint: Option<String>,
    pub history: Vec<IterationLog>,
    /// With `cogrpo.keep_best`: the checkpoint kept under `best/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<Best>,
    /// Reward-hacking warnings raised during training.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RunState for ArmState {
    const FORMAT_VERSION: u32 = ARM_FORMAT_VERSION;
    const WHAT: &'static str = "a Co-GRPO arm state";
    const UNIT: &'static str = "iteration";
    fn record(&self) -> &RunRecord {
        &self.run
    }
    fn done(&self) -> usize {
        self.iteration
    }
}

/// A trained arm: its weights and state.
pub struct TrainedArm<B: AutodiffKernels> {
    pub model: Denoiser<B>,
    pub policy: SchedulePolicy<B>,
    pub state: ArmState,
    pub checkpoint: PathBuf,
}

/// The model factor theta of an arm.
pub type Theta<B> = Factor<B, Denoiser<B>>;
/// The schedule factor phi of an arm.
pub type Phi<B> = Factor<B, SchedulePolicy<B>>;

/// An arm in training: what its checkpoint holds (`model.safetensors`, or
/// with LoRA `adapters.safetensors`, and `optimizer.mpk` of theta,
/// `schedule.mpk` and `schedule_optimizer.mpk` of phi, `state.json`,
/// `config.toml`; with `[cogrpo.adversarial]` the discriminator's
/// `discriminator*` files). [`load_arm`] reads the same files for inference.
pub struct ArmTraining<B: AutodiffKernels> {
    pub theta: Theta<B>,
    pub phi: Phi<B>,
    pub state: ArmState,
    /// The discriminator reward that keeps learning, if configured.
    pub discriminator: Option<Discriminator>,
}

impl<B: AutodiffKernels> Checkpointed for ArmTraining<B> {
    type State = ArmState;
    fn state(&self) -> &ArmState {
        &self.state
    }
    fn write_files(&self, dir: &Path) -> anyhow::Result<()> {
        if self.theta.module.has_lora() {
            mdm::weights::save_adapters(&self.theta.module, &dir.join(ADAPTERS))?;
        } else {
            mdm::weights::save(&self.theta.module, &dir.join(MODEL))?;
        }
        save_record::<_, B>(
            Optimizer::<Denoiser<B>, B>::to_record(&self.theta.optim),
            &dir.join("optimizer"),
        )?;
        save_record::<_, B>(self.phi.module.clone().into_record(), &dir.join("schedule"))?;
        save_record::<_, B>(
            Optimizer::<SchedulePolicy<B>, B>::to_record(&self.phi.optim),
            &dir.join("schedule_optimizer"),
        )?;
        match &self.discriminator {
            Some(d) => d.save(dir),
            None => Ok(()),
        }
    }
}

impl<B: AutodiffKernels> ArmTraining<B> {
    /// A fresh arm of `mode` from the pre-trained checkpoint `init`.
    pub fn fresh(
        cfg: &ExperimentConfig,
        task: &dyn Task,
        mode: UpdateMode,
        init: &Path,
        ranks: usize,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        let c = cfg.cogrpo_section()?;
        let model = load_base::<B>(cfg, task, init, device)?;
        let state = ArmState {
            run: RunRecord {
                format_version: ARM_FORMAT_VERSION,
                seed: cfg.run.seed,
                wall_s: 0.0,
                ranks,
            },
            arm: mode,
            iteration: 0,
            rollouts: 0,
            init: init.to_path_buf(),
            base_fingerprint: c.lora.as_ref().map(|_| fingerprint(init)).transpose()?,
            history: Vec::new(),
            best: None,
            warnings: Vec::new(),
        };
        let mut arm = Self::with_factors(
            cfg,
            task,
            (model, init_policy::<B>(c, task, device)),
            init,
            state,
            device,
        )?;
        arm.discriminator = c_adversarial(cfg)?
            .map(|a| Discriminator::start(cfg, a))
            .transpose()?;
        Ok(arm)
    }

    /// The arm checkpoint `dir` (whose `state` the scaffold read and
    /// checked), continued from the pre-trained `init`.
    pub fn load(
        cfg: &ExperimentConfig,
        task: &dyn Task,
        mode: UpdateMode,
        (dir, state): (&Path, ArmState),
        init: &Path,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        if state.arm != mode {
            bail!(
                "{} holds arm `{}`, not `{}`",
                dir.display(),
                state.arm.name(),
                mode.name()
            );
        }
        let (model, policy) = load_weights::<B>(cfg, task, (dir, &state), init, device)?;
        let mut arm = Self::with_factors(cfg, task, (model, policy), init, state, device)?;
        arm.discriminator = c_adversarial(cfg)?
            .map(|a| Discriminator::load(cfg, a, dir))
            .transpose()?;
        arm.theta.optim = arm
            .theta
            .optim
            .load_record(load_record(&dir.join("optimizer"), device)?);
        arm.phi.optim = arm
            .phi
            .optim
            .load_record(load_record(&dir.join("schedule_optimizer"), device)?);
        Ok(arm)
    }

    /// Both factors with their optimizers and, where `cogrpo.beta` /
    /// `beta_schedule` ask for a KL term, their frozen references: the
    /// pre-trained model `init` (with LoRA, the frozen base itself, shared
    /// rather than loaded twice) and the initial schedule policy.
    fn with_factors(
        cfg: &ExperimentConfig,
        task: &dyn Task,
        (model, policy): (Denoiser<B>, SchedulePolicy<B>),
        init: &Path,
        state: ArmState,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        let c = cfg.cogrpo_section()?;
        let reference_model = (c.beta > 0.0)
            .then(|| match model.has_lora() {
                true => Ok(model.valid().without_lora()),
                false => checkpoint::load_model::<B::InnerBackend>(
                    init,
                    &denoiser_config(cfg, task),
                    device,
                ),
            })
            .transpose()?
            .map(|m| (m, c.beta));
        let reference_policy = (c.beta_schedule > 0.0)
            .then(|| (init_policy::<B>(c, task, device).no_grad(), c.beta_schedule));
        Ok(Self {
            theta: Factor::new(
                model,
                (c.lr_model, c.weight_decay, c.grad_clip),
                reference_model,
            ),
            phi: Factor::new(policy, (c.lr_schedule, 0.0, c.grad_clip), reference_policy),
            state,
            discriminator: None,
        })
    }

    /// The factors phase `(theta, phi)` trains, in that order.
    pub fn factors(&mut self, (theta, phi): (bool, bool)) -> Vec<&mut dyn Trainable<B>> {
        let mut out: Vec<&mut dyn Trainable<B>> = Vec::new();
        if theta {
            out.push(&mut self.theta);
        }
        if phi {
            out.push(&mut self.phi);
        }
        out
    }

    /// The trained arm, for inference and the report.
    pub fn finished(self, checkpoint: PathBuf) -> TrainedArm<B> {
        TrainedArm {
            model: self.theta.module,
            policy: self.phi.module,
            state: self.state,
            checkpoint,
        }
    }
}

/// `[cogrpo.adversarial]`, if set.
fn c_adversarial(
    cfg: &ExperimentConfig,
) -> anyhow::Result<Option<&cogrpo_config::AdversarialConfig>> {
    Ok(cfg.cogrpo_section()?.adversarial.as_ref())
}

/// The schedule policy of a fresh arm.
pub fn init_policy<B: burn::prelude::Backend>(
    c: &CogrpoConfig,
    task: &dyn Task,
    device: &B::Device,
) -> SchedulePolicy<B> {
    c.schedule
        .init::<B>(c.steps, task.layout().answer_len, &c.reference, device)
}

/// Reads an arm checkpoint's `state.json` (after verifying the folder).
pub fn read_arm_state(dir: &Path) -> anyhow::Result<ArmState> {
    read_run_state(dir)
}

/// Loads an arm checkpoint's model, schedule policy and state.
pub fn load_arm<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    dir: &Path,
    device: &B::Device,
) -> anyhow::Result<(Denoiser<B>, SchedulePolicy<B>, ArmState)> {
    let state = read_arm_state(dir)?;
    let (model, policy) = load_weights::<B>(cfg, task, (dir, &state), &state.init, device)?;
    Ok((model, policy, state))
}

/// Theta's weights in an arm checkpoint.
const MODEL: &str = "model.safetensors";
/// Theta's adapters in a LoRA arm's checkpoint.
const ADAPTERS: &str = "adapters.safetensors";

/// The pre-trained model `init` as theta starts: every weight trainable,
/// or with `[cogrpo.lora]` frozen under fresh adapters drawn from the run's
/// seed (zero updates: the arm starts as the base).
fn load_base<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    init: &Path,
    device: &B::Device,
) -> anyhow::Result<Denoiser<B>> {
    let model = checkpoint::load_model::<B>(init, &denoiser_config(cfg, task), device)
        .with_context(|| format!("cannot load the pre-trained model {}", init.display()))?;
    match &cfg.cogrpo_section()?.lora {
        None => Ok(model),
        Some(lora) => model
            .with_lora(lora, cfg.run.seed)
            .map_err(|e| BadInput(format!("cogrpo.lora: {e}")).into()),
    }
}

/// An arm checkpoint's model and schedule policy. A LoRA checkpoint's
/// adapters go onto the base `init`, which must be the one the arm was
/// trained on (its fingerprint in `state`).
fn load_weights<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    (dir, state): (&Path, &ArmState),
    init: &Path,
    device: &B::Device,
) -> anyhow::Result<(Denoiser<B>, SchedulePolicy<B>)> {
    let c = cfg.cogrpo_section()?;
    let model = match (&state.base_fingerprint, &c.lora) {
        (None, None) => {
            checkpoint::load_model::<B>(&dir.join(MODEL), &denoiser_config(cfg, task), device)?
        }
        (Some(recorded), Some(_)) => {
            let found = fingerprint(init)?;
            if &found != recorded {
                return Err(BadInput(format!(
                    "{} holds LoRA adapters trained on a base with fingerprint {recorded}, but \
                     the base model {} now has fingerprint {found}: it changed since the arm \
                     was trained (adapters on another base compute something nobody trained). \
                     Point the config at the original base",
                    dir.display(),
                    init.display()
                ))
                .into());
            }
            let base = load_base::<B>(cfg, task, init, device)?;
            mdm::weights::load_adapters(base, &dir.join(ADAPTERS))?
        }
        (Some(_), None) => bail!(
            "{} holds LoRA adapters, but the config has no [cogrpo.lora] to build them from",
            dir.display()
        ),
        (None, Some(_)) => bail!(
            "{} holds a fully fine-tuned model, but the config asks for [cogrpo.lora]",
            dir.display()
        ),
    };
    let policy =
        init_policy::<B>(c, task, device).load_record(load_record(&dir.join("schedule"), device)?);
    Ok((model, policy))
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
