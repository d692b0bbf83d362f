//! Environments and tasks.
//!
//! This crate knows tokens, text and examples, never the network: a task
//! produces prompts and answers as token ids, the [`Canvas`] holds the state
//! of a generation, and everything random is derived from explicit keys
//! ([`seeding`]) so that any rollout can be replayed.

pub mod canvas;
pub mod countdown;
pub mod digits;
pub mod error;
pub mod files;
pub mod image;
pub mod jsonl;
pub mod problems;
pub mod prompts;
pub mod reversal;
pub mod seeding;
pub mod star;
pub mod sudoku4;
pub mod task;
pub mod text;
pub mod tokenized;
pub mod trajectory;
pub mod vocab;

pub use canvas::Canvas;
pub use error::TaskError;
pub use problems::{Problem, Problems, Validate};
pub use task::{Example, Layout, Split, Task};
pub use trajectory::{StepRecord, Trajectory};
pub use vocab::Vocab;
