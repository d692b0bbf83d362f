//! A weighted set of rewards: scores a batch of rollouts with every reward
//! concurrently, marks failed items invalid, counts failures, applies the
//! rollout cost, and turns the scores into group-normalized advantages.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::config::{Aggregation, CostConfig, CostMode, DEFAULT_FAILURE_WINDOW};
use crate::failure::{FailureKind, RewardFailure};
use crate::item::{BatchScores, RewardItem};
use crate::reward::Reward;

/// What a rollout cost: denoiser evaluations and wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RolloutCost {
    pub nfe: f64,
    pub wall_s: f64,
    /// Positions generated (normalizes the NFE).
    pub answer_len: usize,
}

/// One reward's verdict on one item.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Score(f32),
    NotApplicable,
    Failed(FailureKind),
}

/// Too many items of a batch failed for one reward.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error(
    "reward `{reward}`: {failed} of {total} items failed over the last {batches} batch(es) (more \
     than rewards.max_failure_fraction = {limit}); last failure: {last}"
)]
pub struct TooManyFailures {
    pub reward: String,
    /// Failed and scored items over the window.
    pub failed: usize,
    pub total: usize,
    /// Batches in the window.
    pub batches: usize,
    pub limit: f64,
    pub last: RewardFailure,
}

struct Term {
    reward: Box<dyn Reward>,
    weight: f32,
    /// Deadline for in-process rewards (plugins enforce their own).
    timeout: Option<Duration>,
}

pub struct RewardSet {
    terms: Vec<Term>,
    aggregation: Aggregation,
    cost: CostConfig,
    max_failure_fraction: f64,
    failure_window: usize,
    /// Cumulative failures per (reward, kind), for logging.
    failures: Mutex<BTreeMap<(String, FailureKind), u64>>,
    /// `(failed, items)` of each reward's last `failure_window` batches.
    recent: Mutex<BTreeMap<String, VecDeque<(usize, usize)>>>,
    runtime: tokio::runtime::Runtime,
}

/// The scores of one batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredBatch {
    pub names: Vec<String>,
    pub weights: Vec<f32>,
    /// `outcomes[reward][item]`.
    pub outcomes: Vec<Vec<Outcome>>,
    /// Sub-scores per reward, for logging.
    pub parts: Vec<BTreeMap<String, Vec<Option<f32>>>>,
    /// The cost penalty of every item (0 without a cost).
    pub penalty: Vec<f32>,
    pub aggregation: Aggregation,
    pub cost_mode: CostMode,
    /// Per reward with failures in this batch: its name, the failed items
    /// and the last failure (for the console).
    pub failures: Vec<(String, usize, RewardFailure)>,
}

