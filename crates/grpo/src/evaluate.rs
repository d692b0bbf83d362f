//! Evaluating an arm: its model and schedule on the held-out split, acting
//! in mode (the Gaussian's mean, the top-scored positions) at every
//! evaluation step count.

use std::collections::BTreeMap;

use envs::Task;
use mdm::Denoiser;
use policy::learned::SchedulePolicy;
use policy::{SamplerConfig, TemperatureOverride};
use serde::{Deserialize, Serialize};

use cogrpo_config::ExperimentConfig;
use cogrpo_eval::dumps::{self, DumpKind, DumpRecord, Origin, Scored};
use cogrpo_eval::{EvalPoint, EvalRow, Scorer, test_examples};

use crate::samples::schedule_per_step;
use mdm::Kernels;

/// Samples an image task's report shows per arm, step count and prompt.
pub const GRID_PER_CLASS: usize = 8;

/// An arm's evaluation: metric rows, the schedule it followed per step, and
/// for image tasks the first answers (the report's sample grids).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmEval {
    pub rows: Vec<EvalRow>,
    /// Step count -> mean action per step (`reveal` and learned components).
    pub schedule: BTreeMap<usize, BTreeMap<String, Vec<f64>>>,
    /// Step count -> the first answers to each test prompt.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub samples: BTreeMap<usize, Vec<ShownSample>>,
    /// The first rollouts at each step count, step by step, for the arm's
    /// dump file (`iteration` left 0 for the caller to set).
    #[serde(skip)]
    pub dumped: Vec<DumpRecord>,
}

/// One generated answer the report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownSample {
    pub prompt: Vec<u32>,
    pub answer: Vec<u32>,
}

/// Evaluates `model` with `policy` (or the reference schedule) on the test
/// split at every `cogrpo.eval_steps` count, through the evaluation loop of
/// `cogrpo eval` ([`EvalPoint`]), decoding at `cogrpo.eval_temperature`.
/// One `scorer` serves every arm of a run (it holds the reward and
/// evaluation models).
pub fn evaluate_arm<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    policy: Option<&SchedulePolicy<B>>,
    label: &str,
    scorer: &Scorer,
    device: &B::Device,
) -> anyhow::Result<ArmEval> {
    let c = cfg.cogrpo_section()?;
    let schedule = ArmSchedule {
        policy,
        reference: &c.reference,
        temperature: Some(c.eval_temperature_override(task.layout().prompt_len)),
    };
    evaluate_with(cfg, task, model, schedule, label, scorer, device)
}

/// Evaluates `model` under a fixed schedule of its own (the tuned one: its
/// temperature is part of what was tuned) at every evaluation step count.
pub fn evaluate_fixed_arm<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    schedule: &SamplerConfig,
    label: &str,
    scorer: &Scorer,
    device: &B::Device,
) -> anyhow::Result<ArmEval> {
    let schedule = ArmSchedule {
        policy: None,
        reference: schedule,
        temperature: None,
    };
    evaluate_with(cfg, task, model, schedule, label, scorer, device)
}

/// What an arm generates with: a learned policy or not, over a reference
/// sampler, with or without a token temperature override.
struct ArmSchedule<'a, B: Kernels> {
    policy: Option<&'a SchedulePolicy<B>>,
    reference: &'a SamplerConfig,
    temperature: Option<TemperatureOverride>,
}

fn evaluate_with<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    schedule: ArmSchedule<'_, B>,
    label: &str,
    scorer: &Scorer,
    device: &B::Device,
) -> anyhow::Result<ArmEval> {
    let c = cfg.cogrpo_section()?;
    let examples = test_examples(cfg, task);
    let ArmSchedule {
        policy,
        reference,
        temperature,
    } = schedule;
    let mut out = ArmEval::default();
    for steps in c.eval_step_counts() {
        let point = EvalPoint {
            label: label.to_string(),
            model,
            policy,
            sampler: reference.with_steps(steps),
            temperature,
        };
        let done = point.evaluate(cfg, task, examples, scorer, true, device)?;
        let comps = policy.map_or(&[][..], |p| p.components());
        out.schedule
            .insert(steps, schedule_per_step(&done.trajectories, comps, steps));
        let origin = Origin {
            kind: DumpKind::Eval,
            arm: label,
            iteration: 0,
            steps,
            group_size: 1,
        };
        let shown = c.dump_groups * c.group_size;
        for (i, t) in done.trajectories.iter().enumerate().take(shown) {
            // The total goes in `reward`; `rewards` holds its parts.
            let mut rewards = done.scores[i].clone();
            let scored = Scored {
                reward: rewards.remove("reward").flatten(),
                rewards,
                advantage: None,
                nfe: done.nfe[i],
            };
            out.dumped.push(dumps::record(
                task,
                &origin,
                i,
                t,
                &done.items[i],
                comps,
                scored,
            ));
        }
        out.rows.extend(done.rows);
        let shown = done
            .items
            .first()
            .and_then(|it| task.answer_image(&it.completion_tokens));
        if shown.is_some() {
            let mut per_prompt: BTreeMap<&[u32], usize> = BTreeMap::new();
            let kept = done.items.iter().filter(|it| {
                let n = per_prompt.entry(&it.prompt_tokens).or_default();
                *n += 1;
                *n <= GRID_PER_CLASS
            });
            let pairs = kept.map(|it| ShownSample {
                prompt: it.prompt_tokens.clone(),
                answer: it.completion_tokens.clone(),
            });
            out.samples.insert(steps, pairs.collect());
        }
    }
    Ok(out)
}
