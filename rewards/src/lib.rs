//! Rewards: scores of completed generations.
//!
//! A reward sees what a user would see — the task example (prompt, reference
//! answer, metadata) and the completion's tokens and text — never the
//! network. This crate holds the built-in verifiers; the same scores serve
//! as evaluation metrics and, for reinforcement learning, as rewards.

pub mod sudoku;

use envs::Example;

/// A deterministic scorer of one completion.
pub trait Verifier: Send + Sync {
    /// Name used in configs, logs and reports.
    fn name(&self) -> &'static str;

    /// Score of `completion` (answer tokens) for `example`; `None` when the
    /// verifier does not apply to this example.
    fn score(&self, example: &Example, completion: &[u32]) -> Option<f64>;
}

/// The built-in verifiers of a task, in report order (first = headline).
pub fn verifiers_for(task: &str) -> Vec<Box<dyn Verifier>> {
    match task {
        "sudoku4" => vec![
            Box::new(sudoku::Solved),
            Box::new(sudoku::D1CellAccuracy),
            Box::new(sudoku::ValidCells),
        ],
        _ => Vec::new(),
    }
}
