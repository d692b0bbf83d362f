//! Builds the task an experiment config names.

use anyhow::Context;
use envs::Task;
use envs::countdown::Countdown;
use envs::digits::Digits;
use envs::reversal::Reversal;
use envs::star::{StarTask, Variant};
use envs::sudoku4::Sudoku4;
use envs::text::TextTask;
use mdm::{DenoiserConfig, Family};

use crate::experiment::ExperimentConfig;
use crate::sections::TaskKind;

/// Default window of the `text` task.
pub const DEFAULT_TEXT_LEN: usize = 256;
/// Default held-out share of the `text` task.
pub const DEFAULT_HOLDOUT: f64 = 0.1;

pub fn build(cfg: &ExperimentConfig) -> anyhow::Result<Box<dyn Task>> {
    let t = &cfg.task;
    let hint = || {
        format!(
            "task.data_dir is {:?} (relative to the working directory {:?}); run from the \
             repository root or pass --set task.data_dir=PATH",
            t.data_dir,
            std::env::current_dir().unwrap_or_default()
        )
    };
    Ok(match t.kind {
        TaskKind::Sudoku4 => Box::new(
            Sudoku4::load(&t.data_dir, t.data_seed)
                .with_context(hint)?
                .with_prefilled_givens(t.prefill_givens),
        ),
        TaskKind::Countdown => {
            Box::new(Countdown::load(&t.data_dir, t.data_seed).with_context(hint)?)
        }
        TaskKind::StarEasy => Box::new(StarTask::new(Variant::Easy, t.data_seed)?),
        TaskKind::StarMedium => Box::new(StarTask::new(Variant::Medium, t.data_seed)?),
        TaskKind::StarHard => Box::new(StarTask::new(Variant::Hard, t.data_seed)?),
        TaskKind::Reversal => Box::new(Reversal::load(&t.data_dir).with_context(hint)?),
        TaskKind::Digits => Box::new(load_digits(cfg).with_context(hint)?),
        TaskKind::Text => Box::new(
            TextTask::load(
                &t.data_dir,
                t.seq_len.unwrap_or(DEFAULT_TEXT_LEN),
                t.holdout_fraction.unwrap_or(DEFAULT_HOLDOUT),
            )
            .with_context(hint)?,
        ),
    })
}

/// The digits task as `cfg` configures it (the image models read their
/// splits from it too).
pub fn load_digits(cfg: &ExperimentConfig) -> Result<Digits, envs::TaskError> {
    let t = &cfg.task;
    Digits::load(&t.data_dir, t.data_seed, t.digit_levels())
}

/// The denoiser shape for this experiment and task.
pub fn denoiser_config(cfg: &ExperimentConfig, task: &dyn Task) -> DenoiserConfig {
    let m = &cfg.model;
    // The ILM reads `<bos>` before the sequence.
    let extra = usize::from(m.family == Family::Ilm);
    m.denoiser(task.vocab().len(), task.layout().seq_len() + extra)
}

/// The answer an ILM learns to generate: the task's answer without the
/// trailing `<pad>` tokens that fix its length for the MDM (star graphs).
pub fn ilm_answer<'a>(task: &dyn Task, answer: &'a [u32]) -> &'a [u32] {
    match task.vocab().id_of("<pad>") {
        Some(pad) => {
            let end = answer.iter().rposition(|&t| t != pad).map_or(0, |i| i + 1);
            &answer[..end]
        }
        None => answer,
    }
}
