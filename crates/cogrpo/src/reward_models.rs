//! The reward set of an experiment: the rewards crate's task verifiers and
//! plugins, plus the project's learned reward models, registered by name
//! (`kind = "builtin", name = "digit_classifier"`), so that a config names a
//! learned model exactly as it names a verifier.

use std::collections::BTreeSet;

use envs::{Example, Task};
use mdm::Denoiser;
use rewards::{Registry, RewardSet, RewardTerm};

use crate::config::{ExperimentConfig, TaskKind};
use crate::eval::{EvalPoint, Scorer};
use crate::vision::{ClassifierReward, ModelRole, Target, load_or_train, realism};
use mdm::Kernels;

/// The built-in reward names a config uses (its default when it names none).
pub fn builtin_names(cfg: &ExperimentConfig, task: &str) -> BTreeSet<String> {
    if cfg.rewards.terms.is_empty() {
        return rewards::default_reward(task)
            .into_iter()
            .map(String::from)
            .collect();
    }
    cfg.rewards
        .terms
        .iter()
        .filter_map(|t| match t {
            RewardTerm::Builtin { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Every learned reward model of the project (digits).
pub const LEARNED: [&str; 2] = [CLASSIFIER, realism::NAME];
const CLASSIFIER: &str = ModelRole::Reward.name();

/// The learned reward models `cfg` names.
pub fn learned_names(cfg: &ExperimentConfig, task: &str) -> Vec<&'static str> {
    if cfg.task.kind != TaskKind::Digits {
        return Vec::new();
    }
    let names = builtin_names(cfg, task);
    LEARNED.into_iter().filter(|n| names.contains(*n)).collect()
}

/// A registry holding the learned reward models `cfg` names (trained on
/// first use).
pub fn registry(cfg: &ExperimentConfig, task: &str) -> anyhow::Result<Registry> {
    let names: Vec<String> = builtin_names(cfg, task).into_iter().collect();
    registry_with(cfg, &names)
}

/// A registry holding the learned reward models among `names` (trained on
/// first use).
pub fn registry_with(cfg: &ExperimentConfig, names: &[String]) -> anyhow::Result<Registry> {
    let mut registry = Registry::default();
    if cfg.task.kind != TaskKind::Digits {
        return Ok(registry);
    }
    let levels = cfg.task.digit_levels();
    let wants = |name: &str| names.iter().any(|n| n == name);
    if wants(CLASSIFIER) {
        let trained = load_or_train(cfg, ModelRole::Reward)?;
        let reward = ClassifierReward::new(CLASSIFIER, trained.model, levels, Target::Prompted);
        registry.register(CLASSIFIER, move || Box::new(reward.clone()));
    }
    if wants(realism::NAME) {
        let trained = realism::load(cfg)?;
        let target = Target::Fixed(realism::REAL);
        let reward = ClassifierReward::new(realism::NAME, trained.model, levels, target);
        registry.register(realism::NAME, move || Box::new(reward.clone()));
    }
    Ok(registry)
}

/// Whether a reward `cfg` names is trained against the pre-trained
/// generator ([`prepare`] must run before RL).
pub fn needs_generator(cfg: &ExperimentConfig, task: &str) -> bool {
    learned_names(cfg, task).contains(&realism::NAME)
}

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
    if !needs_generator(cfg, task.name()) {
        return Ok(());
    }
    let c = cfg.cogrpo_section()?;
    let prompts = train_prompts(task);
    let mut steps = c.eval_step_counts();
    steps.push(c.steps);
    steps.sort_unstable();
    steps.dedup();
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

/// The reward set `cfg`'s `[rewards]` describes for `task`.
pub fn reward_set(cfg: &ExperimentConfig, task: &str) -> anyhow::Result<RewardSet> {
    registry(cfg, task)?
        .build(&cfg.rewards, task)
        .map_err(anyhow::Error::msg)
}
