//! The `[rewards]` section of an experiment config: which rewards, with
//! which weights, how they are combined into advantages, and what a rollout
//! costs.
//!
//! ```toml
//! [rewards]
//! aggregation = "sum_then_normalize"    # or "normalize_then_sum"
//! max_failure_fraction = 0.5           # of a reward's items over
//! failure_window = 10                   # ... its last 10 batches
//! cost = { nfe = 0.1, mode = "gate" }   # "correct first, then fast"
//!
//! [[rewards.terms]]
//! kind = "builtin"
//! name = "valid_cells"
//!
//! [[rewards.terms]]
//! kind = "http"
//! name = "judge"
//! url = "http://127.0.0.1:8000/score"
//! weight = 0.5
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use envs::{Problems, Validate};
use serde::{Deserialize, Serialize};

/// Every key is optional; the defaults are [`Default`]'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardsConfig {
    /// The rewards; empty = the task's default verifier reward.
    pub terms: Vec<RewardTerm>,
    pub aggregation: Aggregation,
    /// Share of a batch's items one reward may fail on before training
    /// stops (after writing a checkpoint).
    pub max_failure_fraction: f64,
    /// Batches over which `max_failure_fraction` is judged, per reward.
    pub failure_window: usize,
    pub cost: CostConfig,
}

impl Default for RewardsConfig {
    fn default() -> Self {
        Self {
            terms: Vec::new(),
            aggregation: Aggregation::default(),
            max_failure_fraction: 0.5,
            failure_window: crate::compose::DEFAULT_FAILURE_WINDOW,
            cost: CostConfig::default(),
        }
    }
}

/// The order of weighting and group normalization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Weighted sum of the rewards, then normalize within the group (GRPO).
    #[default]
    SumThenNormalize,
    /// Normalize each reward within the group, then the weighted sum of
    /// those per-reward advantages (keeps a small-scale reward from being
    /// drowned by a large-scale one).
    NormalizeThenSum,
}

/// The cost of a rollout: `penalty = nfe * NFE / answer_len + wall_s * seconds`.
/// Every key is optional: no cost by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostConfig {
    /// Weight of the denoiser evaluations, per answer position.
    pub nfe: f64,
    /// Weight of the rollout's wall time, per second.
    pub wall_s: f64,
    pub mode: CostMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostMode {
    /// `reward - penalty`.
    #[default]
    Additive,
    /// `reward * max(0, 1 - penalty)`: a wrong answer (reward 0) gains
    /// nothing from being fast, so correctness comes first, then speed.
    Gate,
}

/// One reward and its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RewardTerm {
    /// A verifier built into the task (`cogrpo check` lists them).
    Builtin {
        name: String,
        #[serde(default = "default_weight")]
        weight: f64,
    },
    /// A child process speaking JSON lines (`docs/reward-protocol.md`).
    Subprocess {
        name: String,
        #[serde(default = "default_weight")]
        weight: f64,
        /// Program and arguments, run without a shell.
        command: Vec<String>,
        #[serde(default)]
        cwd: Option<PathBuf>,
        /// The child's environment besides `PATH` (nothing else is passed).
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default = "default_timeout_s")]
        timeout_s: f64,
        #[serde(default = "default_max_reply_bytes")]
        max_reply_bytes: usize,
        /// Items per request line: a crash costs one chunk, not the batch.
        #[serde(default = "default_max_batch")]
        max_batch: usize,
        /// Extra attempts of a failed chunk, each on a restarted process.
        #[serde(default = "default_subprocess_retries")]
        retries: u32,
    },
    /// A reward server taking POSTed batches (`docs/reward-protocol.md`).
    Http {
        name: String,
        #[serde(default = "default_weight")]
        weight: f64,
        url: String,
        #[serde(default = "default_timeout_s")]
        timeout_s: f64,
        #[serde(default = "default_concurrency")]
        concurrency: usize,
        #[serde(default = "default_max_batch")]
        max_batch: usize,
        #[serde(default = "default_retries")]
        retries: u32,
        #[serde(default = "default_backoff_s")]
        backoff_s: f64,
        #[serde(default = "default_max_reply_bytes")]
        max_reply_bytes: usize,
    },
}

