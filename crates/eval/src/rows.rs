//! What an evaluation measured: one row per (sampler, step count, metric).

use serde::{Deserialize, Serialize};

/// One measured number of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// Sampler label (`confidence`, `first_hitting`, ...) or `elbo` for the
    /// likelihood bound.
    pub sampler: String,
    /// Sampling steps, or time samples per sequence for `elbo`.
    pub steps: usize,
    pub metric: String,
    pub value: f64,
    /// Examples scored.
    pub n: usize,
    /// Mean denoiser evaluations per example.
    pub nfe: f64,
    pub wall_s: f64,
}

/// Whether a smaller value of `metric` is better (distances, duplicates,
/// cost); every other metric (accuracies, rewards, solve rates) is better
/// larger.
pub fn lower_is_better(metric: &str) -> bool {
    matches!(metric, "frechet" | "duplicate_rate" | "nfe" | "wall_s")
}

/// The rows as an aligned text table.
pub fn table(rows: &[EvalRow]) -> String {
    let mut out = format!(
        "{:<34} {:>6} {:<18} {:>9} {:>6} {:>7} {:>8}\n",
        "sampler", "steps", "metric", "value", "n", "nfe", "wall_s"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<34} {:>6} {:<18} {:>9.4} {:>6} {:>7.1} {:>8.1}\n",
            r.sampler, r.steps, r.metric, r.value, r.n, r.nfe, r.wall_s
        ));
    }
    out
}
