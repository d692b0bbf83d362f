//! The one evaluation loop: a model with a fixed sampler or a learned
//! schedule at one step count generates an answer for every example, and
//! a [`Scorer`] judges them. `cogrpo eval`, every arm of `cogrpo run`, the
//! tuned schedule's search and the realism reward's training data all
//! generate through it.

use std::time::Instant;

use cogrpo_config::ExperimentConfig;
use cogrpo_runtime::logging::Progress;
use cogrpo_runtime::parallel::map_parallel;
use envs::seeding::{derive_key, purpose};
use envs::{Canvas, Example, Task, Trajectory};
use mdm::{Denoiser, Kernels};
use policy::learned::SchedulePolicy;
use policy::{Act, Rollout, SamplerConfig, TemperatureOverride};
use rewards::RewardItem;

use crate::decoding::{Decoding, Prompts};
use crate::rows::EvalRow;
use crate::scorer::{ItemScores, Scorer};

/// The seed of every evaluation's draws: the same for `cogrpo eval` and each
/// arm of `cogrpo run`, so that a fixed sampler scores the same in both.
pub fn eval_seed(cfg: &ExperimentConfig) -> u64 {
    derive_key(&[purpose::SAMPLER, cfg.run.seed, 0x65_76_61_6c])
}

/// The held-out examples an evaluation uses (`eval.max_examples` of them).
pub fn test_examples<'t>(cfg: &ExperimentConfig, task: &'t dyn Task) -> &'t [Example] {
    at_most_max_examples(cfg, task.test_examples())
}

/// The first `eval.max_examples` of `examples` (all of them when unset).
pub fn at_most_max_examples<'t>(cfg: &ExperimentConfig, examples: &'t [Example]) -> &'t [Example] {
    &examples[..cfg
        .eval
        .max_examples
        .unwrap_or(examples.len())
        .min(examples.len())]
}

/// What an [`EvalPoint`] produced.
pub struct Evaluated {
    /// One row per metric.
    pub rows: Vec<EvalRow>,
    /// The generated answers, one per example, as the rewards saw them.
    pub items: Vec<RewardItem>,
    /// The recorded trajectories (when asked for).
    pub trajectories: Vec<Trajectory>,
    /// Each item's scores, and the network evaluations it cost.
    pub scores: Vec<ItemScores>,
    pub nfe: Vec<u32>,
}

/// One evaluation point: a model with a fixed sampler or a learned schedule
/// at one step count. The one evaluation loop of `cogrpo eval` and of every
/// arm of `cogrpo run` (the `base` arm is the reference sampler).
pub struct EvalPoint<'a, B: Kernels> {
    /// The rows' `sampler` column: a sampler's label or an arm's name.
    pub label: String,
    pub model: &'a Denoiser<B>,
    /// A learned schedule acting in mode; `None` follows `sampler`.
    pub policy: Option<&'a SchedulePolicy<B>>,
    /// The (reference) sampler, with its step count.
    pub sampler: SamplerConfig,
    /// Replaces the token temperature (an arm's `eval_temperature`).
    pub temperature: Option<TemperatureOverride>,
}

impl<B: Kernels> EvalPoint<'_, B> {
    /// Generates an answer for every example and scores them: one row per
    /// metric, the scored items, and the trajectories when `record`.
    pub fn evaluate(
        &self,
        cfg: &ExperimentConfig,
        task: &dyn Task,
        examples: &[Example],
        scorer: &Scorer,
        record: bool,
        device: &B::Device,
    ) -> anyhow::Result<Evaluated> {
        let start = Instant::now();
        let (steps, label) = (self.sampler.steps, &self.label);
        let progress = Progress::new(examples.len() as u64, &format!("{label} T={steps}"));
        let generated = self.generate(cfg, task, examples, record, &progress, device)?;
        let (metrics, scores) = scorer.score(task, &generated.items, &generated.nfe)?;
        let wall_s = start.elapsed().as_secs_f64();
        let nfe = &generated.nfe;
        let mean_nfe = nfe.iter().map(|&n| n as f64).sum::<f64>() / examples.len().max(1) as f64;
        let line: Vec<String> = metrics
            .iter()
            .map(|(name, value, _)| format!("{name} {value:.4}"))
            .collect();
        progress.println(&format!(
            "{label} T={steps}: {} ({wall_s:.1}s)",
            line.join(", ")
        ));
        let rows = metrics
            .into_iter()
            .map(|(metric, value, n)| EvalRow {
                sampler: label.clone(),
                steps,
                metric,
                value: if n > 0 { value } else { f64::NAN },
                n,
                nfe: mean_nfe,
                wall_s,
            })
            .collect();
        Ok(Evaluated {
            rows,
            items: generated.items,
            trajectories: generated.trajectories,
            scores,
            nfe: generated.nfe,
        })
    }

    /// An answer for every example (batches on worker threads), with each
    /// one's NFE and, when `record`, its trajectory.
    fn generate(
        &self,
        cfg: &ExperimentConfig,
        task: &dyn Task,
        examples: &[Example],
        record: bool,
        progress: &Progress,
        device: &B::Device,
    ) -> anyhow::Result<Generated> {
        let rollout = Rollout {
            model: self.model,
            policy: self.policy,
            reference: &self.sampler,
            steps: self.sampler.steps,
            act: Act::Mode,
            temperature: self.temperature,
            seed: eval_seed(cfg),
            device: device.clone(),
        };
        // Batches run on worker threads; each row's draws are keyed by its
        // example id, so the numbers do not depend on batching or threads.
        let batches: Vec<&[Example]> = examples.chunks(cfg.eval.batch_size).collect();
        let decoding = Decoding::of(
            self.model.family(),
            self.temperature
                .map_or(self.sampler.temperature, |t| t.value),
            cfg.eval.top_k,
        );
        let per_batch = map_parallel(&batches, cfg.run.threads, |chunk| {
            if let Some(decoding) = &decoding {
                let prompts = Prompts::of(chunk);
                let answer_len = task.layout().answer_len;
                let (answers, stats) = decoding.complete(
                    self.model,
                    task,
                    &prompts,
                    answer_len,
                    eval_seed(cfg),
                    device,
                )?;
                let items: Vec<RewardItem> = chunk
                    .iter()
                    .zip(&answers)
                    .map(|(ex, a)| RewardItem::new(ex, 0, a, task.vocab()))
                    .collect();
                progress.inc(chunk.len() as u64);
                return Ok((stats.nfe, items, Vec::new()));
            }
            let mut canvas = Canvas::from_examples(
                chunk,
                1,
                task.layout().seq_len(),
                self.model.mask_id(),
                |ex, _| ex.id,
            )?;
            let (trajectories, stats) = rollout.run(&mut canvas, record)?;
            let items: Vec<RewardItem> = (0..chunk.len())
                .map(|r| RewardItem::new(&chunk[r], 0, canvas.answer(r), task.vocab()))
                .collect();
            progress.inc(chunk.len() as u64);
            Ok((stats.nfe, items, trajectories))
        })?;
        progress.finish();
        let mut out = Generated::default();
        for (n, it, t) in per_batch {
            out.nfe.extend(n);
            out.items.extend(it);
            out.trajectories.extend(t);
        }
        Ok(out)
    }
}

/// What [`EvalPoint::generate`] produced, in example order.
#[derive(Default)]
struct Generated {
    nfe: Vec<u32>,
    items: Vec<RewardItem>,
    trajectories: Vec<Trajectory>,
}
