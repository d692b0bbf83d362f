//! Builds the task an experiment config names.

use anyhow::Context;
use envs::Task;
use envs::countdown::Countdown;
use envs::digits::Digits;
use envs::prompts::{PromptsSpec, PromptsTask};
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
        TaskKind::StarTiny => Box::new(StarTask::new(Variant::Tiny, t.data_seed)?),
        TaskKind::StarSmall => Box::new(StarTask::new(Variant::Small, t.data_seed)?),
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
        TaskKind::Prompts => Box::new(load_prompts(cfg)?),
    })
}

/// Where the text side of the model is (`tokenizer.json`,
/// `tokenizer_config.json`): `task.tokenizer`, else `model.source` (a
/// directory, or the folder holding an SMDM file).
pub fn tokenizer_dir(cfg: &ExperimentConfig) -> Option<std::path::PathBuf> {
    let beside_source = cfg.model.source.as_ref().map(|s| match s.parent() {
        Some(parent) if s.is_file() => parent.to_path_buf(),
        _ => s.clone(),
    });
    cfg.task.tokenizer.clone().or(beside_source)
}

/// The prompt set, tokenized by `task.tokenizer` or `model.source`'s
/// tokenizer, over the model's embedding rows (its own mask id mapped to
/// cogrpo's).
fn load_prompts(cfg: &ExperimentConfig) -> anyhow::Result<PromptsTask> {
    let t = &cfg.task;
    let m = &cfg.model;
    let dir = tokenizer_dir(cfg)
        .context("task.kind = \"prompts\" needs task.tokenizer or model.source")?;
    let text = text::ModelText::from_dir(&dir)?;
    let (rows, mask) = match &m.released {
        Some(hf) => (hf.denoiser.vocab_size, Some(hf.mask_token_id)),
        None => (text.tokenizer.vocab_size(), None),
    };
    let path = t
        .prompts
        .clone()
        .context("task.prompts is required with kind = \"prompts\"")?;
    let spec = PromptsSpec {
        gen_length: t.gen_length.context("task.gen_length is required")?,
        chat_template: t.chat_template,
        prompt_len: t.prompt_len,
        holdout_fraction: t.holdout_fraction.unwrap_or(DEFAULT_HOLDOUT),
        data_seed: t.data_seed,
        verifiers: t.verifiers.clone().unwrap_or_else(|| "prompts".into()),
        path,
    };
    let task = PromptsTask::load(&spec, std::sync::Arc::new(text), rows, mask)
        .with_context(|| format!("task.prompts = {:?}", spec.path))?;
    if let Some(hf) = &m.released {
        let len = task.layout().seq_len();
        anyhow::ensure!(
            len <= hf.denoiser.max_len,
            "the prompts take {} positions and task.gen_length {} more: {len} in all, but the \
             model in {:?} reads at most {}",
            task.layout().prompt_len,
            task.layout().answer_len,
            m.source.as_deref().unwrap_or(std::path::Path::new("")),
            hf.denoiser.max_len
        );
    }
    Ok(task)
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
    // A model directory's vocabulary is its embedding rows (which the
    // prompt task's tokenizer vocabulary also reports).
    let vocab = m
        .released
        .as_ref()
        .map_or(task.vocab().len(), |hf| hf.denoiser.vocab_size);
    let mut d = m.denoiser(vocab, task.layout().seq_len() + extra);
    // Embedding rows no tokenizer id reaches are kept out of sampling.
    if let envs::Vocab::Tokenizer(t) = task.vocab() {
        d.live_vocab = t.live_rows();
    }
    d
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
