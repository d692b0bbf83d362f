//! A cogrpo experiment end to end, as a library: [`Experiment`] holds a
//! run (its config, task, run directory, device and rank) and does each of
//! its stages: pre-train, evaluate a checkpoint, train and evaluate a
//! Co-GRPO arm, or all of them with the report ([`Experiment::run_all`]).
//! The `cogrpo` binary parses its arguments, picks the backend and calls
//! this; a test can drive a whole run in process. Around it: the memory
//! plan and its description ([`plan`], [`describe`]), `summary.json`
//! ([`summary`]) and where a command's model comes from ([`sources`]).

pub mod describe;
pub mod plan;
pub mod released;
pub mod sources;
pub mod summary;
pub mod work;

use std::path::{Path, PathBuf};

use anyhow::Context;
use cogrpo_config::tasks::{self, denoiser_config};
use cogrpo_config::{ExperimentConfig, UpdateMode};
use cogrpo_eval::{EvalRow, Scorer};
use cogrpo_grpo::ArmRun;
use cogrpo_grpo::arms::ArmOutcome;
use cogrpo_grpo::learned_rewards;
use cogrpo_pretrain::{TrainState, TrainSummary, pretrain};
use cogrpo_runtime::checkpoint::check_resume;
use cogrpo_runtime::distributed::World;
use cogrpo_runtime::logging::Scalars;
use cogrpo_runtime::run_dir::RunDir;
use cogrpo_runtime::training::{Start, read_run_state};
use cogrpo_vision::registry;
use envs::Task;
use mdm::AutodiffKernels;

/// One run of an experiment config, as rank `world.rank` sees it (only
/// rank 0 writes files and prints results).
pub struct Experiment<'w, B: AutodiffKernels> {
    pub cfg: ExperimentConfig,
    pub task: Box<dyn Task>,
    pub run: RunDir,
    pub device: B::Device,
    pub world: &'w World,
}

impl<'w, B: AutodiffKernels> Experiment<'w, B> {
    /// The run `cfg` describes: its task built, its run directory created
    /// and locked by rank 0 (and opened by the other ranks).
    pub fn open(
        cfg: ExperimentConfig,
        device: B::Device,
        world: &'w World,
    ) -> anyhow::Result<Self> {
        let task = tasks::build(&cfg)?;
        let run = RunDir::for_rank::<B::InnerBackend>(&cfg.run.out_dir(), world, &device)?;
        Ok(Self {
            cfg,
            task,
            run,
            device,
            world,
        })
    }

    /// Pre-trains the denoiser by `start`'s policy; rank 0 prints the
    /// outcome and records it in `summary.json`.
    pub fn pretrain(&self, start: Start) -> anyhow::Result<TrainSummary> {
        let mut log = Scalars::for_rank(&self.run.tb_dir(), self.world)?;
        let task = self.task.as_ref();
        let trained = pretrain::<B>(
            &self.cfg,
            task,
            &self.run,
            &self.device,
            start,
            &mut log,
            self.world,
        );
        log.close();
        let train = trained?;
        if self.world.is_writer() {
            println!(
                "pre-trained {} steps in {:.1}s ({:.0} tokens/s), final loss {:.4}; checkpoint {}",
                train.steps,
                train.wall_s,
                train.tokens_per_s,
                train.final_loss,
                train.checkpoint.display()
            );
            summary::update(&self.run, |s| {
                s.set_header("pretrain", task, &self.cfg);
                s.train = Some(train.clone());
            })?;
        }
        Ok(train)
    }

    /// The pre-trained checkpoint: `explicit`, else the run's newest.
    pub fn checkpoint(&self, explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
        sources::checkpoint_source(&self.cfg, explicit)
    }

    /// Evaluates checkpoint `source` (the sampler sweep and the likelihood
    /// of `[eval]`), prints the table and records the rows in
    /// `summary.json` as written by `command`.
    pub fn evaluate(&self, source: &Path, command: &str) -> anyhow::Result<Vec<EvalRow>> {
        let task = self.task.as_ref();
        let model = sources::load_model::<B::InnerBackend>(&self.cfg, task, source, &self.device)?;
        let mut log = Scalars::open(&self.run.tb_dir())?;
        let rows = cogrpo_eval::evaluate(&self.cfg, task, &model, &self.device, &mut log);
        log.close();
        let rows = rows?;
        if rows.is_empty() {
            tracing::info!(
                "nothing to evaluate: set eval.samplers and eval.steps, or eval.nll_samples"
            );
        }
        print!("{}", cogrpo_eval::table(&rows));
        summary::update(&self.run, |s| {
            s.set_header(command, task, &self.cfg);
            s.eval = rows.clone();
        })?;
        Ok(rows)
    }

    /// Trains arm `mode` from the pre-trained checkpoint `init` by
    /// `start`'s policy, then rank 0 evaluates it and prints its line and
    /// table (the other ranks return `None`).
    pub fn train_arm(
        &self,
        mode: UpdateMode,
        init: &Path,
        start: Start,
    ) -> anyhow::Result<Option<ArmOutcome>> {
        if registry::needs_generator(&self.cfg, self.task.verifiers()) {
            let base = self.load_model(init)?;
            learned_rewards::prepare(&self.cfg, self.task.as_ref(), &base, &self.device)?;
        }
        let scorer = self.scorer("evaluating the arm")?;
        let Some((outcome, arm)) = self.arms(init).arm(mode, start, scorer.as_ref())? else {
            return Ok(None);
        };
        println!(
            "arm `{}`: {} iterations, {} rollouts in {:.1}s; checkpoint {}",
            mode.name(),
            arm.state.iteration,
            arm.state.rollouts,
            arm.state.run.wall_s,
            arm.checkpoint.display()
        );
        print!("{}", cogrpo_eval::table(&outcome.eval.rows));
        Ok(Some(outcome))
    }

