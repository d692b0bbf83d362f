//! The jobs that train: `pretrain`, `train` (one Co-GRPO arm) and `run`
//! (the whole experiment). Each runs as one rank of a possibly distributed
//! run (`World`); only rank 0 writes.

use std::path::PathBuf;

use anyhow::Context;
use burn::module::AutodiffModule;
use cogrpo_train::checkpoint::{self, TrainState};
use cogrpo_train::config::resume::Scope;
use cogrpo_train::config::{ExperimentConfig, UpdateMode};
use cogrpo_train::distributed::World;
use cogrpo_train::logging::Scalars;
use cogrpo_train::run_dir::RunDir;
use cogrpo_train::{eval, grpo, pretrain, reward_models, tasks};
use mdm::AutodiffKernels;

use super::{checkpoint_source, evaluate_and_report, load_inference_model, set_header};
use crate::backend::Job;

#[derive(Clone)]
pub(super) struct Pretrain {
    pub(super) cfg: ExperimentConfig,
    pub(super) resume: bool,
}

impl Job for Pretrain {
    fn run<B: AutodiffKernels>(self, device: B::Device, world: &World) -> anyhow::Result<()> {
        let task = tasks::build(&self.cfg)?;
        let run = run_dir::<B>(&self.cfg, world, &device)?;
        let mut log = Scalars::for_rank(&run.tb_dir(), world)?;
        let result = pretrain::pretrain::<B>(
            &self.cfg,
            task.as_ref(),
            &run,
            &device,
            self.resume,
            &mut log,
            world,
        );
        log.close();
        let train = result?;
        if !world.is_writer() {
            return Ok(());
        }
        println!(
            "pre-trained {} steps in {:.1}s ({:.0} tokens/s), final loss {:.4}; checkpoint {}",
            train.steps,
            train.wall_s,
            train.tokens_per_s,
            train.final_loss,
            train.checkpoint.display()
        );
        run.update_summary(|s| {
            set_header(s, "pretrain", task.as_ref(), &self.cfg);
            s.train = Some(train);
        })?;
        Ok(())
    }
}

/// The run directory: created (and locked) by rank 0, which alone writes
/// it; the other ranks open it once rank 0 has (across machines it must be
/// on a filesystem every node mounts).
fn run_dir<B: AutodiffKernels>(
    cfg: &ExperimentConfig,
    world: &World,
    device: &B::Device,
) -> anyhow::Result<RunDir> {
    let root = cfg.run.out_dir();
    let created = match world.is_writer() {
        true => Some(RunDir::create(&root)?),
        false => None,
    };
    world.barrier::<B::InnerBackend>(device)?;
    match created {
        Some(run) => Ok(run),
        None => RunDir::open(&root).with_context(|| {
            format!(
                "rank {} cannot see the run directory rank 0 created: run.out_dir must be on a \
                 filesystem every node mounts",
                world.rank
            )
        }),
    }
}

#[derive(Clone)]
pub(super) struct RunAll {
    pub(super) cfg: ExperimentConfig,
}

impl Job for RunAll {
    fn run<B: AutodiffKernels>(self, device: B::Device, world: &World) -> anyhow::Result<()> {
        let cfg = &self.cfg;
        let task = tasks::build(cfg)?;
        let run = run_dir::<B>(cfg, world, &device)?;
        let resume = match run.checkpoints().latest() {
            None => false,
            Some(dir) => {
                checkpoint::check_resume(&dir, cfg, Scope::Pretrain)?;
                true
            }
        };
        let state: Option<TrainState> = run
            .checkpoints()
            .latest()
            .and_then(|d| checkpoint::read_state(&d).ok());
        if state.as_ref().is_some_and(|s| s.step >= cfg.pretrain.steps) {
            tracing::info!(
                "reusing the finished pre-training in {}",
                run.path().display()
            );
        } else {
            Pretrain {
                cfg: cfg.clone(),
                resume,
            }
            .run::<B>(device.clone(), world)?;
        }
        let source = checkpoint_source(cfg, None)?;
        if world.is_writer() && (!cfg.eval.samplers.is_empty() || cfg.eval.nll_samples > 0) {
            let model =
                load_inference_model::<B::InnerBackend>(cfg, task.as_ref(), &source, &device)?;
            evaluate_and_report(cfg, task.as_ref(), &model, &device, "run")?;
        }
        if cfg.cogrpo.is_none() {
            return Ok(());
        }
        let arms = grpo::arms::run_arms::<B>(cfg, task.as_ref(), &run, &source, &device, world)?;
        if !world.is_writer() {
            return Ok(());
        }
        let pretrain_wall_s = checkpoint::read_state(&source).map_or(0.0, |s| s.wall_s);
        let params = tasks::denoiser_config(cfg, task.as_ref()).num_params();
        grpo::report::write_report(
            run.path(),
            cfg,
            task.as_ref(),
            params,
            pretrain_wall_s,
            &arms,
        )?;
        let rows: Vec<_> = arms.iter().flat_map(|a| a.eval.rows.clone()).collect();
        print!("{}", eval::table(&rows));
        println!("report: {}", run.path().join("report.md").display());
        run.update_summary(|s| {
            set_header(s, "run", task.as_ref(), cfg);
            s.eval = rows;
        })?;
        Ok(())
    }
}

/// The update mode `--arm NAME` names.
pub(super) fn parse_arm(name: &str) -> anyhow::Result<UpdateMode> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
        anyhow::anyhow!("--arm {name}: expected one of model, schedule, joint, alternate")
    })
}

#[derive(Clone)]
pub(super) struct TrainJob {
    pub(super) cfg: ExperimentConfig,
    pub(super) mode: UpdateMode,
    pub(super) checkpoint: Option<PathBuf>,
    pub(super) resume: bool,
}

impl Job for TrainJob {
    fn run<B: AutodiffKernels>(self, device: B::Device, world: &World) -> anyhow::Result<()> {
        let cfg = &self.cfg;
        let task = tasks::build(cfg)?;
        let init = checkpoint_source(cfg, self.checkpoint)?;
        if reward_models::needs_generator(cfg, task.name()) {
            let base = load_inference_model::<B::InnerBackend>(cfg, task.as_ref(), &init, &device)?;
            reward_models::prepare(cfg, task.as_ref(), &base, &device)?;
        }
        let run = run_dir::<B>(cfg, world, &device)?;
        let dir = grpo::arms::arm_dir(&run, self.mode);
        let mut log = Scalars::for_rank(&run.tb_dir().join(self.mode.name()), world)?;
        let trained = grpo::trainer::train_arm::<B>(
            cfg,
            task.as_ref(),
            self.mode,
            &dir,
            &cogrpo_train::dumps::path(run.path(), self.mode.name()),
            &init,
            &device,
            self.resume,
            &mut log,
            world,
        );
        log.close();
        let trained = trained?;
        if !world.is_writer() {
            return Ok(());
        }
        println!(
            "arm `{}`: {} iterations, {} rollouts in {:.1}s; checkpoint {}",
            self.mode.name(),
            trained.state.iteration,
            trained.state.rollouts,
            trained.state.wall_s,
            trained.checkpoint.display()
        );
        let policy = trained.policy.valid();
        let eval = grpo::evaluate::evaluate_arm(
            cfg,
            task.as_ref(),
            &trained.model.valid(),
            self.mode.uses_schedule().then_some(&policy),
            self.mode.name(),
            &eval::Scorer::new(cfg, task.as_ref()).context("evaluating the arm")?,
            &device,
        )?;
        print!("{}", eval::table(&eval.rows));
        Ok(())
    }
}
