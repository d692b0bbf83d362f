//! The comparison `cogrpo run` reports: `base` (the pre-trained model under
//! the reference schedule), then every configured update mode trained from
//! the same checkpoint with the same rollout budget, each evaluated alike.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::module::AutodiffModule;
use envs::Task;
use serde::{Deserialize, Serialize};

use super::evaluate::{ArmEval, evaluate_arm, evaluate_fixed_arm};
use super::state::{ArmState, IterationLog, TrainedArm, load_arm, read_arm_state};
use super::trainer::train_arm;
use super::tuned::tune_fixed_schedule;
use crate::checkpoint::{self, CheckpointDir};
use crate::config::resume::Scope;
use crate::config::{ExperimentConfig, UpdateMode};
use crate::distributed::World;
use crate::dumps::{self, DumpKind};
use crate::eval::Scorer;
use crate::logging::Scalars;
use crate::run_dir::RunDir;
use crate::tasks::denoiser_config;
use mdm::{AutodiffKernels, Denoiser};
use policy::learned::SchedulePolicy;

/// One arm's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmOutcome {
    pub name: String,
    pub eval: ArmEval,
    /// Training wall time (0 for `base`) plus evaluation.
    pub train_wall_s: f64,
    pub eval_wall_s: f64,
    pub rollouts: u64,
    pub history: Vec<IterationLog>,
    /// The fixed schedule of a `tuned` arm (its label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_schedule: Option<String>,
}

/// Where an arm's checkpoints and TensorBoard log live.
pub fn arm_dir(run: &RunDir, mode: UpdateMode) -> PathBuf {
    run.path().join("arms").join(mode.name())
}

/// Evaluates `base`, trains (or resumes, or reuses) each arm, evaluates it.
/// In a distributed run every rank trains the arms and rank 0 alone
/// evaluates (the other ranks return no outcome).
pub fn run_arms<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    run: &RunDir,
    init: &Path,
    device: &B::Device,
    world: &World,
) -> anyhow::Result<Vec<ArmOutcome>> {
    let c = cfg.cogrpo_section()?;
    let mut out = Vec::new();

    let start = Instant::now();
    let base =
        checkpoint::load_model::<B::InnerBackend>(init, &denoiser_config(cfg, task), device)?;
    crate::reward_models::prepare(cfg, task, &base, device)?;
    if !world.is_writer() {
        for &mode in &c.arms {
            let mut log = Scalars::disabled();
            trained_arm::<B>(cfg, task, run, mode, init, device, world, &mut log)?;
        }
        return Ok(out);
    }
    let scorer = Scorer::new(cfg, task).context("evaluating the arms")?;
    let mut eval = evaluate_arm(cfg, task, &base, None, "base", &scorer, device)?;
    dump_eval(run, "base", 0, &mut eval);
    log_eval(&mut Scalars::open(&run.tb_dir().join("base"))?, 0, &eval);
    out.push(ArmOutcome {
        name: "base".into(),
        eval,
        train_wall_s: 0.0,
        eval_wall_s: start.elapsed().as_secs_f64(),
        rollouts: 0,
        history: Vec::new(),
        fixed_schedule: None,
    });

    if let Some(tune) = &c.tune {
        let start = Instant::now();
        let tuned = tune_fixed_schedule(cfg, task, &base, tune, device)?;
        let tuning_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut eval = evaluate_fixed_arm(cfg, task, &base, &tuned.best, "tuned", &scorer, device)?;
        dump_eval(run, "tuned", 0, &mut eval);
        log_eval(&mut Scalars::open(&run.tb_dir().join("tuned"))?, 0, &eval);
        out.push(ArmOutcome {
            name: "tuned".into(),
            eval,
            train_wall_s: tuning_s,
            eval_wall_s: start.elapsed().as_secs_f64(),
            rollouts: tuned.rollouts,
            history: Vec::new(),
            fixed_schedule: Some(tuned.best.label()),
        });
        let lines: Vec<String> = tuned
            .scores
            .iter()
            .map(|(s, r)| format!("{}\t{r:.6}", s.label()))
            .collect();
        crate::run_dir::write_atomic(
            &run.path().join("tuned_grid.tsv"),
            format!("schedule\tvalidation_reward\n{}\n", lines.join("\n")).as_bytes(),
        )?;
    }

    for &mode in &c.arms {
        let mut log = Scalars::open(&run.tb_dir().join(mode.name()))?;
        let (model, policy, state) =
            trained_arm::<B>(cfg, task, run, mode, init, device, world, &mut log)?;
        let start = Instant::now();
        let mut eval = evaluate_arm(
            cfg,
            task,
            &model,
            mode.uses_schedule().then_some(&policy),
            mode.name(),
            &scorer,
            device,
        )?;
        dump_eval(run, mode.name(), state.iteration, &mut eval);
        log_eval(&mut log, state.iteration, &eval);
        log.close();
        out.push(ArmOutcome {
            name: mode.name().into(),
            eval,
            train_wall_s: state.wall_s,
            eval_wall_s: start.elapsed().as_secs_f64(),
            rollouts: state.rollouts,
            history: state.history,
            fixed_schedule: None,
        });
    }
    Ok(out)
}

