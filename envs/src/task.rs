//! The task interface: a named source of prompts and answers.
//!
//! A task fixes the sequence layout (prompt positions, then answer positions),
//! declares its vocabulary, generates or loads training examples by index
//! (deterministically, so that a resumed run sees the same data), and holds
//! a fixed held-out test split. Per-example metadata (stored solutions,
//! offsets, ...) travels with the example for rewards and metrics.

use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::image::GrayImage;
use crate::vocab::Vocab;

/// Where the prompt and the answer sit in a sequence: `prompt_len` clean
/// positions followed by `answer_len` positions that generation fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub prompt_len: usize,
    pub answer_len: usize,
}

impl Layout {
    pub fn seq_len(&self) -> usize {
        self.prompt_len + self.answer_len
    }
}

/// One task example. `prompt.len()` equals the layout's prompt length;
/// `answer` is the reference answer (the training target).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable identifier: the index it was generated from, or its line.
    pub id: u64,
    pub prompt: Vec<u32>,
    pub answer: Vec<u32>,
    /// Task-specific facts for rewards and metrics (e.g. the stored solution).
    pub metadata: serde_json::Value,
    /// Answer positions the prompt already fixes, `(answer index, token)`:
    /// revealed on the canvas before the first step, so that a schedule's
    /// reveal counts cover only what is left to decide (Sudoku's givens with
    /// `task.prefill_givens`). Empty for most tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<(usize, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

pub trait Task: Send + Sync {
    /// The name used in configs and reports (`sudoku4`, `text`).
    fn name(&self) -> &str;

    /// Which built-in verifiers and default reward score this task's
    /// completions (`rewards::verifiers_for`): the task's own name, or for
    /// a prompt set the task its prompts were written from.
    fn verifiers(&self) -> &str {
        self.name()
    }

    fn vocab(&self) -> &Vocab;

    fn layout(&self) -> Layout;

    /// The training example for `index`. Every `u64` is valid: generators are
    /// unbounded and loaders map the index onto their data deterministically.
    fn train_example(&self, index: u64) -> Example;

    /// The held-out test split, in a fixed order.
    fn test_examples(&self) -> &[Example];

    /// A validation split, disjoint from training and test data, for tuning
    /// (the tuned fixed schedule); empty when the task has none.
    fn validation_examples(&self) -> &[Example] {
        &[]
    }

    /// Whether pre-training noises the prompt too (whole-sequence MDM
    /// training, as SMDM does for the reversal curse) instead of keeping it
    /// clean (conditional fine-tuning).
    fn noise_prompt_in_training(&self) -> bool {
        false
    }

    /// The answer as an image, for image tasks (digits); `None` for text.
    fn answer_image(&self, _answer: &[u32]) -> Option<GrayImage> {
        None
    }

    /// `[columns, rows]` when the answer is a grid of cells read row by row
    /// (Sudoku), so that viewers lay it out as one; `None` otherwise.
    fn answer_grid(&self) -> Option<[usize; 2]> {
        None
    }

    /// The answer as a user reads it: an image in block characters, or the
    /// decoded text.
    fn show_answer(&self, answer: &[u32]) -> String {
        match self.answer_image(answer) {
            Some(image) => image.to_blocks(),
            None => self.vocab().decode(answer),
        }
    }

    /// Turns a prompt typed by a user (e.g. `cogrpo sample --prompt ...`) into
    /// the tokens fixed at the start of the canvas.
    fn encode_user_prompt(&self, text: &str) -> Result<Vec<u32>, TaskError>;
}
