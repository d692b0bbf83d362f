//! `cogrpo eval` and `cogrpo sample`: a checkpoint or a trained arm judged
//! on the held-out split, or asked to complete prompts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use cogrpo_config::ExperimentConfig;
use cogrpo_eval::Scorer;
use cogrpo_eval::sample::{self, Completion, Generator};
use cogrpo_experiment::Experiment;
use cogrpo_experiment::sources::{LoadedArm, Source, checkpoint_source, load_model};
use cogrpo_runtime::distributed::World;
use envs::Task;
use mdm::AutodiffKernels;

use super::common::{ArmSource, Common};
use crate::backend::{Job, dispatch};

/// Evaluate a checkpoint on the held-out split (sampler sweep, ELBO).
#[derive(Args, Clone)]
#[command(
    after_help = "Examples:\n  cogrpo eval --config experiments/sudoku4.toml --set eval.max_examples=100\n  \
    cogrpo eval --config experiments/sudoku4-cogrpo.toml --arm runs/sudoku4-cogrpo/arms/schedule"
)]
pub struct EvalArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    source: ArmSource,
}

impl EvalArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let cfg = self.common.with_model(&self.source.model).load_fitting()?;
        dispatch(cfg.run.device, EvalJob { cfg, args: self })
    }
}

#[derive(Clone)]
struct EvalJob {
    cfg: ExperimentConfig,
    args: EvalArgs,
}

impl Job for EvalJob {
    fn run<B: AutodiffKernels>(self, device: B::Device, world: &World) -> anyhow::Result<()> {
        let cfg = &self.cfg;
        if let Some(path) = &self.args.source.arm {
            let task = cogrpo_config::tasks::build(cfg)?;
            let arm = LoadedArm::<B::InnerBackend>::load(cfg, task.as_ref(), path, &device)?;
            let scorer = Scorer::new(cfg, task.as_ref()).context("evaluating the arm")?;
            let eval = cogrpo_grpo::evaluate::evaluate_arm(
                cfg,
                task.as_ref(),
                &arm.model,
                arm.policy(),
                arm.mode.name(),
                &scorer,
                &device,
            )?;
            print!("{}", cogrpo_eval::table(&eval.rows));
            return Ok(());
        }
        let source = checkpoint_source(cfg, self.args.source.model.explicit())?;
        Experiment::<B>::open(self.cfg, device, world)?.evaluate(&source, "eval")?;
        Ok(())
    }
}

/// Print completions of prompts.
#[derive(Args, Clone)]
#[command(
    after_help = "Examples:\n  cogrpo sample --config experiments/text.toml --prompt 'ROMEO:' -n 2\n  \
    cogrpo sample --config experiments/sudoku4-cogrpo.toml --arm runs/sudoku4-cogrpo/arms/schedule\n  \
    cogrpo sample --config experiments/sudoku4.toml --prompt 3102200002100320 \\\n    \
    --set sampler.kind=confidence --set sampler.steps=16 --set sampler.temperature=0\n  \
    cogrpo sample --config experiments/digits.toml --prompt 7 -n 8 --png sevens.png\n  \
    cogrpo sample --config experiments/text-ilm.toml --infill 'ROMEO:\n<gap>\nJULIET:' -n 3"
)]
pub struct SampleArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    source: ArmSource,
    /// Text fixed at the start of the sequence (repeatable).
    #[arg(long = "prompt")]
    prompts: Vec<String>,
    /// ILM only: text with `<gap>` markers; each gap is filled with as
    /// many tokens as the model inserts, e.g. "ROMEO:\n<gap>\nJULIET:".
    #[arg(long, conflicts_with_all = ["prompts", "arm", "png"])]
    infill: Option<String>,
    /// Samples per prompt (or unconditional samples without prompts).
    #[arg(short = 'n', long, default_value_t = 1)]
    n: usize,
    /// Image tasks (digits): also write the samples as a PNG grid, one
    /// row per prompt.
    #[arg(long)]
    png: Option<PathBuf>,
}

impl SampleArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let cfg = self.common.with_model(&self.source.model).load_fitting()?;
        anyhow::ensure!(self.n > 0, "-n must be at least 1");
        dispatch(cfg.run.device, SampleJob { cfg, args: self })
    }
}

#[derive(Clone)]
struct SampleJob {
    cfg: ExperimentConfig,
    args: SampleArgs,
}

impl Job for SampleJob {
    fn run<B: AutodiffKernels>(self, device: B::Device, _world: &World) -> anyhow::Result<()> {
        let (cfg, args) = (&self.cfg, &self.args);
        let task = cogrpo_config::tasks::build(cfg)?;
        let source = match &args.source.arm {
            Some(path) => Source::Arm(Box::new(LoadedArm::load(
                cfg,
                task.as_ref(),
                path,
                &device,
            )?)),
            None => {
                let path = checkpoint_source(cfg, args.source.model.explicit())?;
                Source::Model(Box::new(load_model::<B::InnerBackend>(
                    cfg,
                    task.as_ref(),
                    &path,
                    &device,
                )?))
            }
        };
        if let (Some(text), Source::Model(model)) = (&args.infill, &source) {
            let temperature = cfg.sample_sampler(task.layout().answer_len).temperature;
            let (out, stats) = sample::infill(
                task.as_ref(),
                model,
                text,
                args.n,
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
            Source::Model(model) => Generator {
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
            &args.prompts,
            args.n,
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
        print_completions(task.as_ref(), &out);
        if let Some(path) = &args.png {
            write_sample_png(task.as_ref(), &out, args.n, path)?;
            tracing::info!("# wrote {}", path.display());
        }
        Ok(())
    }
}

/// Each completion as the task shows its answers: images and multi-line
/// text under a header, one-line answers after their prompt.
fn print_completions(task: &dyn Task, out: &[Completion]) {
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
}

/// The samples as a PNG grid, one row per prompt.
fn write_sample_png(
    task: &dyn Task,
    out: &[Completion],
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
    cogrpo_vision::images::write_grid_png(path, &rows, 4)
}
