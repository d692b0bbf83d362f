//! Evaluation during RL (`cogrpo.eval_every`): the arm's model and schedule
//! on the validation split, never the test prompts, at the evaluation step
//! counts, judged by the run's frozen reward models and evaluation models;
//! the best checkpoint by one metric (`cogrpo.keep_best`); and the warning
//! that the training reward rose while that metric worsened beyond its
//! noise (reward hacking).
//!
//! The noise of a metric is measured at every validation: the same
//! checkpoint's answers to two disjoint halves of the validation prompts
//! are scored apart, and `|half A - half B|` is kept beside the value.

use cogrpo_config::ExperimentConfig;
use cogrpo_eval::{EvalPoint, Scorer, at_most_max_examples, lower_is_better};
use envs::{Example, Task};
use mdm::{Denoiser, Kernels};
use policy::learned::SchedulePolicy;

use crate::state::IterationLog;
pub use crate::state::{Best, Validation};

/// The name of `metric` at `steps` in validations and TensorBoard.
pub fn key(metric: &str, steps: usize) -> String {
    format!("{metric}@{steps}")
}

/// The prompts of validation: the task's validation split (at most
/// `eval.max_examples`), disjoint from the test prompts by construction of
/// every task's splits.
pub fn validation_examples<'t>(cfg: &ExperimentConfig, task: &'t dyn Task) -> &'t [Example] {
    at_most_max_examples(cfg, task.validation_examples())
}

/// Validates `model` (with `policy`, or the reference schedule) at every
/// evaluation step count and at the training one.
pub fn validate<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    (model, policy): (&Denoiser<B>, Option<&SchedulePolicy<B>>),
    label: &str,
    scorer: &Scorer,
    device: &B::Device,
) -> anyhow::Result<Validation> {
    let c = cfg.cogrpo_section()?;
    let examples = validation_examples(cfg, task);
    if examples.len() < 2 {
        anyhow::bail!(
            "cogrpo.eval_every: task `{}` has {} validation prompts; validation needs at least 2",
            task.name(),
            examples.len()
        );
    }
    let mut out = Validation::default();
    for t in c.eval_and_training_step_counts() {
        let point = EvalPoint {
            label: format!("{label} validation"),
            model,
            policy,
            sampler: c.reference.with_steps(t),
            temperature: Some(c.eval_temperature_override(task.layout().prompt_len)),
        };
        let done = point.evaluate(cfg, task, examples, scorer, false, device)?;
        let half = done.items.len() / 2;
        let a = scorer.metrics(task, &done.items[..half], &done.nfe[..half])?;
        let b = scorer.metrics(task, &done.items[half..], &done.nfe[half..])?;
        for row in &done.rows {
            out.values.insert(key(&row.metric, t), row.value);
        }
        for ((metric, va, _), (_, vb, _)) in a.iter().zip(&b) {
            out.noise.insert(key(metric, t), (va - vb).abs());
        }
    }
    Ok(out)
}

/// Whether `value` of metric `key` (`metric@T`) beats `than`.
pub fn better(key: &str, value: f64, than: f64) -> bool {
    let metric = key.rsplit_once('@').map_or(key, |(m, _)| m);
    match lower_is_better(metric) {
        true => value < than,
        false => value > than,
    }
}

/// The validation points of `key` in `history`: (iteration, value, noise).
fn points(history: &[IterationLog], key: &str) -> Vec<(usize, f64, f64)> {
    history
        .iter()
        .filter_map(|h| {
            let v = h.validation.as_ref()?;
            Some((h.iteration, *v.values.get(key)?, *v.noise.get(key)?))
        })
        .filter(|(_, v, _)| v.is_finite())
        .collect()
}

/// The iteration with the best validation value of `key` (the earliest
/// of ties).
pub fn best(history: &[IterationLog], key: &str) -> Option<Best> {
    points(history, key)
        .into_iter()
        .fold(
            None,
            |best: Option<Best>, (iteration, value, _)| match best {
                Some(b) if !better(key, value, b.value) => Some(b),
                _ => Some(Best {
                    iteration,
                    key: key.to_string(),
                    value,
                }),
            },
        )
}

/// Validation points a reward-hacking warning looks back over.
pub const HACKING_WINDOW: usize = 2;

/// A warning when, between the validation `HACKING_WINDOW` points back and
/// the newest, the mean training reward of the iterations before each rose
/// while `key` worsened by more than its noise (the mean half-to-half gap
/// over the validations so far); `None` otherwise.
pub fn hacking_warning(history: &[IterationLog], key: &str) -> Option<String> {
    let pts = points(history, key);
    if pts.len() <= HACKING_WINDOW {
        return None;
    }
    let (then, now) = (pts[pts.len() - 1 - HACKING_WINDOW], pts[pts.len() - 1]);
    let noise = pts.iter().map(|p| p.2).sum::<f64>() / pts.len() as f64;
    // The reward over the iterations leading to each point (as many each).
    let span = now.0 - then.0;
    let reward = |upto: usize| {
        let rs: Vec<f64> = history
            .iter()
            .filter(|h| h.iteration <= upto && h.iteration + span > upto)
            .map(|h| h.reward_mean)
            .filter(|r| r.is_finite())
            .collect();
        rs.iter().sum::<f64>() / rs.len().max(1) as f64
    };
    let (r_then, r_now) = (reward(then.0), reward(now.0));
    let worse = match better(key, then.1, now.1) {
        true => (then.1 - now.1).abs(),
        false => 0.0,
    };
    (r_now > r_then && worse > noise).then(|| {
        format!(
            "possible reward hacking: from iteration {} to {} the training reward rose \
             {r_then:.4} -> {r_now:.4} while validation {key} worsened {:.4} -> {:.4}, more than \
             its noise {noise:.4} (the gap between two halves of the validation prompts)",
            then.0, now.0, then.1, now.1
        )
    })
}

#[cfg(test)]
#[path = "validation/tests.rs"]
mod tests;
