//! How generated answers are judged: the task's verifiers, the configured
//! rewards, and an image task's metrics.

use cogrpo_config::{ExperimentConfig, TaskKind};
use cogrpo_vision::evaluation::ImageMetrics;
use cogrpo_vision::registry;
use envs::Task;
use rewards::{RewardItem, RewardSet, RolloutCost, Verifier};

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
        let verifiers = rewards::verifiers_for(task.verifiers());
        let rewards = if verifiers.is_empty() {
            Some(registry::reward_set(cfg, task.verifiers()).map_err(|e| {
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
            rewards: Some(registry::reward_set(cfg, task.verifiers())?),
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
    /// The metrics of `items` (each of `nfe` evaluations), as the
    /// evaluation rows name them: `(metric, mean, items scored)`.
    pub fn metrics(
        &self,
        task: &dyn Task,
        items: &[RewardItem],
        nfe: &[u32],
    ) -> anyhow::Result<Vec<Metric>> {
        Ok(self.score(task, items, nfe)?.0)
    }

    pub(crate) fn score(
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
/// `(metric, mean, items scored)`.
pub type Metric = (String, f64, usize);

/// One generated answer's scores by name (`None`: failed or not
/// applicable).
pub type ItemScores = std::collections::BTreeMap<String, Option<f64>>;
