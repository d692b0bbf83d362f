//! How much work a config asks for, in units that do not depend on the
//! machine: sequences, batched forwards and floating-point operations.
//! `cogrpo check` prints it beside the memory plan, so that a key that sets
//! the amount of work (steps, samples, examples, iterations) shows its cost
//! before anything runs.
//!
//! FLOPs count the matmuls of the parameters alone: 2N per token forward,
//! 6N per token forward and backward (Kaplan et al. 2020, eq. 2.1), N the
//! parameter count. Attention's own quadratic term is left out, so the
//! figures are lower bounds for long sequences.

use cogrpo_config::ExperimentConfig;
use cogrpo_config::tasks::denoiser_config;
use envs::Task;

/// One phase's work: the rows (sequences) it runs, the batched forwards
/// they take at the configured batch size, and its FLOPs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Work {
    pub rows: u128,
    pub forwards: u128,
    pub flops: f64,
}

/// Forwards needed for `rows` rows `per_row` times each, `batch` rows at a
/// time.
fn batched(rows: u128, per_row: u128, batch: usize) -> u128 {
    rows.div_ceil(batch.max(1) as u128) * per_row
}

/// Pre-training: `steps` optimizer steps of `batch_size x grad_accum`
/// sequences, forward and backward.
pub fn pretrain(cfg: &ExperimentConfig, task: &dyn Task) -> Work {
    let p = &cfg.pretrain;
    let n = denoiser_config(cfg, task).num_params() as f64;
    let per_step = (p.batch_size * p.grad_accum) as u128;
    let rows = p.steps as u128 * per_step;
    let tokens = rows as f64 * task.layout().seq_len() as f64;
    Work {
        rows,
        forwards: p.steps as u128 * p.grad_accum as u128,
        flops: 6.0 * n * tokens,
    }
}

/// The evaluation: each sweep point samples every held-out example (a step
/// that reveals nothing costs no forward, so at most `min(steps, answer
/// length)` forwards a row, twice with guidance), and the ELBO bound runs
/// `nll_samples` forwards a row.
pub fn eval(cfg: &ExperimentConfig, task: &dyn Task) -> Work {
    let e = &cfg.eval;
    let layout = task.layout();
    let examples = e
        .max_examples
        .unwrap_or(usize::MAX)
        .min(task.test_examples().len()) as u128;
    let (mut rows, mut forwards, mut row_forwards) = (0, 0, 0);
    for point in cfg.sweep() {
        let guided = if point.guidance != 0.0 { 2 } else { 1 };
        let per_row = point.steps.min(layout.answer_len.max(1)) as u128 * guided;
        rows += examples;
        row_forwards += examples * per_row;
        forwards += batched(examples, per_row, e.batch_size);
    }
    let elbo_rows = examples * e.nll_samples as u128;
    rows += elbo_rows;
    row_forwards += elbo_rows;
    forwards += batched(elbo_rows, 1, e.batch_size);
    let n = denoiser_config(cfg, task).num_params() as f64;
    Work {
        rows,
        forwards,
        flops: 2.0 * n * row_forwards as f64 * layout.seq_len() as f64,
    }
}

/// `1.2 TFLOP`, `350.0 GFLOP`: a FLOP count for a person.
pub fn short_flops(flops: f64) -> String {
    const UNITS: [(f64, &str); 5] = [
        (1e18, "EFLOP"),
        (1e15, "PFLOP"),
        (1e12, "TFLOP"),
        (1e9, "GFLOP"),
        (1e6, "MFLOP"),
    ];
    for (scale, unit) in UNITS {
        if flops >= scale {
            return format!("{:.1} {unit}", flops / scale);
        }
    }
    format!("{flops:.0} FLOP")
}