/// A trained arm's model and schedule for inference, and its state.
type InferenceArm<B> = (Denoiser<B>, SchedulePolicy<B>, ArmState);

/// Arm `mode`: reused if its checkpoint has every iteration, else trained
/// (resumed from its checkpoint if there is one).
#[allow(clippy::too_many_arguments)]
fn trained_arm<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    run: &RunDir,
    mode: UpdateMode,
    init: &Path,
    device: &B::Device,
    world: &World,
    log: &mut Scalars,
) -> anyhow::Result<InferenceArm<B::InnerBackend>> {
    let c = cfg.cogrpo_section()?;
    let dir = arm_dir(run, mode);
    let ckpts = CheckpointDir::new(dir.join("checkpoints"));
    let latest = ckpts.latest();
    if let Some(d) = &latest {
        checkpoint::check_resume(d, cfg, Scope::Arm)?;
    }
    let finished = latest
        .as_ref()
        .and_then(|d| read_arm_state(d).ok())
        .is_some_and(|s| s.iteration >= c.iterations);
    if let (true, Some(d)) = (finished, latest.as_ref()) {
        tracing::info!(
            "reusing the finished arm `{}` in {}",
            mode.name(),
            d.display()
        );
        return load_arm::<B::InnerBackend>(cfg, task, d, device);
    }
    let t: TrainedArm<B> = train_arm::<B>(
        cfg,
        task,
        mode,
        &dir,
        &dumps::path(run.path(), mode.name()),
        init,
        device,
        latest.is_some(),
        log,
        world,
    )?;
    Ok((t.model.valid(), t.policy.valid(), t.state))
}

/// Replaces the arm's evaluation dumps with this evaluation's. Dumps are a
/// view of the run, like TensorBoard: a failure to write them is a warning.
fn dump_eval(run: &RunDir, arm: &str, iteration: usize, eval: &mut ArmEval) {
    let path = dumps::path(run.path(), arm);
    for r in &mut eval.dumped {
        r.iteration = iteration;
    }
    let written = dumps::retain(&path, |r| r.kind == DumpKind::Train)
        .and_then(|()| dumps::append(&path, &eval.dumped));
    if let Err(e) = written {
        tracing::warn!("no evaluation dump for arm `{arm}`: {e:#}");
    }
}

/// The evaluation's numbers as TensorBoard scalars `eval/<metric>@T<steps>`
/// at the arm's iteration, and its first dumped rollouts as text.
fn log_eval(log: &mut Scalars, iteration: usize, eval: &ArmEval) {
    for r in &eval.rows {
        if r.value.is_finite() {
            log.scalar(
                &format!("eval/{}@T{}", r.metric, r.steps),
                r.value,
                iteration,
            );
        }
    }
    if !eval.dumped.is_empty() {
        log.text("eval/samples", &dumps::markdown(&eval.dumped), iteration);
    }
}
