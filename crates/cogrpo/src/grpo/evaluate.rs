//! Evaluating an arm: its model and schedule on the held-out split, acting
//! in mode (the Gaussian's mean, the top-scored positions) at every
//! evaluation step count.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use burn::prelude::*;
use envs::seeding::{derive_key, purpose};
use envs::{Canvas, Example, Task, Trajectory};
use mdm::Denoiser;
use policy::learned::SchedulePolicy;
use policy::{Act, Rollout};
use rewards::{RewardItem, RolloutCost};
use serde::{Deserialize, Serialize};

use super::samples::schedule_per_step;
use crate::config::ExperimentConfig;
use crate::logging::Progress;
use crate::parallel::map_parallel;
use crate::run_dir::EvalRow;

/// An arm's evaluation: metric rows and the schedule it followed per step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmEval {
    pub rows: Vec<EvalRow>,
    /// Step count -> mean action per step (`reveal` and learned components).
    pub schedule: BTreeMap<usize, BTreeMap<String, Vec<f64>>>,
}

/// Evaluates `model` with `policy` (or the reference schedule) on the test split.
pub fn evaluate_arm<B: Backend>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    policy: Option<&SchedulePolicy<B>>,
    label: &str,
    device: &B::Device,
) -> anyhow::Result<ArmEval> {
    let c = cfg
        .cogrpo
        .as_ref()
        .context("the config has no [cogrpo] section")?;
    let all = task.test_examples();
    let examples = &all[..cfg.eval.max_examples.unwrap_or(all.len()).min(all.len())];
    // The task's verifiers; a task without any (text) is scored with the
    // configured rewards instead, as the metric `reward`.
    let verifiers = rewards::verifiers_for(task.name());
    let reward_set = if verifiers.is_empty() {
        Some(
            rewards::build_reward_set(&cfg.rewards, task.name())
                .map_err(|e| anyhow::anyhow!("evaluating the arms: {e}"))?,
        )
    } else {
        None
    };
    let mut out = ArmEval::default();
    for steps in c.eval_step_counts() {
        let start = Instant::now();
        let reference = c.reference.with_steps(steps);
        let progress = Progress::new(examples.len() as u64, &format!("{label} T={steps}"));
        let batches: Vec<&[Example]> = examples.chunks(cfg.eval.batch_size).collect();
        let seed = derive_key(&[purpose::SAMPLER, cfg.run.seed, 0x65_76_61_6c]);
        let per_batch = map_parallel(&batches, cfg.run.threads, |chunk| {
            let mut canvas = Canvas::from_examples(
                chunk,
                1,
                task.layout().seq_len(),
                model.mask_id(),
                |ex, _| ex.id,
            )?;
            let rollout = Rollout {
                model,
                policy,
                reference: &reference,
                steps,
                act: Act::Mode,
                temperature: Some(c.eval_temperature),
                seed,
                device: device.clone(),
            };
            let (trajectories, stats) = rollout.run(&mut canvas, true)?;
            let items: Vec<RewardItem> = chunk
                .iter()
                .zip(&trajectories)
                .map(|(ex, t)| RewardItem::new(ex, 0, t.answer(), task.vocab()))
                .collect();
            progress.inc(chunk.len() as u64);
            Ok((stats.nfe, items, trajectories))
        })?;
        progress.finish();
        let mut nfe = Vec::new();
        let mut items = Vec::new();
        let mut trajectories: Vec<Trajectory> = Vec::new();
        for (n, it, trajs) in per_batch {
            nfe.extend(n);
            items.extend(it);
            trajectories.extend(trajs);
        }
        let mut names: Vec<String> = verifiers.iter().map(|v| v.name().to_string()).collect();
        let mut sums = vec![(0.0f64, 0usize); verifiers.len()];
        for item in &items {
            for (v, sum) in verifiers.iter().zip(sums.iter_mut()) {
                if let Some(s) = v.score(item) {
                    sum.0 += s;
                    sum.1 += 1;
                }
            }
        }
        if let Some(set) = &reward_set {
            let costs: Vec<RolloutCost> = nfe
                .iter()
                .map(|&n| RolloutCost {
                    nfe: n as f64,
                    wall_s: 0.0,
                    answer_len: task.layout().answer_len,
                })
                .collect();
            let scored = set.score(&items, &costs)?;
            let totals: Vec<f64> = (0..scored.len())
                .filter_map(|i| scored.total(i).map(f64::from))
                .collect();
            names.push("reward".into());
            sums.push((totals.iter().sum(), totals.len()));
        }
        let nfe = nfe.iter().map(|&n| n as f64).sum::<f64>();
        let wall_s = start.elapsed().as_secs_f64();
        let comps = policy.map_or(&[][..], |p| p.components());
        out.schedule
            .insert(steps, schedule_per_step(&trajectories, comps, steps));
        let line: Vec<String> = names
            .iter()
            .zip(&sums)
            .map(|(name, (s, n))| format!("{name} {:.4}", s / (*n).max(1) as f64))
            .collect();
        progress.println(&format!(
            "{label} T={steps}: {} ({wall_s:.1}s)",
            line.join(", ")
        ));
        for (name, (sum, n)) in names.into_iter().zip(sums) {
            out.rows.push(EvalRow {
                sampler: label.to_string(),
                steps,
                metric: name,
                value: if n > 0 { sum / n as f64 } else { f64::NAN },
                n,
                nfe: nfe / examples.len().max(1) as f64,
                wall_s,
            });
        }
    }
    Ok(out)
}
