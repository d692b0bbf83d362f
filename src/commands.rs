//! The commands: load the config, pick the backend, call the library.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cogrpo_train::checkpoint;
use cogrpo_train::config::ExperimentConfig;
use cogrpo_train::logging::Scalars;
use cogrpo_train::plan::{Plan, available_memory};
use cogrpo_train::run_dir::{ModelSummary, RunDir, Summary};
use cogrpo_train::{eval, grpo, images, sample, tasks};
use envs::Task;

use crate::backend::{Job, dispatch, dispatch_ranks};
use crate::{Command, Common};
use cogrpo_train::distributed::{self, World};

mod arm;
mod bench;
mod interchange;
mod plan;
mod reward;
mod samples;
mod training;
mod view;

use arm::{Source, load_trained_arm};
use mdm::{AutodiffKernels, Kernels};
use training::{Pretrain, RunAll, TrainJob, parse_arm};

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { common } => plan::check(&common),
        Command::Completions { shell } => {
            let mut cli = <crate::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cli, "cogrpo", &mut std::io::stdout());
            Ok(())
        }
        Command::Samples {
            run,
            arm,
            iteration,
            kind,
            steps,
            limit,
        } => {
            let kind = kind.map(|k| match k {
                crate::KindArg::Train => cogrpo_train::dumps::DumpKind::Train,
                crate::KindArg::Eval => cogrpo_train::dumps::DumpKind::Eval,
            });
            let filter = samples::Filter {
                arm,
                iteration,
                kind,
                steps,
                limit,
            };
            samples::print(&run, &filter)
        }
        Command::View {
            run,
            out,
            serve,
            port,
        } => {
            let page = view::write(&run, out)?;
            println!("{}", page.display());
            if serve {
                view::serve(&page, port)?;
            }
            Ok(())
        }
        Command::Reward { action } => reward::run(action),
        Command::Agree {
            common,
            checkpoint,
            rows,
        } => {
            let cfg = common.load()?;
            let source = checkpoint_source(&cfg, checkpoint)?;
            crate::agree::agree(&cfg, source, rows)
        }
        Command::Pretrain {
            common,
            resume,
            dist,
        } => {
            let cfg = common.load_fitting()?;
            let fingerprint = distributed::fingerprint("pretrain", &toml::to_string(&cfg)?);
            let job = Pretrain { cfg, resume };
            dispatch_ranks(job.cfg.run.device, dist.launch(), &fingerprint, job)
        }
        Command::Eval {
            common,
            checkpoint,
            arm,
        } => {
            let cfg = common.load_fitting()?;
            dispatch(
                cfg.run.device,
                Eval {
                    cfg,
                    checkpoint,
                    arm,
                },
            )
        }
        Command::Sample {
            common,
            checkpoint,
            arm,
            prompts,
            infill,
            n,
            png,
        } => {
            let cfg = common.load_fitting()?;
            anyhow::ensure!(n > 0, "-n must be at least 1");
            dispatch(
                cfg.run.device,
                SampleJob {
                    cfg,
                    checkpoint,
                    arm,
                    prompts,
                    infill,
                    n,
                    png,
                },
            )
        }
        Command::Train {
            common,
            arm,
            checkpoint,
            resume,
            dist,
        } => {
            let cfg = common.load_fitting()?;
            let c = cfg.cogrpo.as_ref().with_context(|| {
                format!(
                    "{} has no [cogrpo] section; see experiments/sudoku4-cogrpo.toml",
                    common.config.display()
                )
            })?;
            let mode = match arm {
                Some(name) => parse_arm(&name)?,
                None => c.arms[0],
            };
            let fingerprint = distributed::fingerprint(
                &format!("train {} {checkpoint:?}", mode.name()),
                &toml::to_string(&cfg)?,
            );
            let job = TrainJob {
                cfg,
                mode,
                checkpoint,
                resume,
            };
            dispatch_ranks(job.cfg.run.device, dist.launch(), &fingerprint, job)
        }
        Command::Run { common, dist } => {
            let (cfg, task, plan) = common.load_planned()?;
            if dist.node_rank == 0 {
                tracing::info!("{}:", common.config.display());
                for line in plan::plan_lines(&cfg, task.as_ref(), &plan)? {
                    tracing::info!("{line}");
                }
            }
            let fingerprint = distributed::fingerprint("run", &toml::to_string(&cfg)?);
            dispatch_ranks(cfg.run.device, dist.launch(), &fingerprint, RunAll { cfg })
        }
        Command::Export {
            common,
            checkpoint,
            init,
            out,
        } => interchange::export(&common.load()?, checkpoint, init, &out),
        Command::Logits {
            common,
            checkpoint,
            input,
            out,
        } => {
            let cfg = common.load()?;
            dispatch(
                cfg.run.device,
                interchange::LogitsJob {
                    cfg,
                    checkpoint,
                    input,
                    out,
                },
            )
        }
        Command::Bench {
            common,
            batch,
            train_steps,
            steps,
            forward_batch,
            samplers,
            grpo_steps,
            json,
            scaling,
            lengths,
            vocabs,
        } => {
            let samplers = bench::parse_samplers(&samplers)?;
            let cfg = common.load()?;
            anyhow::ensure!(
                batch > 0 && train_steps > 0,
                "--batch and --train-steps must be at least 1"
            );
            dispatch(
                cfg.run.device,
                bench::Bench {
                    cfg,
                    batch,
                    train_steps,
                    steps,
                    forward_batch,
                    samplers,
                    grpo_steps,
                    json,
                    scaling: scaling.then_some((lengths, vocabs)),
                },
            )
        }
    }
}

