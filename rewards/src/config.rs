//! The `[rewards]` section of an experiment config: which rewards, with
//! which weights, how they are combined into advantages, and what a rollout
//! costs.
//!
//! ```toml
//! [rewards]
//! aggregation = "sum_then_normalize"    # or "normalize_then_sum"
//! max_failure_fraction = 0.5
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

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardsConfig {
    /// The rewards; empty = the task's default verifier reward.
    #[serde(default)]
    pub terms: Vec<RewardTerm>,
    #[serde(default)]
    pub aggregation: Aggregation,
    /// Share of a batch's items one reward may fail on before training
    /// stops (after writing a checkpoint).
    #[serde(default = "default_max_failure_fraction")]
    pub max_failure_fraction: f64,
    #[serde(default)]
    pub cost: CostConfig,
}

impl Default for RewardsConfig {
    fn default() -> Self {
        Self {
            terms: Vec::new(),
            aggregation: Aggregation::default(),
            max_failure_fraction: default_max_failure_fraction(),
            cost: CostConfig::default(),
        }
    }
}

fn default_max_failure_fraction() -> f64 {
    0.5
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// Weight of the denoiser evaluations, per answer position.
    #[serde(default)]
    pub nfe: f64,
    /// Weight of the rollout's wall time, per second.
    #[serde(default)]
    pub wall_s: f64,
    #[serde(default)]
    pub mode: CostMode,
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            nfe: 0.0,
            wall_s: 0.0,
            mode: CostMode::Additive,
        }
    }
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
        #[serde(default = "one")]
        weight: f64,
    },
    /// A child process speaking JSON lines (`docs/reward-protocol.md`).
    Subprocess {
        name: String,
        #[serde(default = "one")]
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
    },
    /// A reward server taking POSTed batches (`docs/reward-protocol.md`).
    Http {
        name: String,
        #[serde(default = "one")]
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

fn one() -> f64 {
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

impl RewardsConfig {
    /// Problems as `(key path, message)`, keys relative to `rewards`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: String, msg: String| out.push((key, msg));
        if !(0.0..=1.0).contains(&self.max_failure_fraction) {
            bad(
                "max_failure_fraction".into(),
                format!("must be in [0, 1], got {}", self.max_failure_fraction),
            );
        }
        for (key, v) in [
            ("cost.nfe", self.cost.nfe),
            ("cost.wall_s", self.cost.wall_s),
        ] {
            if !v.is_finite() || v < 0.0 {
                bad(key.into(), format!("must be a finite number >= 0, got {v}"));
            }
        }
        let mut seen = BTreeMap::new();
        for (i, term) in self.terms.iter().enumerate() {
            let key = |field: &str| format!("terms[{i}].{field}");
            if term.name().is_empty() {
                bad(key("name"), "must not be empty".into());
            }
            if let Some(j) = seen.insert(term.name().to_string(), i) {
                bad(
                    key("name"),
                    format!("{:?} is also the name of terms[{j}]", term.name()),
                );
            }
            if !term.weight().is_finite() {
                bad(
                    key("weight"),
                    format!("must be finite, got {}", term.weight()),
                );
            }
            match term {
                RewardTerm::Builtin { .. } => {}
                RewardTerm::Subprocess {
                    command,
                    timeout_s,
                    max_reply_bytes,
                    ..
                } => {
                    if command.is_empty() || command[0].is_empty() {
                        bad(
                            key("command"),
                            "must name a program: [\"python3\", \"plugin.py\"]".into(),
                        );
                    }
                    check_timeout(&mut bad, key("timeout_s"), *timeout_s);
                    if *max_reply_bytes == 0 {
                        bad(key("max_reply_bytes"), "must be at least 1".into());
                    }
                }
                RewardTerm::Http {
                    url,
                    timeout_s,
                    concurrency,
                    max_batch,
                    backoff_s,
                    max_reply_bytes,
                    ..
                } => {
                    if !url.starts_with("http://") {
                        bad(
                            key("url"),
                            format!(
                                "must start with http:// (got {url:?}); TLS belongs in a proxy"
                            ),
                        );
                    }
                    check_timeout(&mut bad, key("timeout_s"), *timeout_s);
                    for (field, v) in [
                        ("concurrency", *concurrency),
                        ("max_batch", *max_batch),
                        ("max_reply_bytes", *max_reply_bytes),
                    ] {
                        if v == 0 {
                            bad(key(field), "must be at least 1".into());
                        }
                    }
                    if !backoff_s.is_finite() || *backoff_s < 0.0 {
                        bad(key("backoff_s"), format!("must be >= 0, got {backoff_s}"));
                    }
                }
            }
        }
        out
    }
}

fn check_timeout(bad: &mut impl FnMut(String, String), key: String, v: f64) {
    if !v.is_finite() || v <= 0.0 {
        bad(
            key,
            format!("must be a positive number of seconds, got {v}"),
        );
    }
}
