//! Evaluation on the task's held-out split.
//!
//! - A sampler sweep: every `eval.samplers` entry at every `eval.steps`
//!   count generates an answer for each test example; the task's verifiers
//!   score them (Sudoku: solved share, d1's cell accuracy, valid cells).
//!   [`EvalPoint`] is the one evaluation loop: the arms of `cogrpo run`
//!   (their learned schedules, and `base` with the reference sampler) run
//!   through it too.
//! - A likelihood bound: the Monte Carlo ELBO of the test answers in bits
//!   per token (`eval.nll_samples` stratified times per sequence).

use std::time::Instant;

use envs::seeding::{derive_key, purpose, stream};
use envs::{Canvas, Example, Task, Trajectory};
use mdm::likelihood::elbo_nll;
use mdm::loss::CleanRow;
use mdm::{Denoiser, Family};
use policy::learned::SchedulePolicy;
use policy::{Act, Rollout, SamplerConfig, SamplerKind};
use rand::seq::SliceRandom;
use rewards::{RewardItem, RewardSet, RolloutCost, Verifier};

use crate::config::{ExperimentConfig, TaskKind};
use crate::families::{Decoding, ilm_answer, prompts_of};
use crate::logging::{Progress, Scalars};
use crate::parallel::map_parallel;
use crate::reward_models;
use crate::run_dir::EvalRow;
use crate::vision::evaluation::ImageMetrics;
use mdm::Kernels;

/// The seed of every evaluation's draws: the same for `cogrpo eval` and each
/// arm of `cogrpo run`, so that a fixed sampler scores the same in both.
pub fn eval_seed(cfg: &ExperimentConfig) -> u64 {
    derive_key(&[purpose::SAMPLER, cfg.run.seed, 0x65_76_61_6c])
}

/// Runs the configured sweep and likelihood bound. An MDM runs every
/// sampler at every step count; an ARM or an ILM once per distinct
/// temperature of `eval.samplers` (step counts are the MDM's knob), and the
/// ARM's likelihood is exact.
pub fn evaluate<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    device: &B::Device,
    log: &mut Scalars,
) -> anyhow::Result<Vec<EvalRow>> {
    let e = &cfg.eval;
    let examples = test_examples(cfg, task);
    let point = |label: String, sampler: SamplerConfig, temperature: Option<f64>| EvalPoint {
        label,
        model,
        policy: None,
        sampler,
        temperature,
    };
    let points: Vec<EvalPoint<B>> = if model.family() == Family::Mdm {
        cfg.sweep()
            .into_iter()
            .map(|s| point(s.label(), s, None))
            .collect()
    } else {
        // Distinct temperatures, in the order the config first names them.
        let mut temperatures: Vec<f64> = Vec::new();
        for t in e.samplers.iter().map(|s| s.temperature) {
            if !temperatures.contains(&t) {
                temperatures.push(t);
            }
        }
        temperatures
            .into_iter()
            .filter_map(|t| {
                let decoding = Decoding::of(model.family(), t, e.top_k)?;
                let sampler = SamplerConfig::new(SamplerKind::Confidence, task.layout().answer_len);
                Some(point(decoding.label(), sampler, Some(t)))
            })
            .collect()
    };
    let mut rows = Vec::new();
    if !points.is_empty() {
        let scorer = Scorer::new(cfg, task)?;
        for point in points {
            let r = point
                .evaluate(cfg, task, examples, &scorer, false, device)?
                .rows;
            for row in &r {
                log.scalar(
                    &format!("eval/{}/{}", row.sampler, row.metric),
                    row.value,
                    point.sampler.steps,
                );
            }
            rows.extend(r);
        }
    }
    if e.nll_samples > 0 {
        let row = likelihood(cfg, task, model, device, examples)?;
        log.scalar(
            &format!("eval/{}_bits_per_token", row.sampler),
            row.value,
            0,
        );
        rows.push(row);
    }
    Ok(rows)
}

/// The held-out examples an evaluation uses (`eval.max_examples` of them).
pub fn test_examples<'t>(cfg: &ExperimentConfig, task: &'t dyn Task) -> &'t [Example] {
    let all = task.test_examples();
    &all[..cfg.eval.max_examples.unwrap_or(all.len()).min(all.len())]
}

