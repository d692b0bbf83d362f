//! The arms `cogrpo run` compares, each evaluated alike: `base` (the
//! pre-trained model under the reference schedule), `tuned` (the best fixed
//! schedule of a grid), and every configured update mode trained from the
//! same checkpoint with the same rollout budget. [`ArmRun::arm`] is the one
//! route to an arm's training, for `cogrpo train` and `cogrpo run` alike.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::module::AutodiffModule;
use cogrpo_config::resume::Scope;
use cogrpo_config::{TuneConfig, UpdateMode};
use cogrpo_eval::Scorer;
use cogrpo_eval::dumps::{self, DumpKind};
use cogrpo_runtime::checkpoint::{CheckpointDir, check_resume};
use cogrpo_runtime::files::write_atomic;
use cogrpo_runtime::logging::Scalars;
use cogrpo_runtime::run_dir::RunDir;
use cogrpo_runtime::training::Start;
use mdm::{AutodiffKernels, Denoiser};
use policy::learned::SchedulePolicy;
use serde::{Deserialize, Serialize};

use crate::evaluate::{ArmEval, evaluate_arm, evaluate_fixed_arm};
use crate::setup::ArmRun;
use crate::state::{ArmState, IterationLog, load_arm, read_arm_state};
use crate::trainer::{BEST, train_arm};
use crate::tuned::tune_fixed_schedule;
use crate::validation::Best;

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
    /// With `cogrpo.keep_best`: the checkpoint evaluated (the best by
    /// validation) instead of the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<Best>,
    /// Reward-hacking warnings raised during training.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A trained arm for inference: its model and schedule, its state, and
/// the checkpoint they came from.
pub struct InferenceArm<B: burn::prelude::Backend> {
    pub model: Denoiser<B>,
    pub policy: SchedulePolicy<B>,
    pub state: ArmState,
    pub checkpoint: PathBuf,
}

