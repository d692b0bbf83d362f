//! The reward set of an experiment: the rewards crate's task verifiers and
//! plugins, plus the project's learned reward models, registered by name
//! (`kind = "builtin", name = "digit_classifier"`), so that a config names a
//! learned model exactly as it names a verifier.

use std::collections::BTreeSet;

use rewards::{Registry, RewardSet, RewardTerm};

use crate::realism;
use crate::reward::{ClassifierReward, Target};
use crate::store::{ModelRole, load_or_train};
use cogrpo_config::{ExperimentConfig, TaskKind};

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
            RewardTerm::Builtin(t) => Some(t.name.clone()),
            _ => None,
        })
        .collect()
}

/// Every learned reward model of the project (digits).
pub const LEARNED: [&str; 2] = [CLASSIFIER, realism::NAME];
const CLASSIFIER: &str = ModelRole::Reward.name();

/// Whether a reward `cfg` names is trained against the pre-trained
/// generator (`digit_realism`: RL must prepare it first).
pub fn needs_generator(cfg: &ExperimentConfig, task: &str) -> bool {
    learned_names(cfg, task).contains(&realism::NAME)
}

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

/// The reward set `cfg`'s `[rewards]` describes for `task`.
pub fn reward_set(cfg: &ExperimentConfig, task: &str) -> anyhow::Result<RewardSet> {
    registry(cfg, task)?
        .build(&cfg.rewards, task)
        .map_err(anyhow::Error::msg)
}