/// How generated answers are scored: the task's verifiers, or for a task
/// without any (text, digits) the configured rewards, as the metric
/// `reward`; image tasks add the image metrics of [`ImageMetrics`].
pub struct Scorer {
    verifiers: Vec<Box<dyn Verifier>>,
    rewards: Option<RewardSet>,
    images: Option<ImageMetrics>,
}

impl Scorer {
    pub fn new(cfg: &ExperimentConfig, task: &dyn Task) -> anyhow::Result<Self> {
        let verifiers = rewards::verifiers_for(task.name());
        let rewards = if verifiers.is_empty() {
            Some(reward_models::reward_set(cfg, task.name()).map_err(|e| {
                anyhow::anyhow!(
                    "task `{}` has no verifier, so generated answers are scored with \
                     [rewards]: {e}; or leave eval.samplers empty and use \
                     eval.nll_samples for a likelihood evaluation",
                    task.name()
                )
            })?)
        } else {
            None
        };
        let images = if cfg.task.kind == TaskKind::Digits {
            let m = ImageMetrics::load(cfg)?;
            for (name, value) in &m.floors {
                tracing::info!("reference: {name} {value:.4}");
            }
            Some(m)
        } else {
            None
        };
        Ok(Self {
            verifiers,
            rewards,
            images,
        })
    }

    /// Scores with the configured rewards only, as the metric `reward`: what
    /// training optimizes, without the evaluation's verifiers or models
    /// (tuning on validation data must not see the evaluation's judges).
    pub fn rewards_only(cfg: &ExperimentConfig, task: &dyn Task) -> anyhow::Result<Self> {
        Ok(Self {
            verifiers: Vec::new(),
            rewards: Some(reward_models::reward_set(cfg, task.name())?),
            images: None,
        })
    }

    /// Scores nothing: for generating answers through the evaluation loop
    /// (a discriminator's training data).
    pub fn unscored() -> Self {
        Self {
            verifiers: Vec::new(),
            rewards: None,
            images: None,
        }
    }

    /// Every metric of `items`: `(name, value, items it covers)`, and each
    /// item's own scores (verifiers, reward terms, the total `reward`).
    fn score(
        &self,
        task: &dyn Task,
        items: &[RewardItem],
        nfe: &[u32],
    ) -> anyhow::Result<(Vec<Metric>, Vec<ItemScores>)> {
        let mut per_item: Vec<ItemScores> = items
            .iter()
            .map(|it| {
                self.verifiers
                    .iter()
                    .map(|v| (v.name().to_string(), v.score(it)))
                    .collect()
            })
            .collect();
        let mean = |name: &str, s: Vec<f64>| {
            (
                name.to_string(),
                s.iter().sum::<f64>() / s.len().max(1) as f64,
                s.len(),
            )
        };
        let mut out: Vec<Metric> = self
            .verifiers
            .iter()
            .map(|v| {
                mean(
                    v.name(),
                    items.iter().filter_map(|it| v.score(it)).collect(),
                )
            })
            .collect();
        if let Some(images) = &self.images {
            out.extend(images.score(items));
        }
        if let Some(set) = &self.rewards {
            let costs: Vec<RolloutCost> = nfe
                .iter()
                .map(|&n| RolloutCost {
                    nfe: n as f64,
                    wall_s: 0.0,
                    answer_len: task.layout().answer_len,
                })
                .collect();
            let scored = set.score(items, &costs)?;
            let totals: Vec<f64> = (0..scored.len())
                .filter_map(|i| scored.total(i).map(f64::from))
                .collect();
            out.push(mean("reward", totals));
            for (i, scores) in per_item.iter_mut().enumerate() {
                scores.extend(crate::dumps::term_scores(&scored, i));
                scores.insert("reward".into(), scored.total(i).map(f64::from));
            }
        }
        Ok((out, per_item))
    }
}

/// A metric over a batch: `(name, mean, items it covers)`.
type Metric = (String, f64, usize);

