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
use rewards::RewardItem;
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
    let verifiers = rewards::verifiers_for(task.name());
    anyhow::ensure!(
        !verifiers.is_empty(),
        "task `{}` has no verifier to evaluate the arms with",
        task.name()
    );
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
            let scores: Vec<Vec<Option<f64>>> = chunk
                .iter()
                .zip(&trajectories)
                .map(|(ex, t)| {
                    let item = RewardItem::new(ex, 0, t.answer(), task.vocab());
                    verifiers.iter().map(|v| v.score(&item)).collect()
                })
                .collect();
            progress.inc(chunk.len() as u64);
            Ok((
                stats.nfe.iter().map(|&n| n as f64).sum::<f64>(),
                scores,
                trajectories,
            ))
        })?;
        progress.finish();
        let wall_s = start.elapsed().as_secs_f64();
        let mut sums = vec![(0.0f64, 0usize); verifiers.len()];
        let mut nfe = 0.0;
        let mut trajectories: Vec<Trajectory> = Vec::new();
        for (batch_nfe, scores, trajs) in per_batch {
            nfe += batch_nfe;
            trajectories.extend(trajs);
            for row in scores {
                for (s, sum) in row.into_iter().zip(sums.iter_mut()) {
                    if let Some(s) = s {
                        sum.0 += s;
                        sum.1 += 1;
                    }
                }
            }
        }
        let comps = policy.map_or(&[][..], |p| p.components());
        out.schedule
            .insert(steps, schedule_per_step(&trajectories, comps, steps));
        let line: Vec<String> = verifiers
            .iter()
            .zip(&sums)
            .map(|(v, (s, n))| format!("{} {:.4}", v.name(), s / (*n).max(1) as f64))
            .collect();
        progress.println(&format!(
            "{label} T={steps}: {} ({wall_s:.1}s)",
            line.join(", ")
        ));
        for (v, (sum, n)) in verifiers.iter().zip(sums) {
            out.rows.push(EvalRow {
                sampler: label.to_string(),
                steps,
                metric: v.name().to_string(),
                value: if n > 0 { sum / n as f64 } else { f64::NAN },
                n,
                nfe: nfe / examples.len().max(1) as f64,
                wall_s,
            });
        }
    }
    Ok(out)
}
