//! Evaluating an arm: its model and schedule on the held-out split, acting
//! in mode (the Gaussian's mean, the top-scored positions) at every
//! evaluation step count.

use std::collections::BTreeMap;

use anyhow::Context;
use burn::prelude::*;
use envs::Task;
use mdm::Denoiser;
use policy::learned::SchedulePolicy;
use serde::{Deserialize, Serialize};

use super::samples::schedule_per_step;
use crate::config::ExperimentConfig;
use crate::eval::{EvalPoint, Scorer, test_examples};
use crate::run_dir::EvalRow;

/// An arm's evaluation: metric rows and the schedule it followed per step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmEval {
    pub rows: Vec<EvalRow>,
    /// Step count -> mean action per step (`reveal` and learned components).
    pub schedule: BTreeMap<usize, BTreeMap<String, Vec<f64>>>,
}

/// Evaluates `model` with `policy` (or the reference schedule) on the test
/// split at every `cogrpo.eval_steps` count, through the evaluation loop of
/// `cogrpo eval` ([`EvalPoint`]).
pub fn evaluate_arm<B: Backend>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    policy: Option<&SchedulePolicy<B>>,
    label: &str,
    device: &B::Device,
) -> anyhow::Result<ArmEval> {
    let c = cfg.cogrpo_section()?;
    let examples = test_examples(cfg, task);
    let scorer = Scorer::new(cfg, task).context("evaluating the arms")?;
    let mut out = ArmEval::default();
    for steps in c.eval_step_counts() {
        let point = EvalPoint {
            label: label.to_string(),
            model,
            policy,
            sampler: c.reference.with_steps(steps),
            temperature: Some(c.eval_temperature),
        };
        let (rows, trajectories) = point.evaluate(cfg, task, examples, &scorer, true, device)?;
        let comps = policy.map_or(&[][..], |p| p.components());
        out.schedule
            .insert(steps, schedule_per_step(&trajectories, comps, steps));
        out.rows.extend(rows);
    }
    Ok(out)
}