impl RewardSet {
    pub fn new(aggregation: Aggregation, cost: CostConfig, max_failure_fraction: f64) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cogrpo-rewards")
            .enable_all()
            .build()
            .expect("cannot start the reward runtime (tokio)");
        Self {
            terms: Vec::new(),
            aggregation,
            cost,
            max_failure_fraction,
            failure_window: DEFAULT_FAILURE_WINDOW,
            failures: Mutex::new(BTreeMap::new()),
            recent: Mutex::new(BTreeMap::new()),
            runtime,
        }
    }

    /// Judges `max_failure_fraction` over the last `batches` batches (at
    /// least 1) instead of [`DEFAULT_FAILURE_WINDOW`]: one unlucky batch of
    /// a flaky plugin must not end a run, a plugin that keeps failing must.
    pub fn with_failure_window(mut self, batches: usize) -> Self {
        self.failure_window = batches.max(1);
        self
    }

    pub fn push(&mut self, reward: Box<dyn Reward>, weight: f64, timeout: Option<Duration>) {
        self.terms.push(Term {
            reward,
            weight: weight as f32,
            timeout,
        });
    }

    pub fn names(&self) -> Vec<String> {
        self.terms
            .iter()
            .map(|t| t.reward.name().to_string())
            .collect()
    }

    /// Cumulative failure counts, `(reward, kind) -> count`.
    pub fn failure_counts(&self) -> BTreeMap<(String, FailureKind), u64> {
        self.failures.lock().expect("not poisoned").clone()
    }

    /// The failure counters as `(reward/<name>/failures/<kind>, count)`,
    /// for TensorBoard; every kind is listed for every reward (zeros too),
    /// so that a counter that starts moving is visible from step one.
    pub fn failure_scalars(&self) -> Vec<(String, f64)> {
        let counts = self.failure_counts();
        let mut out: Vec<(String, f64)> = self
            .names()
            .into_iter()
            .flat_map(|name| {
                FailureKind::ALL
                    .into_iter()
                    .map(move |kind| (name.clone(), kind))
            })
            .map(|(name, kind)| {
                let n = counts.get(&(name.clone(), kind)).copied().unwrap_or(0);
                (format!("reward/{name}/failures/{kind}"), n as f64)
            })
            .collect();
        out.extend(
            self.recovery_counters()
                .into_iter()
                .map(|(name, counter, n)| (format!("reward/{name}/{counter}"), n as f64)),
        );
        out
    }

    /// The plugins' cumulative recovery counters: `(reward, counter, n)`,
    /// e.g. `("judge", "restarts", 2)`.
    pub fn recovery_counters(&self) -> Vec<(String, &'static str, u64)> {
        self.terms
            .iter()
            .flat_map(|t| {
                let name = t.reward.name().to_string();
                t.reward
                    .counters()
                    .into_iter()
                    .map(move |(counter, n)| (name.clone(), counter, n))
            })
            .collect()
    }

    /// Scores `items` (with their rollout `costs`) with every reward at once.
    /// Blocks the calling thread; the rewards run on the set's own runtime.
    /// From async code call [`RewardSet::score_async`] instead (blocking
    /// inside a runtime panics).
    pub fn score(
        &self,
        items: &[RewardItem],
        costs: &[RolloutCost],
    ) -> Result<ScoredBatch, TooManyFailures> {
        self.runtime.block_on(self.score_async(items, costs))
    }

    pub async fn score_async(
        &self,
        items: &[RewardItem],
        costs: &[RolloutCost],
    ) -> Result<ScoredBatch, TooManyFailures> {
        assert_eq!(items.len(), costs.len(), "one cost per item");
        let n = items.len();
        let replies = join_all(self.terms.iter().map(|term| async move {
            let fut = term.reward.score(items);
            match term.timeout {
                Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
                    Err(RewardFailure::new(
                        FailureKind::Timeout,
                        format!("no result within {:.1} s", limit.as_secs_f64()),
                    ))
                }),
                None => fut.await,
            }
        }))
        .await;

        let mut out = ScoredBatch {
            names: self.names(),
            weights: self.terms.iter().map(|t| t.weight).collect(),
            outcomes: Vec::new(),
            parts: Vec::new(),
            penalty: costs.iter().map(|c| self.penalty(c)).collect(),
            aggregation: self.aggregation,
            cost_mode: self.cost.mode,
            failures: Vec::new(),
        };
        let mut budget_error = None;
        for (term, reply) in self.terms.iter().zip(replies) {
            let (outcomes, parts, last) = outcomes_of(reply, n);
            let failed: Vec<FailureKind> = outcomes
                .iter()
                .filter_map(|o| match o {
                    Outcome::Failed(k) => Some(*k),
                    _ => None,
                })
                .collect();
            let over = self.count_failures(term.reward.name(), &failed, n, last.as_ref());
            budget_error = budget_error.or(over);
            if let (false, Some(last)) = (failed.is_empty(), last) {
                out.failures
                    .push((term.reward.name().to_string(), failed.len(), last));
            }
            out.outcomes.push(outcomes);
            out.parts.push(parts);
        }
        match budget_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Counts `reward`'s failed items of a batch of `n` (per kind, and in
    /// its window); the error to stop on when the window's share of failed
    /// items is over `max_failure_fraction`.
    fn count_failures(
        &self,
        reward: &str,
        failed: &[FailureKind],
        n: usize,
        last: Option<&RewardFailure>,
    ) -> Option<TooManyFailures> {
        if !failed.is_empty() {
            let mut counts = self.failures.lock().expect("not poisoned");
            for kind in failed {
                *counts.entry((reward.to_string(), *kind)).or_default() += 1;
            }
        }
        let (window_failed, window_total, batches) = self.record_window(reward, failed.len(), n);
        let over = window_total > 0
            && window_failed as f64 > self.max_failure_fraction * window_total as f64;
        over.then(|| TooManyFailures {
            reward: reward.to_string(),
            failed: window_failed,
            total: window_total,
            batches,
            limit: self.max_failure_fraction,
            last: last.cloned().unwrap_or_else(|| {
                RewardFailure::new(
                    failed.first().copied().unwrap_or(FailureKind::Crash),
                    "see the failure counters",
                )
            }),
        })
    }

    /// Adds one batch's `(failed, items)` to `reward`'s window; returns the
    /// window's failed and total items and its number of batches.
    fn record_window(&self, reward: &str, failed: usize, items: usize) -> (usize, usize, usize) {
        let mut recent = self.recent.lock().expect("not poisoned");
        let window = recent.entry(reward.to_string()).or_default();
        window.push_back((failed, items));
        while window.len() > self.failure_window {
            window.pop_front();
        }
        let (f, t) = window.iter().fold((0, 0), |(f, t), &(a, b)| (f + a, t + b));
        (f, t, window.len())
    }

    fn penalty(&self, c: &RolloutCost) -> f32 {
        let nfe = if c.answer_len > 0 {
            c.nfe / c.answer_len as f64
        } else {
            0.0
        };
        (self.cost.nfe * nfe + self.cost.wall_s * c.wall_s) as f32
    }
}