    /// The whole experiment: pre-train (or reuse a finished pre-training),
    /// evaluate the checkpoint, and with `[cogrpo]` train and evaluate every
    /// arm, then write `report.md` / `report.json`. Picks up where an
    /// interrupted run stopped (`Start::Auto`).
    pub fn run_all(&self) -> anyhow::Result<()> {
        self.pretrain_or_reuse()?;
        let init = self.checkpoint(None)?;
        let e = &self.cfg.eval;
        let fixed_samplers =
            self.world.is_writer() && (!e.samplers.is_empty() || e.nll_samples > 0);
        if self.cfg.cogrpo.is_none() {
            if fixed_samplers {
                self.evaluate(&init, "run")?;
            }
            return Ok(());
        }
        let outcomes = self.all_arms(&init)?;
        if !self.world.is_writer() {
            return Ok(());
        }
        // After the arms: the reward models trained against the pre-trained
        // generator (`digit_realism`) exist by now, so the fixed samplers
        // are judged as the arms are, and join the report's frontier.
        let fixed = match fixed_samplers {
            true => self.evaluate(&init, "run")?,
            false => Vec::new(),
        };
        self.report(&init, &outcomes, &fixed)
    }

    /// Pre-training, unless the run's newest checkpoint already has every
    /// step (under this config), or the run starts from a model directory
    /// without fine-tuning it.
    fn pretrain_or_reuse(&self) -> anyhow::Result<()> {
        if self.cfg.model.source.is_some() && self.cfg.pretrain.steps == 0 {
            tracing::info!("no fine-tuning (pretrain.steps = 0): the arms start from model.source");
            return Ok(());
        }
        let ckpts = self.run.checkpoints();
        if let Some(dir) = ckpts.latest() {
            check_resume(&dir, &self.cfg, cogrpo_config::resume::Scope::Pretrain)?;
            let state = read_run_state::<TrainState>(&dir);
            if state.is_ok_and(|s| s.step >= self.cfg.pretrain.steps) {
                tracing::info!(
                    "reusing the finished pre-training in {}",
                    self.run.path().display()
                );
                return Ok(());
            }
        }
        self.pretrain(Start::Auto).map(|_| ())
    }

    /// `base`, `tuned` (with `[cogrpo.tune]`) and every configured arm from
    /// `init`, with the same budget; the outcomes on rank 0 (none elsewhere).
    fn all_arms(&self, init: &Path) -> anyhow::Result<Vec<ArmOutcome>> {
        let c = self.cfg.cogrpo_section()?;
        let base = self.load_model(init)?;
        learned_rewards::prepare(&self.cfg, self.task.as_ref(), &base, &self.device)?;
        let arms = self.arms(init);
        let scorer = self.scorer("evaluating the arms")?;
        let mut out = Vec::new();
        if let Some(scorer) = &scorer {
            out.push(arms.base(&base, scorer)?);
            if let Some(tune) = &c.tune {
                out.push(arms.tuned(&base, tune, scorer)?);
            }
        }
        for &mode in &c.arms {
            if let Some((outcome, _)) = arms.arm(mode, Start::Auto, scorer.as_ref())? {
                out.push(outcome);
            }
        }
        Ok(out)
    }

    /// `report.md` / `report.json` of the arms (and the `fixed` samplers
    /// evaluated beside them), the table of every arm's rows, and all those
    /// rows in `summary.json`.
    fn report(&self, init: &Path, arms: &[ArmOutcome], fixed: &[EvalRow]) -> anyhow::Result<()> {
        let task = self.task.as_ref();
        let pretrain_wall_s = read_run_state::<TrainState>(init).map_or(0.0, |s| s.run.wall_s);
        let params = denoiser_config(&self.cfg, task).num_params();
        let path = self.run.path();
        let sizes = (params, pretrain_wall_s);
        cogrpo_grpo::report::write_report(path, &self.cfg, task, sizes, arms, fixed)?;
        let mut rows: Vec<EvalRow> = arms.iter().flat_map(|a| a.eval.rows.clone()).collect();
        rows.extend_from_slice(fixed);
        print!("{}", cogrpo_eval::table(&rows));
        println!("report: {}", path.join("report.md").display());
        summary::update(&self.run, |s| {
            s.set_header("run", task, &self.cfg);
            s.eval = rows;
        })?;
        Ok(())
    }

    /// Where the arms of this run train, from `init`.
    fn arms<'a>(&'a self, init: &'a Path) -> ArmRun<'a, B> {
        ArmRun {
            cfg: &self.cfg,
            task: self.task.as_ref(),
            run: &self.run,
            init,
            device: self.device.clone(),
            world: self.world,
        }
    }

    /// The judge of every arm, built once (it holds the reward and
    /// evaluation models), on rank 0 only: the other ranks evaluate nothing.
    fn scorer(&self, what: &'static str) -> anyhow::Result<Option<Scorer>> {
        if !self.world.is_writer() {
            return Ok(None);
        }
        Scorer::new(&self.cfg, self.task.as_ref())
            .context(what)
            .map(Some)
    }

    fn load_model(&self, source: &Path) -> anyhow::Result<mdm::Denoiser<B::InnerBackend>> {
        sources::load_model::<B::InnerBackend>(&self.cfg, self.task.as_ref(), source, &self.device)
    }
}
