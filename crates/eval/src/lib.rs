//! Generating and judging answers. [`EvalPoint`] is the one evaluation
//! loop (a model with a fixed sampler or a learned schedule, at one step
//! count, on a split); a [`Scorer`] judges what it generated (verifiers,
//! rewards, image metrics). Around it: the sampler sweep and likelihood
//! bounds of `cogrpo eval` ([`sweep`], [`likelihood`]), how an ARM or ILM
//! decodes ([`decoding`]), `cogrpo sample`'s completions of typed prompts
//! ([`sample`]), and the rollout dumps the viewer replays ([`dumps`]).

pub mod decoding;
pub mod dumps;
pub mod likelihood;
mod point;
mod rows;
pub mod sample;
mod scorer;
pub mod sweep;

pub use point::{EvalPoint, Evaluated, at_most_max_examples, eval_seed, test_examples};
pub use rows::{EvalRow, lower_is_better, table};
pub use scorer::{ItemScores, Metric, Scorer};
pub use sweep::evaluate;