/// Per-item outcomes of one reward's reply, its parts, and the last failure.
type Verdicts = (
    Vec<Outcome>,
    BTreeMap<String, Vec<Option<f32>>>,
    Option<RewardFailure>,
);

fn outcomes_of(reply: Result<BatchScores, RewardFailure>, n: usize) -> Verdicts {
    let scores = match reply {
        Err(f) => return (vec![Outcome::Failed(f.kind); n], BTreeMap::new(), Some(f)),
        Ok(s) => s,
    };
    if scores.scores.len() != n {
        let f = RewardFailure::new(
            FailureKind::WrongCount,
            format!("{} scores for {n} items", scores.scores.len()),
        );
        return (vec![Outcome::Failed(f.kind); n], BTreeMap::new(), Some(f));
    }
    let mut last = None;
    let mut outcomes: Vec<Outcome> = scores
        .scores
        .iter()
        .map(|s| match s {
            None => Outcome::NotApplicable,
            Some(x) if x.is_finite() => Outcome::Score(*x),
            Some(_) => {
                last = Some(RewardFailure::new(
                    FailureKind::NonFinite,
                    "a score is NaN or infinite",
                ));
                Outcome::Failed(FailureKind::NonFinite)
            }
        })
        .collect();
    for (range, failure) in scores.failed {
        for o in &mut outcomes[range.start.min(n)..range.end.min(n)] {
            *o = Outcome::Failed(failure.kind);
        }
        last = Some(failure);
    }
    (outcomes, scores.parts, last)
}