impl<B: AutodiffKernels> ArmRun<'_, B> {
    /// `base`: the pre-trained `model` under the reference schedule.
    pub fn base(
        &self,
        model: &Denoiser<B::InnerBackend>,
        scorer: &Scorer,
    ) -> anyhow::Result<ArmOutcome> {
        let start = Instant::now();
        let mut eval = evaluate_arm(
            self.cfg,
            self.task,
            model,
            None,
            "base",
            scorer,
            &self.device,
        )?;
        dump_eval(self.run, "base", 0, &mut eval);
        log_eval(&mut untrained_log(self.run, "base")?, 0, &eval);
        Ok(ArmOutcome {
            name: "base".into(),
            eval,
            train_wall_s: 0.0,
            eval_wall_s: start.elapsed().as_secs_f64(),
            rollouts: 0,
            history: Vec::new(),
            fixed_schedule: None,
            best: None,
            warnings: Vec::new(),
        })
    }

    /// `tuned`: the best fixed schedule of `tune`'s grid for `model` by the
    /// training reward on the validation split (every grid point's score
    /// in `tuned_grid.tsv`), evaluated on the test split.
    pub fn tuned(
        &self,
        model: &Denoiser<B::InnerBackend>,
        tune: &TuneConfig,
        scorer: &Scorer,
    ) -> anyhow::Result<ArmOutcome> {
        let start = Instant::now();
        let tuned = tune_fixed_schedule(self.cfg, self.task, model, tune, &self.device)?;
        let tuning_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let eval = evaluate_fixed_arm(
            self.cfg,
            self.task,
            model,
            &tuned.best,
            "tuned",
            scorer,
            &self.device,
        )?;
        let lines: Vec<String> = tuned
            .scores
            .iter()
            .map(|(s, r)| format!("{}\t{r:.6}", s.label()))
            .collect();
        write_atomic(
            &self.run.path().join("tuned_grid.tsv"),
            format!("schedule\tvalidation_reward\n{}\n", lines.join("\n")).as_bytes(),
        )?;
        let outcome = self.untrained("tuned", eval, start)?;
        Ok(ArmOutcome {
            train_wall_s: tuning_s,
            rollouts: tuned.rollouts,
            fixed_schedule: Some(tuned.best.label()),
            ..outcome
        })
    }

    /// An arm that is not trained (`base`, `tuned`): its evaluation dumped
    /// and logged at iteration 0.
    fn untrained(
        &self,
        name: &str,
        mut eval: ArmEval,
        started: Instant,
    ) -> anyhow::Result<ArmOutcome> {
        dump_eval(self.run, name, 0, &mut eval);
        log_eval(&mut untrained_log(self.run, name)?, 0, &eval);
        Ok(ArmOutcome {
            name: name.into(),
            eval,
            train_wall_s: 0.0,
            eval_wall_s: started.elapsed().as_secs_f64(),
            rollouts: 0,
            history: Vec::new(),
            fixed_schedule: None,
            best: None,
            warnings: Vec::new(),
        })
    }

    /// Arm `mode`, trained by `start`'s policy (or, unless `Start::Fresh`,
    /// reused when its checkpoint has every iteration), then evaluated on
    /// the test split, dumped and logged by rank 0, which alone has a
    /// `scorer` (the other ranks return `None`).
    pub fn arm(
        &self,
        mode: UpdateMode,
        start: Start,
        scorer: Option<&Scorer>,
    ) -> anyhow::Result<Option<(ArmOutcome, InferenceArm<B::InnerBackend>)>> {
        let mut log = Scalars::for_rank(&self.run.tb_dir().join(mode.name()), self.world)?;
        let arm = self.trained(mode, start, &mut log)?;
        let Some(scorer) = scorer else {
            return Ok(None);
        };
        let begin = Instant::now();
        let best = self.best_checkpoint(mode, &arm.state)?;
        let (model, policy) = match &best {
            Some((_, model, policy)) => (model, policy),
            None => (&arm.model, &arm.policy),
        };
        let policy = mode.uses_schedule().then_some(policy);
        let mut eval = evaluate_arm(
            self.cfg,
            self.task,
            model,
            policy,
            mode.name(),
            scorer,
            &self.device,
        )?;
        dump_eval(self.run, mode.name(), arm.state.iteration, &mut eval);
        log_eval(&mut log, arm.state.iteration, &eval);
        log.close();
        let outcome = ArmOutcome {
            name: mode.name().into(),
            eval,
            train_wall_s: arm.state.run.wall_s,
            eval_wall_s: begin.elapsed().as_secs_f64(),
            rollouts: arm.state.rollouts,
            history: arm.state.history.clone(),
            fixed_schedule: None,
            best: best.map(|b| b.0),
            warnings: arm.state.warnings.clone(),
        };
        Ok(Some((outcome, arm)))
    }

    /// With `cogrpo.keep_best`, the model and schedule of the arm's best
    /// checkpoint by validation (what the test split then evaluates).
    fn best_checkpoint(
        &self,
        mode: UpdateMode,
        state: &ArmState,
    ) -> anyhow::Result<Option<BestArm<B>>> {
        let Some(best) = &state.best else {
            return Ok(None);
        };
        let best_dir = self.arm_dir(mode).join(BEST);
        let dir = CheckpointDir::new(best_dir.clone())
            .latest()
            .with_context(|| {
                format!(
                    "arm `{}` recorded its best checkpoint (iteration {}) but {} holds none",
                    mode.name(),
                    best.iteration,
                    best_dir.display()
                )
            })?;
        let (model, policy, _) =
            load_arm::<B::InnerBackend>(self.cfg, self.task, &dir, &self.device)?;
        tracing::info!(
            "arm `{}`: evaluating its best checkpoint by validation {} = {:.4} (iteration {} of {})",
            mode.name(),
            best.key,
            best.value,
            best.iteration,
            state.iteration
        );
        Ok(Some((best.clone(), model, policy)))
    }

    /// Arm `mode` for inference: reused if its checkpoint has every
    /// iteration (and `start` may continue it), else trained.
    fn trained(
        &self,
        mode: UpdateMode,
        start: Start,
        log: &mut Scalars,
    ) -> anyhow::Result<InferenceArm<B::InnerBackend>> {
        let c = self.cogrpo()?;
        let ckpts = CheckpointDir::new(self.arm_dir(mode).join("checkpoints"));
        if start != Start::Fresh
            && let Some(dir) = ckpts.latest()
            && read_arm_state(&dir).is_ok_and(|s| s.iteration >= c.iterations)
        {
            check_resume(&dir, self.cfg, Scope::Arm)?;
            tracing::info!(
                "reusing the finished arm `{}` in {}",
                mode.name(),
                dir.display()
            );
            let (model, policy, state) =
                load_arm::<B::InnerBackend>(self.cfg, self.task, &dir, &self.device)?;
            log.start_at(state.iteration);
            return Ok(InferenceArm {
                model,
                policy,
                state,
                checkpoint: dir,
            });
        }
        let t = train_arm(self, mode, start, log)?;
        Ok(InferenceArm {
            model: t.model.valid(),
            policy: t.policy.valid(),
            state: t.state,
            checkpoint: t.checkpoint,
        })
    }
}

/// An arm's best checkpoint: which, and its model and schedule.
type BestArm<B> = (
    Best,
    Denoiser<<B as burn::tensor::backend::AutodiffBackend>::InnerBackend>,
    SchedulePolicy<<B as burn::tensor::backend::AutodiffBackend>::InnerBackend>,
);

/// The log of an untrained arm, evaluated afresh by every run: what an
/// earlier run logged there is replaced, not shown twice.
fn untrained_log(run: &RunDir, arm: &str) -> anyhow::Result<Scalars> {
    let mut log = Scalars::open(&run.tb_dir().join(arm))?;
    log.start_at(0);
    Ok(log)
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