// Bounds of the plugin settings: beyond them a value is a typo, and
// converting it (seconds to a `Duration`, permits to a semaphore) would
// panic or wait for ever.
const MIN_TIMEOUT_S: f64 = 1e-3;
/// One week.
const MAX_TIMEOUT_S: f64 = 604_800.0;
const MAX_BACKOFF_S: f64 = 3_600.0;
const MAX_CONCURRENCY: usize = 4_096;
const MAX_BATCH: usize = 1 << 20;
const MAX_RETRIES: usize = 100;
/// 4 GiB.
const MAX_REPLY_BYTES: usize = 1 << 32;

fn default_weight() -> f64 {
    1.0
}
fn default_timeout_s() -> f64 {
    60.0
}
fn default_concurrency() -> usize {
    8
}
fn default_max_batch() -> usize {
    64
}
fn default_retries() -> u32 {
    2
}
fn default_subprocess_retries() -> u32 {
    1
}
fn default_backoff_s() -> f64 {
    0.25
}
fn default_max_reply_bytes() -> usize {
    16 << 20
}

impl RewardTerm {
    pub fn name(&self) -> &str {
        match self {
            RewardTerm::Builtin { name, .. }
            | RewardTerm::Subprocess { name, .. }
            | RewardTerm::Http { name, .. } => name,
        }
    }

    pub fn weight(&self) -> f64 {
        match self {
            RewardTerm::Builtin { weight, .. }
            | RewardTerm::Subprocess { weight, .. }
            | RewardTerm::Http { weight, .. } => *weight,
        }
    }
}

impl Validate for RewardsConfig {
    fn check(&self, p: &mut Problems) {
        p.within("max_failure_fraction", self.max_failure_fraction, 0.0, 1.0);
        p.count_within("failure_window", self.failure_window, 1, 10_000);
        p.non_negative("cost.nfe", self.cost.nfe);
        p.non_negative("cost.wall_s", self.cost.wall_s);
        let mut seen = BTreeMap::new();
        for (i, term) in self.terms.iter().enumerate() {
            p.section(&format!("terms[{i}]"), term);
            if let Some(j) = seen.insert(term.name().to_string(), i) {
                p.bad(
                    &format!("terms[{i}].name"),
                    format!("{:?} is also the name of terms[{j}]", term.name()),
                );
            }
        }
    }
}

impl Validate for RewardTerm {
    fn check(&self, p: &mut Problems) {
        if self.name().is_empty() {
            p.bad("name", "must not be empty");
        }
        p.finite("weight", self.weight());
        match self {
            RewardTerm::Builtin { .. } => {}
            RewardTerm::Subprocess {
                command,
                timeout_s,
                max_reply_bytes,
                max_batch,
                retries,
                ..
            } => {
                p.count_within("max_batch", *max_batch, 1, MAX_BATCH);
                p.count_within("retries", *retries as usize, 0, MAX_RETRIES);
                if command.first().is_none_or(|program| program.is_empty()) {
                    p.bad(
                        "command",
                        "must name a program: [\"python3\", \"plugin.py\"]",
                    );
                }
                p.within("timeout_s", *timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S);
                p.count_within("max_reply_bytes", *max_reply_bytes, 1, MAX_REPLY_BYTES);
            }
            RewardTerm::Http {
                url,
                timeout_s,
                concurrency,
                max_batch,
                retries,
                backoff_s,
                max_reply_bytes,
                ..
            } => {
                if !url.starts_with("http://") {
                    p.bad(
                        "url",
                        format!("must start with http:// (got {url:?}); TLS belongs in a proxy"),
                    );
                }
                p.within("timeout_s", *timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S);
                p.count_within("concurrency", *concurrency, 1, MAX_CONCURRENCY);
                p.count_within("max_batch", *max_batch, 1, MAX_BATCH);
                p.count_within("max_reply_bytes", *max_reply_bytes, 1, MAX_REPLY_BYTES);
                p.count_within("retries", *retries as usize, 0, MAX_RETRIES);
                p.within("backoff_s", *backoff_s, 0.0, MAX_BACKOFF_S);
            }
        }
    }
}
