//! The commands that train: `pretrain`, `train` (one Co-GRPO arm) and
//! `run` (the whole experiment). Each runs as one rank of a possibly
//! distributed run; the library's [`Experiment`] does the work.

use clap::Args;
use cogrpo_config::{ExperimentConfig, UpdateMode};
use cogrpo_experiment::Experiment;
use cogrpo_experiment::describe::plan_lines;
use cogrpo_runtime::distributed::{World, fingerprint};
use cogrpo_runtime::training::Start;
use mdm::AutodiffKernels;

use super::common::{Common, Distributed, ModelSource};
use crate::backend::{Job, dispatch_ranks};

/// Pre-train the denoiser (diffusion ELBO / conditional loss).
#[derive(Args)]
#[command(
    after_help = "Example:\n  cogrpo pretrain --config experiments/sudoku4.toml\n  \
    cogrpo pretrain --config experiments/sudoku4.toml --resume   # continue a stopped run"
)]
pub struct PretrainArgs {
    #[command(flatten)]
    common: Common,
    /// Continue from the newest checkpoint in the run directory.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    dist: Distributed,
}

impl PretrainArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let cfg = self.common.load_fitting()?;
        let job = PretrainJob {
            start: Start::from_flag(self.resume),
            cfg,
        };
        let print = fingerprint("pretrain", &toml::to_string(&job.cfg)?);
        dispatch_ranks(job.cfg.run.device, self.dist.launch(), &print, job)
    }
}

#[derive(Clone)]
struct PretrainJob {
    cfg: ExperimentConfig,
    start: Start,
}

impl Job for PretrainJob {
    fn run<B: AutodiffKernels>(self, device: B::Device, world: &World) -> anyhow::Result<()> {
        Experiment::<B>::open(self.cfg, device, world)?.pretrain(self.start)?;
        Ok(())
    }
}

/// Co-GRPO from a pre-trained checkpoint: one arm (update mode).
#[derive(Args)]
#[command(
    after_help = "Examples:\n  cogrpo train --config experiments/sudoku4-cogrpo.toml --arm alternate\n  \
    cogrpo train --config experiments/sudoku4-cogrpo.toml --arm model --resume"
)]
pub struct TrainArgs {
    #[command(flatten)]
    common: Common,
    /// model, schedule, joint or alternate (default: the config's first arm).
    #[arg(long)]
    arm: Option<String>,
    /// The pre-trained model the arm starts from.
    #[command(flatten)]
    init: ModelSource,
    /// Continue the arm from its newest checkpoint.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    dist: Distributed,
}

impl TrainArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let cfg = self.common.with_model(&self.init).load_fitting()?;
        let Some(c) = cfg.cogrpo.as_ref() else {
            anyhow::bail!(
                "{} has no [cogrpo] section; see experiments/sudoku4-cogrpo.toml",
                self.common.config.display()
            );
        };
        let mode = match &self.arm {
            Some(name) => parse_arm(name)?,
            None => c.arms[0],
        };
        let checkpoint = self.init.explicit();
        let print = fingerprint(
            &format!("train {} {checkpoint:?}", mode.name()),
            &toml::to_string(&cfg)?,
        );
        let job = TrainJob {
            mode,
            checkpoint,
            start: Start::from_flag(self.resume),
            cfg,
        };
        dispatch_ranks(job.cfg.run.device, self.dist.launch(), &print, job)
    }
}

/// The update mode `--arm NAME` names.
fn parse_arm(name: &str) -> anyhow::Result<UpdateMode> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
        anyhow::anyhow!("--arm {name}: expected one of model, schedule, joint, alternate")
    })
}

#[derive(Clone)]
struct TrainJob {
    cfg: ExperimentConfig,
    mode: UpdateMode,
    checkpoint: Option<std::path::PathBuf>,
    start: Start,
}

impl Job for TrainJob {
    fn run<B: AutodiffKernels>(self, device: B::Device, world: &World) -> anyhow::Result<()> {
        let experiment = Experiment::<B>::open(self.cfg, device, world)?;
        let init = experiment.checkpoint(self.checkpoint)?;
        experiment.train_arm(self.mode, &init, self.start)?;
        Ok(())
    }
}

/// The whole experiment: pre-train (or reuse), evaluate, and with a
/// [cogrpo] section train and evaluate every arm, then write report.md.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  cogrpo run --config experiments/sudoku4.toml\n  \
    cogrpo run --config experiments/sudoku4-cogrpo.toml --seed 2\n\n\
    Two machines (docs/distributed.md), the same command on each:\n  \
    cogrpo run -c experiments/sudoku4-cogrpo.toml --nodes 2 --node-rank 0 --coordinator 10.0.0.1:29500\n  \
    cogrpo run -c experiments/sudoku4-cogrpo.toml --nodes 2 --node-rank 1 --coordinator 10.0.0.1:29500"
)]
pub struct RunArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    dist: Distributed,
}

impl RunArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let (cfg, task, plan) = self.common.load_planned()?;
        if self.dist.node_rank == 0 {
            tracing::info!("{}:", self.common.config.display());
            for line in plan_lines(&cfg, task.as_ref(), &plan)? {
                tracing::info!("{line}");
            }
        }
        let print = fingerprint("run", &toml::to_string(&cfg)?);
        dispatch_ranks(cfg.run.device, self.dist.launch(), &print, RunJob { cfg })
    }
}

#[derive(Clone)]
struct RunJob {
    cfg: ExperimentConfig,
}

impl Job for RunJob {
    fn run<B: AutodiffKernels>(self, device: B::Device, world: &World) -> anyhow::Result<()> {
        Experiment::<B>::open(self.cfg, device, world)?.run_all()
    }
}
