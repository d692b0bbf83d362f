//! The comparison `cogrpo run` reports: `base` (the pre-trained model under
//! the reference schedule), then every configured update mode trained from
//! the same checkpoint with the same rollout budget, each evaluated alike.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use envs::Task;
use serde::{Deserialize, Serialize};

use super::evaluate::{ArmEval, evaluate_arm, evaluate_fixed_arm};
use super::state::{IterationLog, TrainedArm, load_arm, read_arm_state};
use super::trainer::train_arm;
use super::tuned::tune_fixed_schedule;
use crate::checkpoint::{self, CheckpointDir};
use crate::config::{ExperimentConfig, UpdateMode};
use crate::eval::Scorer;
use crate::logging::Scalars;
use crate::run_dir::RunDir;
use crate::tasks::denoiser_config;

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
pub fn run_arms<B: AutodiffBackend>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    run: &RunDir,
    init: &Path,
    device: &B::Device,
) -> anyhow::Result<Vec<ArmOutcome>> {
    let c = cfg.cogrpo_section()?;
    let mut out = Vec::new();

    let start = Instant::now();
    let base =
        checkpoint::load_model::<B::InnerBackend>(init, &denoiser_config(cfg, task), device)?;
    crate::reward_models::prepare(cfg, task, &base, device)?;
    let scorer = Scorer::new(cfg, task).context("evaluating the arms")?;
    let eval = evaluate_arm(cfg, task, &base, None, "base", &scorer, device)?;
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
        let eval = evaluate_fixed_arm(cfg, task, &base, &tuned.best, "tuned", &scorer, device)?;
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
        let dir = arm_dir(run, mode);
        let ckpts = CheckpointDir::new(dir.join("checkpoints"));
        let latest = ckpts.latest();
        if let Some(d) = latest.as_ref().filter(|d| !trained_under(d, cfg)) {
            bail!(
                "{} holds arm checkpoint {} from a different config; set another run.out_dir \
                 or remove it (nothing was overwritten)",
                dir.display(),
                d.display()
            );
        }
        let finished = latest
            .as_ref()
            .and_then(|d| read_arm_state(d).ok())
            .is_some_and(|s| s.iteration >= c.iterations);
        let (model, policy, state) = if finished {
            let d = latest.expect("finished implies a checkpoint");
            eprintln!(
                "reusing the finished arm `{}` in {}",
                mode.name(),
                d.display()
            );
            load_arm::<B::InnerBackend>(cfg, task, &d, device)?
        } else {
            let mut log = Scalars::open(&run.tb_dir().join(mode.name()))?;
            let trained: anyhow::Result<TrainedArm<B>> = train_arm::<B>(
                cfg,
                task,
                mode,
                &dir,
                init,
                device,
                latest.is_some(),
                &mut log,
            );
            log.close();
            let t = trained?;
            (t.model.valid(), t.policy.valid(), t.state)
        };
        let start = Instant::now();
        let eval = evaluate_arm(
            cfg,
            task,
            &model,
            mode.uses_schedule().then_some(&policy),
            mode.name(),
            &scorer,
            device,
        )?;
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

/// Whether the arm checkpoint `dir` was written by this arm's training under
/// `cfg` (its `config.toml` agrees but for the evaluation settings); an
/// unreadable config does not.
pub fn trained_under(dir: &Path, cfg: &ExperimentConfig) -> bool {
    std::fs::read_to_string(dir.join("config.toml"))
        .ok()
        .and_then(|t| toml::from_str::<ExperimentConfig>(&t).ok())
        .is_some_and(|prev| same_arm_training(&prev, cfg))
}

/// Whether an arm checkpoint written under `prev` is (part of) this arm's
/// training under `cfg`: everything but the evaluation settings and the
/// tuned fixed schedule's grid (the `tuned` arm trains nothing) agrees.
fn same_arm_training(prev: &ExperimentConfig, cfg: &ExperimentConfig) -> bool {
    let strip = |c: &ExperimentConfig| {
        c.cogrpo.clone().map(|mut g| {
            g.eval_steps.clear();
            g.eval_temperature = 0.0;
            g.arms.clear();
            g.tune = None;
            g
        })
    };
    prev.task == cfg.task
        && prev.model == cfg.model
        && prev.pretrain == cfg.pretrain
        && prev.run.seed == cfg.run.seed
        && prev.rewards == cfg.rewards
        && strip(prev) == strip(cfg)
}

#[cfg(test)]
mod tests {
    use super::same_arm_training;
    use crate::config::load;
    use std::path::Path;

    #[test]
    fn an_arm_is_reused_when_only_evaluation_or_tuning_settings_change() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../experiments/smoke/digits-cogrpo.toml");
        let with = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            load(&path, &sets).unwrap()
        };
        let base = with(&[]);
        let same: [&[&str]; 3] = [
            &["cogrpo.eval_steps=[2, 4]"],
            &["cogrpo.tune.guidance=[3.0]"],
            &["cogrpo.arms=[\"model\"]"],
        ];
        for sets in same {
            assert!(same_arm_training(&base, &with(sets)), "{sets:?}");
        }
        let differs: [&[&str]; 3] = [
            &["cogrpo.lr_model=0.5"],
            &["task.levels=9"],
            &["run.seed=4"],
        ];
        for sets in differs {
            assert!(!same_arm_training(&base, &with(sets)), "{sets:?}");
        }
    }
}
