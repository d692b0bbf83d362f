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
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Every key is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RewardsConfig {
    /// The rewards (`[[rewards.terms]]`); empty = the task's default
    /// reward.
    pub terms: Vec<RewardTerm>,
    /// The order of weighting and group normalization.
    pub aggregation: Aggregation,
    /// Share of a batch's items one reward may fail on before training
    /// stops (after writing a checkpoint).
    pub max_failure_fraction: f64,
    /// Batches over which `max_failure_fraction` is judged, per reward.
    pub failure_window: usize,
    pub cost: CostConfig,
}

/// Batches over which `max_failure_fraction` is judged unless
/// `rewards.failure_window` says otherwise.
pub const DEFAULT_FAILURE_WINDOW: usize = 10;

impl Default for RewardsConfig {
    fn default() -> Self {
        Self {
            terms: Vec::new(),
            aggregation: Aggregation::default(),
            max_failure_fraction: 0.5,
            failure_window: DEFAULT_FAILURE_WINDOW,
            cost: CostConfig::default(),
        }
    }
}

/// The order of weighting and group normalization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CostConfig {
    /// Weight of the denoiser evaluations, per answer position.
    pub nfe: f64,
    /// Weight of the rollout's wall time, per second.
    pub wall_s: f64,
    /// How the penalty meets the reward.
    pub mode: CostMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostMode {
    /// `reward - penalty`.
    #[default]
    Additive,
    /// `reward * max(0, 1 - penalty)`: a wrong answer (reward 0) gains
    /// nothing from being fast, so correctness comes first, then speed.
    Gate,
}

/// One reward and its weight, by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RewardTerm {
    /// A verifier built into the task, or a learned reward model of the
    /// project (`cogrpo check` lists them).
    Builtin(BuiltinTerm),
    /// A child process speaking JSON lines (`docs/reward-protocol.md`).
    Subprocess(SubprocessTerm),
    /// A reward server taking POSTed batches (`docs/reward-protocol.md`).
    Http(HttpTerm),
}

/// `kind = "builtin"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BuiltinTerm {
    /// The reward's name (`valid_cells`, `digit_classifier`, ...).
    #[schemars(extend("x-required" = true))]
    pub name: String,
    /// Its weight in the reward set.
    pub weight: f64,
}

impl Default for BuiltinTerm {
    fn default() -> Self {
        Self {
            name: String::new(),
            weight: 1.0,
        }
    }
}

/// `kind = "subprocess"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SubprocessTerm {
    /// The reward's name in logs and dumps.
    #[schemars(extend("x-required" = true))]
    pub name: String,
    /// Its weight in the reward set.
    pub weight: f64,
    /// Program and arguments, run without a shell.
    #[schemars(extend("x-required" = true))]
    pub command: Vec<String>,
    /// The child's working directory (unset: cogrpo's).
    pub cwd: Option<PathBuf>,
    /// The child's environment besides `PATH` (nothing else is passed).
    pub env: BTreeMap<String, String>,
    /// Seconds a reply may take before the chunk fails (and the process is
    /// restarted).
    pub timeout_s: f64,
    /// Largest reply line accepted.
    pub max_reply_bytes: usize,
    /// Items per request line: a crash costs one chunk, not the batch.
    pub max_batch: usize,
    /// Extra attempts of a failed chunk, each on a restarted process.
    pub retries: u32,
}

impl Default for SubprocessTerm {
    fn default() -> Self {
        Self {
            name: String::new(),
            weight: 1.0,
            command: Vec::new(),
            cwd: None,
            env: BTreeMap::new(),
            timeout_s: 60.0,
            max_reply_bytes: 16 << 20,
            max_batch: 64,
            retries: 1,
        }
    }
}

/// `kind = "http"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTerm {
    /// The reward's name in logs and dumps.
    #[schemars(extend("x-required" = true))]
    pub name: String,
    /// Its weight in the reward set.
    pub weight: f64,
    /// The server's address (`http://`; TLS belongs in a proxy).
    #[schemars(extend("x-required" = true))]
    pub url: String,
    /// Seconds a request may take before it fails.
    pub timeout_s: f64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Items per request: a failure costs one chunk, not the batch.
    pub max_batch: usize,
    /// Extra attempts of a failed request (not of an error reply).
    pub retries: u32,
    /// Seconds before the first retry, doubling after each.
    pub backoff_s: f64,
    /// Largest reply body accepted.
    pub max_reply_bytes: usize,
}

impl Default for HttpTerm {
    fn default() -> Self {
        Self {
            name: String::new(),
            weight: 1.0,
            url: String::new(),
            timeout_s: 60.0,
            concurrency: 8,
            max_batch: 64,
            retries: 2,
            backoff_s: 0.25,
            max_reply_bytes: 16 << 20,
        }
    }
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

impl RewardTerm {
    pub fn name(&self) -> &str {
        match self {
            RewardTerm::Builtin(t) => &t.name,
            RewardTerm::Subprocess(t) => &t.name,
            RewardTerm::Http(t) => &t.name,
        }
    }

    pub fn weight(&self) -> f64 {
        match self {
            RewardTerm::Builtin(t) => t.weight,
            RewardTerm::Subprocess(t) => t.weight,
            RewardTerm::Http(t) => t.weight,
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
            RewardTerm::Builtin(_) => {}
            RewardTerm::Subprocess(t) => {
                p.count_within("max_batch", t.max_batch, 1, MAX_BATCH);
                p.count_within("retries", t.retries as usize, 0, MAX_RETRIES);
                if t.command.first().is_none_or(|program| program.is_empty()) {
                    p.bad(
                        "command",
                        "must name a program: [\"python3\", \"plugin.py\"]",
                    );
                }
                p.within("timeout_s", t.timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S);
                p.count_within("max_reply_bytes", t.max_reply_bytes, 1, MAX_REPLY_BYTES);
            }
            RewardTerm::Http(t) => {
                if !t.url.starts_with("http://") {
                    p.bad(
                        "url",
                        format!(
                            "must start with http:// (got {:?}); TLS belongs in a proxy",
                            t.url
                        ),
                    );
                }
                p.within("timeout_s", t.timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S);
                p.count_within("concurrency", t.concurrency, 1, MAX_CONCURRENCY);
                p.count_within("max_batch", t.max_batch, 1, MAX_BATCH);
                p.count_within("max_reply_bytes", t.max_reply_bytes, 1, MAX_REPLY_BYTES);
                p.count_within("retries", t.retries as usize, 0, MAX_RETRIES);
                p.within("backoff_s", t.backoff_s, 0.0, MAX_BACKOFF_S);
            }
        }
    }
}
