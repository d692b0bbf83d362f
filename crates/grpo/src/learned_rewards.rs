//! Learned rewards that must know the pre-trained generator before RL
//! starts (`digit_realism`, trained against its samples).

use std::collections::BTreeSet;

use cogrpo_config::ExperimentConfig;
use cogrpo_eval::{EvalPoint, Scorer};
use cogrpo_vision::{realism, registry};
use envs::{Example, Task};
use mdm::{Denoiser, Kernels};

/// Trains what must be trained against the pre-trained generator `base`
/// before RL starts: `digit_realism`, on `base`'s answers to the `train`
/// prompts under the reference schedule at every evaluated step count (RL
/// moves the schedule, so the discriminator must know the generator's
/// artefacts at few steps and at many); reloaded when those answers are
/// unchanged.
pub fn prepare<B: Kernels>(
    cfg: &ExperimentConfig,
    task: &dyn Task,
    base: &Denoiser<B>,
    device: &B::Device,
) -> anyhow::Result<()> {
    if !registry::needs_generator(cfg, task.verifiers()) {
        return Ok(());
    }
    let c = cfg.cogrpo_section()?;
    let prompts = train_prompts(task);
    let steps = c.eval_and_training_step_counts();
    let mut answers: Vec<Vec<u32>> = Vec::new();
    for (k, &t) in steps.iter().enumerate() {
        // A fresh draw per step count: the rows' randomness is keyed by id.
        let offset = (k as u64 + 1) << 32;
        let examples: Vec<Example> = prompts
            .iter()
            .map(|e| Example {
                id: e.id + offset,
                ..e.clone()
            })
            .collect();
        let point = EvalPoint {
            label: format!("{} samples", realism::NAME),
            model: base,
            policy: None,
            sampler: c.reference.with_steps(t),
            temperature: None,
        };
        let done = point.evaluate(cfg, task, &examples, &Scorer::unscored(), false, device)?;
        answers.extend(done.items.into_iter().map(|it| it.completion_tokens));
    }
    realism::load_or_train(cfg, &answers)?;
    Ok(())
}

/// The distinct training examples, in order, up to the first repeat (a
/// data set's task cycles through them) or `MAX_PROMPTS`.
fn train_prompts(task: &dyn Task) -> Vec<Example> {
    const MAX_PROMPTS: u64 = 4096;
    let mut seen = BTreeSet::new();
    (0..MAX_PROMPTS)
        .map(|i| task.train_example(i))
        .take_while(|e| seen.insert(e.id))
        .collect()
}