impl ScoredBatch {
    /// One line on this batch's reward failures, `None` without any:
    /// `reward `judge`: 3 of 128 items failed (crash: ...)`.
    pub fn failure_note(&self) -> Option<String> {
        if self.failures.is_empty() {
            return None;
        }
        let n = self.penalty.len();
        Some(
            self.failures
                .iter()
                .map(|(name, failed, last)| {
                    format!("reward `{name}`: {failed} of {n} items failed (last: {last})")
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    pub fn len(&self) -> usize {
        self.penalty.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An item is valid unless a reward with non-zero weight failed on it.
    pub fn valid(&self, i: usize) -> bool {
        self.outcomes
            .iter()
            .zip(&self.weights)
            .all(|(o, &w)| w == 0.0 || !matches!(o[i], Outcome::Failed(_)))
    }

    /// The item's reward: the weighted sum of its scores (not-applicable
    /// rewards add nothing) with the cost applied; `None` when invalid or
    /// when no reward applies.
    pub fn total(&self, i: usize) -> Option<f32> {
        if !self.valid(i) {
            return None;
        }
        let mut any = false;
        let mut sum = 0.0;
        for (o, &w) in self.outcomes.iter().zip(&self.weights) {
            if let Outcome::Score(x) = o[i] {
                any = true;
                sum += w * x;
            }
        }
        any.then(|| self.apply_cost(sum, self.penalty[i]))
    }

    fn apply_cost(&self, reward: f32, penalty: f32) -> f32 {
        match self.cost_mode {
            CostMode::Additive => reward - penalty,
            CostMode::Gate => reward * (1.0 - penalty).max(0.0),
        }
    }

    /// Group-normalized advantages: items come in consecutive groups of
    /// `group_size` rollouts of the same prompt. Invalid items get `None`
    /// and are left out of their group's mean and standard deviation.
    pub fn advantages(&self, group_size: usize) -> Vec<Option<f32>> {
        self.advantages_scaled(group_size, true)
    }

    /// As [`ScoredBatch::advantages`]; with `divide_by_std` false the group's
    /// rewards are only centred (Dr. GRPO: no per-group rescaling, so easy and
    /// hard prompts are not re-weighted).
    pub fn advantages_scaled(&self, group_size: usize, divide_by_std: bool) -> Vec<Option<f32>> {
        assert!(
            group_size > 0 && self.len().is_multiple_of(group_size),
            "batch is not whole groups"
        );
        let mut out = vec![None; self.len()];
        for start in (0..self.len()).step_by(group_size) {
            let group = start..start + group_size;
            match self.aggregation {
                Aggregation::SumThenNormalize => {
                    let totals: Vec<Option<f32>> = group.clone().map(|i| self.total(i)).collect();
                    for (i, a) in group.zip(normalize(&totals, divide_by_std)) {
                        out[i] = a;
                    }
                }
                Aggregation::NormalizeThenSum => {
                    let valid: Vec<bool> = group.clone().map(|i| self.valid(i)).collect();
                    let mut sums: Vec<Option<f32>> =
                        valid.iter().map(|&v| v.then_some(0.0)).collect();
                    for (outcomes, &w) in self.outcomes.iter().zip(&self.weights) {
                        let column: Vec<Option<f32>> = group
                            .clone()
                            .zip(&valid)
                            .map(|(i, &v)| match outcomes[i] {
                                Outcome::Score(x) if v => Some(match self.cost_mode {
                                    CostMode::Gate => self.apply_cost(x, self.penalty[i]),
                                    CostMode::Additive => x,
                                }),
                                _ => None,
                            })
                            .collect();
                        add_normalized(&mut sums, &column, w, divide_by_std);
                    }
                    if self.cost_mode == CostMode::Additive {
                        // The cost is one more term, normalized like the rewards.
                        let column: Vec<Option<f32>> = group
                            .clone()
                            .zip(&valid)
                            .map(|(i, &v)| v.then(|| -self.penalty[i]))
                            .collect();
                        add_normalized(&mut sums, &column, 1.0, divide_by_std);
                    }
                    for (i, s) in group.zip(sums) {
                        out[i] = s;
                    }
                }
            }
        }
        out
    }

    /// Per-reward mean and standard deviation over the items it scored, and
    /// the share of invalid items, as `(tag, value)` pairs for TensorBoard.
    pub fn stats(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for (name, outcomes) in self.names.iter().zip(&self.outcomes) {
            let xs: Vec<f64> = outcomes
                .iter()
                .filter_map(|o| {
                    if let Outcome::Score(x) = o {
                        Some(f64::from(*x))
                    } else {
                        None
                    }
                })
                .collect();
            if let Some((mean, std)) = mean_std(&xs) {
                out.push((format!("reward/{name}/mean"), mean));
                out.push((format!("reward/{name}/std"), std));
            }
            let failed = outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Failed(_)))
                .count();
            out.push((
                format!("reward/{name}/failed_share"),
                failed as f64 / outcomes.len().max(1) as f64,
            ));
        }
        let totals: Vec<f64> = (0..self.len())
            .filter_map(|i| self.total(i).map(f64::from))
            .collect();
        if let Some((mean, std)) = mean_std(&totals) {
            out.push(("reward/total/mean".into(), mean));
            out.push(("reward/total/std".into(), std));
        }
        out
    }
}

fn mean_std(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    Some((mean, var.sqrt()))
}

/// `sums[i] += weight * normalize(column)[i]` where both are present.
fn add_normalized(sums: &mut [Option<f32>], column: &[Option<f32>], weight: f32, scale: bool) {
    for (s, a) in sums.iter_mut().zip(normalize(column, scale)) {
        if let (Some(s), Some(a)) = (s.as_mut(), a) {
            *s += weight * a;
        }
    }
}

/// `(r - mean) / (std + 1e-4)` over the present entries (population std, as
/// in GRPO's group normalization), or `r - mean` without `scale`; fewer
/// than two present entries give 0.
fn normalize(xs: &[Option<f32>], scale: bool) -> Vec<Option<f32>> {
    let present: Vec<f64> = xs.iter().flatten().map(|&x| f64::from(x)).collect();
    let (mean, std) = mean_std(&present).unwrap_or((0.0, 0.0));
    xs.iter()
        .map(|x| {
            x.map(|x| {
                if present.len() < 2 {
                    0.0
                } else if scale {
                    ((f64::from(x) - mean) / (std + 1e-4)) as f32
                } else {
                    (f64::from(x) - mean) as f32
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
