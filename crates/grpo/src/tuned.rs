//! The tuned fixed schedule: the strongest simple baseline a learned
//! schedule must beat. Every fixed schedule of `[cogrpo.tune]`'s grid runs
//! on the task's validation split at T = `cogrpo.steps` and is scored by the
//! training reward (never by the evaluation metrics); the best one is then
//! evaluated on the test split like every arm.

use anyhow::{Context, bail};
use envs::Task;
use mdm::Denoiser;
use policy::SamplerConfig;

use cogrpo_config::{ExperimentConfig, TuneConfig};
use cogrpo_eval::{EvalPoint, Scorer};
use mdm::Kernels;

/// The search's outcome.
#[derive(Debug, Clone)]
pub struct Tuned {
    pub best: SamplerConfig,
    /// Every grid point with its mean validation reward, in grid order.
    pub scores: Vec<(SamplerConfig, f64)>,
    /// Rollouts the search spent (grid points x validation prompts).
    pub rollouts: u64,
}

/// Searches `tune`'s grid around the reference schedule.
pub fn tune_fixed_schedule<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    model: &Denoiser<B>,
    tune: &TuneConfig,
    device: &B::Device,
) -> anyhow::Result<Tuned> {
    let c = cfg.cogrpo_section()?;
    let validation = task.validation_examples();
    if validation.is_empty() {
        bail!(
            "task `{}` has no validation split, so [cogrpo.tune] cannot score fixed \
             schedules without touching the test split; remove [cogrpo.tune]",
            task.name()
        );
    }
    let scorer = Scorer::rewards_only(cfg, task).context("scoring the tuning grid")?;
    let grid = tune.grid(&c.reference.with_steps(c.steps));
    tracing::info!(
        "tuning a fixed schedule: {} grid points x {} validation prompts at T = {}",
        grid.len(),
        validation.len(),
        c.steps
    );
    let mut scores = Vec::with_capacity(grid.len());
    for sampler in grid {
        let point = EvalPoint {
            label: format!("tune {}", sampler.label()),
            model,
            policy: None,
            sampler: sampler.clone(),
            temperature: None,
        };
        let done = point.evaluate(cfg, task, validation, &scorer, false, device)?;
        let reward = done
            .rows
            .iter()
            .find(|r| r.metric == "reward")
            .map_or(f64::NAN, |r| r.value);
        scores.push((sampler, reward));
    }
    let best = scores
        .iter()
        .filter(|(_, r)| r.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s.clone())
        .context("no grid point produced a finite validation reward")?;
    tracing::info!("tuned fixed schedule: {}", best.label());
    Ok(Tuned {
        best,
        rollouts: (scores.len() * validation.len()) as u64,
        scores,
    })
}