impl Common {
    /// The config, refused (exit 2) when its plan cannot fit in the
    /// machine's free memory, unless `--force`.
    fn load_fitting(&self) -> anyhow::Result<ExperimentConfig> {
        Ok(self.load_planned()?.0)
    }

    /// [`Common::load_fitting`], with the task it built and the memory plan
    /// it checked (for `check` and `run`, which print the plan).
    fn load_planned(&self) -> anyhow::Result<(ExperimentConfig, Box<dyn Task>, Plan)> {
        let cfg = self.load()?;
        let task = tasks::build(&cfg)?;
        let d = tasks::denoiser_config(&cfg, task.as_ref());
        let plan = Plan::estimate(&cfg, &d, task.layout().seq_len());
        self.refuse_unfit(&plan)?;
        Ok((cfg, task, plan))
    }

    /// Refuses (exit 2) a plan whose peak exceeds the free memory; with
    /// `--force` warns instead.
    fn refuse_unfit(&self, plan: &Plan) -> anyhow::Result<()> {
        let Err(e) = plan.fits(available_memory()) else {
            return Ok(());
        };
        if !self.force {
            return Err(cogrpo_train::BadInput(format!("{}: {e}", self.config.display())).into());
        }
        tracing::warn!("{e}; going on (--force)");
        Ok(())
    }
}

fn model_summary(task: &dyn Task, cfg: &ExperimentConfig) -> ModelSummary {
    let d = tasks::denoiser_config(cfg, task);
    ModelSummary {
        params: d.num_params(),
        vocab_size: d.vocab_size,
        seq_len: d.max_len,
    }
}

fn set_header(s: &mut Summary, command: &str, task: &dyn Task, cfg: &ExperimentConfig) {
    s.command = command.into();
    s.task = task.name().into();
    s.model = Some(model_summary(task, cfg));
}

fn checkpoint_source(cfg: &ExperimentConfig, explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.exists(), "checkpoint {} does not exist", p.display());
        return Ok(p);
    }
    let dir = cfg.run.out_dir();
    RunDir::open(&dir)?.checkpoints().latest().with_context(|| {
        format!(
            "{} holds no checkpoint: run `cogrpo pretrain` with this config first",
            dir.display()
        )
    })
}

fn load_inference_model<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    source: &Path,
    device: &B::Device,
) -> anyhow::Result<mdm::Denoiser<B>> {
    let d = tasks::denoiser_config(cfg, task);
    checkpoint::load_model::<B>(source, &d, device)
        .with_context(|| format!("cannot load the model from {}", source.display()))
}

#[derive(Clone)]
struct Eval {
    cfg: ExperimentConfig,
    checkpoint: Option<PathBuf>,
    arm: Option<PathBuf>,
}

impl Job for Eval {
    fn run<B: AutodiffKernels>(self, device: B::Device, _world: &World) -> anyhow::Result<()> {
        let task = tasks::build(&self.cfg)?;
        if let Some(path) = &self.arm {
            let arm = load_trained_arm::<B::InnerBackend>(&self.cfg, task.as_ref(), path, &device)?;
            let eval = grpo::evaluate::evaluate_arm(
                &self.cfg,
                task.as_ref(),
                &arm.model,
                arm.policy(),
                arm.mode.name(),
                &eval::Scorer::new(&self.cfg, task.as_ref()).context("evaluating the arm")?,
                &device,
            )?;
            print!("{}", eval::table(&eval.rows));
            return Ok(());
        }
        let source = checkpoint_source(&self.cfg, self.checkpoint)?;
        let model =
            load_inference_model::<B::InnerBackend>(&self.cfg, task.as_ref(), &source, &device)?;
        evaluate_and_report(&self.cfg, task.as_ref(), &model, &device, "eval")
    }
}