/// One generated answer's scores by name (`None`: failed or not
/// applicable).
pub type ItemScores = std::collections::BTreeMap<String, Option<f64>>;

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
    pub temperature: Option<f64>,
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
        let steps = self.sampler.steps;
        let label = &self.label;
        let progress = Progress::new(examples.len() as u64, &format!("{label} T={steps}"));
        let rollout = Rollout {
            model: self.model,
            policy: self.policy,
            reference: &self.sampler,
            steps,
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
            self.temperature.unwrap_or(self.sampler.temperature),
            cfg.eval.top_k,
        );
        let per_batch = map_parallel(&batches, cfg.run.threads, |chunk| {
            if let Some(decoding) = &decoding {
                let (prompts, keys) = prompts_of(chunk);
                let (answers, stats) = decoding.complete(
                    self.model,
                    task,
                    &prompts,
                    &keys,
                    task.layout().answer_len,
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
        let (mut nfe, mut items, mut trajectories) = (Vec::new(), Vec::new(), Vec::new());
        for (n, it, t) in per_batch {
            nfe.extend(n);
            items.extend(it);
            trajectories.extend(t);
        }
        let (metrics, scores) = scorer.score(task, &items, &nfe)?;
        let wall_s = start.elapsed().as_secs_f64();
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
            items,
            trajectories,
            scores,
            nfe,
        })
    }
}

/// The held-out likelihood in bits per answer token: the MDM's Monte Carlo
/// ELBO bound (row `elbo`, `eval.nll_samples` stratified times per
/// sequence), the ARM's exact negative log-likelihood (row `nll`), or the
/// ILM's insertion-order bound (row `ilm_bound`, `eval.nll_samples` random
/// orders per sequence; [`mdm::ilm::nll_bound`]).
pub fn likelihood<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    device: &B::Device,
    examples: &[Example],
) -> anyhow::Result<EvalRow> {
    let start = Instant::now();
    let family = model.family();
    let k = if family == Family::Arm {
        1
    } else {
        cfg.eval.nll_samples
    };
    let label = match family {
        Family::Mdm => "elbo",
        Family::Arm => "nll",
        Family::Ilm => "ilm_bound",
    };
    let progress = Progress::new(examples.len() as u64, label);
    let batches: Vec<&[Example]> = examples.chunks(cfg.eval.batch_size).collect();
    let per_batch = map_parallel(&batches, cfg.run.threads, |chunk| {
        let seqs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|ex| ex.prompt.iter().chain(&ex.answer).copied().collect())
            .collect();
        let rows: Vec<CleanRow> = seqs
            .iter()
            .zip(chunk.iter())
            .map(|(t, ex)| CleanRow {
                tokens: t,
                prompt_len: ex.prompt.len(),
            })
            .collect();
        let mut rngs: Vec<_> = chunk
            .iter()
            .map(|ex| stream(&[purpose::LIKELIHOOD, cfg.run.seed, ex.id]))
            .collect();
        let nats = match family {
            Family::Mdm => elbo_nll(model, &rows, k, &mut rngs, device),
            Family::Arm => {
                let batch = mdm::arm::shifted_batch(&rows, model.bos_id());
                mdm::arm::answer_nll(model, &batch, device)
            }
            Family::Ilm => chunk
                .iter()
                .zip(&mut rngs)
                .map(|(ex, rng)| {
                    // The answer the ILM generates: without the `<pad>`s that
                    // its stop decision implies (still divided by all tokens).
                    let answer = ilm_answer(task, &ex.answer);
                    let orders: Vec<Vec<usize>> = (0..k)
                        .map(|_| {
                            let mut o: Vec<usize> = (0..answer.len()).collect();
                            o.shuffle(rng);
                            o
                        })
                        .collect();
                    mdm::ilm::nll_bound(model, &ex.prompt, answer, &orders, device)
                })
                .collect(),
        };
        progress.inc(chunk.len() as u64);
        Ok(nats.iter().sum::<f64>())
    })?;
    progress.finish();
    let nats: f64 = per_batch.iter().sum();
    let tokens: usize = examples.iter().map(|ex| ex.answer.len()).sum();
    Ok(EvalRow {
        sampler: label.into(),
        steps: k,
        metric: "bits_per_token".into(),
        value: nats / tokens.max(1) as f64 / std::f64::consts::LN_2,
        n: examples.len(),
        nfe: k as f64,
        wall_s: start.elapsed().as_secs_f64(),
    })
}

/// The rows as an aligned text table.
pub fn table(rows: &[EvalRow]) -> String {
    let mut out = format!(
        "{:<34} {:>6} {:<18} {:>9} {:>6} {:>7} {:>8}\n",
        "sampler", "steps", "metric", "value", "n", "nfe", "wall_s"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<34} {:>6} {:<18} {:>9.4} {:>6} {:>7.1} {:>8.1}\n",
            r.sampler, r.steps, r.metric, r.value, r.n, r.nfe, r.wall_s
        ));
    }
    out
}