fn evaluate_and_report<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &mdm::Denoiser<B>,
    device: &B::Device,
    command: &str,
) -> anyhow::Result<()> {
    let run = RunDir::create(&cfg.run.out_dir())?;
    let mut log = Scalars::open(&run.tb_dir())?;
    let rows = eval::evaluate(cfg, task, model, device, &mut log);
    log.close();
    let rows = rows?;
    if rows.is_empty() {
        tracing::info!(
            "nothing to evaluate: set eval.samplers and eval.steps, or eval.nll_samples"
        );
    }
    print!("{}", eval::table(&rows));
    run.update_summary(|s| {
        set_header(s, command, task, cfg);
        s.eval = rows;
    })?;
    Ok(())
}

#[derive(Clone)]
struct SampleJob {
    cfg: ExperimentConfig,
    checkpoint: Option<PathBuf>,
    arm: Option<PathBuf>,
    prompts: Vec<String>,
    infill: Option<String>,
    n: usize,
    png: Option<PathBuf>,
}

impl Job for SampleJob {
    fn run<B: AutodiffKernels>(self, device: B::Device, _world: &World) -> anyhow::Result<()> {
        let cfg = &self.cfg;
        let task = tasks::build(cfg)?;
        let source = match &self.arm {
            Some(path) => Source::Arm(Box::new(load_trained_arm::<B::InnerBackend>(
                cfg,
                task.as_ref(),
                path,
                &device,
            )?)),
            None => {
                let path = checkpoint_source(cfg, self.checkpoint.clone())?;
                Source::Model(Box::new(load_inference_model::<B::InnerBackend>(
                    cfg,
                    task.as_ref(),
                    &path,
                    &device,
                )?))
            }
        };
        if let (Some(text), Source::Model(model)) = (&self.infill, &source) {
            let temperature = cfg.sample_sampler(task.layout().answer_len).temperature;
            let (out, stats) = sample::infill(
                task.as_ref(),
                model,
                text,
                self.n,
                temperature,
                cfg.run.seed,
                &device,
            )?;
            tracing::info!("# ILM infilling ({:.1} NFE per sample)", stats.mean_nfe());
            for (i, c) in out.iter().enumerate() {
                println!("--- infill {} ---\n{}", i + 1, c.completion);
            }
            return Ok(());
        }
        let generator = match &source {
            Source::Arm(arm) => arm.generator(cfg, task.as_ref())?,
            Source::Model(model) => sample::Generator {
                model,
                policy: None,
                sampler: cfg.sample_sampler(task.layout().answer_len),
                temperature: None,
            },
        };
        let (out, stats) = sample::sample(
            task.as_ref(),
            &generator,
            &device,
            &self.prompts,
            self.n,
            cfg.eval.batch_size,
            cfg.run.seed,
        )?;
        tracing::info!(
            "# {}{} ({} steps, {:.1} NFE per sample)",
            match &source {
                Source::Arm(a) => format!("arm `{}`: ", a.mode.name()),
                Source::Model(_) => String::new(),
            },
            generator.sampler.label(),
            generator.sampler.steps,
            stats.mean_nfe()
        );
        for (i, c) in out.iter().enumerate() {
            let shown = task.show_answer(&c.answer);
            if shown.contains('\n') {
                println!("--- sample {}: {} ---\n{shown}", i + 1, c.prompt);
            } else if task.layout().prompt_len > 0 {
                println!("{} -> {shown}", c.prompt);
            } else {
                println!("--- sample {} ---\n{}{shown}", i + 1, c.prompt);
            }
        }
        if let Some(path) = &self.png {
            write_sample_png(task.as_ref(), &out, self.n, path)?;
            tracing::info!("# wrote {}", path.display());
        }
        Ok(())
    }
}

/// The samples as a PNG grid, one row per prompt.
fn write_sample_png(
    task: &dyn Task,
    out: &[sample::Completion],
    per_prompt: usize,
    path: &Path,
) -> anyhow::Result<()> {
    let images: Vec<_> = out
        .iter()
        .map(|c| task.answer_image(&c.answer))
        .collect::<Option<_>>()
        .with_context(|| {
            format!(
                "task `{}` has no images; --png is for image tasks",
                task.name()
            )
        })?;
    let rows: Vec<Vec<_>> = images.chunks(per_prompt).map(<[_]>::to_vec).collect();
    images::write_grid_png(path, &rows, 4)
}
